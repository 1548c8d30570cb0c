"""WebSocket messages: what clients send on ``$default`` and what the service pushes to them.

Inbound, exactly as the spec's JavaScript example sends them::

    {"type": "subscribe",   "data": {"type": "market_data", "channels": ["indices", "sentiment"]}}
    {"type": "subscribe",   "data": {"type": "stock_quotes", "symbols": ["AAPL", "MSFT"]}}
    {"type": "unsubscribe", "data": {...the same two shapes...}}
    {"type": "ping"}
    {"type": "resync"}

A client picks a message format at ``$connect`` (``?format=spec``, the default, or ``?format=batch``).

Outbound: ``subscribed`` / ``unsubscribed`` acks holding the connection's whole subscription set,
``pong``, ``error`` (``{"code", "message"}``; the connection stays open), and the updates
``quote_update`` (the spec's example, field for field), ``market_update`` (indices, movers),
``sector_update`` and ``sentiment_update``. Every update carries ``timestamp`` (ISO 8601 UTC, when the
value was current at its source), ``source`` (the provider, or ``replay``) and ``snapshot`` (true when
sent from the cache on subscribe rather than by a refresh).

Data messages (updates and snapshots, and in the batch format the ``batch`` frame that carries them) have
a top-level ``seq``: 1, 2, 3... per connection, so a client sees a gap; acks, ``pong`` and ``error`` have
none. ``seq`` 0 means "not sequenced" (the sequencing store was unavailable; see README).

Topics name what a subscription is to, and key the subscriptions table: ``quote:<SYMBOL>`` and
``channel:<name>``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from chalicelib.errors import ValidationFailed
from chalicelib.models.api import (
    IndexQuote,
    IndicesResponse,
    MoversResponse,
    SectorPerformance,
    SectorsResponse,
    SentimentComponent,
    SentimentResponse,
)
from chalicelib.models.market import MarketModel, Quote, QuoteResponse, normalize_symbol

QUOTE_TOPIC_PREFIX = "quote:"
CHANNEL_TOPIC_PREFIX = "channel:"


class Channel(StrEnum):
    INDICES = "indices"
    SECTORS = "sectors"
    SENTIMENT = "sentiment"
    MOVERS = "movers"


class SelectionType(StrEnum):
    MARKET_DATA = "market_data"
    STOCK_QUOTES = "stock_quotes"


class StreamFormat(StrEnum):
    """How data reaches a connection, chosen at ``$connect`` with ``?format=``."""

    SPEC = "spec"  # the spec's messages, one per changed item (the default)
    BATCH = "batch"  # one ``batch`` frame per publish round holding every changed item


class Action(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PING = "ping"
    RESYNC = "resync"


# Budget units per client message: what it can make the service do. Subscribe and resync read the cache
# and may call providers, subscribe and unsubscribe write DynamoDB; ping costs a Redis step and a post.
MESSAGE_COSTS: dict[Action, int] = {Action.SUBSCRIBE: 5, Action.UNSUBSCRIBE: 5, Action.RESYNC: 5, Action.PING: 1}
# A message that fails validation costs as much as the most expensive one: junk must not be a cheap flood.
INVALID_MESSAGE_COST = max(MESSAGE_COSTS.values())

# Every ``error`` code a client can receive, and what it means (documented in the AsyncAPI document).
ERROR_CODES: dict[str, str] = {
    "invalid_json": "the message is not valid JSON",
    "invalid_message": "the message is not one of the documented shapes",
    "unknown_type": "unknown message type",
    "unknown_channel": "a channel other than indices, sectors, sentiment, movers",
    "invalid_symbol": "a symbol that is not a well-formed ticker",
    "too_many_symbols": "more subscriptions in one message, or on the connection, than allowed",
    "message_too_large": "a client message over the service's size cap",
    "unknown_connection": "the connection is no longer registered (expired); reconnect",
    "resync_rate_limited": "a resync sooner than the per-connection interval after the previous one",
    "symbol_not_found": "a symbol no provider knows: it is not subscribed (the message names it)",
    "provider_unavailable": "a symbol no provider can quote right now: it stays subscribed only if it is known "
    "to exist (a cached quote, or the bundled S&P 500 list), else subscribe again later (other codes of a "
    "GET /quotes item error can name a symbol the same way)",
    "too_many_user_symbols": "the user's connections together would stream more distinct symbols than allowed "
    "(the message names the cap); nothing of the message was subscribed",
    "rate_limited": "over the message budget of the connection or of its user: the message was not acted on; "
    "retry after `retry_after` seconds. A connection that keeps exceeding it is closed",
    "token_expired": "the token the connection was opened with has expired: the connection is closed; "
    "reconnect with a fresh token",
    "store_unavailable": "storage is unreachable; retry shortly",
    "service_unavailable": "no source can serve the request right now; retry shortly",
    "internal_error": "an unexpected failure; retry shortly",
}


def quote_topic(symbol: str) -> str:
    return f"{QUOTE_TOPIC_PREFIX}{symbol}"


def channel_topic(channel: Channel) -> str:
    return f"{CHANNEL_TOPIC_PREFIX}{channel.value}"


class ProtocolError(ValidationFailed):
    """A client message the service cannot act on: answered with an ``error`` message, never a drop."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClientRequest:
    """One parsed client message."""

    action: Action
    channels: tuple[Channel, ...] = ()
    symbols: tuple[str, ...] = ()

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(channel_topic(c) for c in self.channels) + tuple(quote_topic(s) for s in self.symbols)


