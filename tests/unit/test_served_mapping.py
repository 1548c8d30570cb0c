"""The market-data service answers domain objects (``Served``: a payload and one ``Provenance``), and the
wires map them: REST through market_api.to_wire, WebSocket through the update builders. One Served gives
both wires the same provenance, and the services never name a REST response model."""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from chalicelib.errors import ProviderUnavailable
from chalicelib.http_api import json_response
from chalicelib.market_api import batch_response, overview_response, to_wire
from chalicelib.models import api, market
from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    MoverType,
    Period,
    PriceBar,
    ProvenanceFields,
    Quote,
    QuoteResponse,
)
from chalicelib.models.served import Provenance, Served
from chalicelib.models.streaming import quote_update, sectors_update
from chalicelib.ports import QuotaLimits
from chalicelib.services.market_data import BatchQuote, CacheTimings, MarketDataService, Overview
from chalicelib.services.provider_chain import ProviderChain, RetryPolicy
from tests.conftest import REPO_ROOT
from tests.fakes.cache import InMemoryCache
from tests.fakes.clock import FakeClock
from tests.fakes.provider import AS_OF, InMemoryProvider
from tests.fakes.quotas import InMemoryCircuitBreaker, InMemoryQuotas

REPLAY_DAY = date(2025, 2, 14)
SYMBOLS = ("AAPL", "MSFT", "^GSPC", "^VIX", "XLK", "XLE")


def _service(clock: FakeClock, provider: InMemoryProvider) -> MarketDataService:
    chain = ProviderChain(
        [provider],
        quotas=InMemoryQuotas(clock=clock),
        breaker=InMemoryCircuitBreaker(failure_threshold=100, cooldown_seconds=30, clock=clock),
        limits={provider.name: QuotaLimits(0, 0)},
        retry=RetryPolicy(max_attempts=1),
        provider_timeout_seconds=2.0,
    )
    return MarketDataService(
        cache=InMemoryCache(clock=clock),
        chain=chain,
        timings=CacheTimings(stale_ttl_seconds=3600, lock_ttl_seconds=5, lock_wait_seconds=0.1),
        clock=clock,
        replay_day=lambda: REPLAY_DAY,
    )


class ProviderWithHistory(InMemoryProvider):
    """The in-memory provider, holding one daily bar and a profile for every symbol it quotes."""

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        self._upstream("get_historical", DataKind.HISTORICAL, [symbol, period.value, interval.value], timeout_seconds)
        bar = PriceBar(timestamp=AS_OF, close=self.quotes[symbol].price)
        return HistoricalData(symbol=symbol, period=period, interval=interval, bars=[bar], as_of=AS_OF)

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        self._upstream("get_profile", DataKind.PROFILE, [symbol], timeout_seconds)
        return CompanyProfile(symbol=symbol, name=f"{symbol} Inc.", as_of=AS_OF)


@dataclass
class World:
    clock: FakeClock
    provider: InMemoryProvider
    service: MarketDataService


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    quotes = [
        Quote(symbol=s, price=100.0 + i, change_percent=(-1.0) ** i * i, as_of=AS_OF) for i, s in enumerate(SYMBOLS)
    ]
    provider = ProviderWithHistory("yahoo", quotes, capabilities=set(DataKind))
    return World(clock, provider, _service(clock, provider))


def _assert_domain(served: Any) -> None:
    assert isinstance(served, Served)
    assert isinstance(served.provenance, Provenance)
    assert not isinstance(served.payload, ProvenanceFields), "a payload, not a REST response"
    assert set(ProvenanceFields.model_fields).isdisjoint(type(served.payload).model_fields)


