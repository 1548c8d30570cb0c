"""Yahoo news: v1 ``/v1/finance/search?q=<symbol>`` (its ``news[]``)."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, NewsAsk, ProviderRequest
from chalicelib.adapters.providers.values import epoch, first_text
from chalicelib.adapters.providers.yahoo._common import DEFAULT_BASE_URL, search_body
from chalicelib.errors import ProviderParseError, ProviderUnsupported
from chalicelib.models.market import DataKind, NewsArticle


def build_news_request(symbol: str, limit: int, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    if not symbol or not symbol.strip():
        raise ValueError("a symbol is required")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/v1/finance/search",
        params={"q": symbol.strip().upper(), "quotesCount": "0", "newsCount": str(limit)},
    )


def parse_news_response(payload: object, provider: str, limit: int) -> list[NewsArticle]:
    """``news[]`` onto NewsArticle (Yahoo gives no summary and no sentiment). Items without a title, a
    link or a publish time are left out."""
    items = search_body(payload, provider).get("news", [])
    if not isinstance(items, list):
        raise ProviderParseError(provider, "search news is not a list")
    articles: list[NewsArticle] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        title, link = first_text(item, "title"), first_text(item, "link")
        published = epoch(item.get("providerPublishTime"))
        if title is None or link is None or published is None:
            continue
        related = item.get("relatedTickers")
        articles.append(
            NewsArticle(
                title=title,
                url=link,
                publisher=first_text(item, "publisher"),
                published_at=published,
                summary=None,
                symbols=[t for t in related if isinstance(t, str)] if isinstance(related, list) else [],
                sentiment_score=None,
            )
        )
    return articles[:limit]


KIND = DataKind.NEWS


def build(ask: NewsAsk) -> ProviderRequest:
    try:
        return build_news_request(ask.symbol, ask.limit, base_url=ask.base_url)
    except ValueError as exc:
        raise ProviderUnsupported(ask.provider, str(exc)) from None


def parse(reply: JsonReply, ask: NewsAsk) -> list[NewsArticle]:
    return parse_news_response(reply.payload, ask.provider, ask.limit)
