"""The one place that builds adapters and services: lazily, once per container (warm invocations reuse).

Nothing here runs at import time. Tests build one from explicit settings (bootstrap.use_container
installs it). The local stack's replay transport (infra/local, not part of the Lambda package) is
handed in by bootstrap.install_replay_transport, which is why a deployed stage cannot serve replay
data even if misconfigured (Settings also refuses it).
"""

from __future__ import annotations

import functools
import threading
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from chalicelib import lazy
from chalicelib.errors import ConfigurationError
from chalicelib.ports import Broadcaster, Cache, MarketDataProvider, QuotaLimits, ShardDispatcher
from chalicelib.settings import DataSource, FanoutDispatch, Settings

# The adapters, their SDKs and the services other functions use are imported when the container first
# builds them (chalicelib/lazy.py): a cached quote never imports requests, boto3, the providers or the
# job and streaming services.
if TYPE_CHECKING:
    import redis
    from requests.adapters import BaseAdapter

    from chalicelib import auth
    from chalicelib.adapters import (
        apigw_broadcaster,
        aws_clients,
        dynamodb_connections,
        dynamodb_job_runs,
        http,
        lambda_dispatcher,
        redis_breaker,
        redis_cache,
        redis_quotas,
        redis_stream_state,
        redis_support,
        redis_ws_budget,
    )
    from chalicelib.adapters.providers import alpha_vantage, fmp, tiingo, yahoo
    from chalicelib.adapters.providers.base import BaseProvider
    from chalicelib.services import job_bodies, job_schedules, jobs, market_data, provider_chain, streaming
    from chalicelib.services import providers as provider_services
else:
    auth = lazy.module("chalicelib.auth")
    apigw_broadcaster = lazy.module("chalicelib.adapters.apigw_broadcaster")
    aws_clients = lazy.module("chalicelib.adapters.aws_clients")
    dynamodb_connections = lazy.module("chalicelib.adapters.dynamodb_connections")
    dynamodb_job_runs = lazy.module("chalicelib.adapters.dynamodb_job_runs")
    http = lazy.module("chalicelib.adapters.http")
    lambda_dispatcher = lazy.module("chalicelib.adapters.lambda_dispatcher")  # the jobs' fan-out only
    redis_cache = lazy.module("chalicelib.adapters.redis_cache")
    redis_breaker = lazy.module("chalicelib.adapters.redis_breaker")
    redis_quotas = lazy.module("chalicelib.adapters.redis_quotas")
    redis_stream_state = lazy.module("chalicelib.adapters.redis_stream_state")
    redis_support = lazy.module("chalicelib.adapters.redis_support")
    redis_ws_budget = lazy.module("chalicelib.adapters.redis_ws_budget")
    alpha_vantage = lazy.module("chalicelib.adapters.providers.alpha_vantage")
    fmp = lazy.module("chalicelib.adapters.providers.fmp")
    tiingo = lazy.module("chalicelib.adapters.providers.tiingo")
    yahoo = lazy.module("chalicelib.adapters.providers.yahoo")
    job_bodies = lazy.module("chalicelib.services.job_bodies")
    job_schedules = lazy.module("chalicelib.services.job_schedules")
    jobs = lazy.module("chalicelib.services.jobs")
    market_data = lazy.module("chalicelib.services.market_data")
    provider_chain = lazy.module("chalicelib.services.provider_chain")
    provider_services = lazy.module("chalicelib.services.providers")
    streaming = lazy.module("chalicelib.services.streaming")

REPLAY_SOURCE_LABEL = "replay"