def test_every_read_answers_a_payload_with_its_provenance_not_a_wire_model(world: World) -> None:
    service = world.service
    reads = [
        service.get_quote("AAPL"),
        service.get_historical("AAPL", Period.MO1, Interval.D1),
        service.get_profile("AAPL"),
        service.get_indices(),
        service.get_sectors(),
        service.get_sentiment(),
        service.search("ms", 5),
        service.get_news("AAPL", 5),
        *(service.get_movers(kind, 3) for kind in MoverType),
        *service.refresh_quotes(["AAPL", "MSFT"]).values(),
    ]
    for served in reads:
        _assert_domain(served)

    batch = service.get_quotes(["AAPL", "NOPE", "bad$"])
    assert [type(item) for item in batch] == [BatchQuote] * 3
    assert batch[0].quote is not None
    _assert_domain(batch[0].quote)
    assert [item.error is not None for item in batch] == [False, True, True]

    overview = service.get_overview()
    assert isinstance(overview, Overview)
    parts = [overview.indices, overview.sectors, overview.gainers, overview.losers, overview.actives]
    for part in [*parts, overview.sentiment]:
        _assert_domain(part)


def test_one_served_quote_puts_the_same_provenance_on_both_wires(world: World) -> None:
    world.service.get_quote("AAPL")
    world.clock.advance(120)  # past the quote's freshness, and the provider now fails: the stale copy is served
    world.provider.fail_next(ProviderUnavailable("yahoo", "down"))
    served = world.service.get_quote("AAPL")
    assert (served.provenance.cached, served.provenance.stale) == (True, True)

    rest = json.loads(json_response(to_wire(served, QuoteResponse)).body)
    ws = json.loads(quote_update(served).encoded())["data"]

    provenance = served.provenance
    assert rest["source"] == ws["source"] == provenance.source == "yahoo"
    assert rest["stale"] is ws["stale"] is True
    assert rest["cached"] is True
    assert rest["retrieved_at"] == provenance.retrieved_at.isoformat().replace("+00:00", "Z")
    assert rest["replay_day"] == REPLAY_DAY.isoformat()
    assert rest["price"] == ws["quote"]["price"] == served.payload.price
    assert ws["timestamp"] == rest["as_of"] == "2026-12-01T15:00:00Z"  # when the value held, on both

    # The wires read the Served's provenance and nothing else: change it, and both change with it.
    other = Provenance("fmp", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), cached=False, stale=False)
    moved = Served(served.payload, other)
    rest = json.loads(json_response(to_wire(moved, QuoteResponse)).body)
    ws = json.loads(quote_update(moved).encoded())["data"]
    assert (rest["source"], rest["stale"], rest["cached"]) == ("fmp", False, False)
    assert (rest["retrieved_at"], rest["replay_day"]) == ("2026-01-02T03:04:05Z", None)
    assert (ws["source"], ws["stale"]) == ("fmp", False)


def test_panels_and_batches_map_the_same_way(world: World) -> None:
    service = world.service
    sectors = service.get_sectors()
    stale = sectors.as_stale()
    rest = json.loads(json_response(to_wire(stale, api.SectorsResponse)).body)
    ws = json.loads(sectors_update(stale).encoded())["data"]
    assert (rest["source"], rest["stale"]) == (ws["source"], ws["stale"]) == (sectors.provenance.source, True)
    assert rest["sectors"] == ws["sectors"]

    batch = json.loads(json_response(batch_response(service.get_quotes(["AAPL", "NOPE"]))).body)["quotes"]
    assert batch[0]["quote"]["source"] == "yahoo"
    assert batch[0]["error"] is None
    assert batch[1]["quote"] is None
    assert batch[1]["error"]["code"] == "symbol_not_found"

    world.clock.advance(1)
    overview = json.loads(json_response(overview_response(service.get_overview())).body)
    assert overview["sectors"]["cached"] is True  # read back from the cache the sectors read above filled
    assert overview["errors"] == {}


def _types(annotation: Any) -> list[Any]:
    return [annotation, *(t for arg in get_args(annotation) for t in _types(arg))]


def _carries_rest_provenance(model: type[BaseModel]) -> bool:
    """A REST response with provenance (ProvenanceFields), or a model holding one (a batch item, the overview)."""
    if issubclass(model, ProvenanceFields):
        return True
    held = {t for field in model.model_fields.values() for t in _types(field.annotation)}
    return any(isinstance(t, type) and issubclass(t, BaseModel) and _carries_rest_provenance(t) for t in held)


