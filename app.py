"""The Chalice app: every route, WebSocket handler and schedule. Handlers stay thin: parse and
validate, call a service, shape the response. Everything else lives in chalicelib/."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalice.app import AuthRequest, AuthResponse, Chalice, CloudWatchEvent, Request, Response, WebsocketEvent

from chalicelib import bootstrap, dashboard_api, gateway_auth, jobs_api, lazy, ws_api
from chalicelib.deadline import remaining_deadline
from chalicelib.errors import ValidationFailed
from chalicelib.http_api import (
    ASYNCAPI_PATH,
    OPENAPI_PATH,
    api_view,
    decide_rate_limit_now,
    http_middleware,
    json_response,
    parse_body,
    parse_query,
    principal_of,
    require_operator,
)
from chalicelib.market_api import batch_response, overview_response, to_wire
from chalicelib.models.api import (
    MAX_BATCH_SYMBOLS,
    BatchQuotesResponse,
    EmptyQuery,
    HistoricalQuery,
    HistoricalResponse,
    IndicesResponse,
    MoversQuery,
    MoversResponse,
    NewsQuery,
    NewsResponse,
    OverviewResponse,
    ProfileResponse,
    ProvidersResponse,
    QuotesQuery,
    SearchRequest,
    SearchResponse,
    SectorsResponse,
    SentimentResponse,
    WsStatsQuery,
)
from chalicelib.models.jobs import JobRunResponse, JobsStatusResponse
from chalicelib.models.market import SYMBOL_SCHEMA, CacheStatsResponse, QuoteResponse, parse_symbol_parameter
from chalicelib.models.ws_stats import WsStatsResponse
from chalicelib.openapi import PathParam, RouteDoc, document_for
from chalicelib.services.jobs import TASK_ID_PATTERN, Trigger
from chalicelib.services.market_data import MarketDataService, history_combinations

if TYPE_CHECKING:
    from chalicelib import asyncapi
else:  # the WebSocket protocol document: built on its own route only (chalicelib/lazy.py)
    asyncapi = lazy.module("chalicelib.asyncapi")

app = Chalice(app_name="market-data")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.register_middleware(http_middleware, "http")

API_TITLE = "Market data API"
API_VERSION = "1.0.0"
ROUTES: list[RouteDoc] = []
_SYMBOL = (PathParam("symbol", "ticker, e.g. AAPL, BRK-B, ^GSPC (a malformed one is a 400)", SYMBOL_SCHEMA),)
_TASK_ID = PathParam(
    "task_id",
    "the run's task id (a UUID, as POST .../run answers it)",
    {"type": "string", "format": "uuid", "pattern": TASK_ID_PATTERN},
)
_JOB_NAME = PathParam("job_name", "one of the scheduled jobs", {"type": "string", "enum": list(jobs_api.JOB_NAMES)})


# API Gateway runs this before every route that needs a token (chalicelib/gateway_auth.py); its
# answer is cached per Authorization header. The handlers verify the token again themselves.
@app.authorizer(ttl_seconds=gateway_auth.AUTHORIZER_TTL_SECONDS, name="jwt_authorizer")
def jwt_authorizer(auth_request: AuthRequest) -> AuthResponse:
    return gateway_auth.authorize(auth_request.token)


def _current_request() -> Request | None:
    return app.current_request


view = api_view(_current_request)


def route(doc: RouteDoc) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Register a view under its documented route, behind the API Gateway authorizer. OPTIONS is
    registered too, without the authorizer (browsers send no token on a preflight), so CORS preflights
    reach the middleware (API Gateway and the local gateway answer only declared methods)."""

    def decorate(fn: Callable[..., Response]) -> Callable[..., Response]:
        ROUTES.append(doc)
        handler = fn
        if doc.operator or not doc.reads_cache_first:

            @functools.wraps(fn)
            def guarded(*args: Any, **kwargs: Any) -> Response:
                request = app.current_request
                if doc.operator:
                    # Before the handler parses anything: a non-operator learns nothing about the endpoint.
                    require_operator(request)
                if not doc.reads_cache_first:
                    decide_rate_limit_now(request)
                return fn(*args, **kwargs)

            handler = guarded
        wrapped = view(handler)
        app.route(doc.path, methods=[doc.method], authorizer=jwt_authorizer)(wrapped)
        app.route(doc.path, methods=["OPTIONS"])(wrapped)
        return fn

    return decorate