def request_for_topics(action: Action, topics: frozenset[str] | list[str]) -> ClientRequest:
    """The request that names exactly these topics (a resync asks for all of a connection's)."""
    channels = sorted(
        Channel(t.removeprefix(CHANNEL_TOPIC_PREFIX))
        for t in topics
        if t.startswith(CHANNEL_TOPIC_PREFIX) and t.removeprefix(CHANNEL_TOPIC_PREFIX) in set(Channel)
    )
    symbols = sorted(t.removeprefix(QUOTE_TOPIC_PREFIX) for t in topics if t.startswith(QUOTE_TOPIC_PREFIX))
    return ClientRequest(action, channels=tuple(channels), symbols=tuple(symbols))


def _strings(value: object, field: str, *, limit: int) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ProtocolError("invalid_message", f"data.{field} must be a non-empty list of strings")
    if len(value) > limit:
        raise ProtocolError("too_many_symbols", f"data.{field} lists {len(value)} items; at most {limit} per message")
    if not all(isinstance(item, str) for item in value):
        raise ProtocolError("invalid_message", f"data.{field} must be a non-empty list of strings")
    return list(value)


def parse_client_message(raw: str | None, *, max_bytes: int, max_items: int) -> ClientRequest:
    """Parse and validate one ``$default`` message; raise ProtocolError with a machine-readable code."""
    if raw is None or raw == "":
        raise ProtocolError("invalid_message", 'empty message; send JSON such as {"type": "ping"}')
    size = len(raw.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise ProtocolError("message_too_large", f"message of {size} bytes; at most {max_bytes}")
    try:
        document = json.loads(raw)
    except ValueError:
        raise ProtocolError("invalid_json", "the message is not valid JSON") from None
    if not isinstance(document, dict):
        raise ProtocolError("invalid_message", 'the message must be a JSON object with a "type"')
    kind = document.get("type")
    if kind in (Action.PING.value, Action.RESYNC.value):
        return ClientRequest(Action(kind))
    if kind not in (Action.SUBSCRIBE.value, Action.UNSUBSCRIBE.value):
        known = ", ".join(a.value for a in Action)
        raise ProtocolError("unknown_type", f"unknown message type {str(kind)[:40]!r}; use one of: {known}")
    action = Action(kind)
    data = document.get("data")
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", f'{kind}: "data" must be an object with a "type"')
    selection = data.get("type")
    if selection == SelectionType.MARKET_DATA.value:
        channels: list[Channel] = []
        for name in _strings(data.get("channels"), "channels", limit=max_items):
            try:
                channels.append(Channel(name.strip().lower()))
            except ValueError:
                known = ", ".join(c.value for c in Channel)
                raise ProtocolError("unknown_channel", f"unknown channel {name[:40]!r}; use one of: {known}") from None
        return ClientRequest(action, channels=tuple(dict.fromkeys(channels)))
    if selection == SelectionType.STOCK_QUOTES.value:
        symbols: list[str] = []
        for raw_symbol in _strings(data.get("symbols"), "symbols", limit=max_items):
            try:
                symbols.append(normalize_symbol(raw_symbol))
            except ValidationFailed as exc:
                raise ProtocolError("invalid_symbol", exc.message) from None
        return ClientRequest(action, symbols=tuple(dict.fromkeys(symbols)))
    known = ", ".join(s.value for s in SelectionType)
    raise ProtocolError("invalid_message", f"{kind}: data.type must be one of: {known}")


# --- outbound -------------------------------------------------------------------------------------


class WireModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_serializer("*", when_used="json", check_fields=False)
    def _utc_iso(self, value: Any) -> Any:
        # The spec's timestamps read "2024-01-15T10:30:00Z": ISO 8601 in UTC with a Z.
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return value


class SubscriptionSet(WireModel):
    channels: list[Channel]
    symbols: list[str]

    @classmethod
    def from_topics(cls, topics: list[str]) -> SubscriptionSet:
        channels = sorted(
            Channel(t.removeprefix(CHANNEL_TOPIC_PREFIX))
            for t in topics
            if t.startswith(CHANNEL_TOPIC_PREFIX) and t.removeprefix(CHANNEL_TOPIC_PREFIX) in set(Channel)
        )
        symbols = sorted(t.removeprefix(QUOTE_TOPIC_PREFIX) for t in topics if t.startswith(QUOTE_TOPIC_PREFIX))
        return cls(channels=channels, symbols=symbols)


class AckData(WireModel):
    subscriptions: SubscriptionSet = Field(description="everything this connection now subscribes to")


class AckMessage(WireModel):
    type: Literal["subscribed", "unsubscribed"]
    data: AckData


class PongData(WireModel):
    timestamp: AwareDatetime


class PongMessage(WireModel):
    type: Literal["pong"] = "pong"
    data: PongData


class ErrorData(WireModel):
    code: str = Field(description="machine-readable: " + "; ".join(f"{c}: {m}" for c, m in ERROR_CODES.items()))
    message: str
    retry_after: int | None = Field(
        default=None,
        ge=1,
        description="seconds until the refused message would be accepted (only with `rate_limited`)",
    )


class ErrorMessage(WireModel):
    type: Literal["error"] = "error"
    data: ErrorData


class QuoteFields(WireModel):
    """The spec's ``quote`` object of a quote_update."""

    price: float
    change: float | None
    change_percent: float | None = Field(alias="changePercent")
    volume: int | None


class QuoteUpdateData(WireModel):
    symbol: str
    quote: QuoteFields
    timestamp: AwareDatetime
    source: str
    snapshot: bool = False


class QuoteUpdateMessage(WireModel):
    type: Literal["quote_update"] = "quote_update"
    data: QuoteUpdateData


class MarketUpdateData(WireModel):
    """``channel`` says which market panel this is: indices (``indices``) or movers (the three lists)."""

    channel: Literal["indices", "movers"]
    indices: list[IndexQuote] | None = None
    gainers: list[Quote] | None = None
    losers: list[Quote] | None = None
    actives: list[Quote] | None = None
    timestamp: AwareDatetime
    source: str
    snapshot: bool = False


class MarketUpdateMessage(WireModel):
    type: Literal["market_update"] = "market_update"
    data: MarketUpdateData


class SectorUpdateData(WireModel):
    sectors: list[SectorPerformance]
    advancers: int
    decliners: int
    timestamp: AwareDatetime
    source: str
    snapshot: bool = False


class SectorUpdateMessage(WireModel):
    type: Literal["sector_update"] = "sector_update"
    data: SectorUpdateData


class SentimentUpdateData(WireModel):
    score: float
    label: str
    components: list[SentimentComponent]
    timestamp: AwareDatetime
    source: str
    snapshot: bool = False


class SentimentUpdateMessage(WireModel):
    type: Literal["sentiment_update"] = "sentiment_update"
    data: SentimentUpdateData


UpdateMessage = QuoteUpdateMessage | MarketUpdateMessage | SectorUpdateMessage | SentimentUpdateMessage

_SEQ_DESCRIPTION = (
    "this connection's data-message sequence number: 1 for its first data message, then +1 per data message "
    "(gapless); 0 when the message could not be sequenced (the sequencing store was unavailable)"
)


# What a spec-format connection receives: the update plus its ``seq``. (The same messages inside a batch
# frame carry no ``seq`` of their own: the frame's sequences them.) The service does not build these per
# connection (it splices ``seq`` into bytes encoded once per round, chalicelib/services/frames.py); they
# document the wire format and validate it in the tests.
class SequencedQuoteUpdate(QuoteUpdateMessage):
    seq: int = Field(ge=0, description=_SEQ_DESCRIPTION)


class SequencedMarketUpdate(MarketUpdateMessage):
    seq: int = Field(ge=0, description=_SEQ_DESCRIPTION)


class SequencedSectorUpdate(SectorUpdateMessage):
    seq: int = Field(ge=0, description=_SEQ_DESCRIPTION)


class SequencedSentimentUpdate(SentimentUpdateMessage):
    seq: int = Field(ge=0, description=_SEQ_DESCRIPTION)


class BatchData(WireModel):
    updates: list[Annotated[UpdateMessage, Field(discriminator="type")]] = Field(
        description="every changed item of the round this connection subscribes to, each exactly the message "
        "a spec-format connection receives (without seq)"
    )


class BatchMessage(WireModel):
    """The batch format's data message: one per publish round (several with consecutive ``seq`` when the
    round would not fit one frame), or the snapshot answering a subscribe or resync."""

    type: Literal["batch"] = "batch"
    seq: int = Field(ge=0, description=_SEQ_DESCRIPTION)
    timestamp: AwareDatetime = Field(description="when the frame was built")
    data: BatchData


# --- inbound, as models: documentation only (parse_client_message is the parser; tests check they agree)


class ClientModel(BaseModel):
    # The parser ignores keys it does not know, so the documented shapes allow them too.
    model_config = ConfigDict(frozen=True, extra="allow")


class MarketDataSelection(ClientModel):
    type: Literal["market_data"]
    channels: list[Channel] = Field(min_length=1)


class StockQuotesSelection(ClientModel):
    type: Literal["stock_quotes"]
    symbols: list[str] = Field(min_length=1, description="tickers, e.g. AAPL, BRK-B, ^GSPC (case-insensitive)")


class SubscribeRequest(ClientModel):
    type: Literal["subscribe"]
    data: MarketDataSelection | StockQuotesSelection = Field(discriminator="type")


class UnsubscribeRequest(ClientModel):
    type: Literal["unsubscribe"]
    data: MarketDataSelection | StockQuotesSelection = Field(discriminator="type")


class PingRequest(ClientModel):
    type: Literal["ping"]


class ResyncRequest(ClientModel):
    """Ask for a snapshot of every current subscription (after a ``seq`` gap); rate-limited."""

    type: Literal["resync"]


@dataclass(frozen=True)
class StreamUpdate:
    """One changed item to fan out: its topic, the message, and a fingerprint of the value that excludes
    delivery details (snapshot flag), so an unchanged value is recognised and not re-sent."""

    topic: str
    message: UpdateMessage

    @property
    def fingerprint(self) -> str:
        data = self.message.data.model_dump(mode="json", by_alias=True, exclude={"snapshot"})
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def encoded(self) -> bytes:
        return self.message.model_dump_json(by_alias=True).encode()


def quote_update(quote: QuoteResponse, *, snapshot: bool = False) -> StreamUpdate:
    message = QuoteUpdateMessage(
        data=QuoteUpdateData(
            symbol=quote.symbol,
            quote=QuoteFields(
                price=quote.price, change=quote.change, change_percent=quote.change_percent, volume=quote.volume
            ),
            timestamp=quote.as_of,
            source=quote.source,
            snapshot=snapshot,
        )
    )
    return StreamUpdate(quote_topic(quote.symbol), message)


def indices_update(indices: IndicesResponse, *, snapshot: bool = False) -> StreamUpdate:
    data = MarketUpdateData(
        channel="indices", indices=indices.indices, timestamp=indices.as_of, source=indices.source, snapshot=snapshot
    )
    return StreamUpdate(channel_topic(Channel.INDICES), MarketUpdateMessage(data=data))


def movers_update(
    gainers: MoversResponse, losers: MoversResponse, actives: MoversResponse, *, snapshot: bool = False
) -> StreamUpdate:
    data = MarketUpdateData(
        channel="movers",
        gainers=gainers.movers,
        losers=losers.movers,
        actives=actives.movers,
        timestamp=max(gainers.as_of, losers.as_of, actives.as_of),
        source=gainers.source,
        snapshot=snapshot,
    )
    return StreamUpdate(channel_topic(Channel.MOVERS), MarketUpdateMessage(data=data))


def sectors_update(sectors: SectorsResponse, *, snapshot: bool = False) -> StreamUpdate:
    data = SectorUpdateData(
        sectors=sectors.sectors,
        advancers=sectors.advancers,
        decliners=sectors.decliners,
        timestamp=sectors.as_of,
        source=sectors.source,
        snapshot=snapshot,
    )
    return StreamUpdate(channel_topic(Channel.SECTORS), SectorUpdateMessage(data=data))


def sentiment_update(sentiment: SentimentResponse, *, snapshot: bool = False) -> StreamUpdate:
    data = SentimentUpdateData(
        score=sentiment.score,
        label=sentiment.label,
        components=sentiment.components,
        timestamp=sentiment.as_of,
        source=sentiment.source,
        snapshot=snapshot,
    )
    return StreamUpdate(channel_topic(Channel.SENTIMENT), SentimentUpdateMessage(data=data))


def encode(message: WireModel) -> bytes:
    return message.model_dump_json(by_alias=True).encode()


def error_message(code: str, message: str, *, retry_after: int | None = None) -> bytes:
    error = ErrorMessage(data=ErrorData(code=code, message=message, retry_after=retry_after))
    # No "retry_after": null on the errors that have none.
    return error.model_dump_json(by_alias=True, exclude_none=True).encode()


# --- GET /api/v1/market/ws/stats ------------------------------------------------------------------


class TopicCount(MarketModel):
    topic: str
    subscribers: int


class MessageCounts(MarketModel):
    sent: int
    gone: int
    failed: int


class WsStatsResponse(MarketModel):
    open_connections: int = Field(description="connections not past their TTL")
    distinct_users: int
    top_topics: list[TopicCount] = Field(description="topics with the most subscribers, highest first")
    messages_last_hour: MessageCounts | None = Field(description="fan-out outcomes; null when Redis is down")
    as_of: AwareDatetime
