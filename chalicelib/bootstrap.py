"""The one place that builds adapters and services: lazily, once per container (warm invocations reuse).

Nothing here runs at import time. Tests replace the whole container (`use_container`), or build one
from explicit settings. The local stack installs the offline replay transport with
`install_replay_transport`; it lives under infra/local and is not part of the Lambda package, which is
why a deployed stage cannot serve replay data even if misconfigured (Settings also refuses it).
"""

from __future__ import annotations

import functools
import threading

import redis
from requests.adapters import BaseAdapter

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.alpha_vantage import AlphaVantageProvider
from chalicelib.adapters.providers.base import BaseProvider
from chalicelib.adapters.providers.fmp import FmpProvider
from chalicelib.adapters.providers.tiingo import TiingoProvider
from chalicelib.adapters.providers.yahoo import YahooProvider
from chalicelib.adapters.redis_cache import RedisCache
from chalicelib.adapters.redis_quotas import RedisCircuitBreaker, RedisQuotas
from chalicelib.adapters.redis_support import redis_client
from chalicelib.auth import TokenVerifier
from chalicelib.errors import ConfigurationError
from chalicelib.ports import Cache, MarketDataProvider, QuotaLimits
from chalicelib.services.market_data import CacheTimings, MarketDataService
from chalicelib.services.provider_chain import ProviderChain, RetryPolicy
from chalicelib.services.providers import ProviderInfo, ProvidersService
from chalicelib.settings import DataSource, Settings, load_settings

REPLAY_SOURCE_LABEL = "replay"


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        replay_transport: BaseAdapter | None = None,
        http_transport: BaseAdapter | None = None,
        cache: Cache | None = None,
    ) -> None:
        """``http_transport`` replaces the network for live providers (tests answer at the HTTP layer);
        ``replay_transport`` is the recorded-data source, used only when MARKET_DATA_SOURCE=replay."""
        self.settings = settings
        self._replay_transport = replay_transport
        self._http_transport = http_transport
        self._cache_override = cache
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
        return RedisCache(self.redis, key_prefix=self.settings.cache_key_prefix)

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
        session = build_session(timeout_cap_seconds=s.provider_timeout_seconds, transport=transport)
        chain: list[MarketDataProvider] = [
            YahooProvider(
                session,
                cache_dir=s.yfinance_cache_dir,
                source_label=REPLAY_SOURCE_LABEL if self.replay else "yahoo",
            )
        ]
        if self.replay:
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
            ),
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


_lock = threading.Lock()
_container: Container | None = None
_replay_transport: BaseAdapter | None = None


def install_replay_transport(transport: BaseAdapter) -> None:
    """Called by the local stack before the first invocation; the next container built uses it."""
    global _replay_transport, _container
    with _lock:
        _replay_transport = transport
        _container = None


def container() -> Container:
    """The container of this Lambda container: built on first use, validated once, then reused."""
    global _container
    with _lock:
        if _container is None:
            _container = Container(load_settings(), replay_transport=_replay_transport)
        return _container


def use_container(replacement: Container | None) -> None:
    """Tests: serve the next invocations from ``replacement`` (None rebuilds from the environment)."""
    global _container
    with _lock:
        _container = replacement