def _deadline() -> float | None:
    return remaining_deadline(app.lambda_context)


def _market() -> MarketDataService:
    return bootstrap.container().market_data


def _no_query() -> None:
    parse_query(EmptyQuery, app.current_request)


@route(
    RouteDoc(
        "/api/v1/market/overview",
        "GET",
        "Indices, sectors, movers and sentiment in one payload",
        OverviewResponse,
        reads_cache_first=True,
    )
)
def get_overview() -> Response:
    _no_query()
    return json_response(overview_response(_market().get_overview(deadline=_deadline())))


@route(
    RouteDoc(
        "/api/v1/market/indices", "GET", "S&P 500, Dow, Nasdaq Composite, Russell 2000, VIX", IndicesResponse,
        reads_cache_first=True,
    )
)  # fmt: skip
def get_indices() -> Response:
    _no_query()
    return json_response(to_wire(_market().get_indices(deadline=_deadline()), IndicesResponse))


@route(
    RouteDoc(
        "/api/v1/market/sectors", "GET", "Performance of the 11 GICS sectors", SectorsResponse,
        reads_cache_first=True,
    )
)  # fmt: skip
def get_sectors() -> Response:
    _no_query()
    return json_response(to_wire(_market().get_sectors(deadline=_deadline()), SectorsResponse))


@route(
    RouteDoc(
        "/api/v1/market/movers", "GET", "Top gainers, losers or most active", MoversResponse, query=MoversQuery,
        reads_cache_first=True,
    )
)  # fmt: skip
def get_movers() -> Response:
    query = parse_query(MoversQuery, app.current_request)
    return json_response(to_wire(_market().get_movers(query.type, query.limit, deadline=_deadline()), MoversResponse))


@route(
    RouteDoc(
        "/api/v1/market/sentiment", "GET", "Composite market sentiment (formula in README)", SentimentResponse,
        reads_cache_first=True,
    )
)  # fmt: skip
def get_sentiment() -> Response:
    _no_query()
    return json_response(to_wire(_market().get_sentiment(deadline=_deadline()), SentimentResponse))


@route(
    RouteDoc(
        "/api/v1/market/quote/{symbol}",
        "GET",
        "One quote",
        QuoteResponse,
        path_params=_SYMBOL,
        errors=(404,),
        reads_cache_first=True,
    )
)
def get_quote(symbol: str) -> Response:
    _no_query()
    return json_response(
        to_wire(_market().get_quote(parse_symbol_parameter(symbol), deadline=_deadline()), QuoteResponse)
    )


@route(
    RouteDoc(
        "/api/v1/market/quotes",
        "GET",
        "Many quotes; per-symbol errors inside a 200",
        BatchQuotesResponse,
        query=QuotesQuery,
        reads_cache_first=True,
    )
)
def get_quotes() -> Response:
    query = parse_query(QuotesQuery, app.current_request)
    entries = query.symbols.split(",")
    if not any(entry.strip() for entry in entries):
        raise ValidationFailed("symbols: give at least one ticker, e.g. ?symbols=AAPL,MSFT")
    if len(entries) > MAX_BATCH_SYMBOLS:
        raise ValidationFailed(f"symbols: at most {MAX_BATCH_SYMBOLS} per request (got {len(entries)})")
    symbols = []
    for position, entry in enumerate(entries, start=1):
        try:
            symbols.append(parse_symbol_parameter(entry))
        except ValidationFailed as exc:
            raise ValidationFailed(f"symbols: entry {position}: {exc.message}") from None
    return json_response(batch_response(_market().get_quotes(symbols, deadline=_deadline())))


