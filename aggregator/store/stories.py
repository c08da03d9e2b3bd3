"""StoryWriter: story rows and assignments, written inside one transaction of the clusterer."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable

from ..models import (
    Assignment,
    DedupItem,
)
from .rows import format_time

_STORY_NAMESPACE = uuid.UUID("6f1d7a52-4b8e-4f0e-9c1a-0a6e2b7c3d10")


class StoryWriter:
    """Writes story assignments inside `Store.story_writer()`; creates stories as dedup starts them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._touched: set[int] = set()
        self._assigned: list[tuple[int, str, float, int]] = []  # written in batches by flush()
        self._leads: dict[int, int] = {}

    def new_story(self, item: DedupItem) -> int:
        """Create a story for the entry that starts it; the uid derives from that entry, so it never changes."""
        feed_url, guid = self._conn.execute(
            "SELECT f.url, e.guid FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE e.id = ?",
            (item.entry_id,),
        ).fetchone()
        uid = "urn:uuid:" + str(uuid.uuid5(_STORY_NAMESPACE, f"{feed_url}\n{guid}"))
        stamp = format_time(item.published)
        cursor = self._conn.execute(
            "INSERT INTO stories (uid, title, first_seen, published, updated, latest) VALUES (?, ?, ?, ?, ?, ?)",
            (uid, item.title, stamp, stamp, stamp, stamp),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def assign(self, assignment: Assignment, story_id: int) -> None:
        """Put one entry in a story, recording how it was matched (written by the next flush())."""
        self._assigned.append((story_id, assignment.method, round(assignment.score, 4), assignment.entry_id))
        self._touched.add(story_id)
        if len(self._assigned) >= 1000:
            self.flush()

    @property
    def touched(self) -> frozenset[int]:
        """The stories given an entry in this transaction."""
        return frozenset(self._touched)

    def leads(self, story_ids: Iterable[int]) -> dict[int, int | None]:
        """The current lead entry of each of these stories."""
        ids = sorted(story_ids)
        found: dict[int, int | None] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._conn.execute(f"SELECT id, lead_entry_id FROM stories WHERE id IN ({marks})", chunk))
        return found

    def set_lead(self, story_id: int, entry_id: int) -> None:
        """Make `entry_id` the story's lead (its title and link in the outputs), written by refresh()."""
        self._leads[story_id] = entry_id

    def flush(self) -> None:
        """Write the assignments made so far: one executemany instead of one statement per entry."""
        self._conn.executemany(
            "UPDATE entries SET story_id = ?, story_method = ?, story_score = ? WHERE id = ?", self._assigned
        )
        self._assigned.clear()

    def refresh(self) -> None:
        """Recompute lead entry, title, dates and counts of every story touched."""
        self.flush()
        self._conn.executemany(
            "UPDATE stories SET lead_entry_id = ? WHERE id = ?", [(e, s) for s, e in self._leads.items()]
        )
        ids = sorted(self._touched)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            self._conn.execute(_REFRESH_STORIES.format(marks=marks), chunk + chunk)
            self._conn.execute(_REFRESH_LEADS.format(marks=marks), chunk)


# Dates and counts from the entries; a lead that no longer belongs to the story (its entry pruned or
# reassigned) falls back to the report of the highest `priority` first seen (a copy that a feed backdates
# later never becomes the lead that way).
_REFRESH_STORIES = """
WITH fallback AS (
    SELECT e.story_id, e.id,
           ROW_NUMBER() OVER (PARTITION BY e.story_id ORDER BY f.priority DESC, e.first_seen, e.id) AS rank
    FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE e.story_id IN ({marks})
), totals AS (
    SELECT story_id, min(first_seen) AS first_seen, min(published) AS published,
           max(max(updated, first_seen)) AS updated, max(published) AS latest, count(*) AS entry_count,
           count(DISTINCT feed_id) AS feed_count
    FROM entries WHERE story_id IN ({marks}) GROUP BY story_id
)
UPDATE stories SET
    lead_entry_id = CASE
        WHEN EXISTS (SELECT 1 FROM entries k WHERE k.id = stories.lead_entry_id AND k.story_id = stories.id)
        THEN lead_entry_id ELSE r.id END,
    first_seen = t.first_seen, published = t.published, updated = t.updated, latest = t.latest,
    entry_count = t.entry_count, feed_count = t.feed_count
FROM fallback r JOIN totals t ON t.story_id = r.story_id
WHERE r.rank = 1 AND stories.id = r.story_id
"""
# The story's title and link are its lead's.
_REFRESH_LEADS = """
UPDATE stories SET title = e.title, url = e.url FROM entries e
WHERE e.id = stories.lead_entry_id AND stories.id IN ({marks})
"""
