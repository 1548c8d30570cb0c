"""Tiingo news: ``/tiingo/news?tickers=&limit=&sortBy=publishedDate``, newest first. Tiingo news has no
sentiment score: None. Items without a title or URL cannot be served and are skipped."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, NewsAsk, ProviderRequest
from chalicelib.adapters.providers.tiingo import _common as tiingo
from chalicelib.adapters.providers.values import text
from chalicelib.models.market import DataKind, NewsArticle

KIND = DataKind.NEWS


def build(ask: NewsAsk) -> ProviderRequest:
    if ask.limit < 1:
        raise ValueError("limit must be at least 1")
    # Tiingo spells tickers lower-case in news (recordings: tickers=aapl).
    params = {"tickers": ask.symbol.lower(), "limit": str(ask.limit), "sortBy": "publishedDate"}
    return ProviderRequest(url=f"{ask.base_url}/tiingo/news", params=params, headers=tiingo.headers())


def _symbols(tickers: object) -> list[str]:
    if not isinstance(tickers, list):
        return []
    return [t.strip().upper() for t in tickers if isinstance(t, str) and t.strip()]


def parse(reply: JsonReply, ask: NewsAsk) -> list[NewsArticle]:
    return [
        NewsArticle(
            title=title,
            url=url,
            publisher=text(item.get("source")),
            published_at=tiingo.parse_timestamp(item.get("publishedDate"), ask.provider),
            summary=text(item.get("description")),
            symbols=_symbols(item.get("tickers")),
            sentiment_score=None,
        )
        for item in tiingo.expect_list(reply.payload, ask.provider, "news")
        if (title := text(item.get("title"))) is not None and (url := text(item.get("url"))) is not None
    ][: ask.limit]
