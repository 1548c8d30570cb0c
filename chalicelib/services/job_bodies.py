"""The scheduled jobs' bodies: what each job does with the services (the runner, in jobs.py, guards
and records every run; the schedules are in job_schedules.py).

Quote refresh (subscribed + popular + recently read symbols, batched, within the shared quotas;
publishes ``quote_update`` for values that changed), indices / market data (sectors, movers) /
sentiment refresh (``market_update``, ``sector_update``, ``sentiment_update``), cache warming (quotes,
profiles and 1y/1d history of the popular list) and cleanup (expired connections, subscriptions and
job runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib import observability
from chalicelib.errors import AppError, StoreUnavailable
from chalicelib.models.market import Interval, MoverType, Period
from chalicelib.models.streaming import (
    QUOTE_TOPIC_PREFIX,
    StreamUpdate,
    indices_update,
    movers_update,
    sectors_update,
    sentiment_update,
)
from chalicelib.ports import Broadcaster, ConnectionStore, JobRunStore
from chalicelib.services.jobs import JobContext
from chalicelib.services.market_data import MarketDataService
from chalicelib.services.streaming import StreamingService

logger = observability.logger

MOVERS_DEPTH = 25


@dataclass(frozen=True)
class JobDeps:
    market: MarketDataService
    streaming: StreamingService
    store: ConnectionStore
    runs: JobRunStore
    broadcaster: Callable[[], Broadcaster]  # built on first use: only jobs that publish need the endpoint
    popular_symbols: tuple[str, ...]
    quote_refresh_max_symbols: int  # a run's total once hot symbols join (JOB_QUOTE_REFRESH_MAX_SYMBOLS)
    clock: Callable[[], float] = time.time


def refresh_quotes(deps: JobDeps, context: JobContext) -> None:
    """Subscribed + popular + hot (recently read) symbols, de-duplicated, in as few upstream calls as
    the vendors allow, inside the shared quotas (an exhausted vendor is skipped; what no vendor can take
    this round waits for the next).

    Refresh-ahead: hot symbols are refreshed whether or not their entry is still fresh, so a reader of a
    symbol it looked at recently finds it cached. Subscribed and popular symbols always go; hot symbols
    fill the run up to ``quote_refresh_max_symbols`` in all, most recently read first."""
    # The registry's copy in Redis (the publish below reads it again: one round trip, and fresher).
    topics = deps.streaming.topic_registry().topics()
    subscribed = [t.removeprefix(QUOTE_TOPIC_PREFIX) for t in topics if t.startswith(QUOTE_TOPIC_PREFIX)]
    symbols = list(dict.fromkeys([*subscribed, *deps.popular_symbols]))
    room = max(0, deps.quote_refresh_max_symbols - len(symbols))
    # Ask for enough that overlap with the symbols above cannot leave room unused.
    listed = set(symbols)
    candidates = [s for s in deps.market.recently_read_symbols(room + len(symbols)) if s not in listed]
    hot = candidates[:room]
    symbols.extend(hot)
    context.add("symbols", len(symbols))
    context.add("subscribed_symbols", len(subscribed))
    context.add("hot_symbols", len(hot))
    context.add("hot_deferred", len(candidates) - len(hot))
    quotes = deps.market.refresh_quotes(symbols, deadline=context.deadline)
    for vendor, count in quotes.upstream_calls.items():
        context.add(f"upstream_calls_{vendor}", count)
    context.add("refreshed", len(quotes))
    context.add("not_refreshed", len(symbols) - len(quotes))
    wanted = set(subscribed)
    report = deps.streaming.publish_quotes([q for s, q in quotes.items() if s in wanted], deps.broadcaster())
    context.add_publish(report)
    # After the round is on its way: a stale copy is renewed here rather than on some round's path, judged
    # by the copy the round read (read again only when removals since could decide). The round went out,
    # so a failed renewal does not fail the run: the copy stays in use, the next run retries.
    try:
        context.add("registry_read", int(deps.streaming.renew_registry_copy(seen=report.registry)))
    except StoreUnavailable as exc:
        context.add("registry_read_failed")
        logger.warning("registry copy not renewed", extra={"detail": exc.message})


def _publish(deps: JobDeps, context: JobContext, updates: list[StreamUpdate]) -> None:
    context.add("refreshed", len(updates))
    context.add_publish(deps.streaming.publish(updates, deps.broadcaster()))


def refresh_indices(deps: JobDeps, context: JobContext) -> None:
    _publish(deps, context, [indices_update(deps.market.get_indices(deadline=context.deadline, refresh=True))])


def refresh_market(deps: JobDeps, context: JobContext) -> None:
    """Sectors and movers (the overview is assembled from these caches on request)."""
    sectors = deps.market.get_sectors(deadline=context.deadline, refresh=True)
    movers = [deps.market.get_movers(kind, MOVERS_DEPTH, deadline=context.deadline, refresh=True) for kind in MoverType]
    _publish(deps, context, [sectors_update(sectors), movers_update(*movers)])


def refresh_sentiment(deps: JobDeps, context: JobContext) -> None:
    _publish(deps, context, [sentiment_update(deps.market.get_sentiment(deadline=context.deadline, refresh=True))])


def warm_cache(deps: JobDeps, context: JobContext) -> None:
    """Quotes, profiles and 1y/1d history of the popular list, ahead of traffic (read-through: what is
    fresh already costs nothing). Stops cleanly at the deadline; the next run picks up the rest."""
    context.add("quotes", len(deps.market.refresh_quotes(list(deps.popular_symbols))))
    for symbol in deps.popular_symbols:
        if context.remaining() <= 0:
            context.add("deferred", 1)
            continue
        for name, load in (
            ("profiles", lambda s: deps.market.get_profile(s, deadline=context.deadline)),
            ("histories", lambda s: deps.market.get_historical(s, Period.Y1, Interval.D1, deadline=context.deadline)),
        ):
            try:
                load(symbol)
                context.add(name)
            except AppError as exc:
                context.add(f"{name}_failed")
                logger.info("warming skipped an item", extra={"symbol": symbol, "what": name, "code": exc.code})


def cleanup(deps: JobDeps, context: JobContext) -> None:
    """What DynamoDB's TTL has not deleted yet (it deletes late; reads already filter it out). Cache keys
    all carry a Redis TTL (values, locks, counters), so no scheme leaves orphans there to sweep."""
    now = deps.clock()
    connections, subscriptions = deps.store.delete_expired(now=now)
    context.add("connections_removed", connections)
    context.add("subscriptions_removed", subscriptions)
    # After the removals above, which count down as they go: the recount then sees only live connections.
    repair = deps.store.repair_registry(now=now)
    context.add("registry_topic_counts_fixed", repair.topic_counts_fixed)
    context.add("registry_counters_fixed", repair.counters_fixed)
    context.add("registry_repairs_skipped", repair.skipped)
    deps.streaming.read_registry()  # the recount may have restored pairs the copy lacks, and drops removed ones
    deps.streaming.read_shards()  # and the shards' copies drop the connections removed above
    context.add("job_runs_removed", deps.runs.delete_expired(now=now))


BODIES: dict[str, Callable[[JobDeps, JobContext], None]] = {
    "refresh_quotes": refresh_quotes,
    "refresh_indices": refresh_indices,
    "refresh_market": refresh_market,
    "refresh_sentiment": refresh_sentiment,
    "warm_cache": warm_cache,
    "cleanup": cleanup,
}
