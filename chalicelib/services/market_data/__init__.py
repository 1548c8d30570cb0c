"""Market data, read through one cache policy, fetched through the provider chain.

``service`` is the facade callers use (each read answers a ``Served`` payload, chalicelib/models/served.py);
``read_through`` the one cache policy every data kind goes through (``cached`` its vocabulary); ``quotes``,
``instruments`` and ``panels`` say which key, TTL and upstream call each kind uses; ``history`` the
period/interval rules.
"""

from chalicelib.services.market_data.cached import CacheKind, CacheTimings, CacheTtl, stored_document
from chalicelib.services.market_data.history import history_combinations, validate_history_request
from chalicelib.services.market_data.panels import INDICES, SECTOR_ETFS, Overview
from chalicelib.services.market_data.quotes import BatchQuote, QuoteRefresh
from chalicelib.services.market_data.service import MarketDataService

__all__ = [
    "INDICES",
    "SECTOR_ETFS",
    "BatchQuote",
    "CacheKind",
    "CacheTimings",
    "CacheTtl",
    "MarketDataService",
    "Overview",
    "QuoteRefresh",
    "history_combinations",
    "stored_document",
    "validate_history_request",
]
