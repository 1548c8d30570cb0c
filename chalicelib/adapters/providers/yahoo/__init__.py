"""Yahoo Finance: one module per dataset (quote, historical, profile, search, news, movers)."""

from chalicelib.adapters.providers.yahoo._common import DEFAULT_BASE_URL
from chalicelib.adapters.providers.yahoo.provider import YahooProvider, load_yfinance

__all__ = ["DEFAULT_BASE_URL", "YahooProvider", "load_yfinance"]
