"""What the service pushes to clients: acks, ``pong``, ``error``, the updates and the batch frame, and
the fan-out's unit (StreamUpdate) with its builders, which make each update from the market-data
service's answer (``Served``) and put its provenance on the wire in one place (``_update``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from chalicelib.models.api import (
    IndexQuote,
    IndicesPayload,
    MoversPayload,
    SectorPerformance,
    SectorsPayload,
    SentimentComponent,
    SentimentPayload,
)
from chalicelib.models.market import Quote
from chalicelib.models.served import Provenance, Served
from chalicelib.models.streaming.inbound import (
    CHANNEL_TOPIC_PREFIX,
    QUOTE_TOPIC_PREFIX,
    Channel,
    channel_topic,
    quote_topic,
)

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


# --- outbound -------------------------------------------------------------------------------------


class WireModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)

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


_STALE_DESCRIPTION = (
    "the value is past its freshness TTL: every source failed and the cached copy was served "
    "(the REST payloads' `stale`)"
)


class UpdateProvenance(WireModel):
    """Where an update's value came from: what every update's ``data`` carries besides its own fields,
    declared once (as a base, its keys come first in the JSON object; clients read them by name)."""

    timestamp: AwareDatetime
    source: str
    snapshot: bool = False
    stale: bool = Field(default=False, description=_STALE_DESCRIPTION)


class QuoteFields(WireModel):
    """The spec's ``quote`` object of a quote_update."""

    price: float
    change: float | None
    change_percent: float | None = Field(alias="changePercent")
    volume: int | None


class QuoteUpdateData(UpdateProvenance):
    symbol: str
    quote: QuoteFields


class QuoteUpdateMessage(WireModel):
    type: Literal["quote_update"] = "quote_update"
    data: QuoteUpdateData


class MarketUpdateData(UpdateProvenance):
    """``channel`` says which market panel this is: indices (``indices``) or movers (the three lists)."""

    channel: Literal["indices", "movers"]
    indices: list[IndexQuote] | None = None
    gainers: list[Quote] | None = None
    losers: list[Quote] | None = None
    actives: list[Quote] | None = None


class MarketUpdateMessage(WireModel):
    type: Literal["market_update"] = "market_update"
    data: MarketUpdateData


class SectorUpdateData(UpdateProvenance):
    sectors: list[SectorPerformance]
    advancers: int
    decliners: int


class SectorUpdateMessage(WireModel):
    type: Literal["sector_update"] = "sector_update"
    data: SectorUpdateData


class SentimentUpdateData(UpdateProvenance):
    score: float
    label: str
    components: list[SentimentComponent]


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


def _update(
    topic: str,
    message: type[UpdateMessage],
    value: dict[str, Any],
    as_of: datetime,
    provenance: Provenance,
    snapshot: bool,
) -> StreamUpdate:
    """An update: its value's fields, and what every update says of its value besides the value (the one
    place a served provenance is put on the WebSocket wire): when it holds (``as_of``), where it came
    from, whether it answers a subscribe or resync, and whether it is a stale copy served because every
    source failed."""
    data = {**value, "timestamp": as_of, "source": provenance.source, "snapshot": snapshot, "stale": provenance.stale}
    return StreamUpdate(topic, message.model_validate({"data": data}))


def quote_update(served: Served[Quote], *, snapshot: bool = False) -> StreamUpdate:
    quote = served.payload
    fields = QuoteFields(
        price=quote.price, change=quote.change, change_percent=quote.change_percent, volume=quote.volume
    )
    value = {"symbol": quote.symbol, "quote": fields}
    return _update(quote_topic(quote.symbol), QuoteUpdateMessage, value, quote.as_of, served.provenance, snapshot)


def indices_update(indices: Served[IndicesPayload], *, snapshot: bool = False) -> StreamUpdate:
    panel, topic = indices.payload, channel_topic(Channel.INDICES)
    value = {"channel": "indices", "indices": panel.indices}
    return _update(topic, MarketUpdateMessage, value, panel.as_of, indices.provenance, snapshot)


def movers_update(
    gainers: Served[MoversPayload],
    losers: Served[MoversPayload],
    actives: Served[MoversPayload],
    *,
    snapshot: bool = False,
) -> StreamUpdate:
    """The three lists in one update: as of the newest, from the gainers' source, stale if any list is."""
    lists = (gainers, losers, actives)
    value = {
        "channel": "movers",
        "gainers": gainers.payload.movers,
        "losers": losers.payload.movers,
        "actives": actives.payload.movers,
    }
    newest = max(s.payload.as_of for s in lists)
    provenance = dataclasses.replace(gainers.provenance, stale=any(s.provenance.stale for s in lists))
    return _update(channel_topic(Channel.MOVERS), MarketUpdateMessage, value, newest, provenance, snapshot)


def sectors_update(sectors: Served[SectorsPayload], *, snapshot: bool = False) -> StreamUpdate:
    panel, topic = sectors.payload, channel_topic(Channel.SECTORS)
    value = {"sectors": panel.sectors, "advancers": panel.advancers, "decliners": panel.decliners}
    return _update(topic, SectorUpdateMessage, value, panel.as_of, sectors.provenance, snapshot)


def sentiment_update(sentiment: Served[SentimentPayload], *, snapshot: bool = False) -> StreamUpdate:
    panel, topic = sentiment.payload, channel_topic(Channel.SENTIMENT)
    value = {"score": panel.score, "label": panel.label, "components": panel.components}
    return _update(topic, SentimentUpdateMessage, value, panel.as_of, sentiment.provenance, snapshot)


def encode(message: WireModel) -> bytes:
    return message.model_dump_json(by_alias=True).encode()


def error_message(code: str, message: str, *, retry_after: int | None = None) -> bytes:
    error = ErrorMessage(data=ErrorData(code=code, message=message, retry_after=retry_after))
    # No "retry_after": null on the errors that have none.
    return error.model_dump_json(by_alias=True, exclude_none=True).encode()
