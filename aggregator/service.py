"""The long-lived service: a clock that starts update passes for due feeds, the HTTP server, signals, reload.

APScheduler 3 (AsyncIOScheduler) is only the clock. Which feeds are due, and when each is due again, is
decided by the pure functions of schedule.py from what the store remembers (`next_fetch_at` per feed), so a
restart resumes exactly the stored schedule, and a kill -9 at any moment loses at most the fetches in flight
(each feed is stored in its own transaction; outputs are replaced by rename).

Lifecycle (ServiceState):

    NEW --open()--> OPEN --start()--> RUNNING --stop()--> STOPPING --> STOPPED

`open()` loads the config and the store (enough for `poll()`, which tests and embedders call directly);
`start()` adds the clock, the HTTP server and the signal handlers; `run()` does both and waits for
SIGTERM/SIGINT. Stopping stops the clock, gives in-flight fetches `service.grace_seconds` to finish, cancels
the rest, publishes what was stored, closes the store and returns; a second signal skips the grace period.
SIGHUP, or a change of feeds.yaml on disk, reloads the config: feeds are added and removed without a
restart, and a config that does not validate is logged while the old one keeps running.

Passes may overlap (a slow host must not hold back every other feed), but they share one Fetcher, so the
global and per-host limits and the per-host spacing hold across passes, and a feed is never in two at once.
Clustering and publishing follow the passes, debounced (`service.publish_debounce_seconds`), in a worker
thread with its own connection, so polling and serving go on while stories are computed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import resource
import signal
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from . import __version__
from .clustering import StoryClusterer
from .config import Config, load_config
from .errors import AggregatorError
from .fetch import Fetcher
from .models import FeedOutcome, FeedSchedule, FeedState, FetchResult, PassSummary
from .retention import prune_store
from .schedule import Policy, next_wake, select_due
from .server import HttpServer, create_app, served_outputs
from .store import PruneResult, Store, format_time
from .update import publish_outputs, record_next_fetch, run_pass

__all__ = ["Service", "ServiceState"]

log = logging.getLogger(__name__)

# At most this many feeds are in flight across passes: bounds memory and lets a pass end (and publish) in
# reasonable time even when ten thousand feeds are due at once after a start. Fetch concurrency is separate.
MAX_IN_FLIGHT = 1000
# The clock looks at the store at least this often, even when nothing is due sooner.
MAX_SLEEP = 60.0
# Outputs limited by `max_age_hours` change with time alone: republish at least this often.
REPUBLISH_EVERY = 3600.0
# With `retention.keep_days` set, old stories are pruned this often, the first time a while after the start.
PRUNE_EVERY = 24 * 3600.0
FIRST_PRUNE_AFTER = 600.0
# Recent differences between planned and actual fetch starts, reported by /health.
DRIFT_SAMPLES = 10_000
# When the store cannot plan (a database error, a bug), the clock looks again and the feeds left unplanned are
# fetched again this many seconds later (or `min_interval`, if shorter), instead of at once and in a loop.
RETRY_AFTER_ERROR = 30.0

Clock = Callable[[], datetime]
F = TypeVar("F", bound=Callable[..., Any])


def utc_now() -> datetime:
    """The real clock (UTC); tests pass their own."""
    return datetime.now(UTC)


def _scheduling(method: F) -> F:
    """Count a scheduling step's CPU time (this thread's) in the service's `scheduler_cpu_seconds`."""

    @functools.wraps(method)
    def counted(self: Service, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._scheduler_cpu += time.thread_time() - started

    return cast(F, counted)


class ServiceState(StrEnum):
    """Where the service is in its lifecycle."""

    NEW = "new"
    OPEN = "open"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Service:
    """`aggregator run` (poll=True, optionally serve=True) and `aggregator serve` (poll=False, serve=True)."""

    def __init__(
        self,
        config_path: str | Path,
        *,
        database: str | None = None,
        poll: bool = True,
        serve: bool = False,
        host: str | None = None,
        port: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.config_path = Path(config_path)
        self.database = database
        self.polls = poll
        self.serves = serve
        self._host, self._port = host, port
        self._transport = transport
        self._clock = clock
        self._rng = rng or random.Random()
        self._handle_signals = handle_signals
        self._signals_installed = False
        self.state = ServiceState.NEW
        self._config: Config | None = None
        self._store: Store | None = None
        self._fetcher: Fetcher | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._http: HttpServer | None = None
        self._policies: dict[int, Policy] = {}
        self._config_stamp: tuple[int, int] | None = None
        self._in_flight: dict[int, str] = {}  # feed id -> URL, from the pass's start to its plan being stored
        self._held: dict[int, datetime] = {}  # feeds whose plan could not be stored: not due before then
        self._passes: set[asyncio.Task[PassSummary]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._stop_requested = asyncio.Event()
        self._force_stop = asyncio.Event()
        self._reloading = False
        self._unpublished = True  # the first pass publishes: a crash may have stored entries never published
        self._last_publish = 0.0
        self._publish_lock = asyncio.Lock()
        self._last_publish_info: dict[str, Any] | None = None
        self._publishing: asyncio.Future[tuple[int, list[Path]]] | None = None
        self._clusterer = StoryClusterer()  # keeps the dedup index of the window between passes
        self._last_pass: dict[str, Any] | None = None
        self._drift: deque[float] = deque(maxlen=DRIFT_SAMPLES)
        self._fetches = 0
        self._scheduler_cpu = 0.0
        self._started_at: datetime | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config in force (the last one that validated)."""
        if self._config is None:
            raise RuntimeError("the service is not open")
        return self._config

    @property
    def store(self) -> Store:
        """The open store."""
        if self._store is None:
            raise RuntimeError("the service is not open")
        return self._store

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the HTTP server listens, once started with serve=True."""
        return self._http.address if self._http is not None else None

    async def open(self) -> None:
        """Load and check the config, open the store and register the feeds; raises AggregatorError."""
        if self.state is not ServiceState.NEW:
            return
        config = load_config(self.config_path, self.database)
        served_outputs(config)
        self._config_stamp = self._stat_config()
        self._store = Store.open(config.database_path)
        try:
            self._apply_config(config, self._clock())
        except BaseException:
            self._store.close()
            raise
        if self.polls:
            self._fetcher = self._new_fetcher(config)
        self._started_at = self._clock()
        self.state = ServiceState.OPEN

    async def start(self) -> None:
        """Open if needed, then start the clock, the HTTP server and the signal handlers."""
        await self.open()
        if self.state is not ServiceState.OPEN:
            return
        config = self.config
        if self.serves:
            app = create_app(lambda: self.config, self.health)
            host = self._host if self._host is not None else config.service.host
            port = self._port if self._port is not None else config.service.port
            self._http = HttpServer(
                app,
                host,
                port,
                max_connections=config.service.max_connections,
                request_timeout=config.service.request_timeout_seconds,
                reserved_descriptors=self._descriptors_needed(config),
            )
            await self._http.start()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        if config.service.reload_check_seconds > 0:
            self._scheduler.add_job(
                self._check_config_file,
                "interval",
                seconds=config.service.reload_check_seconds,
                id="watch-config",
                coalesce=True,
                max_instances=1,
            )
        if self.polls:
            first = self._clock() + timedelta(seconds=FIRST_PRUNE_AFTER)
            self._scheduler.add_job(
                self._prune_job, "interval", seconds=PRUNE_EVERY, next_run_time=first, id="prune", coalesce=True
            )
        self._scheduler.start()
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            self._signals_installed = True
        self.state = ServiceState.RUNNING
        log.info(
            "service started: %d feeds, polling %s, pid %d",
            len(config.feeds),
            "on" if self.polls else "off",
            os.getpid(),
            extra={"event": "start", "feeds": len(config.feeds)},
        )
        if self.polls:
            self._wake_at(self._clock())

    async def run(self) -> None:
        """Start, run until SIGTERM/SIGINT (or `request_stop`), then stop cleanly."""
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask the service to stop (a signal handler); asked twice, in-flight fetches are cancelled at once."""
        if self._stop_requested.is_set():
            log.warning("stop requested again: cancelling in-flight fetches now")
            self._force_stop.set()
        self._stop_requested.set()

    async def stop(self) -> None:
        """Stop the clock, let in-flight fetches finish within the grace period, publish, close everything."""
        if self.state in (ServiceState.STOPPING, ServiceState.STOPPED):
            return
        opened = self.state is not ServiceState.NEW
        self.state = ServiceState.STOPPING
        self._stop_requested.set()
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        grace = self._config.service.grace_seconds if self._config is not None else 0.0
        await self._finish_passes(grace)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if opened and self.polls:
            await self._publish()  # what the last passes stored, even if a pass was cancelled
        if self._http is not None:
            await self._http.stop()
        if self._fetcher is not None:
            await self._fetcher.__aexit__(None, None, None)
        if self._store is not None:
            self._store.close()
        if self._signals_installed:
            # kept until now, so that a second SIGTERM/SIGINT cuts the grace period short
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.state = ServiceState.STOPPED
        if opened:
            log.info("service stopped", extra={"event": "stop"})

    async def _finish_passes(self, grace: float) -> None:
        """Wait up to `grace` seconds (or a second stop request) for running passes; cancel what is left."""
        running = {task for task in self._passes if not task.done()}
        if not running:
            return
        log.info("stopping: %d feeds in flight, waiting up to %g s", len(self._in_flight), grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        forced = asyncio.create_task(self._force_stop.wait())
        try:
            while running and not forced.done() and (left := deadline - loop.time()) > 0:
                await asyncio.wait({*running, forced}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                running = {task for task in running if not task.done()}
        finally:
            forced.cancel()
        if running:
            log.warning(
                "cancelling %d feeds still in flight: %s", len(self._in_flight), _some(self._in_flight.values())
            )
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=5.0)

    # --- config ------------------------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload feeds.yaml soon (the SIGHUP handler)."""
        self._spawn(self.reload(), "reload")

    async def reload(self) -> bool:
        """Re-read feeds.yaml: add and remove feeds; a config that does not validate keeps the old one running."""
        if self._reloading or self.state not in (ServiceState.OPEN, ServiceState.RUNNING):
            return False
        self._reloading = True
        try:
            self._config_stamp = self._stat_config()
            try:
                config = load_config(self.config_path, self.database)
                served_outputs(config)
            except AggregatorError as e:
                log.error("config reload failed, still running the previous config: %s", e, extra={"event": "reload"})
                return False
            old = self.config
            if config.database_path != old.database_path:
                log.warning("the database path changed in %s: restart the service to use it", self.config_path)
            if config.service != old.service:
                log.warning("the service settings changed in %s: restart the service to apply them", self.config_path)
            before = {feed.url for feed in old.feeds}
            after = {feed.url for feed in config.feeds}
            now = self._clock()
            self._apply_config(config, now)
            fetching = (config.fetch, config.allow_private_addresses)
            if self._fetcher is not None and fetching != (old.fetch, old.allow_private_addresses):
                self._replace_fetcher(self._new_fetcher(config))
            log.info(
                "config reloaded: %d feeds (%d added, %d removed)",
                len(after),
                len(after - before),
                len(before - after),
                extra={"event": "reload", "feeds": len(after)},
            )
            if self.state is ServiceState.RUNNING and self.polls:
                self._plan_next_look(now)
            return True
        finally:
            self._reloading = False

    def _apply_config(self, config: Config, now: datetime) -> None:
        states = self.store.sync_feeds(config.sources(), now)
        self._policies = {
            states[feed.url].feed_id: Policy.from_config(config, feed) for feed in config.feeds if feed.url in states
        }
        self._config = config

    def _descriptors_needed(self, config: Config) -> int:
        """File descriptors the service may hold beside its HTTP connections: sockets of fetches and their DNS
        lookups (two clients, one for the feeds' own hosts), the database from three threads, parse workers."""
        return 3 * config.fetch.concurrency + 64 if self.polls else 16

    def _new_fetcher(self, config: Config) -> Fetcher:
        return Fetcher(config.fetch, self._transport, allow_private_addresses=config.allow_private_addresses)

    def _replace_fetcher(self, fetcher: Fetcher) -> None:
        old, self._fetcher = self._fetcher, fetcher
        users = set(self._passes)

        async def retire() -> None:
            if users:
                await asyncio.wait(users)
            if old is not None:
                await old.__aexit__(None, None, None)

        self._spawn(retire(), "retire-fetcher")

    def _stat_config(self) -> tuple[int, int] | None:
        try:
            info = self.config_path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    async def _check_config_file(self) -> None:
        stamp = self._stat_config()
        if stamp is not None and stamp != self._config_stamp:
            log.info("%s changed on disk: reloading", self.config_path)
            await self.reload()

    # --- polling -----------------------------------------------------------------------------------------------

    async def poll(self, now: datetime | None = None) -> PassSummary | None:
        """Run one pass over the feeds due at `now` (default: the clock) and wait for it; None if none is due."""
        now = now or self._clock()
        batch = self._take_due(now)
        if not batch:
            return None
        summary = await self._pass(batch, now)
        await self._publish()
        return summary

    @_scheduling
    def _take_due(self, now: datetime) -> list[tuple[FeedState, FeedSchedule]]:
        """The due feeds not in flight (and not held by their host), marked as in flight."""
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return []
        self._held = {feed_id: until for feed_id, until in self._held.items() if until > now}
        busy = self._in_flight.keys() | self._held.keys()
        holds = self.store.host_holds(now)
        candidates = self.store.due_feeds(now, limit=None if holds else room, exclude=busy)
        states = {schedule.feed_id: state for state, schedule in candidates}
        chosen = select_due([s for _, s in candidates], now, blocked_hosts=holds, exclude=busy, limit=room)
        self._in_flight.update((s.feed_id, states[s.feed_id].url) for s in chosen)
        return [(states[s.feed_id], s) for s in chosen]

    async def _pass(
        self, batch: list[tuple[FeedState, FeedSchedule]], now: datetime, *, debounce: bool = False
    ) -> PassSummary:
        """Fetch and store `batch`, planning each feed's next fetch as it is stored."""
        schedules = {schedule.feed_id: schedule for _, schedule in batch}
        fetcher = self._fetcher
        try:
            summary = await run_pass(
                self.config,
                self.store,
                now,
                feeds=[state for state, _ in batch],
                fetcher=fetcher,
                transport=self._transport,
                on_result=lambda state, result, outcome: self._after_fetch(schedules, state, result, outcome, now),
                finish=False,
            )
        except Exception:
            self._hold(self._in_flight.keys() & schedules.keys())  # fetched or not, never planned: not again at once
            raise
        finally:
            for feed_id in schedules:
                self._in_flight.pop(feed_id, None)
        if debounce:
            self._request_publish()
        self._last_pass = {
            "started_at": format_time(now),
            "finished_at": format_time(self._clock()),
            **summary.as_dict(),
        }
        for key in ("errors", "clustered", "cluster_seconds"):  # clustering happens at publish time
            self._last_pass.pop(key, None)
        log.info(
            "pass: %d feeds, %d ok, %d not modified, %d failed, %d new entries, %.1f s",
            len(summary.outcomes),
            summary.ok,
            summary.not_modified,
            summary.failed,
            summary.new,
            summary.seconds,
            extra={"event": "pass", **{k: v for k, v in self._last_pass.items() if k != "errors"}},
        )
        return summary

    @_scheduling
    def _after_fetch(
        self,
        schedules: dict[int, FeedSchedule],
        state: FeedState,
        result: FetchResult,
        outcome: FeedOutcome,
        taken_at: datetime,
    ) -> None:
        """Plan and store the next fetch of one feed, right after the feed itself was stored.

        `taken_at` is when the clock found the feed due: the planned time of a feed never fetched before (it is
        due at once), so its first fetch counts in the drift too; a service that ran for a minute reported no
        drift at all before (issue 16).
        """
        now = self._clock()
        schedule = schedules[state.feed_id]
        policy = self._policies.get(state.feed_id) or Policy.from_config(self.config)
        self._fetches += 1
        self._unpublished |= bool(outcome.new or outcome.updated)
        planned = schedule.next_fetch_at or taken_at
        started = now.timestamp() - result.elapsed_ms / 1000
        self._drift.append(started - planned.timestamp())
        try:
            plan, moved = record_next_fetch(self.store, schedule, result, outcome, policy, now, self._rng)
        except Exception as e:
            if isinstance(e, AggregatorError):
                log.error("cannot store the schedule of %s: %s", state.url, e)
            else:
                log.exception("cannot store the schedule of %s: an unexpected error (a bug)", state.url)
            self._hold([state.feed_id])
            return
        finally:
            self._in_flight.pop(state.feed_id, None)  # stored and planned: no longer due
        if plan.next_fetch_at is not None and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "next fetch of %s at %s (%s, interval %d s)",
                state.url,
                format_time(plan.next_fetch_at),
                plan.reason,
                plan.interval_seconds,
                extra={"event": "schedule", "feed": state.url, "next_fetch_at": format_time(plan.next_fetch_at)},
            )
        if plan.disabled_reason is not None:
            log.warning(
                "disabled %s: %s", state.url, plan.disabled_reason, extra={"event": "disable", "feed": state.url}
            )
        if plan.host is not None and plan.host_until is not None:
            log.warning(
                "%s answered 429: no requests to it before %s", plan.host, format_time(plan.host_until),
                extra={"event": "host-hold", "host": plan.host},
            )  # fmt: skip
        if moved == "moved":
            log.warning(
                "%s moved permanently to %s (seen on %d fetches in a row): fetching the new URL from now on; "
                "update feeds.yaml when convenient",
                state.url, plan.move_to, schedule.redirect_count + 1,
                extra={"event": "moved", "feed": state.url, "to": plan.move_to},
            )  # fmt: skip
        elif moved == "duplicate":
            log.warning(
                "%s moved permanently to %s, which is already a feed here: disabled the old one",
                state.url, plan.move_to, extra={"event": "disable", "feed": state.url},
            )  # fmt: skip

    def _needs_publish(self) -> bool:
        return self._unpublished or time.monotonic() - self._last_publish > REPUBLISH_EVERY

    def _request_publish(self) -> None:
        """After a clock-driven pass: publish soon, but at most every `service.publish_debounce_seconds`.

        The clock runs many small passes, and clustering looks at every entry of the dedup window, so once per
        pass would be too often; subscribers see new stories at most that many seconds late.
        """
        if not self._needs_publish() or self._scheduler is None or not self._scheduler.running:
            return
        if self._scheduler.get_job("publish") is None:
            wait = max(0.0, self._last_publish + self.config.service.publish_debounce_seconds - time.monotonic())
            run_date = self._clock() + timedelta(seconds=wait)
            self._scheduler.add_job(self._publish_job, "date", run_date=run_date, id="publish", misfire_grace_time=None)

    async def _publish_job(self) -> None:
        # The work is our task, not the job's: APScheduler cancels running jobs when it shuts down.
        if self.state is ServiceState.RUNNING:
            self._spawn(self._publish(), "publish")

    async def _publish(self) -> None:
        """Cluster what the passes stored and rewrite the outputs, if anything is new (or an hour went by).

        The work runs in a thread with its own database connection, so fetching and serving go on meanwhile.
        A caller that is cancelled leaves it running (a thread cannot be stopped); the next call waits for it,
        so two never overlap.
        """
        async with self._publish_lock:
            if self._publishing is not None and not self._publishing.done():
                await asyncio.wait([self._publishing])
            if not self._needs_publish():
                return
            self._unpublished = False
            self._last_publish = time.monotonic()
            work = asyncio.ensure_future(
                asyncio.to_thread(_cluster_and_publish, self.config, self.store.path, self._clock(), self._clusterer)
            )
            work.add_done_callback(self._published)
            self._publishing = work
            await asyncio.wait([work])
        if self._unpublished:  # news arrived while this one ran
            self._request_publish()

    def _published(self, work: asyncio.Future[tuple[int, list[Path]]]) -> None:
        """Log how a publish ended; a failed one is tried again after the next pass."""
        error = None if work.cancelled() else work.exception()
        if work.cancelled() or error is not None:
            self._unpublished = True
            if isinstance(error, AggregatorError):
                log.error("clustering or publishing failed: %s", error, extra={"event": "publish"})
            elif error is not None:
                log.error("clustering or publishing failed with an unexpected error (a bug)", exc_info=error)
            return
        clustered, written = work.result()
        self._last_publish_info = {
            "at": format_time(self._clock()),
            "clustered": clustered,
            "outputs_changed": len(written),
        }
        log.info(
            "published: %d entries clustered, %d of %d outputs changed",
            clustered,
            len(written),
            len(self.config.outputs),
            extra={"event": "publish", "clustered": clustered, "written": [str(path) for path in written]},
        )

    async def _prune_job(self) -> None:
        if self.state is ServiceState.RUNNING:
            self._spawn(self.prune(), "prune")

    async def prune(self) -> PruneResult | None:
        """Prune what `retention.keep_days` allows (the daily job); None when retention is not set."""
        if self.config.retention.keep_days is None:
            return None
        async with self._publish_lock:  # never while stories are being computed
            if self._publishing is not None and not self._publishing.done():
                await asyncio.wait([self._publishing])
            try:
                result = await asyncio.to_thread(_prune, self.config, self.store.path, self._clock())
                self._clusterer.reset()  # pruned stories may be in its index
            except AggregatorError as e:
                log.error("pruning failed: %s", e, extra={"event": "prune"})
                return None
        if result is not None:
            log.info(
                "pruned %d entries and %d stories older than %s (%d old stories kept: an output shows them); "
                "forgot %d tombstones their feeds no longer list",
                result.entries, result.stories, format_time(result.cutoff), result.kept_stories, result.tombstones,
                extra={"event": "prune", "entries": result.entries, "stories": result.stories,
                       "tombstones": result.tombstones},
            )  # fmt: skip
        return result

    # --- the clock ---------------------------------------------------------------------------------------------

    def _hold(self, feed_ids: Iterable[int]) -> None:
        """Keep feeds whose next fetch could not be stored from being due again before the retry delay."""
        until = self._clock() + timedelta(seconds=self._retry_delay())
        self._held.update(dict.fromkeys(feed_ids, until))

    def _retry_delay(self) -> float:
        return min(RETRY_AFTER_ERROR, self.config.min_interval)

    @_scheduling
    def _wake_at(self, now: datetime) -> None:
        """Plan the clock's next look at the store: now if feeds are due, else at the next due time."""
        if not self._clock_running():
            return
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            return  # the end of a pass wakes the clock
        when = next_wake(self.store.next_fetch_after(now), self.store.host_holds(now).values(), now, MAX_SLEEP)
        if self._held:
            when = min(when, *self._held.values())
        if self.store.due_feeds(now, limit=1, exclude=self._in_flight.keys() | self._held.keys()):
            when = now
        self._look_at(when)

    def _plan_next_look(self, now: datetime) -> None:
        """Plan the clock's next look; when the store cannot tell when, look again after the retry delay."""
        try:
            self._wake_at(now)
        except Exception as e:
            delay = self._retry_delay()
            if isinstance(e, AggregatorError):
                log.error("cannot plan the next poll: %s; trying again in %g s", e, delay)
            else:
                log.exception("cannot plan the next poll: an unexpected error (a bug); trying again in %g s", delay)
            if self._clock_running():
                self._look_at(now + timedelta(seconds=delay))

    def _clock_running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running and self.state is ServiceState.RUNNING

    def _look_at(self, when: datetime) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            self._tick, "date", run_date=when, id="poll", replace_existing=True, misfire_grace_time=None, coalesce=True
        )

    async def _tick(self) -> None:
        """The clock fired: start a pass over the feeds due now, then plan the next look."""
        if self.state is not ServiceState.RUNNING:
            return
        now = self._clock()
        try:
            batch = self._take_due(now)
            if batch:
                task = asyncio.create_task(self._pass(batch, now, debounce=True), name=f"pass-{now:%H%M%S}")
                self._passes.add(task)
                task.add_done_callback(self._pass_done)
        except AggregatorError as e:
            log.error("cannot start a pass: %s", e)
        except Exception:
            log.exception("cannot start a pass at %s: an unexpected error (a bug)", format_time(now))
        finally:
            self._plan_next_look(now)

    def _pass_done(self, task: asyncio.Task[PassSummary]) -> None:
        self._passes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if isinstance(error, AggregatorError):
                log.error("pass failed: %s", error)
            else:
                log.error("pass failed with an unexpected error (a bug)", exc_info=error)
        if self.state is ServiceState.RUNNING:
            self._plan_next_look(self._clock())

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- health ------------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """What /health reports: state, last pass, feeds ok and failing, scheduling drift, process usage."""
        feeds = self.store.feed_counts() if self._store is not None else {}
        last_fetched_at = feeds.pop("last_fetched_at", None)
        failing = bool(feeds.get("total")) and not feeds.get("ok") and bool(feeds.get("failing"))
        drift = sorted(self._drift)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        scale = 1024 * 1024 if sys.platform == "darwin" else 1024
        return {
            "status": "failing" if failing else "ok",
            "state": self.state.value,
            "version": __version__,
            "started_at": format_time(self._started_at) if self._started_at else None,
            "polling": self.polls,
            "last_pass": self._last_pass,
            "last_publish": self._last_publish_info,
            "last_fetched_at": last_fetched_at,
            "feeds": feeds,
            "in_flight": len(self._in_flight),
            "fetches": self._fetches,
            # CPU spent deciding what to poll and when (selection, planning, storing plans, the clock), as
            # opposed to fetching, parsing and storing the feeds themselves
            "scheduler_cpu_seconds": round(self._scheduler_cpu, 3),
            "drift_seconds": {
                "samples": len(drift),
                "median": round(statistics.median(drift), 3) if drift else None,
                "p99": round(drift[min(len(drift) - 1, int(len(drift) * 0.99))], 3) if drift else None,
            },
            "process": {
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
                "max_rss_mb": round(usage.ru_maxrss / scale, 1),
            },
        }


def _some(urls: Iterable[str], shown: int = 10) -> str:
    """At most `shown` URLs for a log line, and how many more."""
    listed = sorted(urls)
    more = f" and {len(listed) - shown} more" if len(listed) > shown else ""
    return ", ".join(listed[:shown]) + more


def _prune(config: Config, database: Path, now: datetime) -> PruneResult | None:
    """Prune old stories and entries, on a connection of this (worker) thread."""
    with Store.open(database) as store:
        return prune_store(config, store, now)


def _cluster_and_publish(
    config: Config, database: Path, now: datetime, clusterer: StoryClusterer
) -> tuple[int, list[Path]]:
    """Give new entries their stories and rewrite the outputs, on a connection of this (worker) thread."""
    with Store.open(database) as store:
        clustered = clusterer.run(store, config, now)
        written = publish_outputs(config, store, now) if config.outputs else []
    return clustered, written
