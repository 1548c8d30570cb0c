"""Tiingo: one module per dataset (quote, historical, profile, news, search) on the shared base."""

from chalicelib.adapters.providers.tiingo._common import TIINGO_BASE_URL
from chalicelib.adapters.providers.tiingo.provider import TiingoProvider

__all__ = ["TIINGO_BASE_URL", "TiingoProvider"]
