"""The MarketDataProvider port's own promises, over a real vendor adapter (YahooProvider answering from
recorded Yahoo responses) and the InMemoryProvider fake the unit tests use: quotes keyed by symbol,
unknown symbols absent rather than an error, a vendor's explicit "not listed" as ProviderSymbolNotFound
with its words. Each vendor's own mapping is tested in its test_<vendor>_provider.py."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from chalicelib.errors import ProviderSymbolNotFound
from chalicelib.models.market import DataKind
from chalicelib.ports import MarketDataProvider
from tests.fakes.provider import InMemoryProvider, quote
from tests.fakes.yahoo_http import CannedResponse, recorded, yahoo_provider, yahoo_transport

NOT_LISTED = b'{"quoteResponse":{"result":[],"error":{"code":"Not Found","description":"APTV was not yet listed"}}}'


class MakeProvider(Protocol):
    def __call__(self, scenario: str) -> MarketDataProvider: ...


@pytest.fixture(params=["yahoo", "in_memory"])
def make_provider(request: pytest.FixtureRequest, tmp_path: Path) -> MakeProvider:
    """A provider ready for one scenario: ``batch`` (knows AAPL and BABA), ``unknown`` (knows nothing of
    SIX), ``not_listed`` (says APTV was not yet listed)."""

    def make(scenario: str) -> MarketDataProvider:
        if request.param == "in_memory":
            fake = InMemoryProvider("yahoo", [quote("AAPL", 244.6), quote("BABA", 124.73)])
            fake.not_found["APTV"] = "APTV was not yet listed"
            return fake
        answers = {
            "batch": recorded("quote_AAPL_BABA_batch"),
            "unknown": recorded("quote_SIX_unknown_symbol_empty"),
            "not_listed": CannedResponse(200, NOT_LISTED, "application/json"),
        }
        return yahoo_provider(yahoo_transport([answers[scenario]]), tmp_path)

    return make


def test_it_describes_itself(make_provider: MakeProvider) -> None:
    provider = make_provider("batch")
    assert provider.name
    assert provider.vendor == "yahoo"
    assert DataKind.QUOTE in provider.capabilities
    assert provider.max_symbols_per_quote_call >= 2


def test_quotes_are_keyed_by_symbol(make_provider: MakeProvider) -> None:
    quotes = make_provider("batch").get_quotes(["AAPL", "BABA"], timeout_seconds=2)
    assert set(quotes) == {"AAPL", "BABA"}
    assert all(q.symbol == symbol for symbol, q in quotes.items())
    assert quotes["BABA"].price == 124.73
    assert all(q.as_of.utcoffset() is not None for q in quotes.values())


def test_an_unknown_symbol_is_absent_not_an_error(make_provider: MakeProvider) -> None:
    assert make_provider("unknown").get_quotes(["SIX"], timeout_seconds=2) == {}


def test_a_vendors_not_listed_is_symbol_not_found_with_its_words(make_provider: MakeProvider) -> None:
    with pytest.raises(ProviderSymbolNotFound) as caught:
        make_provider("not_listed").get_quotes(["APTV"], timeout_seconds=2)
    assert "APTV was not yet listed" in caught.value.message
    assert not caught.value.counts_as_failure
