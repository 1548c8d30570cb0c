"""Yahoo news: v1 ``/v1/finance/search?q=<symbol>`` (its ``news[]``). Yahoo gives no summary and no
sentiment; items without a title, a link or a publish time are left out."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, NewsAsk, ProviderRequest
from chalicelib.adapters.providers.values import epoch, first_text
from chalicelib.adapters.providers.yahoo._common import checked_terms, search_body
from chalicelib.errors import ProviderParseError
from chalicelib.models.market import DataKind, NewsArticle

KIND = DataKind.NEWS


def build(ask: NewsAsk) -> ProviderRequest:
    symbol = checked_terms(ask.symbol, ask.limit, ask.provider).upper()
    params = {"q": symbol, "quotesCount": "0", "newsCount": str(ask.limit)}
    return ProviderRequest(url=f"{ask.base_url}/v1/finance/search", params=params)


def parse(reply: JsonReply, ask: NewsAsk) -> list[NewsArticle]:
    items = search_body(reply.payload, ask.provider).get("news", [])
    if not isinstance(items, list):
        raise ProviderParseError(ask.provider, "search news is not a list")
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
    return articles[: ask.limit]
