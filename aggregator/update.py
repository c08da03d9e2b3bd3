"""One pass over the feeds: fetch -> parse -> normalize -> store -> dedup -> publish.

Each feed is fetched concurrently (bounded in fetch.py) and stored in its own transaction as soon as it
arrives, so one bad feed never stops the others and a crash loses at most the feeds still in flight. Story
clustering runs after the feeds, over every entry that has no story yet, in publication order, so a crash
between the two steps is repaired by the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import itertools
import logging
import multiprocessing
import os
import random
import re
import signal
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .atomic import replace_file
from .clustering import cluster_new_entries
from .config import Config, OutputConfig
from .dedup import term_vector
from .errors import AggregatorError, OutputError, ParseError, StoreError
from .fetch import Fetcher
from .models import (
    Entry,
    FeedOutcome,
    FeedSchedule,
    FeedState,
    FetchResult,
    FetchStatus,
    OutputMeta,
    ParsedFeed,
    PassSummary,
    Plan,
    Story,
)
from .normalize import identify, normalize_entry
from .render import MEDIA_TYPES, render
from .schedule import Policy, plan_next_fetch
from .store import Store

__all__ = [
    "output_id",
    "output_meta",
    "prepare_result",
    "publish_outputs",
    "record_next_fetch",
    "run_pass",
    "store_result",
    "stories_for_output",
]

log = logging.getLogger(__name__)

OnFeed = Callable[[FeedOutcome], None]
# Called right after each feed is stored, with what was fetched: the service plans the feed's next fetch
# from the response (status, Retry-After, cache headers, redirects).
OnResult = Callable[[FeedState, FetchResult, FeedOutcome], None]


async def run_pass(
    config: Config,
    store: Store,
    now: datetime,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_feed: OnFeed | None = None,
    feeds: Sequence[FeedState] | None = None,
    fetcher: Fetcher | None = None,
    on_result: OnResult | None = None,
    finish: bool = True,
) -> PassSummary:
    """Update every configured feed (or just `feeds`), cluster new entries into stories, write the outputs.

    Over the whole config (`feeds` None, a one-shot `aggregator update`), feeds the service disabled are left
    out, and without an `on_result` each feed's answer is recorded as the service records it (410, moves).

    The service passes its long-lived `fetcher` (politeness limits and keep-alive span passes), and
    `finish=False` to cluster and publish itself, debounced across its many small passes.
    """
    started = time.perf_counter()
    if feeds is not None:
        states = list(feeds)
    else:  # a one-shot pass over the config: every feed but the disabled ones, each answer recorded
        synced = store.sync_feeds(config.sources(), now)
        schedules = store.feed_schedules()  # as they were before this pass: what its plans start from
        states = [state for state in synced.values() if not schedules[state.feed_id].disabled_reason]
        if on_result is None:
            on_result = _schedule_recorder(store, config, synced, schedules, now)
    outcomes: list[FeedOutcome] = []
    async with contextlib.AsyncExitStack() as stack:
        if fetcher is None:
            fetcher = await stack.enter_async_context(
                Fetcher(config.fetch, transport, allow_private_addresses=config.allow_private_addresses)
            )
        pool = _parse_pool(len(states))
        if pool is not None:
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        active = fetcher
        # Each feed goes fetch -> parse -> store in its own task, and at most this many hold a body at once:
        # bodies are freed as soon as their feed is stored, not kept by finished tasks until the pass ends.
        in_flight = asyncio.Semaphore(2 * config.fetch.concurrency)

        async def update_one(state: FeedState) -> None:
            async with in_flight:
                result = FetchResult(state.url, FetchStatus.FAILED)
                try:
                    result = await active.fetch(state)
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
            if on_feed is not None:
                on_feed(outcome)
            if on_result is not None:
                on_result(state, result, outcome)

        tasks = [asyncio.ensure_future(update_one(state)) for state in states]
        for task in tasks:  # a cancelled pass (service shutdown) leaves no fetch running behind it
            stack.callback(task.cancel)
        for next_done in asyncio.as_completed(tasks):
            await next_done
    clustered, cluster_seconds = 0, 0.0
    if finish:
        cluster_started = time.perf_counter()
        clustered = cluster_new_entries(store, config, now)
        cluster_seconds = time.perf_counter() - cluster_started
        publish_outputs(config, store, now)
    outcomes.sort(key=lambda o: o.url)
    return PassSummary(
        outcomes=tuple(outcomes),
        seconds=time.perf_counter() - started,
        clustered=clustered,
        cluster_seconds=cluster_seconds,
    )


# What parsing a fetched body produced: the feed and its normalized entries, or the ParseError.
Prepared = tuple[ParsedFeed, list[Entry]] | ParseError

# Passes over at least this many feeds parse and normalize in a worker process, on the other core, while this
# process fetches, stores and clusters: parse + normalize is about 15 ms of CPU per 50-entry feed, and a
# small pass (the service's usual one) is not worth a fork.
POOL_MIN_FEEDS = 32


def _parse_pool(feeds: int) -> ProcessPoolExecutor | None:
    """One forked worker for prepare_result, started now (before the pass starts threads); None if not worth it."""
    if feeds < POOL_MIN_FEEDS or (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    if threading.active_count() > 1:
        return None  # forking a process with threads (a long-lived service) can deadlock the child
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    # Frozen, the objects of this process are never visited by the child's garbage collector, which would
    # otherwise write to (and so copy) every page of them: the worker shared ~30 of its ~60 MB without this.
    gc.freeze()
    try:
        pool.submit(int).result(timeout=30)  # fork the worker while this process has a single thread
    except Exception:
        log.warning("no worker process for parsing; parsing in threads", exc_info=True)
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    finally:
        gc.unfreeze()
    return pool


# prctl(2) option: the signal this process gets when the thread that forked it ends (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """First thing in the parse worker: it ends when the pass's process ends, however that ends.

    A worker whose parent was killed (SIGTERM, kill -9) waited forever on a queue nobody writes to, about
    100 MB each, holding the database open. On Linux the kernel kills it (PR_SET_PDEATHSIG); everywhere, a
    thread notices the parent is gone (the worker was handed to another parent) within a second.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_exit_without_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_without_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


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
    # imported on first use (feedparser and lxml: 17 MB): a pass where every feed answers 304 parses nothing
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

    def outcome(status: FetchStatus, new: int = 0, updated: int = 0, error: str | None = None) -> FeedOutcome:
        return FeedOutcome(
            result.url, status, new=new, updated=updated, error=error,
            http_status=result.http_status, elapsed_ms=result.elapsed_ms, bytes=size,
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
    return outcome(FetchStatus.OK, new=len(saved.new_ids), updated=saved.updated, error=parsed.warning)


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
    plan = plan_next_fetch(schedule, result, policy, now, rng, failed=failed, entry_times=entry_times)
    return plan, store.record_schedule(plan, now)


def _schedule_recorder(
    store: Store, config: Config, states: dict[str, FeedState], schedules: dict[int, FeedSchedule], now: datetime
) -> OnResult:
    """The `on_result` of a one-shot pass: each answer is recorded as the service records it, so a feed that
    answers 410 is disabled (no later pass fetches it) and a permanent redirect seen three times moves it."""
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


def output_meta(config: Config, output: OutputConfig, install_id: str, now: datetime | None = None) -> OutputMeta:
    """Feed-level facts of one output, from the config, the store's install id and the time of the pass."""
    alternates = tuple(
        (other.title, MEDIA_TYPES[other.format], other.url or Path(other.path).name)
        for other in config.outputs
        if other.format in ("atom", "rss", "json")
    )
    return OutputMeta(
        title=output.title,
        format=output.format,
        id=output_id(config, output, install_id),
        self_url=output.url,
        site_url=config.site_url,
        hub_url=output.hub,
        description=output.description,
        alternates=alternates,
        pass_time=now,
    )


def output_id(config: Config, output: OutputConfig, install_id: str) -> str:
    """The output's feed id (Atom `id`, JSON Feed `_aggregator.id`): the same on every pass, and never another
    install's, since readers may take two feeds with one id for one feed.

    Its `url` when set; else a tag URI of `site_url` and the file name; else a UUID of the store's random
    install id (Store.install_id) and the file name.
    """
    name = Path(output.path).name
    if output.url:
        return output.url
    site = urlsplit(config.site_url or "")
    if site.hostname:
        folder = site.path if site.path.endswith("/") else site.path + "/"
        return f"tag:{site.hostname},2026:{folder}{name}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'urn:aggregator:{install_id}:{name}')}"


def stories_for_output(store: Store, output: OutputConfig, now: datetime) -> list[Story]:
    """The stories one output shows now: its feed, tag, source-count and age filters, newest first."""
    feed_ids = store.feed_ids_with_tags(output.tags) if output.tags else None
    if output.feeds:
        by_url = store.feed_ids_with_urls(output.feeds)
        feed_ids = by_url if feed_ids is None else feed_ids & by_url
    since = now - timedelta(hours=output.max_age_hours) if output.max_age_hours else None
    return store.latest_stories(output.limit, feed_ids=feed_ids, min_sources=output.min_sources, since=since)


def publish_outputs(config: Config, store: Store, now: datetime) -> list[Path]:
    """Write every output file from the store; a file whose bytes would not change is left untouched.

    An output with no story is dated by the pass that first wrote it so (`now`), and kept with that date by
    the passes after it while it stays empty: the same store gives the same bytes.
    """
    written = []
    install_id = store.install_id()
    for output in config.outputs:
        stories = stories_for_output(store, output, now)
        meta = output_meta(config, output, install_id, now)
        path = config.resolve(output.path)
        if not stories and _still_empty(path, meta, config):
            continue
        if write_atomically(path, render(stories, meta, feeds=config.sources())):
            written.append(path)
    return written


# Dates an output writes for itself: RFC 3339 (Atom, JSON Feed, HTML) and RFC 822 (RSS).
_OUTPUT_DATES = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"
)
# Dates before this are not a pass's: an older release dated every empty output 1970-01-01.
_FIRST_PASS = datetime(1994, 1, 1, tzinfo=UTC)


