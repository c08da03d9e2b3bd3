"""The publishing worker: clusters what the passes stored and rewrites the outputs, debounced, off the event loop.

The clock runs many small passes, and clustering looks at every entry of the dedup window, so publishing once
per pass would be too often: after a pass that stored news, the outputs are rewritten at most every
`service.publish_debounce_seconds` (subscribers see new stories at most that late), and at least hourly, since
outputs limited by `max_age_hours` change with time alone. The work runs in a thread with its own database
connection (clustering.StoryClusterer keeps its dedup index between runs), so fetching and serving go on
meanwhile. With `retention.keep_days` set, old stories are pruned daily, never while stories are computed.
The Publisher runs alone too: `publish()` and `prune()` work without a clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .clustering import StoryClusterer
from .config import Config
from .errors import AggregatorError
from .models import Clock
from .publish import publish_outputs
from .retention import prune_store
from .store import PruneResult, Store, format_time

__all__ = ["FIRST_PRUNE_AFTER", "PRUNE_EVERY", "REPUBLISH_EVERY", "Publisher"]

log = logging.getLogger(__name__)

# Outputs limited by `max_age_hours` change with time alone: republish at least this often.
REPUBLISH_EVERY = 3600.0
# With `retention.keep_days` set, old stories are pruned this often, the first time a while after the start.
PRUNE_EVERY = 24 * 3600.0
FIRST_PRUNE_AFTER = 600.0


class Publisher:
    """Clusters and publishes the store at `database` with the config `get_config` returns at the time."""

    def __init__(self, get_config: Callable[[], Config], database: Path, *, clock: Clock) -> None:
        self._get_config = get_config
        self._database = database
        self._clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._running = False
        self._unpublished = True  # the first pass publishes: a crash may have stored entries never published
        self._last_publish = 0.0
        self._lock = asyncio.Lock()
        self._work: asyncio.Future[tuple[int, list[Path]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clusterer = StoryClusterer()  # keeps the dedup index of the window between passes
        self.last_publish: dict[str, Any] | None = None

    def start(self, scheduler: AsyncIOScheduler) -> None:
        """Run on `scheduler`'s clock: debounced publishing after passes, and the daily prune."""
        self._scheduler = scheduler
        self._running = True
        first = self._clock() + timedelta(seconds=FIRST_PRUNE_AFTER)
        scheduler.add_job(
            self._prune_job, "interval", seconds=PRUNE_EVERY, next_run_time=first, id="prune", coalesce=True
        )

    async def stop(self) -> None:
        """Start nothing more; cancel the publishing and pruning tasks waiting (a thread already running goes on,
        and the next publish() waits for it)."""
        self._running = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def note_news(self) -> None:
        """A pass stored new or changed entries: the next publish has work to do."""
        self._unpublished = True

    def request(self) -> None:
        """After a clock-driven pass: publish soon, but at most every `service.publish_debounce_seconds`."""
        if not self._needs_publish() or self._scheduler is None or not self._scheduler.running:
            return
        if self._scheduler.get_job("publish") is None:
            debounce = self._get_config().service.publish_debounce_seconds
            wait = max(0.0, self._last_publish + debounce - time.monotonic())
            run_date = self._clock() + timedelta(seconds=wait)
            self._scheduler.add_job(self._publish_job, "date", run_date=run_date, id="publish", misfire_grace_time=None)

    async def publish(self) -> None:
        """Cluster what the passes stored and rewrite the outputs, if anything is new (or an hour went by).

        A caller that is cancelled leaves the thread running (a thread cannot be stopped); the next call waits
        for it, so two never overlap.
        """
        async with self._lock:
            if self._work is not None and not self._work.done():
                await asyncio.wait([self._work])
            if not self._needs_publish():
                return
            self._unpublished = False
            self._last_publish = time.monotonic()
            config = self._get_config()
            work = asyncio.ensure_future(
                asyncio.to_thread(_cluster_and_publish, config, self._database, self._clock(), self._clusterer)
            )
            work.add_done_callback(self._published)
            self._work = work
            await asyncio.wait([work])
        if self._unpublished:  # news arrived while this one ran
            self.request()

    async def prune(self) -> PruneResult | None:
        """Prune what `retention.keep_days` allows (the daily job); None when retention is not set."""
        config = self._get_config()
        if config.retention.keep_days is None:
            return None
        async with self._lock:  # never while stories are being computed
            if self._work is not None and not self._work.done():
                await asyncio.wait([self._work])
            try:
                result = await asyncio.to_thread(_prune, config, self._database, self._clock())
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

    def _needs_publish(self) -> bool:
        return self._unpublished or time.monotonic() - self._last_publish > REPUBLISH_EVERY

    async def _publish_job(self) -> None:
        # The work is our task, not the job's: APScheduler cancels running jobs when it shuts down.
        if self._running:
            self._spawn(self.publish(), "publish")

    async def _prune_job(self) -> None:
        if self._running:
            self._spawn(self.prune(), "prune")

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        self.last_publish = {"at": format_time(self._clock()), "clustered": clustered, "outputs_changed": len(written)}
        log.info(
            "published: %d entries clustered, %d of %d outputs changed",
            clustered,
            len(written),
            len(self._get_config().outputs),
            extra={"event": "publish", "clustered": clustered, "written": [str(path) for path in written]},
        )


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