_MODEL_MODULES = ("chalicelib.models.api", "chalicelib.models.market")


def _imported_names(source: str) -> list[tuple[str, str]]:
    """(module, name) for every name a module takes from the two model modules: imported by name
    (``from chalicelib.models.api import X``) or reached through the module (``from chalicelib.models
    import api`` or ``import chalicelib.models.api as api``, then ``api.X``)."""
    tree = ast.parse(source)
    names: list[tuple[str, str]] = []
    module_aliases: dict[str, str] = {}  # a local name → the model module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _MODEL_MODULES:
            names.extend((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "chalicelib.models":
            for alias in node.names:
                if f"chalicelib.models.{alias.name}" in _MODEL_MODULES:
                    module_aliases[alias.asname or alias.name] = f"chalicelib.models.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in _MODEL_MODULES and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases:
            names.append((module_aliases[node.value.id], node.attr))
    return names


def test_services_and_websocket_updates_never_name_a_rest_response_model() -> None:
    """The REST responses (a payload with ProvenanceFields, flat) are the HTTP side's: the services and the
    WebSocket messages work from Served, so REST provenance is spelled in market_api.to_wire only."""
    modules = {"chalicelib.models.api": api, "chalicelib.models.market": market}
    folders = [REPO_ROOT / "chalicelib" / "services", REPO_ROOT / "chalicelib" / "models" / "streaming"]
    paths = sorted(path for folder in folders for path in folder.rglob("*.py"))
    assert len(paths) > 20
    offenders = []
    for path in paths:
        for module, name in _imported_names(path.read_text()):
            imported = getattr(modules[module], name)
            if isinstance(imported, type) and issubclass(imported, BaseModel) and _carries_rest_provenance(imported):
                offenders.append(f"{path.relative_to(REPO_ROOT)}: {name}")
    assert offenders == []
    # The check itself: every way of naming a model is seen, the HTTP side's responses are caught, the
    # payloads are not.
    probe = (
        "from chalicelib.models.api import NewsResponse\nfrom chalicelib.models import api, market as m\n"
        "import chalicelib.models.api as wire\nx = (api.IndicesResponse, m.QuoteResponse, wire.SectorsResponse)\n"
    )
    assert sorted(_imported_names(probe)) == [
        ("chalicelib.models.api", "IndicesResponse"),
        ("chalicelib.models.api", "NewsResponse"),
        ("chalicelib.models.api", "SectorsResponse"),
        ("chalicelib.models.market", "QuoteResponse"),
    ]
    responses: list[type[BaseModel]] = [QuoteResponse, api.BatchQuotesResponse, api.OverviewResponse]
    payloads: list[type[BaseModel]] = [Quote, api.IndicesPayload, api.SectorsPayload, api.NewsPayload]
    assert all(_carries_rest_provenance(model) for model in responses)
    assert not any(_carries_rest_provenance(model) for model in payloads)


def test_the_domain_provenance_is_what_the_rest_wire_carries() -> None:
    """One shape: the domain Provenance holds exactly the REST wire's provenance fields."""
    assert [f.name for f in dataclasses.fields(Provenance)] == list(ProvenanceFields.model_fields)


def test_to_wire_refuses_a_response_model_that_is_not_its_payloads(world: World) -> None:
    served = world.service.get_quote("AAPL")
    with pytest.raises(TypeError, match="NewsResponse does not extend Quote"):
        to_wire(served, api.NewsResponse)


def test_a_batch_item_holds_a_quote_or_an_error_exactly_one(world: World) -> None:
    served = world.service.get_quote("AAPL")
    with pytest.raises(ValueError, match="exactly one"):
        BatchQuote("AAPL")
    with pytest.raises(ValueError, match="exactly one"):
        BatchQuote("AAPL", quote=served, error=ProviderUnavailable("yahoo", "down"))
