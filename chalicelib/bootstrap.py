"""The one place that builds adapters and services: lazily, once per container (warm invocations reuse).

Nothing here runs at import time. Tests replace the whole container (`use_container`), or build one
from explicit settings. The local stack installs the offline replay transport with
`install_replay_transport`; it lives under infra/local and is not part of the Lambda package, which is
why a deployed stage cannot serve replay data even if misconfigured (Settings also refuses it).
"""

from __future__ import annotations

import functools
import threading

from requests.adapters import BaseAdapter

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import YahooProvider
from chalicelib.adapters.redis_cache import RedisCache
from chalicelib.auth import TokenVerifier
from chalicelib.errors import ConfigurationError
from chalicelib.ports import Cache, MarketDataProvider
from chalicelib.services.market_data import CacheTimings, MarketDataService
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
    def cache(self) -> Cache:
        if self._cache_override is not None:
            return self._cache_override
        return RedisCache.from_url(
            self.settings.redis_url,
            key_prefix=self.settings.cache_key_prefix,
            socket_timeout_seconds=self.settings.redis_socket_timeout_seconds,
        )

    @functools.cached_property
    def quote_providers(self) -> list[MarketDataProvider]:
        replay = self.settings.market_data_source is DataSource.REPLAY
        transport = self._replay_transport if replay else self._http_transport
        session = build_session(timeout_cap_seconds=self.settings.provider_timeout_seconds, transport=transport)
        yahoo = YahooProvider(
            session,
            cache_dir=self.settings.yfinance_cache_dir,
            source_label=REPLAY_SOURCE_LABEL if replay else "yahoo",
        )
        return [yahoo]

    @functools.cached_property
    def market_data(self) -> MarketDataService:
        s = self.settings
        return MarketDataService(
            cache=self.cache,
            quote_providers=self.quote_providers,
            timings=CacheTimings(
                stale_ttl_seconds=s.cache_stale_ttl_seconds,
                lock_ttl_seconds=s.cache_lock_ttl_seconds,
                lock_wait_seconds=s.cache_lock_wait_seconds,
            ),
            provider_timeout_seconds=s.provider_timeout_seconds,
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
