"""What the dashboard page learns from ``GET /api/v1/config`` before it has a token."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DashboardConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str = Field(description="local, dev or prod")
    websocket_url: str | None = Field(description="the WebSocket API to connect to (null: none configured)")
    login_url: str | None = Field(description="where a user gets a token for this stage (null: paste one)")
    api_base: str = Field(description="the REST API's path, relative to the page")
    popular_symbols: list[str] = Field(description="the watchlist of a first visit (JOB_POPULAR_SYMBOLS)")
