"""The market sentiment composite: a documented formula over real inputs (README "Market sentiment").

    component scores, each on -1 (fear) .. +1 (greed):
      vix             weight 0.4   clamp((20 - VIX) / 10)          VIX 10 -> +1, 20 -> 0, 30 -> -1
      sp500_momentum  weight 0.3   clamp(S&P 500 day change % / 2)  ±2 % in a day is the extreme
      sector_breadth  weight 0.3   2 * advancers / (advancers + decliners) - 1, over the 11 sector ETFs
    composite = sum weight * score / sum weight, over the components whose input is available
    score     = (composite + 1) * 50                               0 .. 100
    label     = extreme fear < 20 ≤ fear < 40 ≤ neutral ≤ 60 < greed ≤ 80 < extreme greed

Pure: it reads the indices and sectors payloads (served through their own caches), never a provider.
"""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.models.api import IndicesPayload, SectorsPayload, SentimentComponent, SentimentPayload

FORMULA = (
    "score = 50 * (1 + sum(w*s) / sum(w)) over available components; "
    "s_vix = clamp((20 - VIX) / 10), w 0.4; s_momentum = clamp(S&P 500 % change / 2), w 0.3; "
    "s_breadth = 2 * advancers / (advancers + decliners) - 1 over the 11 sector ETFs, w 0.3"
)


def _clamp(value: float) -> float:
    return max(-1.0, min(1.0, value))


def label_for(score: float) -> str:
    if score < 20:
        return "extreme fear"
    if score < 40:
        return "fear"
    if score <= 60:
        return "neutral"
    if score <= 80:
        return "greed"
    return "extreme greed"


def composite(indices: IndicesPayload | None, sectors: SectorsPayload | None) -> SentimentPayload | None:
    """The composite from what is available; None when no input is."""
    by_symbol = {q.symbol: q for q in indices.indices} if indices else {}
    vix = by_symbol.get("^VIX")
    spx = by_symbol.get("^GSPC")
    components = [
        SentimentComponent(
            name="vix",
            weight=0.4,
            value=vix.price if vix else None,
            score=round(_clamp((20.0 - vix.price) / 10.0), 4) if vix else None,
        ),
        SentimentComponent(
            name="sp500_momentum",
            weight=0.3,
            value=spx.change_percent if spx else None,
            score=round(_clamp(spx.change_percent / 2.0), 4) if spx and spx.change_percent is not None else None,
        ),
    ]
    breadth_value: float | None = None
    breadth_score: float | None = None
    if sectors and sectors.advancers + sectors.decliners > 0:
        breadth_value = round(sectors.advancers / (sectors.advancers + sectors.decliners), 4)
        breadth_score = round(2 * breadth_value - 1, 4)
    components.append(SentimentComponent(name="sector_breadth", weight=0.3, value=breadth_value, score=breadth_score))

    available = [c for c in components if c.score is not None]
    if not available:
        return None
    total_weight = sum(c.weight for c in available)
    mean = sum(c.weight * (c.score or 0.0) for c in available) / total_weight
    score = round((mean + 1.0) * 50.0, 1)
    times = [r.as_of for r in (indices, sectors) if r is not None]
    return SentimentPayload(
        score=score,
        label=label_for(score),
        components=components,
        formula=FORMULA,
        as_of=max(times) if times else datetime.now(UTC),
    )
