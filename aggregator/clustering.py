"""Story clustering against the store: the dedup index of the window, kept or seeded, and its worker process.

`StoryClusterer` feeds the pure index (dedup.py) from the store and writes what it decides. A one-shot pass
over many feeds runs it in a `ClusterProcess`, a forked process that seeds the index on the other core while
the pass is still fetching, then clusters the new entries when the feeds are done.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import multiprocessing
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .config import Config
from .dedup import DEFAULT_THRESHOLD, TITLE_ONLY_THRESHOLD, StoryIndex
from .store import Store

__all__ = ["EVICTION_SLACK", "SEED_MARGIN", "ClusterProcess", "StoryClusterer", "cluster_new_entries"]

log = logging.getLogger(__name__)


def cluster_new_entries(store: Store, config: Config, now: datetime) -> int:
    """Give every entry without a story one: an existing story it matches, or a new one. Returns how many."""
    return StoryClusterer().run(store, config, now)


# How much older than the window an entry may be and stay in a kept index. Entries outside the window are
# never matched (the index checks each candidate's dates); this only spares reseeding when a pass brings
# entries published a little before the previous pass's newest (benchmarks/stories.py --scale reseeded on
# every batch without it).
EVICTION_SLACK = timedelta(hours=6)


class StoryClusterer:
    """Clusters new entries, keeping the dedup index of the window from one call to the next.

    A one-shot `aggregator update` seeds the index from the store once per pass (the entries of the window);
    the service keeps one clusterer, so each pass only pays for its new entries. The index is seeded again
    when it cannot answer: new dedup settings, a backlog older than what it still covers, or `reset()` (the
    service calls it after pruning, which deletes stories the index may hold).
    """

    def __init__(self) -> None:
        self._index: StoryIndex | None = None
        self._settings: object = None
        self._covers_from: datetime | None = None

    def reset(self) -> None:
        """Forget the index; the next run seeds it from the store."""
        self._index = None

    def run(self, store: Store, config: Config, now: datetime) -> int:
        """Assign a story to every entry that has none, oldest first. Returns how many."""
        # In batches, oldest first: the backlog's summaries are read a page at a time, and the index keeps only
        # what it needs of each entry, so memory follows the window, not the backlog.
        batches = store.unassigned_batches()
        first = next(batches, None)
        if not first:
            return 0
        window = timedelta(hours=config.dedup.window_hours)
        index = self.index_for(store, config, first[0].published - window)
        count = 0
        try:
            with store.story_writer() as writer:
                for items in itertools.chain([first], batches):
                    for item in items:
                        # evict with some slack: the next pass's entries are often a little older than this
                        # pass's newest, and an index that no longer covers them must be seeded again
                        floor = item.published - window - EVICTION_SLACK
                        index.evict(floor)
                        assert self._covers_from is not None
                        self._covers_from = max(self._covers_from, floor)
                        assignment = index.assign(item)
                        story_id = assignment.story_id
                        if story_id is None:
                            story_id = writer.new_story(item)
                        writer.assign(assignment, story_id)
                        index.add(item, story_id)
                    count += len(items)
        except BaseException:
            self.reset()  # the transaction rolled back: the index holds assignments that were never stored
            raise
        return count

    def index_for(self, store: Store, config: Config, since: datetime) -> StoryIndex:
        """The kept index when it covers `since` with the same settings; else a new one seeded from the store."""
        settings = config.dedup
        covered = self._covers_from is not None and since >= self._covers_from
        if self._index is not None and self._settings == settings and covered:
            return self._index
        index = StoryIndex(
            window=timedelta(hours=settings.window_hours),
            threshold=settings.threshold or DEFAULT_THRESHOLD,
            title_only_threshold=settings.title_only_threshold or TITLE_ONLY_THRESHOLD,
        )
        for item, story_id in store.window_entries(since):
            index.add(item, story_id)
        self._index, self._settings, self._covers_from = index, settings, since
        return index


# How much older than the first new entries a ClusterProcess seeds from: the feeds stored after them may bring
# older ones, and an index that does not cover those is seeded again (the cost the process is there to hide).
SEED_MARGIN = timedelta(days=1)


class ClusterProcess:
    """A StoryClusterer in a forked process of its own, driven over a pipe by a one-shot pass.

    `seed()` starts seeding its index from the store (reading the window's stored term vectors: 4 s for the
    50,000 entries of the 1000x50 benchmark) while this process goes on fetching and storing; `cluster()`
    then clusters every entry without a story and returns how many. Create it before any thread starts
    (forking a process with threads can deadlock the child), use it once, then `close()` it.
    """

    def __init__(self, database: Path, config: Config) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._window = timedelta(hours=config.dedup.window_hours)
        self._seeding: asyncio.Future[Any] | None = None
        gc.freeze()  # the child's collector then leaves this process's pages alone (see update._parse_pool)
        try:
            self._process = context.Process(
                target=_serve, args=(child, database, config), name="aggregator-cluster", daemon=True
            )
            self._process.start()
        finally:
            gc.unfreeze()
            child.close()

    def seed(self, first_new: datetime) -> None:
        """Start seeding for new entries published from `first_new` on (once; later calls do nothing)."""
        if self._seeding is None:
            self._conn.send(("seed", first_new - self._window - SEED_MARGIN))
            self._seeding = asyncio.ensure_future(asyncio.to_thread(self._conn.recv))

    async def cluster(self, now: datetime) -> int:
        """Cluster every entry without a story in the child; its errors are raised here."""
        if self._seeding is not None:
            await self._seeding  # a seed that failed is answered by seeding again when clustering
        self._conn.send(("cluster", now))
        status, value = await asyncio.to_thread(self._conn.recv)
        if status == "error":
            raise value
        return int(value)

    def close(self) -> None:
        """Stop the child (at once when it is still working: a cancelled pass) and release the pipe."""
        self._conn.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(conn: Connection, database: Path, config: Config) -> None:
    """The child's loop: seed on request, cluster on request, then exit."""
    clusterer, store = StoryClusterer(), None
    try:
        while True:
            try:
                command, moment = conn.recv()
            except EOFError:
                return
            try:
                if store is None:
                    store = Store.open(database)
                if command == "seed":
                    clusterer.index_for(store, config, moment)
                    conn.send(("ok", None))
                else:
                    conn.send(("ok", clusterer.run(store, config, moment)))
                    return
            except Exception as e:  # sent to the parent, which raises it (pickled, or described when it cannot be)
                try:
                    conn.send(("error", e))
                except Exception:
                    conn.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))
    finally:
        if store is not None:
            store.close()
        conn.close()