@runtime_checkable
class ReplayCalendar(Protocol):
    """What the replay transport tells the service besides HTTP answers: the trading day it replays now."""

    def replay_day(self) -> date: ...


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        replay_transport: BaseAdapter | None = None,
        http_transport: BaseAdapter | None = None,
        cache: Cache | None = None,
        broadcaster: Broadcaster | None = None,
    ) -> None:
        """``http_transport`` replaces the network for live providers (tests answer at the HTTP layer);
        ``replay_transport`` is the recorded-data source, used only when MARKET_DATA_SOURCE=replay;
        ``broadcaster`` replaces the management-API client (tests record what would be sent)."""
        self.settings = settings
        self._replay_transport = replay_transport
        self._http_transport = http_transport
        self._cache_override = cache
        self._broadcaster_override = broadcaster
        self._broadcasters: dict[str, Broadcaster] = {}
        self._broadcasters_lock = threading.Lock()
        if settings.market_data_source is DataSource.REPLAY and replay_transport is None:
            raise ConfigurationError(
                "MARKET_DATA_SOURCE=replay needs the local stack's replay transport (infra/local/replay, "
                "installed by `make run` and the tests); it is not part of the deployed package"
            )

    @functools.cached_property
    def redis(self) -> redis.Redis:
        """One client (one connection pool) per container, shared by cache, quotas and breakers."""
        return redis_support.redis_client(
            self.settings.redis_url, socket_timeout_seconds=self.settings.redis_socket_timeout_seconds
        )

    @functools.cached_property
    def cache(self) -> Cache:
        if self._cache_override is not None:
            return self._cache_override
        s = self.settings
        return redis_cache.RedisCache(
            self.redis,
            key_prefix=s.cache_key_prefix,
            hot_set_max_symbols=s.quote_hot_set_max_symbols,
            hot_set_window_seconds=s.quote_hot_set_window_seconds,
        )

    @functools.cached_property
    def quotas(self) -> redis_quotas.RedisQuotas:
        return redis_quotas.RedisQuotas(self.redis, key_prefix=self.settings.cache_key_prefix)

    @functools.cached_property
    def breaker(self) -> redis_breaker.RedisCircuitBreaker:
        s = self.settings
        return redis_breaker.RedisCircuitBreaker(
            self.redis,
            key_prefix=s.cache_key_prefix,
            failure_threshold=s.breaker_failure_threshold,
            cooldown_seconds=s.breaker_cooldown_seconds,
        )

    @property
    def replay(self) -> bool:
        return self.settings.market_data_source is DataSource.REPLAY

    @functools.cached_property
    def quota_limits(self) -> dict[str, QuotaLimits]:
        s = self.settings
        return {
            "yahoo": QuotaLimits(s.yahoo_quota_per_minute, s.yahoo_quota_per_day),
            "fmp": QuotaLimits(s.fmp_quota_per_minute, s.fmp_quota_per_day),
            "alpha_vantage": QuotaLimits(s.alpha_vantage_quota_per_minute, s.alpha_vantage_quota_per_day),
            "tiingo": QuotaLimits(s.tiingo_quota_per_minute, s.tiingo_quota_per_day),
        }

    @functools.cached_property
    def provider_catalog(self) -> list[provider_services.ProviderInfo]:
        """Every vendor in the spec's fallback order, with whether it is in the chain."""
        in_chain = {p.vendor for p in self.providers}
        vendors: list[type[BaseProvider]] = [
            yahoo.YahooProvider,
            fmp.FmpProvider,
            alpha_vantage.AlphaVantageProvider,
            tiingo.TiingoProvider,
        ]
        return [provider_services.ProviderInfo(v.vendor_name, v.vendor_name in in_chain, v.supported) for v in vendors]

    @functools.cached_property
    def providers(self) -> list[MarketDataProvider]:
        """The chain in the spec's order: Yahoo, FMP, Alpha Vantage, Tiingo. A vendor without a key is
        left out. Replay mode serves recorded Yahoo data only (offline: no keyed vendor is reachable)."""
        s = self.settings
        transport = self._replay_transport if self.replay else self._http_transport
        rehearsal = s.market_data_source is DataSource.REHEARSAL and s.rehearsal_provider_url is not None
        if rehearsal and transport is None and s.rehearsal_provider_url is not None:
            from chalicelib.adapters.rehearsal_transport import RehearsalTransport  # rehearsal only

            transport = RehearsalTransport(
                s.rehearsal_provider_url,
                s.provider_timeout_seconds,
                max_bytes=s.provider_response_max_bytes,
                deadline_seconds=s.provider_response_deadline_seconds,
            )
        session = http.build_session(
            timeout_cap_seconds=s.provider_timeout_seconds,
            max_response_bytes=s.provider_response_max_bytes,
            response_deadline_seconds=s.provider_response_deadline_seconds,
            transport=transport,
        )
        chain: list[MarketDataProvider] = [
            yahoo.YahooProvider(
                session,
                cache_dir=s.yfinance_cache_dir,
                source_label=REPLAY_SOURCE_LABEL if self.replay or rehearsal else "yahoo",
            )
        ]
        if self.replay or rehearsal:  # replay data only: no keyed vendor is reachable offline
            return chain
        if s.financial_modeling_prep_api_key is not None:
            chain.append(fmp.FmpProvider(session, api_key=s.financial_modeling_prep_api_key.get_secret_value()))
        if s.alpha_vantage_api_key is not None:
            chain.append(
                alpha_vantage.AlphaVantageProvider(session, api_key=s.alpha_vantage_api_key.get_secret_value())
            )
        if s.tiingo_api_key is not None:
            chain.append(tiingo.TiingoProvider(session, api_key=s.tiingo_api_key.get_secret_value()))
        return chain

    @functools.cached_property
    def chain(self) -> provider_chain.ProviderChain:
        s = self.settings
        return provider_chain.ProviderChain(
            lambda: self.providers,
            quotas=self.quotas,
            breaker=self.breaker,
            limits=self.quota_limits,
            retry=provider_chain.RetryPolicy(
                max_attempts=s.provider_max_attempts,
                base_seconds=s.provider_retry_base_seconds,
                max_backoff_seconds=s.provider_retry_max_seconds,
            ),
            provider_timeout_seconds=s.provider_timeout_seconds,
        )

    @functools.cached_property
    def market_data(self) -> market_data.MarketDataService:
        s = self.settings
        return market_data.MarketDataService(
            cache=self.cache,
            chain=self.chain,
            timings=market_data.CacheTimings(
                stale_ttl_seconds=s.cache_stale_ttl_seconds,
                lock_ttl_seconds=s.cache_lock_ttl_seconds,
                lock_wait_seconds=s.cache_lock_wait_seconds,
                negative_ttl_seconds=s.negative_cache_ttl_seconds,
            ),
            replay_day=self._replay_transport.replay_day
            if self.replay and isinstance(self._replay_transport, ReplayCalendar)
            else None,
        )

    @functools.cached_property
    def provider_status(self) -> provider_services.ProvidersService:
        return provider_services.ProvidersService(
            self.provider_catalog,
            quotas=self.quotas,
            breaker=self.breaker,
            limits=self.quota_limits,
            data_source=self.settings.market_data_source.value,
        )

    @functools.cached_property
    def token_verifier(self) -> auth.TokenVerifier:
        return auth.TokenVerifier(self.settings)

    @functools.cached_property
    def dynamodb(self) -> Any:
        """One DynamoDB client per container; AWS_ENDPOINT_URL points it at moto locally. Built on first
        use: a REST request that never touches DynamoDB does not pay for importing boto3."""
        s = self.settings
        return aws_clients.standard_client(
            "dynamodb", s.aws_region, endpoint_url=s.aws_endpoint_url, read_timeout_seconds=5
        )

    @functools.cached_property
    def connection_store(self) -> dynamodb_connections.DynamoDBConnectionStore:
        s = self.settings
        return dynamodb_connections.DynamoDBConnectionStore(
            self.dynamodb,
            connections_table=s.connections_table,
            subscriptions_table=s.subscriptions_table,
            registry_table=s.registry_table,
            shard_count=s.ws_shard_count,
        )

    @functools.cached_property
    def stream_state(self) -> redis_stream_state.RedisStreamState:
        return redis_stream_state.RedisStreamState(self.redis, key_prefix=self.settings.cache_key_prefix)

    @functools.cached_property
    def message_budget(self) -> redis_ws_budget.RedisMessageBudget:
        return redis_ws_budget.RedisMessageBudget(self.redis, key_prefix=self.settings.cache_key_prefix)

    @functools.cached_property
    def streaming(self) -> streaming.StreamingService:
        return streaming.StreamingService(
            store=self.connection_store,
            state=self.stream_state,
            market=self.market_data,
            budget=self.message_budget,
            limits=streaming.StreamingLimits.of(self.settings),
            dispatcher=self.shard_dispatcher,
        )

    @functools.cached_property
    def shard_dispatcher(self) -> ShardDispatcher | None:
        """Lambda async invoke of the fan-out worker, or None: the publisher delivers every shard."""
        s = self.settings
        if s.fanout_dispatch is FanoutDispatch.INLINE:
            return None
        pool = min(s.ws_shard_count, 64)
        client = lambda_dispatcher.lambda_client(s.aws_region, pool_size=pool, timeout_seconds=3.0)
        return lambda_dispatcher.LambdaShardDispatcher(client, s.fanout_worker_function, concurrency=pool)

    @functools.cached_property
    def job_runs(self) -> dynamodb_job_runs.DynamoDBJobRunStore:
        return dynamodb_job_runs.DynamoDBJobRunStore(self.dynamodb, self.settings.job_runs_table)

    @functools.cached_property
    def jobs(self) -> jobs.JobRunner:
        s = self.settings
        deps = job_bodies.JobDeps(
            market=self.market_data,
            streaming=self.streaming,
            store=self.connection_store,
            runs=self.job_runs,
            broadcaster=self.broadcaster,
            popular_symbols=s.job_popular_symbols,
            quote_refresh_max_symbols=s.job_quote_refresh_max_symbols,
        )
        return jobs.JobRunner(
            specs=job_schedules.job_specs(),
            bodies={name: functools.partial(body, deps) for name, body in job_bodies.BODIES.items()},
            runs=self.job_runs,
            locks=self.cache,
            retention_seconds=s.job_run_retention_days * 86400,
            failing_after=s.job_failing_after,
        )

    def broadcaster(self, endpoint_from_event: str | None = None) -> Broadcaster:
        """The management-API client: the configured endpoint, else the one the WebSocket event names.
        Cached per endpoint (a warm container keeps its connection pool)."""
        if self._broadcaster_override is not None:
            return self._broadcaster_override
        endpoint = self.settings.websocket_management_endpoint or endpoint_from_event
        if endpoint is None:
            raise ConfigurationError(
                "WEBSOCKET_MANAGEMENT_ENDPOINT must be set for functions that push to WebSocket clients "
                "outside a WebSocket event (https://{api_id}.execute-api.{region}.amazonaws.com/{stage})"
            )
        with self._broadcasters_lock:
            found = self._broadcasters.get(endpoint)
            if found is None:
                s = self.settings
                client = apigw_broadcaster.management_client(
                    endpoint, s.aws_region, pool_size=s.ws_fanout_concurrency, timeout_seconds=3.0
                )
                found = apigw_broadcaster.ApiGatewayBroadcaster(client, concurrency=s.ws_fanout_concurrency)
                self._broadcasters[endpoint] = found
            return found