@route(
    RouteDoc(
        "/api/v1/market/historical/{symbol}", "GET", "Price history (OHLCV bars, oldest first)", HistoricalResponse,
        query=HistoricalQuery, path_params=_SYMBOL, errors=(404,), description=history_combinations(),
        reads_cache_first=True,
    )
)  # fmt: skip
def get_historical(symbol: str) -> Response:
    query = parse_query(HistoricalQuery, app.current_request)
    history = _market().get_historical(
        parse_symbol_parameter(symbol), query.period, query.interval, deadline=_deadline()
    )
    return json_response(to_wire(history, HistoricalResponse))


@route(
    RouteDoc(
        "/api/v1/market/profile/{symbol}", "GET", "Company profile", ProfileResponse,
        path_params=_SYMBOL, errors=(404,), reads_cache_first=True,
    )
)  # fmt: skip
def get_profile(symbol: str) -> Response:
    _no_query()
    return json_response(
        to_wire(_market().get_profile(parse_symbol_parameter(symbol), deadline=_deadline()), ProfileResponse)
    )


@route(
    RouteDoc(
        "/api/v1/market/news/{symbol}", "GET", "Recent news about a symbol", NewsResponse,
        query=NewsQuery, path_params=_SYMBOL, errors=(404,), reads_cache_first=True,
    )
)  # fmt: skip
def get_news(symbol: str) -> Response:
    query = parse_query(NewsQuery, app.current_request)
    news = _market().get_news(parse_symbol_parameter(symbol), query.limit, deadline=_deadline())
    return json_response(to_wire(news, NewsResponse))


@route(
    RouteDoc(
        "/api/v1/market/search", "POST", "Search symbols by ticker or name", SearchResponse, body=SearchRequest,
        errors=(415,), reads_cache_first=True,
    )
)  # fmt: skip
def search() -> Response:
    _no_query()
    request = parse_body(SearchRequest, app.current_request)
    return json_response(to_wire(_market().search(request.query, request.limit, deadline=_deadline()), SearchResponse))


@route(
    RouteDoc("/api/v1/market/providers", "GET", "Providers: chain position, quotas, breaker state", ProvidersResponse)
)
def get_providers() -> Response:
    _no_query()
    principal = principal_of(app.current_request)
    detail = principal is not None and principal.is_operator
    return json_response(bootstrap.container().provider_status.status(detail=detail))


@route(
    RouteDoc(
        "/api/v1/market/cache/stats",
        "GET",
        "Cache hit rates and writes per data kind (operators only)",
        CacheStatsResponse,
        operator=True,
    )
)
def get_cache_stats() -> Response:
    _no_query()
    return json_response(_market().cache_stats())


@route(
    RouteDoc(
        "/api/v1/market/ws/stats", "GET", "WebSocket connections, subscriptions per topic, messages in the last hour",
        WsStatsResponse, query=WsStatsQuery, operator=True,
    )
)  # fmt: skip
def get_ws_stats() -> Response:
    query = parse_query(WsStatsQuery, app.current_request)
    return json_response(bootstrap.container().streaming.stats(top=query.top))


@route(
    RouteDoc(
        "/api/v1/market/jobs/status",
        "GET",
        "Every scheduled job: schedule, last run, health (operators only)",
        JobsStatusResponse,
        operator=True,
    )
)
def get_jobs_status() -> Response:
    _no_query()
    return json_response(bootstrap.container().jobs.status())


@route(
    RouteDoc(
        "/api/v1/market/jobs/{task_id}", "GET", "One job run (operators only)", JobRunResponse,
        path_params=(_TASK_ID,), errors=(404,), operator=True,
    )
)  # fmt: skip
def get_job_run(task_id: str) -> Response:
    _no_query()
    return json_response(bootstrap.container().jobs.get(task_id))


@route(
    RouteDoc(
        "/api/v1/market/jobs/{job_name}/run", "POST", "Run a job now (operators only)", JobRunResponse,
        path_params=(_JOB_NAME,), errors=(404,), operator=True,
    )
)  # fmt: skip
def run_job(job_name: str) -> Response:
    _no_query()
    run = bootstrap.container().jobs.run(job_name, trigger=Trigger.MANUAL, deadline=_deadline())
    return json_response(JobRunResponse.of(run))


