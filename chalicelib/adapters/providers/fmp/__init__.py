"""Financial Modeling Prep: one module per dataset (quote, historical, profile, search, movers)."""

from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL
from chalicelib.adapters.providers.fmp.provider import PLAN_REFUSAL_MEMORY, FmpProvider

__all__ = ["FMP_BASE_URL", "PLAN_REFUSAL_MEMORY", "FmpProvider"]