def _still_empty(path: Path, meta: OutputMeta, config: Config) -> bool:
    """Whether `path` holds this output without stories as an earlier pass wrote it: rendered at one of the
    dates the file shows, it gives the file's bytes. Then it keeps that pass's date and is not rewritten."""
    try:
        old = path.read_bytes()
    except OSError:
        return False
    # An output without stories shows one date; a file with stories shows many, and is not it: three will do.
    dates = dict.fromkeys(found.group() for found in _OUTPUT_DATES.finditer(old))
    for found in itertools.islice(dates, 3):
        text = found.decode("ascii")
        try:
            moment = datetime.fromisoformat(text) if text[0].isdigit() else parsedate_to_datetime(text)
        except ValueError:
            continue
        if moment >= _FIRST_PASS and render((), replace(meta, pass_time=moment), config.sources()) == old:
            return True
    return False


def write_atomically(path: Path, body: bytes) -> bool:
    """Replace `path` with `body` via a temporary file and rename; False when the file already holds it.

    Only a regular file of exactly this size is read to compare: never a FIFO (which would block) or a 3 GiB
    file someone left there.
    """
    try:
        try:
            existing = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            existing = None
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            raise OutputError(f"{path}: cannot write the output: something other than a regular file is there")
        if existing is not None and existing.st_size == len(body) and path.read_bytes() == body:
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
            raise OutputError(
                f"{path}: cannot write the output: {blocker or path.parent} is a file, not a folder"
            ) from None
        replace_file(path, body)
    except OSError as e:
        raise OutputError(f"{path}: cannot write the output: {e.strerror or e}") from e
    return True
