"""Story clustering against the store: the dedup index of the window, kept between passes or seeded.

`StoryClusterer` feeds the pure index (dedup.py) from the store and writes what it decides; the service keeps
one between its passes, a one-shot pass seeds one from the stored term vectors of the window.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from .config import Config, DedupSettings
from .dedup import DEFAULTS, Params, StoryIndex
from .store import Store
from .store.stories import StoryWriter

__all__ = ["EVICTION_SLACK", "StoryClusterer", "cluster_new_entries", "params_for"]


def params_for(settings: DedupSettings) -> Params:
    """The matching parameters feeds.yaml's `dedup:` section asks for (the measured defaults otherwise)."""
    return Params(
        window=timedelta(hours=settings.window_hours),
        threshold=settings.threshold or DEFAULTS.threshold,
        title_only_threshold=settings.title_only_threshold or DEFAULTS.title_only_threshold,
        decay_hours=settings.decay_hours or DEFAULTS.decay_hours,
    )


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
        count = 0
        try:
            # The write lock first, then the entries without a story: another process clustering at the same
            # time (two `aggregator update`s) waits here, then finds them assigned instead of assigning them again.
            with store.story_writer() as writer:
                # In batches, oldest first: the backlog's summaries are read a page at a time, and the index keeps
                # only what it needs of each entry, so memory follows the window, not the backlog.
                batches = store.unassigned_batches()
                first = next(batches, None)
                if not first:
                    return 0
                window = timedelta(hours=config.dedup.window_hours)
                index = self.index_for(store, config, first[0].published - window)
                for items in itertools.chain([first], batches):
                    index.observe(items)
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
                self._choose_leads(store, index, writer)
        except BaseException:
            self.reset()  # the transaction rolled back: the index holds assignments that were never stored
            raise
        return count

    @staticmethod
    def _choose_leads(store: Store, index: StoryIndex, writer: StoryWriter) -> None:
        """Give each story that gained an entry its most representative report as lead (priority feeds
        first), keeping the current one unless another is clearly more representative."""
        priorities = store.feed_priorities()
        current = writer.leads(writer.touched)
        for story_id in writer.touched:
            lead = index.representative(story_id, lambda feed_id: priorities.get(feed_id, 0), current.get(story_id))
            if lead is not None:
                writer.set_lead(story_id, lead)

    def index_for(self, store: Store, config: Config, since: datetime) -> StoryIndex:
        """The kept index when it covers `since` with the same settings; else a new one seeded from the store."""
        settings = config.dedup
        covered = self._covers_from is not None and since >= self._covers_from
        if self._index is not None and self._settings == settings and covered:
            return self._index
        index = StoryIndex(params_for(settings))
        for item, story_id in store.window_entries(since):
            index.add(item, story_id)
        self._index, self._settings, self._covers_from = index, settings, since
        return index
