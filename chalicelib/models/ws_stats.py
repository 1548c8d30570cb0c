"""GET /api/v1/market/ws/stats: a REST response, kept out of the WebSocket message models' package so the
REST function does not import those (chalicelib/lazy.py: cold start)."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from chalicelib.models.market import MarketModel

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
