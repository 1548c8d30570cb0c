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
from typing import Any, Protocol, runtime_checkable

import redis
from requests.adapters import BaseAdapter

from chalicelib.adapters.apigw_broadcaster import ApiGatewayBroadcaster, management_client
from chalicelib.adapters.aws_clients import standard_client
from chalicelib.adapters.dynamodb_connections import DynamoDBConnectionStore
from chalicelib.adapters.dynamodb_job_runs import DynamoDBJobRunStore
from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.alpha_vantage import AlphaVantageProvider
from chalicelib.adapters.providers.base import BaseProvider
from chalicelib.adapters.providers.fmp import FmpProvider
from chalicelib.adapters.providers.tiingo import TiingoProvider
from chalicelib.adapters.providers.yahoo import YahooProvider
from chalicelib.adapters.redis_cache import RedisCache
from chalicelib.adapters.redis_quotas import RedisCircuitBreaker, RedisQuotas
from chalicelib.adapters.redis_stream_state import RedisStreamState
from chalicelib.adapters.redis_support import redis_client
from chalicelib.adapters.redis_ws_budget import RedisMessageBudget
from chalicelib.auth import TokenVerifier
from chalicelib.errors import ConfigurationError
from chalicelib.ports import Broadcaster, Cache, MarketDataProvider, QuotaLimits, ShardDispatcher
from chalicelib.services import job_bodies
from chalicelib.services.job_bodies import JobDeps
from chalicelib.services.job_schedules import job_specs
from chalicelib.services.jobs import JobRunner
from chalicelib.services.market_data import CacheTimings, MarketDataService
from chalicelib.services.provider_chain import ProviderChain, RetryPolicy
from chalicelib.services.providers import ProviderInfo, ProvidersService
from chalicelib.services.streaming import StreamingLimits, StreamingService
from chalicelib.settings import DataSource, FanoutDispatch, Settings

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
        return redis_client(self.settings.redis_url, socket_timeout_seconds=self.settings.redis_socket_timeout_seconds)

    @functools.cached_property
    def cache(self) -> Cache:
        if self._cache_override is not None:
            return self._cache_override
        s = self.settings
        return RedisCache(
            self.redis,
            key_prefix=s.cache_key_prefix,
            hot_set_max_symbols=s.quote_hot_set_max_symbols,
            hot_set_window_seconds=s.quote_hot_set_window_seconds,
        )

    @functools.cached_property
    def quotas(self) -> RedisQuotas:
        return RedisQuotas(self.redis, key_prefix=self.settings.cache_key_prefix)

    @functools.cached_property
    def breaker(self) -> RedisCircuitBreaker:
        s = self.settings
        return RedisCircuitBreaker(
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
    def provider_catalog(self) -> list[ProviderInfo]:
        """Every vendor in the spec's fallback order, with whether it is in the chain."""
        in_chain = {p.vendor for p in self.providers}
        vendors: list[type[BaseProvider]] = [YahooProvider, FmpProvider, AlphaVantageProvider, TiingoProvider]
        return [ProviderInfo(v.vendor_name, v.vendor_name in in_chain, v.supported) for v in vendors]

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
        session = build_session(
            timeout_cap_seconds=s.provider_timeout_seconds,
            max_response_bytes=s.provider_response_max_bytes,
            response_deadline_seconds=s.provider_response_deadline_seconds,
            transport=transport,
        )
        chain: list[MarketDataProvider] = [
            YahooProvider(
                session,
                cache_dir=s.yfinance_cache_dir,
                source_label=REPLAY_SOURCE_LABEL if self.replay or rehearsal else "yahoo",
            )
        ]
        if self.replay or rehearsal:  # replay data only: no keyed vendor is reachable offline
            return chain
        if s.financial_modeling_prep_api_key is not None:
            chain.append(FmpProvider(session, api_key=s.financial_modeling_prep_api_key.get_secret_value()))
        if s.alpha_vantage_api_key is not None:
            chain.append(AlphaVantageProvider(session, api_key=s.alpha_vantage_api_key.get_secret_value()))
        if s.tiingo_api_key is not None:
            chain.append(TiingoProvider(session, api_key=s.tiingo_api_key.get_secret_value()))
        return chain

    @functools.cached_property
    def chain(self) -> ProviderChain:
        s = self.settings
        return ProviderChain(
            self.providers,
            quotas=self.quotas,
            breaker=self.breaker,
            limits=self.quota_limits,
            retry=RetryPolicy(
                max_attempts=s.provider_max_attempts,
                base_seconds=s.provider_retry_base_seconds,
                max_backoff_seconds=s.provider_retry_max_seconds,
            ),
            provider_timeout_seconds=s.provider_timeout_seconds,
        )

    @functools.cached_property
    def market_data(self) -> MarketDataService:
        s = self.settings
        return MarketDataService(
            cache=self.cache,
            chain=self.chain,
            timings=CacheTimings(
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
    def provider_status(self) -> ProvidersService:
        return ProvidersService(
            self.provider_catalog,
            quotas=self.quotas,
            breaker=self.breaker,
            limits=self.quota_limits,
            data_source=self.settings.market_data_source.value,
        )

    @functools.cached_property
    def token_verifier(self) -> TokenVerifier:
        return TokenVerifier(self.settings)

    @functools.cached_property
    def dynamodb(self) -> Any:
        """One DynamoDB client per container; AWS_ENDPOINT_URL points it at moto locally. Built on first
        use: a REST request that never touches DynamoDB does not pay for importing boto3."""
        s = self.settings
        return standard_client("dynamodb", s.aws_region, endpoint_url=s.aws_endpoint_url, read_timeout_seconds=5)

    @functools.cached_property
    def connection_store(self) -> DynamoDBConnectionStore:
        s = self.settings
        return DynamoDBConnectionStore(
            self.dynamodb,
            connections_table=s.connections_table,
            subscriptions_table=s.subscriptions_table,
            registry_table=s.registry_table,
            shard_count=s.ws_shard_count,
        )

    @functools.cached_property
    def stream_state(self) -> RedisStreamState:
        return RedisStreamState(self.redis, key_prefix=self.settings.cache_key_prefix)

    @functools.cached_property
    def message_budget(self) -> RedisMessageBudget:
        return RedisMessageBudget(self.redis, key_prefix=self.settings.cache_key_prefix)

    @functools.cached_property
    def streaming(self) -> StreamingService:
        return StreamingService(
            store=self.connection_store,
            state=self.stream_state,
            market=self.market_data,
            budget=self.message_budget,
            limits=StreamingLimits.of(self.settings),
            dispatcher=self.shard_dispatcher,
        )

    @functools.cached_property
    def shard_dispatcher(self) -> ShardDispatcher | None:
        """Lambda async invoke of the fan-out worker, or None: the publisher delivers every shard."""
        s = self.settings
        if s.fanout_dispatch is FanoutDispatch.INLINE:
            return None
        from chalicelib.adapters.lambda_dispatcher import LambdaShardDispatcher, lambda_client  # jobs only

        pool = min(s.ws_shard_count, 64)
        client = lambda_client(s.aws_region, pool_size=pool, timeout_seconds=3.0)
        return LambdaShardDispatcher(client, s.fanout_worker_function, concurrency=pool)

    @functools.cached_property
    def job_runs(self) -> DynamoDBJobRunStore:
        return DynamoDBJobRunStore(self.dynamodb, self.settings.job_runs_table)

    @functools.cached_property
    def jobs(self) -> JobRunner:
        s = self.settings
        deps = JobDeps(
            market=self.market_data,
            streaming=self.streaming,
            store=self.connection_store,
            runs=self.job_runs,
            broadcaster=self.broadcaster,
            popular_symbols=s.job_popular_symbols,
            quote_refresh_max_symbols=s.job_quote_refresh_max_symbols,
        )
        return JobRunner(
            specs=job_specs(),
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
                client = management_client(
                    endpoint, s.aws_region, pool_size=s.ws_fanout_concurrency, timeout_seconds=3.0
                )
                found = ApiGatewayBroadcaster(client, concurrency=s.ws_fanout_concurrency)
                self._broadcasters[endpoint] = found
            return found
