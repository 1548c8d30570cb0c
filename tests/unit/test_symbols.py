"""Ticker validation: what may reach a cache key or a provider URL."""

from __future__ import annotations

import pytest

from chalicelib.errors import ValidationFailed
from chalicelib.models.market import normalize_symbol


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AAPL", "AAPL"),
        ("aapl", "AAPL"),
        (" msft ", "MSFT"),
        ("BRK-B", "BRK-B"),
        ("BRK.B", "BRK-B"),
        ("brk.b", "BRK-B"),
        ("BF.B", "BF-B"),
        ("HEI.A", "HEI-A"),
        ("VOD.L", "VOD.L"),
        ("RY.TO", "RY.TO"),
        ("^GSPC", "^GSPC"),
        ("EURUSD=X", "EURUSD=X"),
        ("BTC-USD", "BTC-USD"),
        ("GC=F", "GC=F"),
        ("A", "A"),
        ("ABCDEFGHIJKL", "ABCDEFGHIJKL"),
        ("^ABCDEFGHIJKL", "^ABCDEFGHIJKL"),
    ],
)
def test_valid_tickers_are_normalized(raw: str, expected: str) -> None:
    assert normalize_symbol(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "required"),
        ("../etc", "not a valid ticker"),
        ("..", "not a valid ticker"),
        ("A" * 40, "too long"),
        ("ABCDEFGHIJKLM", "too long"),
        ("^ABCDEFGHIJKLM", "too long"),
        ("AAPL\x00", "control characters"),
        ("\x1bAAPL", "control characters"),
        ("AA\x7fPL", "control characters"),
        ("AA PL", "not a valid ticker"),
        ("-AAPL", "not a valid ticker"),
        ("^^GSPC", "not a valid ticker"),
        ("AAPL/MSFT", "not a valid ticker"),
        ("ÄPPLE", "not a valid ticker"),
        ("%2e%2e", "not a valid ticker"),
    ],
)
def test_garbage_is_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_symbol(raw)
    assert reason in caught.value.message
    assert caught.value.status_code == 400


def test_every_dotted_ticker_in_the_bundled_sp500_list_maps_to_the_spelling_the_directory_serves() -> None:
    # GIVEN the bundled S&P 500 list (dotted class shares) and the directory built from it (dashes)
    import csv

    from chalicelib.services.symbol_directory import CONSTITUENTS_CSV, constituents

    with CONSTITUENTS_CSV.open(newline="", encoding="utf-8") as handle:
        dotted = [row["Symbol"] for row in csv.DictReader(handle) if "." in row["Symbol"]]
    served = {c.symbol for c in constituents()}
    # THEN each dotted input normalizes to a symbol the directory (and so the providers) spell the same way
    assert dotted, "the list is expected to hold class shares such as BRK.B"
    assert all(normalize_symbol(symbol) in served for symbol in dotted)
