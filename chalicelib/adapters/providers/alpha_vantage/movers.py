"""Alpha Vantage TOP_GAINERS_LOSERS: ``top_gainers`` / ``top_losers`` / ``most_actively_traded`` items
({ticker, price, change_amount, change_percentage, volume}, all strings), stamped with ``last_updated``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from chalicelib.adapters.providers.alpha_vantage._common import base_params, require, zone
from chalicelib.adapters.providers.calls import Answered, JsonReply, MoversAsk, ProviderRequest
from chalicelib.adapters.providers.values import integer, number, text
from chalicelib.errors import ProviderParseError, ValidationFailed
from chalicelib.models.market import DataKind, MoverType, Quote, normalize_symbol

_MOVER_KEYS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "top_gainers",
    MoverType.LOSERS: "top_losers",
    MoverType.ACTIVES: "most_actively_traded",
}


def _last_updated(value: object, provider: str) -> datetime:
    # "2024-01-12 16:16:00 US/Eastern": a local date-time followed by the zone's name. A stamp without a
    # zone name is read as US/Eastern, the zone Alpha Vantage names in all its US market metadata.
    stamp_text = text(value)
    if stamp_text is None:
        raise ProviderParseError(provider, "movers payload has no last_updated")
    parts = stamp_text.split(" ")
    stamp, zone_name = (" ".join(parts[:2]), " ".join(parts[2:])) if len(parts) > 2 else (stamp_text, "")
    try:
        local = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise ProviderParseError(provider, f"unexpected last_updated {stamp_text[:40]!r}") from exc
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    return local.replace(tzinfo=zone(zone_name or None, provider)).astimezone(UTC)


def parse(reply: JsonReply, ask: MoversAsk) -> list[Quote]:
    """At most ``limit`` Quotes. Items whose ticker is not a valid symbol (the list includes odd
    OTC/warrant spellings) are skipped."""
    provider, limit, key = ask.provider, ask.limit, _MOVER_KEYS[ask.mover_type]
    body, items = require(reply.payload, key, provider, symbol_call=False)
    if not isinstance(items, list):
        raise ProviderParseError(provider, f"{key!r} is not a list")
    as_of = _last_updated(body.get("last_updated"), provider)
    quotes: list[Quote] = []
    for item in items:
        if len(quotes) >= limit:
            break
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "mover item is not an object")
        try:
            symbol = normalize_symbol(str(item.get("ticker") or ""))
        except ValidationFailed:
            continue
        price = number(item.get("price"), strict=True)
        if price is None:
            continue
        quotes.append(
            Quote(
                symbol=symbol,
                price=price,
                change=number(item.get("change_amount"), strict=True),
                change_percent=number(item.get("change_percentage"), strict=True),
                volume=integer(item.get("volume"), strict=True),
                as_of=as_of,
            )
        )
    return quotes


KIND = DataKind.MOVERS


def build(ask: MoversAsk) -> ProviderRequest | Answered[list[Quote]]:
    if ask.limit < 1:
        return Answered([])
    return ProviderRequest(url=ask.base_url, params=base_params("TOP_GAINERS_LOSERS"))
