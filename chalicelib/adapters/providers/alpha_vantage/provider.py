"""Alpha Vantage (https://www.alphavantage.co/query?function=...) over REST with ``requests``. One module
per dataset; this one declares the vendor.

The key travels in the ``apikey`` query parameter, added only by ``_authorize`` just before the fetch;
the base rebuilds every error leaving this adapter without its chained requests exception (whose text
can hold the full URL) and with any echo of the key replaced. Alpha Vantage's message bodies
(throttles, premium refusals, unknown symbols) come with HTTP 200 and are read by the parse steps,
which know whether the call named a symbol.
"""

from __future__ import annotations

from chalicelib.adapters.providers.alpha_vantage import historical, movers, news, profile, quote, search
from chalicelib.adapters.providers.alpha_vantage._common import BASE_URL, VENDOR
from chalicelib.adapters.providers.base import KeyedProvider
from chalicelib.adapters.providers.calls import routes_of


class AlphaVantageProvider(KeyedProvider):
    """Alpha Vantage over an injected requests session. No INDICES (GLOBAL_QUOTE does not serve ^GSPC-style
    symbols) and no SECTORS (its SECTOR function is retired; sector ETFs would cost one call each at 5
    calls a minute)."""

    vendor_name = VENDOR
    default_base_url = BASE_URL
    routes = routes_of(quote, historical, profile, search, news, movers)
    quote_batch_size = 1
