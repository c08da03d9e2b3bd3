"""One pass over feeds: fetch -> parse -> normalize -> store -> cluster. Publishing is publish.py's.

Two callers, one function each:

    run_pass (aggregator update: every enabled feed)      update_feeds (the service: one batch of due feeds)
      store.sync_feeds, feed_schedules                      |
      update_feeds ------------------------------------->  for each feed, concurrently:
                                                              Fetcher.fetch          conditional GET (fetch.py)
                                                              prepare_result         parse.py, normalize.py and each
                                                                                     entry's term vector, in the parse
                                                                                     worker (workers.py) or a thread
                                                              store_result           decide.py -> Store.save_feed
                                                              after_store(...)       the caller plans the next fetch
                                                                                     (record_next_fetch)
      cluster_new_entries (clustering.py)                   (the service clusters and publishes later,
      publish_outputs (publish.py)                           debounced: publisher.py)

Each feed is fetched concurrently (bounded in fetch.py) and stored in its own transaction as soon as it
arrives, so one bad feed never stops the others and a crash loses at most the feeds still in flight. Story
clustering runs after the feeds, over every entry that has no story yet, in publication order, so a crash
between the two steps is repaired by the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import datetime

import httpx

from .config import Config
from .errors import AggregatorError, ParseError, StoreError
from .fetch import Fetcher
from .models import Entry, FeedOutcome, FeedSchedule, FeedState, FetchResult, FetchStatus, ParsedFeed, PassSummary, Plan
from .normalize import identify, normalize_entry
from .publish import publish_outputs
from .schedule import Policy, declared_interval, plan_next_fetch
from .store import Store
from .workers import start_worker

__all__ = [
    "AfterStore",
    "OnFeed",
    "Prepared",
    "prepare_result",
    "record_next_fetch",
    "run_pass",
    "store_result",
    "update_feeds",
]

log = logging.getLogger(__name__)

# Called as each feed of `aggregator update` is done (its progress bar).
OnFeed = Callable[[FeedOutcome], None]
# Called right after each feed is stored, with what was fetched: the caller plans the feed's next fetch from
# the response (status, Retry-After, cache headers, redirects).
AfterStore = Callable[[FeedState, FetchResult, FeedOutcome], None]


async def run_pass(
    config: Config,
    store: Store,
    now: datetime,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_feed: OnFeed | None = None,
) -> PassSummary:
    """`aggregator update`: fetch and store every configured feed but those the service disabled, record each
    answer as the service would (a 410 disables its feed, a confirmed permanent redirect moves it), cluster
    the new entries into stories and write the outputs."""
    started = time.perf_counter()
    synced = store.sync_feeds(config.sources(), now)
    schedules = store.feed_schedules()  # as they were before this pass: what its plans start from
    states = [state for state in synced.values() if not schedules[state.feed_id].disabled_reason]
    record = _schedule_recorder(store, config, synced, schedules, now)

    def after_store(state: FeedState, result: FetchResult, outcome: FeedOutcome) -> None:
        if on_feed is not None:
            on_feed(outcome)
        record(state, result, outcome)

    async with Fetcher(config.fetch, transport, allow_private_addresses=config.allow_private_addresses) as fetcher:
        stored = await update_feeds(store, fetcher, states, now, after_store=after_store)
    cluster_started = time.perf_counter()
    clustered = 0
    if store.has_unassigned():  # a pass that stored nothing (every feed 304) does not even import clustering
        from .clustering import cluster_new_entries

        clustered = cluster_new_entries(store, config, now)
    cluster_seconds = time.perf_counter() - cluster_started
    publish_outputs(config, store, now)
    return replace(stored, seconds=time.perf_counter() - started, clustered=clustered, cluster_seconds=cluster_seconds)


async def update_feeds(
    store: Store,
    fetcher: Fetcher,
    feeds: Sequence[FeedState],
    now: datetime,
    *,
    after_store: AfterStore | None = None,
) -> PassSummary:
    """Fetch, parse, normalize and store each of `feeds` concurrently; `after_store` hears of each as it is stored.

    The service passes its long-lived `fetcher` (politeness limits and keep-alive span passes) and clusters
    and publishes itself, debounced across its many small passes. Only a database failure stops the pass.
    """
    started = time.perf_counter()
    outcomes: list[FeedOutcome] = []
    # Each feed goes fetch -> parse -> store in its own task, and at most this many hold a body at once:
    # bodies are freed as soon as their feed is stored, not kept by finished tasks until the pass ends.
    in_flight = asyncio.Semaphore(2 * fetcher.settings.concurrency)
    async with contextlib.AsyncExitStack() as stack:
        pool = start_worker(len(feeds))
        if pool is not None:
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)

        async def update_one(state: FeedState) -> None:
            async with in_flight:
                result = FetchResult(state.url, FetchStatus.FAILED)
                try:
                    result = await fetcher.fetch(state)
                    # parsing a large or hostile feed takes seconds of CPU: in a worker process (or a thread),
                    # so the other fetches keep reading their sockets and no deadline runs out waiting for it
                    unchanged = result.body_hash == state.body_hash  # the same bytes as last time: never parsed
                    prepared = None
                    if not unchanged and result.status is FetchStatus.OK:
                        prepared = await _prepare(pool, result, now, store.source_hashes(state.feed_id))
                    outcome = store_result(store, state, result, now, prepared)
                except StoreError:
                    raise  # the database itself failed: the pass stops (exit code 3), whatever the feed
                except Exception as e:  # a bug met on this feed's input costs this feed, never the pass
                    outcome = _record_crash(store, state, result, e, now)
            log.info(
                "fetched %s: %s %s, %d bytes, %.0f ms, %d new",
                result.url, outcome.status.value, result.http_status or "-", outcome.bytes,
                result.elapsed_ms, outcome.new,
            )  # fmt: skip
            outcomes.append(outcome)
            if after_store is not None:
                after_store(state, result, outcome)

        tasks = [asyncio.ensure_future(update_one(state)) for state in feeds]
        for task in tasks:  # a cancelled pass (service shutdown) leaves no fetch running behind it
            stack.callback(task.cancel)
        for next_done in asyncio.as_completed(tasks):
            await next_done
    outcomes.sort(key=lambda o: o.url)
    return PassSummary(outcomes=tuple(outcomes), seconds=time.perf_counter() - started)


# What parsing a fetched body produced: the feed and its normalized entries, or the ParseError.
Prepared = tuple[ParsedFeed, list[Entry]] | ParseError


async def _prepare(
    pool: ProcessPoolExecutor | None, result: FetchResult, now: datetime, stored: Mapping[str, str]
) -> Prepared | None:
    """prepare_result in the worker process, or in a thread without one (or when the worker died)."""
    if result.status is not FetchStatus.OK or result.body is None:
        return None
    if pool is not None:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, prepare_result, result, now, stored)
        except BrokenProcessPool:
            log.warning("the parsing worker died on %s; parsing it in a thread", result.url)
    return await asyncio.to_thread(prepare_result, result, now, stored)


def prepare_result(result: FetchResult, now: datetime, stored: Mapping[str, str] | None = None) -> Prepared | None:
    """Parse and normalize a fetched body (pure, safe in a worker thread); None when there is no body.

    `stored` (guid -> source hash of the feed's stored entries) names the entries the feed repeats as it
    sent them before: they are left out, not normalized again (a changed feed usually repeats dozens). The
    others also get their term vector for story matching.
    """
    if result.status is not FetchStatus.OK or result.body is None:
        return None
    # imported on first use (feedparser, lxml, dedup's tables: 17 MB): a pass where every feed answers 304
    # parses nothing
    from .dedup import term_vector
    from .parse import parse_feed

    base_url = result.final_url or result.url
    try:
        parsed = parse_feed(result.body, dict(result.headers, **{"content-location": base_url}))
    except ParseError as e:
        return e
    entries: list[Entry] = []
    seen: set[str] = set()
    dropped: list[Exception] = []
    for item in parsed.entries:
        # each entry on its own: one a bug of ours cannot read is dropped and named, its feed is stored
        try:
            if stored:  # identifying costs ~20 us an entry: only a feed with stored entries can repeat any
                guid, source = identify(item, base_url)
                if guid in seen:  # a feed that repeats an id: the first occurrence wins (as Store.save_feed)
                    continue
                seen.add(guid)
                if stored.get(guid) == source:
                    continue
            entry = normalize_entry(item, base_url, now)
            entries.append(replace(entry, terms=term_vector(entry.title, entry.summary_text, entry.canonical_url)))
        except Exception as e:
            if not dropped:
                log.error("%s: cannot normalize an entry (a bug); dropped it", result.url, exc_info=True)
            dropped.append(e)
    if dropped:
        parsed = replace(parsed, warning=_join(parsed.warning, _dropped_note(dropped, len(parsed.entries))))
    return parsed, entries


def _dropped_note(errors: Sequence[Exception], total: int) -> str:
    first = errors[0]
    return (
        f"dropped {len(errors)} of {total} entries that could not be normalized "
        f"(first: {type(first).__name__}: {_one_line(str(first))[:300]})"
    )


def _join(*notes: str | None) -> str:
    return "; ".join(note for note in notes if note)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "no message"


def _record_crash(store: Store, state: FeedState, result: FetchResult, error: Exception, now: datetime) -> FeedOutcome:
    """An unexpected exception while updating one feed: logged with its traceback, stored as the feed's failure."""
    log.error("%s: unexpected error while updating the feed (a bug)", state.url, exc_info=error)
    message = f"unexpected error (a bug): {type(error).__name__}: {_one_line(str(error))[:300]}"
    store.record_failure(state, result.http_status, message, now)
    return FeedOutcome(
        result.url, FetchStatus.FAILED, error=message, http_status=result.http_status, elapsed_ms=result.elapsed_ms
    )


def store_result(
    store: Store, state: FeedState, result: FetchResult, now: datetime, prepared: Prepared | None = None
) -> FeedOutcome:
    """Store one fetched feed, parsed here unless `prepared` by prepare_result; failures are recorded on it."""
    size = len(result.body) if result.body is not None else 0

    def outcome(
        status: FetchStatus, new: int = 0, updated: int = 0, error: str | None = None, declared: float | None = None
    ) -> FeedOutcome:
        return FeedOutcome(
            result.url, status, new=new, updated=updated, error=error,
            http_status=result.http_status, elapsed_ms=result.elapsed_ms, bytes=size, declared_seconds=declared,
        )  # fmt: skip

    if result.status is FetchStatus.FAILED:
        store.record_failure(state, result.http_status, result.error or "failed", now)
        return outcome(FetchStatus.FAILED, error=result.error)
    if result.status is FetchStatus.NOT_MODIFIED or result.body_hash == state.body_hash:
        store.record_not_modified(state, result, now)
        return outcome(FetchStatus.NOT_MODIFIED)
    assert result.body is not None
    if prepared is None:
        prepared = prepare_result(result, now)
    if isinstance(prepared, ParseError):
        store.record_failure(state, result.http_status, str(prepared), now)
        return outcome(FetchStatus.FAILED, error=str(prepared))
    assert prepared is not None
    parsed, entries = prepared
    saved = store.save_feed(state, result, parsed, entries, now)
    return outcome(
        FetchStatus.OK,
        new=len(saved.new_ids),
        updated=saved.updated,
        error=parsed.warning,
        declared=declared_interval(parsed),
    )


def record_next_fetch(
    store: Store,
    schedule: FeedSchedule,
    result: FetchResult,
    outcome: FeedOutcome,
    policy: Policy,
    now: datetime,
    rng: random.Random,
) -> tuple[Plan, str | None]:
    """Plan a feed's next fetch from what it just answered (schedule.plan_next_fetch) and store the plan: its
    time, a 410's disabling, a confirmed permanent redirect's move. Returns the plan and what storing it moved."""
    failed = outcome.status is FetchStatus.FAILED
    entry_times = store.entry_times(schedule.feed_id) if policy.adaptive and not failed else ()
    # a document not read again (a 304, the same bytes) declares what it declared last time
    declared = outcome.declared_seconds if outcome.status is FetchStatus.OK else schedule.declared_seconds
    plan = plan_next_fetch(
        schedule, result, policy, now, rng, failed=failed, entry_times=entry_times, declared=declared
    )
    return plan, store.record_schedule(plan, now)


def _schedule_recorder(
    store: Store, config: Config, states: dict[str, FeedState], schedules: dict[int, FeedSchedule], now: datetime
) -> AfterStore:
    """What a one-shot pass does after storing each feed: record its answer as the service records it, so a feed
    that answers 410 is disabled (no later pass fetches it) and a permanent redirect seen three times moves it."""
    policies = {states[f.url].feed_id: Policy.from_config(config, f) for f in config.feeds if f.url in states}
    rng = random.Random()

    def record(state: FeedState, result: FetchResult, outcome: FeedOutcome) -> None:
        policy = policies.get(state.feed_id) or Policy.from_config(config)
        try:
            plan, moved = record_next_fetch(store, schedules[state.feed_id], result, outcome, policy, now, rng)
        except AggregatorError as e:  # the feed itself is stored; only its schedule is lost
            log.error("cannot store the schedule of %s: %s", state.url, e)
            return
        if plan.disabled_reason is not None:
            log.warning("disabled %s: %s (aggregator enable URL polls it again)", state.url, plan.disabled_reason)
        if moved is not None:
            log.warning("%s moved permanently to %s: fetching the new URL from now on", state.url, plan.move_to)

    return record
