"""The Chalice app: every route, WebSocket handler and schedule. Handlers stay thin: parse and
validate, call a service, shape the response. Everything else lives in chalicelib/."""

from __future__ import annotations

from chalice.app import Chalice, Request, Response

from chalicelib import bootstrap
from chalicelib.http_api import api_view, http_middleware, json_response, remaining_deadline
from chalicelib.models.market import normalize_symbol

app = Chalice(app_name="market-data")
app.register_middleware(http_middleware, "http")


def _current_request() -> Request | None:
    return app.current_request


view = api_view(_current_request)


@app.route("/api/v1/market/quote/{symbol}", methods=["GET"])
@view
def get_quote(symbol: str) -> Response:
    quote = bootstrap.container().market_data.get_quote(
        normalize_symbol(symbol), deadline=remaining_deadline(app.lambda_context)
    )
    return json_response(quote)


@app.route("/api/v1/market/cache/stats", methods=["GET"])
@view
def get_cache_stats() -> Response:
    return json_response(bootstrap.container().market_data.cache_stats())
