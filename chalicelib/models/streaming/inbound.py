"""What clients send on ``$default``: topics, actions, their costs, and the parser (see the package
docstring for the shapes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.errors import ValidationFailed
from chalicelib.models.market import normalize_symbol

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


# --- inbound, as models: documentation only (parse_client_message is the parser; tests check they agree)


class ClientModel(BaseModel):
    # The parser ignores keys it does not know, so the documented shapes allow them too.
    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)


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
