"""Tiingo news: ``/tiingo/news?tickers=&limit=&sortBy=publishedDate``."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, NewsAsk, ProviderRequest
from chalicelib.adapters.providers.tiingo._common import TIINGO_BASE_URL, expect_list, headers, parse_timestamp
from chalicelib.adapters.providers.values import text
from chalicelib.models.market import DataKind, NewsArticle


def build_news_request(symbol: str, limit: int, *, base_url: str = TIINGO_BASE_URL) -> ProviderRequest:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/tiingo/news",
        # Tiingo spells tickers lower-case in news (recordings: tickers=aapl).
        params={"tickers": symbol.lower(), "limit": str(limit), "sortBy": "publishedDate"},
        headers=headers(),
    )


def parse_news_response(payload: object, provider: str, limit: int) -> list[NewsArticle]:
    """Items newest first as asked. Tiingo news has no sentiment score: None. Items without a title or
    URL cannot be served and are skipped."""
    articles: list[NewsArticle] = []
    for item in expect_list(payload, provider, "news"):
        title, url = text(item.get("title")), text(item.get("url"))
        if title is None or url is None:
            continue
        tickers = item.get("tickers")
        symbols = (
            [t.strip().upper() for t in tickers if isinstance(t, str) and t.strip()]
            if isinstance(tickers, list)
            else []
        )
        articles.append(
            NewsArticle(
                title=title,
                url=url,
                publisher=text(item.get("source")),
                published_at=parse_timestamp(item.get("publishedDate"), provider),
                summary=text(item.get("description")),
                symbols=symbols,
                sentiment_score=None,
            )
        )
    return articles[:limit]


KIND = DataKind.NEWS


def build(ask: NewsAsk) -> ProviderRequest:
    return build_news_request(ask.symbol, ask.limit, base_url=ask.base_url)


def parse(reply: JsonReply, ask: NewsAsk) -> list[NewsArticle]:
    return parse_news_response(reply.payload, ask.provider, ask.limit)