# --- WebSocket API: $connect authenticates, $default takes the spec's messages, $disconnect cleans up.


@app.on_ws_connect()
def on_ws_connect(event: WebsocketEvent) -> Response:
    return ws_api.on_connect(event)


@app.on_ws_message()
def on_ws_message(event: WebsocketEvent) -> None:
    ws_api.on_message(event)


@app.on_ws_disconnect()
def on_ws_disconnect(event: WebsocketEvent) -> None:
    ws_api.on_disconnect(event)


# The fan-out worker: one asynchronous invocation per shard of a publish round (chalicelib/ws_api.py).
@app.lambda_function(name="fanout_worker")
def fanout_worker(event: dict[str, Any], context: Any) -> dict[str, int]:  # noqa: ARG001 - Lambda's signature
    return ws_api.on_shard_invocation(event)


# --- Scheduled jobs (EventBridge → Lambda), replacing Celery beat. Schedules: chalicelib/jobs_api.py.


@app.schedule(jobs_api.schedule_of("refresh_quotes"), name="refresh_quotes")
def job_refresh_quotes(event: CloudWatchEvent) -> dict[str, Any]:
    return jobs_api.run_scheduled("refresh_quotes", event, event.context)


@app.schedule(jobs_api.schedule_of("refresh_indices"), name="refresh_indices")
def job_refresh_indices(event: CloudWatchEvent) -> dict[str, Any]:
    return jobs_api.run_scheduled("refresh_indices", event, event.context)


@app.schedule(jobs_api.schedule_of("refresh_market"), name="refresh_market")
def job_refresh_market(event: CloudWatchEvent) -> dict[str, Any]:
    return jobs_api.run_scheduled("refresh_market", event, event.context)


@app.schedule(jobs_api.schedule_of("refresh_sentiment"), name="refresh_sentiment")
def job_refresh_sentiment(event: CloudWatchEvent) -> dict[str, Any]:
    return jobs_api.run_scheduled("refresh_sentiment", event, event.context)


@app.schedule(jobs_api.schedule_of("warm_cache"), name="warm_cache")
def job_warm_cache(event: CloudWatchEvent) -> dict[str, Any]:
    return jobs_api.run_scheduled("warm_cache", event, event.context)


@app.schedule(jobs_api.schedule_of("cleanup"), name="cleanup")
def job_cleanup(event: CloudWatchEvent) -> dict[str, Any]:
    return jobs_api.run_scheduled("cleanup", event, event.context)


@app.route(OPENAPI_PATH, methods=["GET"])
@view
def get_openapi() -> Response:
    return _public_document(document_for(ROUTES, title=API_TITLE, version=API_VERSION))


@app.route(ASYNCAPI_PATH, methods=["GET"])
@view
def get_asyncapi() -> Response:
    """The WebSocket protocol (AsyncAPI 3.0), with this stage's limits; public like the OpenAPI document."""
    limits = asyncapi.ProtocolLimits.of(bootstrap.container().settings)
    return _public_document(asyncapi.document_for(title=f"{API_TITLE}: WebSocket", version=API_VERSION, limits=limits))


def _public_document(document: object) -> Response:
    """An API description served without a token: JSON, cacheable for five minutes."""
    return Response(
        body=document,
        status_code=200,
        headers={
            "Content-Type": "application/json",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "max-age=300",
        },
    )


# --- The dashboard (chalicelib/dashboard/): the page, its files and its configuration, without a token.


@app.route(dashboard_api.PAGE_PATH, methods=["GET"])
@view
def get_dashboard() -> Response:
    return dashboard_api.page(app.current_request)


@app.route(dashboard_api.ASSET_PATH, methods=["GET"])
@view
def get_dashboard_asset(asset: str) -> Response:
    return dashboard_api.asset(app.current_request, asset)


@app.route(dashboard_api.CONFIG_PATH, methods=["GET"])
@view
def get_dashboard_config() -> Response:
    _no_query()
    return json_response(dashboard_api.config(app.current_request), headers={"Cache-Control": "max-age=60"})
