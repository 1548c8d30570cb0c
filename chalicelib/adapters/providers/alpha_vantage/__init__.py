"""Alpha Vantage: one module per dataset (quote, historical, profile, search, news, movers)."""

from chalicelib.adapters.providers.alpha_vantage.provider import AlphaVantageProvider

__all__ = ["AlphaVantageProvider"]
