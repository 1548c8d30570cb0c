"""Alpha Vantage NEWS_SENTIMENT (``feed``), newest first."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.adapters.providers.alpha_vantage._common import BASE_URL, base_params, clip, require
from chalicelib.adapters.providers.calls import Answered, JsonReply, NewsAsk, ProviderRequest
from chalicelib.adapters.providers.values import json_object, number, text
from chalicelib.errors import ProviderNoData, ProviderParseError
from chalicelib.models.market import DataKind, NewsArticle

NEWS_MAX_LIMIT = 1000  # Alpha Vantage's documented maximum for NEWS_SENTIMENT's limit


def build_news_request(symbol: str, limit: int, *, base_url: str = BASE_URL) -> ProviderRequest:
    return ProviderRequest(
        url=base_url,
        params=base_params(
            "NEWS_SENTIMENT", tickers=symbol, sort="LATEST", limit=str(min(max(limit, 1), NEWS_MAX_LIMIT))
        ),
    )


def _published_at(value: object, provider: str) -> datetime:
    # "20220914T141049" (seconds optional: "20220914T1410"). The time is UTC: in the recorded feed a
    # Barron's item stamped 20220701T180900 has the id 1656698874 = 2022-07-01T18:07:54Z in its URL, and a
    # GlobeNewswire earnings release stamped 20220630T200300 went out at 16:03 New York time.
    stamp = text(value)
    for layout in ("%Y%m%dT%H%M%S", "%Y%m%dT%H%M"):
        try:
            return datetime.strptime(stamp or "", layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ProviderParseError(provider, f"unexpected time_published {str(value)[:20]!r}")


def parse_news_response(payload: object, provider: str, *, symbol: str, limit: int) -> list[NewsArticle]:
    """At most ``limit`` NewsArticles. The sentiment is the feed item's score for ``symbol``
    (``ticker_sentiment[].ticker_sentiment_score``, a string) when the item scores it, else the item's
    ``overall_sentiment_score``; ``symbols`` are the tickers the item scores."""
    body = json_object(payload, provider)
    information = body.get("Information")
    if "feed" not in body and isinstance(information, str) and "invalid input" in information.lower():
        # Seen in client code (not a recording) for tickers Alpha Vantage has no news coverage for.
        raise ProviderNoData(provider, f"no news for {symbol!r}: {clip(information)}")
    _, feed = require(body, "feed", provider, symbol_call=False)
    if not isinstance(feed, list):
        raise ProviderParseError(provider, "'feed' is not a list")
    wanted = symbol.upper()
    articles: list[NewsArticle] = []
    for item in feed[: max(limit, 0)]:
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "news item is not an object")
        tickers = [t for t in item.get("ticker_sentiment") or [] if isinstance(t, dict)]
        own = next((t for t in tickers if str(t.get("ticker", "")).upper() == wanted), None)
        score = number(own.get("ticker_sentiment_score"), strict=True) if own is not None else None
        if score is None:
            score = number(item.get("overall_sentiment_score"), strict=True)
        articles.append(
            NewsArticle(
                title=str(item.get("title") or ""),
                url=str(item.get("url") or ""),
                publisher=text(item.get("source")),
                published_at=_published_at(item.get("time_published"), provider),
                summary=text(item.get("summary")),
                symbols=[str(t["ticker"]) for t in tickers if text(t.get("ticker"))],
                sentiment_score=score,
            )
        )
    return [article for article in articles if article.title and article.url]


KIND = DataKind.NEWS


def build(ask: NewsAsk) -> ProviderRequest | Answered[list[NewsArticle]]:
    if ask.limit < 1:
        return Answered([])
    return build_news_request(ask.symbol.strip().upper(), ask.limit, base_url=ask.base_url)


def parse(reply: JsonReply, ask: NewsAsk) -> list[NewsArticle]:
    symbol = ask.symbol.strip().upper()
    return parse_news_response(reply.payload, ask.provider, symbol=symbol, limit=ask.limit)
