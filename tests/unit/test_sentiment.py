"""The sentiment composite: the documented formula, checked by hand-computed cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.models.api import IndexQuote, IndicesPayload, SectorPerformance, SectorsPayload
from chalicelib.services.sentiment import composite, label_for

AT = datetime(2025, 2, 14, 21, 0, tzinfo=UTC)


def _indices(vix: float | None, spx_change: float | None) -> IndicesPayload:
    quotes = []
    if vix is not None:
        quotes.append(IndexQuote(symbol="^VIX", price=vix, as_of=AT, index_name="CBOE Volatility Index"))
    if spx_change is not None:
        quotes.append(IndexQuote(symbol="^GSPC", price=6000, change_percent=spx_change, as_of=AT, index_name="S&P 500"))
    return IndicesPayload(indices=quotes, unavailable=[], as_of=AT)


def _sectors(advancers: int, decliners: int) -> SectorsPayload:
    sector = SectorPerformance(sector="Energy", etf="XLE", change_percent=1.0, as_of=AT)
    return SectorsPayload(sectors=[sector], advancers=advancers, decliners=decliners, unavailable=[], as_of=AT)


def test_all_components_weighted_as_documented() -> None:
    # vix 15 → +0.5 (w .4); S&P +1 % → +0.5 (w .3); 8 of 11 up → 2*8/11-1 = 0.4545 (w .3)
    payload = composite(_indices(15, 1.0), _sectors(8, 3))
    assert payload is not None
    expected = (0.4 * 0.5 + 0.3 * 0.5 + 0.3 * 0.4545) / 1.0
    assert payload.score == pytest.approx(round((expected + 1) * 50, 1))
    assert payload.label == "greed"


def test_missing_inputs_are_renormalised_away() -> None:
    payload = composite(_indices(None, -4.0), None)  # only momentum: clamp(-2) = -1
    assert payload is not None
    assert payload.score == 0.0
    assert payload.label == "extreme fear"
    assert [c.score for c in payload.components] == [None, -1.0, None]


def test_no_inputs_means_no_sentiment() -> None:
    assert composite(None, None) is None


@pytest.mark.parametrize(
    ("score", "label"),
    [(0, "extreme fear"), (19.9, "extreme fear"), (20, "fear"), (40, "neutral"), (60, "neutral"), (60.1, "greed"),
     (80, "greed"), (80.1, "extreme greed")],
)  # fmt: skip
def test_labels(score: float, label: str) -> None:
    assert label_for(score) == label
