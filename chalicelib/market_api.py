"""The market routes' bodies: the market-data service's domain answers (``Served``) mapped onto the REST
wire models, in one place (``to_wire``); the WebSocket updates do the same in models/streaming/outbound.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel

from chalicelib.models.api import (
    BatchQuoteItem,
    BatchQuotesResponse,
    IndicesResponse,
    MoversResponse,
    OverviewResponse,
    QuoteError,
    SectorsResponse,
    SentimentResponse,
)
from chalicelib.models.market import QuoteResponse
from chalicelib.models.served import Served
from chalicelib.services.market_data import BatchQuote, Overview

P = TypeVar("P", bound=BaseModel)
W = TypeVar("W", bound=BaseModel)


def to_wire(served: Served[P], response: type[W]) -> W:
    """The response model: the payload's fields and the provenance, flat (the one place a served
    provenance is put on the REST wire). Nothing is validated again: the payload was validated when
    fetched or read from the cache, and the provenance is typed. Every response model extends its payload
    model, so a mismatched pair (which nothing would catch downstream) is refused here."""
    if type(served.payload) not in response.__mro__:
        raise TypeError(f"{response.__name__} does not extend {type(served.payload).__name__}")
    provenance = served.provenance
    return response.model_construct(
        **dict(served.payload),
        source=provenance.source,
        retrieved_at=provenance.retrieved_at,
        cached=provenance.cached,
        stale=provenance.stale,
        replay_day=provenance.replay_day,
    )


def batch_response(batch: Sequence[BatchQuote]) -> BatchQuotesResponse:
    """GET /quotes: each symbol's quote, or its error item, in request order."""
    return BatchQuotesResponse(quotes=[_batch_item(item) for item in batch])


def _batch_item(item: BatchQuote) -> BatchQuoteItem:
    if item.quote is not None:
        return BatchQuoteItem(symbol=item.symbol, quote=to_wire(item.quote, QuoteResponse))
    error = QuoteError(code=item.error.code, message=item.error.message) if item.error is not None else None
    return BatchQuoteItem(symbol=item.symbol, error=error)


def overview_response(overview: Overview) -> OverviewResponse:
    """GET /overview: each part with its own provenance; a part not served is null (named in ``errors``)."""

    def part(served: Served[P] | None, response: type[W]) -> W | None:
        return None if served is None else to_wire(served, response)

    return OverviewResponse(
        indices=part(overview.indices, IndicesResponse),
        sectors=part(overview.sectors, SectorsResponse),
        gainers=part(overview.gainers, MoversResponse),
        losers=part(overview.losers, MoversResponse),
        actives=part(overview.actives, MoversResponse),
        sentiment=part(overview.sentiment, SentimentResponse),
        errors=overview.errors,
    )
