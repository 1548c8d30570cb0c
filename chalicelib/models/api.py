"""REST request and response models: what the routes accept and what they serve (and what the OpenAPI
document is generated from). Every market payload carries its provenance: ``source``, ``as_of``,
``retrieved_at``, ``cached``, ``stale``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from chalicelib.models.market import (
    SYMBOL_SCHEMA,
    CompanyProfile,
    HistoricalData,
    Interval,
    MarketModel,
    MoverType,
    NewsArticle,
    Period,
    ProvenanceFields,
    Quote,
    QuoteResponse,
    SearchResult,
)

# --- requests -------------------------------------------------------------------------------------


class QueryModel(BaseModel):
    """Query strings: unknown parameters are refused, so a typo is a 400, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


MAX_BATCH_SYMBOLS = 50
SEARCH_QUERY_MAX_LENGTH = 64
# Declared for the OpenAPI document (the validator below enforces the same): no C0 control character or
# DEL anywhere, and at least one character that is not whitespace.
_NO_CONTROL = r"[^\u0000-\u001f\u007f]"
SEARCH_QUERY_PATTERN = rf"^{_NO_CONTROL}*[^\s\u0000-\u001f\u007f]{_NO_CONTROL}*$"


def _symbols_schema(schema: dict[str, Any]) -> None:
    # On the wire one comma-separated string (OpenAPI: style form, explode false); declared as the array
    # it stands for, so its bounds and the pattern of each ticker are part of the contract.
    schema.clear()
    schema.update(
        {
            "type": "array",
            "items": dict(SYMBOL_SCHEMA),
            "minItems": 1,
            "maxItems": MAX_BATCH_SYMBOLS,
            "description": f"comma-separated tickers, 1 to {MAX_BATCH_SYMBOLS}, e.g. AAPL,MSFT,^GSPC; a malformed "
            "or empty entry is a 400 naming it, an unknown ticker an `error` item inside the 200",
        }
    )


class QuotesQuery(QueryModel):
    symbols: str = Field(json_schema_extra=_symbols_schema)


class MoversQuery(QueryModel):
    type: MoverType = MoverType.GAINERS
    limit: int = Field(default=10, ge=1, le=25)


class HistoricalQuery(QueryModel):
    period: Period = Period.Y1
    interval: Interval = Interval.D1


class NewsQuery(QueryModel):
    limit: int = Field(default=10, ge=1, le=50)


def _integral_float(value: object) -> object:
    # JSON Schema counts 5.0 as an integer, so the strict body model takes it as 5 (but not 5.5, "5" or true).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class SearchRequest(QueryModel):
    # strict: a JSON body has real types, so "5" or true for the limit is refused as the schema says.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    query: str = Field(
        min_length=1,
        max_length=SEARCH_QUERY_MAX_LENGTH,
        description="ticker or company name; no control characters, not only whitespace",
        json_schema_extra={"pattern": SEARCH_QUERY_PATTERN},
    )
    limit: Annotated[int, BeforeValidator(_integral_float)] = Field(default=10, ge=1, le=50)

    @field_validator("query")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError("query contains control characters")
        if not value.strip():
            raise ValueError("query is only whitespace")
        return value


class EmptyQuery(QueryModel):
    pass


class WsStatsQuery(QueryModel):
    top: int = Field(default=10, ge=1, le=100, description="how many topics to list")


# --- responses ------------------------------------------------------------------------------------


class HistoricalResponse(HistoricalData, ProvenanceFields):
    pass


class ProfileResponse(CompanyProfile, ProvenanceFields):
    pass


class NewsPayload(MarketModel):
    symbol: str
    articles: list[NewsArticle]
    as_of: AwareDatetime


class NewsResponse(NewsPayload, ProvenanceFields):
    pass


class SearchPayload(MarketModel):
    query: str
    results: list[SearchResult]
    as_of: AwareDatetime


class SearchResponse(SearchPayload, ProvenanceFields):
    pass


class MoversPayload(MarketModel):
    type: MoverType
    movers: list[Quote]
    as_of: AwareDatetime


class MoversResponse(MoversPayload, ProvenanceFields):
    pass


class IndexQuote(Quote):
    index_name: str = Field(alias="indexName")


class IndicesPayload(MarketModel):
    indices: list[IndexQuote]
    unavailable: list[str] = Field(description="index symbols no source could quote this time")
    as_of: AwareDatetime


class IndicesResponse(IndicesPayload, ProvenanceFields):
    pass


class SectorPerformance(MarketModel):
    sector: str = Field(description="GICS sector name")
    etf: str = Field(description="the Select Sector SPDR ETF whose quote measures it")
    price: float | None = None
    change_percent: float | None = Field(default=None, alias="changePercent")
    as_of: AwareDatetime | None = None


class SectorsPayload(MarketModel):
    sectors: list[SectorPerformance]
    advancers: int
    decliners: int
    unavailable: list[str] = Field(description="sectors whose ETF no source could quote this time")
    unavailable_reasons: dict[str, str] = Field(
        default_factory=dict, description="why each unavailable sector is missing (sector → reason)"
    )
    as_of: AwareDatetime


class SectorsResponse(SectorsPayload, ProvenanceFields):
    pass


class SentimentComponent(MarketModel):
    name: str
    weight: float = Field(description="the component's weight before renormalising over available ones")
    value: float | None = Field(description="the raw input (VIX level, % change, advancers share, ...)")
    score: float | None = Field(description="the input mapped onto -1 (fear) .. +1 (greed); null if unavailable")


class SentimentPayload(MarketModel):
    score: float = Field(ge=0, le=100, description="0 extreme fear .. 100 extreme greed")
    label: str
    components: list[SentimentComponent]
    formula: str
    as_of: AwareDatetime


class SentimentResponse(SentimentPayload, ProvenanceFields):
    pass


class OverviewResponse(MarketModel):
    """Everything the dashboard's landing screen needs; each part keeps its own provenance. A part that
    cannot be served is null and named in ``errors``, so one failing source never blanks the page."""

    indices: IndicesResponse | None
    sectors: SectorsResponse | None
    gainers: MoversResponse | None
    losers: MoversResponse | None
    actives: MoversResponse | None
    sentiment: SentimentResponse | None
    errors: dict[str, str] = Field(default_factory=dict)


class QuoteError(MarketModel):
    code: str
    message: str


class BatchQuoteItem(MarketModel):
    symbol: str
    quote: QuoteResponse | None = None
    error: QuoteError | None = None


class BatchQuotesResponse(MarketModel):
    quotes: list[BatchQuoteItem]


class QuotaWindow(MarketModel):
    limit: int = Field(description="0 = unlimited")
    used: int | None
    remaining: int | None
    resets_in_seconds: int | None


class ProviderStatus(MarketModel):
    name: str
    configured: bool = Field(description="false when its API key is missing (then it is not in the chain)")
    position: int | None = Field(description="1-based place in the fallback chain; null if not configured")
    capabilities: list[str]
    breaker_state: str | None
    # Operators only (null for everyone else): quota use and the breaker's failure detail.
    quota_minute: QuotaWindow | None = Field(default=None, description="operators only (null otherwise)")
    quota_day: QuotaWindow | None = Field(default=None, description="operators only (null otherwise)")
    consecutive_failures: int | None = Field(default=None, description="operators only")
    last_error: str | None = Field(
        default=None, description="operators only: the last failure's error code (the detail is in the logs)"
    )
    last_error_at: AwareDatetime | None = Field(default=None, description="operators only")


class ProvidersResponse(MarketModel):
    data_source: str = Field(description="live, or replay (recorded data; local stack only)")
    providers: list[ProviderStatus]
