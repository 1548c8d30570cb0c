"""Market data, read through one cache policy, fetched through the provider chain.

``service`` is the facade callers use; ``read_through`` the one cache policy every data kind goes
through (``cached`` its vocabulary); ``quotes``, ``instruments`` and ``panels`` say which key, TTL and
upstream call each kind uses; ``history`` the period/interval rules.
"""

from chalicelib.services.market_data.cached import CacheKind, CacheTimings, CacheTtl, Served, stored_document
from chalicelib.services.market_data.history import history_combinations, validate_history_request
from chalicelib.services.market_data.panels import INDICES, SECTOR_ETFS
from chalicelib.services.market_data.quotes import QuoteRefresh
from chalicelib.services.market_data.service import MarketDataService

__all__ = [
    "INDICES",
    "SECTOR_ETFS",
    "CacheKind",
    "CacheTimings",
    "CacheTtl",
    "MarketDataService",
    "QuoteRefresh",
    "Served",
    "history_combinations",
    "stored_document",
    "validate_history_request",
]
