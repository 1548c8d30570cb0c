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

from chalicelib.models.streaming.inbound import (
    CHANNEL_TOPIC_PREFIX,
    INVALID_MESSAGE_COST,
    MESSAGE_COSTS,
    QUOTE_TOPIC_PREFIX,
    Action,
    Channel,
    ClientModel,
    ClientRequest,
    MarketDataSelection,
    PingRequest,
    ProtocolError,
    ResyncRequest,
    SelectionType,
    StockQuotesSelection,
    StreamFormat,
    SubscribeRequest,
    UnsubscribeRequest,
    channel_topic,
    parse_client_message,
    quote_topic,
    request_for_topics,
)
from chalicelib.models.streaming.outbound import (
    ERROR_CODES,
    AckData,
    AckMessage,
    BatchData,
    BatchMessage,
    ErrorData,
    ErrorMessage,
    MarketUpdateData,
    MarketUpdateMessage,
    PongData,
    PongMessage,
    QuoteFields,
    QuoteUpdateData,
    QuoteUpdateMessage,
    SectorUpdateData,
    SectorUpdateMessage,
    SentimentUpdateData,
    SentimentUpdateMessage,
    SequencedMarketUpdate,
    SequencedQuoteUpdate,
    SequencedSectorUpdate,
    SequencedSentimentUpdate,
    StreamUpdate,
    SubscriptionSet,
    UpdateMessage,
    WireModel,
    encode,
    error_message,
    indices_update,
    movers_update,
    quote_update,
    sectors_update,
    sentiment_update,
)
from chalicelib.models.ws_stats import (  # a REST response: its own module, so app.py need not import this package
    MessageCounts,
    TopicCount,
    WsStatsResponse,
)

__all__ = [
    "CHANNEL_TOPIC_PREFIX",
    "ERROR_CODES",
    "INVALID_MESSAGE_COST",
    "MESSAGE_COSTS",
    "QUOTE_TOPIC_PREFIX",
    "AckData",
    "AckMessage",
    "Action",
    "BatchData",
    "BatchMessage",
    "Channel",
    "ClientModel",
    "ClientRequest",
    "ErrorData",
    "ErrorMessage",
    "MarketDataSelection",
    "MarketUpdateData",
    "MarketUpdateMessage",
    "MessageCounts",
    "PingRequest",
    "PongData",
    "PongMessage",
    "ProtocolError",
    "QuoteFields",
    "QuoteUpdateData",
    "QuoteUpdateMessage",
    "ResyncRequest",
    "SectorUpdateData",
    "SectorUpdateMessage",
    "SelectionType",
    "SentimentUpdateData",
    "SentimentUpdateMessage",
    "SequencedMarketUpdate",
    "SequencedQuoteUpdate",
    "SequencedSectorUpdate",
    "SequencedSentimentUpdate",
    "StockQuotesSelection",
    "StreamFormat",
    "StreamUpdate",
    "SubscribeRequest",
    "SubscriptionSet",
    "TopicCount",
    "UnsubscribeRequest",
    "UpdateMessage",
    "WireModel",
    "WsStatsResponse",
    "channel_topic",
    "encode",
    "error_message",
    "indices_update",
    "movers_update",
    "parse_client_message",
    "quote_topic",
    "quote_update",
    "request_for_topics",
    "sectors_update",
    "sentiment_update",
]
