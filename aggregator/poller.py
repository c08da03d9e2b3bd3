"""The scheduling loop: a clock that starts update passes for the feeds due now and plans each one's next fetch.

APScheduler 3 (AsyncIOScheduler) is only the clock. Which feeds are due, and when each is due again, is decided
by the pure functions of schedule.py from what the store remembers (`next_fetch_at` per feed), so a restart
resumes exactly the stored schedule. The loop, for each look of the clock:

    store.due_feeds + host_holds -> schedule.select_due -> update.update_feeds (a pass over the batch)
        -> for each feed as it is stored: update.record_next_fetch (schedule.plan_next_fetch -> store)
    -> the next look: now if more feeds are due, else at the next planned fetch or host release (schedule.next_wake)

Passes may overlap (a slow host must not hold back every other feed), but they share one Fetcher, so the global
and per-host limits and the per-host spacing hold across passes, and a feed is never in two at once. A feed
whose plan could not be stored is held back for a while instead of being fetched again at once, in a loop.
The Poller runs alone too: `poll()` makes one pass over what is due, without a clock (tests, embedders).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config import Config
from .errors import AggregatorError
from .fetch import Fetcher
from .models import Clock, FeedOutcome, FeedSchedule, FeedState, FetchResult, PassSummary
from .schedule import Policy, next_wake, select_due
from .store import Store, format_time
from .update import record_next_fetch, update_feeds

__all__ = ["DRIFT_SAMPLES", "MAX_IN_FLIGHT", "MAX_SLEEP", "RETRY_AFTER_ERROR", "PollStats", "Poller"]

log = logging.getLogger(__name__)

# At most this many feeds are in flight across passes: bounds memory and lets a pass end (and publish) in
# reasonable time even when ten thousand feeds are due at once after a start. Fetch concurrency is separate.
MAX_IN_FLIGHT = 1000
# The clock looks at the store at least this often, even when nothing is due sooner.
MAX_SLEEP = 60.0
# Recent differences between planned and actual fetch starts, reported by /health.
DRIFT_SAMPLES = 10_000
# When the store cannot plan (a database error, a bug), the clock looks again and the feeds left unplanned are
# fetched again this many seconds later (or `min_interval`, if shorter), instead of at once and in a loop.
RETRY_AFTER_ERROR = 30.0
_F = TypeVar("_F", bound=Callable[..., Any])


def _scheduling(method: _F) -> _F:
    """Count a scheduling step's CPU time (this thread's) in the poller's `scheduler_cpu_seconds`."""

    @functools.wraps(method)
    def counted(self: Poller, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._scheduler_cpu += time.thread_time() - started

    return cast(_F, counted)


@dataclass(frozen=True, slots=True)
class PollStats:
    """What the scheduling loop reports to /health."""

    last_pass: Mapping[str, Any] | None
    in_flight: int
    fetches: int
    scheduler_cpu_seconds: float
    # actual fetch start - planned, in seconds, for the last DRIFT_SAMPLES fetches
    drift: tuple[float, ...]


class Poller:
    """Polls the feeds of `store` on their stored schedule, with one long-lived `fetcher`.

    `on_news` is called when a stored feed brought new or changed entries, `after_pass` when a clock-driven pass
    ends (the service then publishes, debounced). The config comes through `use_config` (and again on reload).
    """

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        *,
        clock: Clock,
        rng: random.Random,
        on_news: Callable[[], None] = lambda: None,
        after_pass: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self._clock = clock
        self._rng = rng
        self._on_news = on_news
        self._after_pass = after_pass
        self._config: Config | None = None
        self._policies: dict[int, Policy] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._running = False
        self._in_flight: dict[int, str] = {}  # feed id -> URL, from the pass's start to its plan being stored
        self._held: dict[int, datetime] = {}  # feeds whose plan could not be stored: not due before then
        self._passes: set[asyncio.Task[PassSummary]] = set()
        self._retiring: set[asyncio.Task[None]] = set()
        self._last_pass: dict[str, Any] | None = None
        self._drift: deque[float] = deque(maxlen=DRIFT_SAMPLES)
        self._fetches = 0
        self._scheduler_cpu = 0.0

    @property
    def config(self) -> Config:
        """The config in force."""
        if self._config is None:
            raise RuntimeError("the poller has no config: call use_config() first")
        return self._config

    def use_config(self, config: Config, states: Mapping[str, FeedState]) -> None:
        """Poll with `config`'s policies from now on; `states` are the feeds the store synced from it, by URL."""
        self._policies = {
            states[feed.url].feed_id: Policy.from_config(config, feed) for feed in config.feeds if feed.url in states
        }
        self._config = config

    def use_fetcher(self, fetcher: Fetcher) -> None:
        """Fetch with `fetcher` from the next pass on; the old one is closed once the passes using it end."""
        old, self.fetcher = self.fetcher, fetcher
        users = set(self._passes)

        async def retire() -> None:
            if users:
                await asyncio.wait(users)
            await old.__aexit__(None, None, None)

        task = asyncio.get_running_loop().create_task(retire(), name="retire-fetcher")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def stats(self) -> PollStats:
        """What /health reports of polling."""
        return PollStats(
            last_pass=self._last_pass,
            in_flight=len(self._in_flight),
            fetches=self._fetches,
            scheduler_cpu_seconds=self._scheduler_cpu,
            drift=tuple(self._drift),
        )

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self, scheduler: AsyncIOScheduler) -> None:
        """Run on `scheduler`'s clock: look at the store now, and again whenever the next feed is due."""
        self._scheduler = scheduler
        self._running = True
        self._wake_at(self._clock())

    async def stop(self, grace: float, force: asyncio.Event) -> None:
        """Start no pass; wait up to `grace` seconds (or until `force` is set) for running ones, cancel the rest."""
        self._running = False
        running = {task for task in self._passes if not task.done()}
        if running:
            await self._finish(running, grace, force)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def close(self) -> None:
        """Close the fetcher (its connections)."""
        await self.fetcher.__aexit__(None, None, None)

    async def _finish(self, running: set[asyncio.Task[PassSummary]], grace: float, force: asyncio.Event) -> None:
        log.info("stopping: %d feeds in flight, waiting up to %g s", len(self._in_flight), grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        forced = asyncio.create_task(force.wait())
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

    # --- one pass --------------------------------------------------------------------------------------------

    async def poll(self, now: datetime | None = None) -> PassSummary | None:
        """Run one pass over the feeds due at `now` (default: the clock) and wait for it; None if none is due."""
        now = now or self._clock()
        batch = self._take_due(now)
        if not batch:
            return None
        return await self._pass(batch, now)

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
        self, batch: list[tuple[FeedState, FeedSchedule]], now: datetime, *, clock_driven: bool = False
    ) -> PassSummary:
        """Fetch and store `batch`, planning each feed's next fetch as it is stored."""
        schedules = {schedule.feed_id: schedule for _, schedule in batch}
        try:
            summary = await update_feeds(
                self.store,
                self.fetcher,
                [state for state, _ in batch],
                now,
                after_store=lambda state, result, outcome: self._after_fetch(schedules, state, result, outcome, now),
            )
        except Exception:
            self._hold(self._in_flight.keys() & schedules.keys())  # fetched or not, never planned: not again at once
            raise
        finally:
            for feed_id in schedules:
                self._in_flight.pop(feed_id, None)
        if clock_driven:
            self._after_pass()
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
            extra={"event": "pass", **self._last_pass},
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
        if outcome.new or outcome.updated:
            self._on_news()
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

    # --- the clock -------------------------------------------------------------------------------------------

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

    def plan_next_look(self, now: datetime) -> None:
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
        return self._running and self._scheduler is not None and self._scheduler.running

    def _look_at(self, when: datetime) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            self._tick, "date", run_date=when, id="poll", replace_existing=True, misfire_grace_time=None, coalesce=True
        )

    async def _tick(self) -> None:
        """The clock fired: start a pass over the feeds due now, then plan the next look."""
        if not self._running:
            return
        now = self._clock()
        try:
            batch = self._take_due(now)
            if batch:
                task = asyncio.create_task(self._pass(batch, now, clock_driven=True), name=f"pass-{now:%H%M%S}")
                self._passes.add(task)
                task.add_done_callback(self._pass_done)
        except AggregatorError as e:
            log.error("cannot start a pass: %s", e)
        except Exception:
            log.exception("cannot start a pass at %s: an unexpected error (a bug)", format_time(now))
        finally:
            self.plan_next_look(now)

    def _pass_done(self, task: asyncio.Task[PassSummary]) -> None:
        self._passes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if isinstance(error, AggregatorError):
                log.error("pass failed: %s", error)
            else:
                log.error("pass failed with an unexpected error (a bug)", exc_info=error)
        if self._running:
            self.plan_next_look(self._clock())


def _some(urls: Iterable[str], shown: int = 10) -> str:
    """At most `shown` URLs for a log line, and how many more."""
    listed = sorted(urls)
    more = f" and {len(listed) - shown} more" if len(listed) > shown else ""
    return ", ".join(listed[:shown]) + more
