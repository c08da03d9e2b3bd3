"""Stories: the story rows clustering writes (`StoryWriter`) and the queries outputs and people make of them."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ..models import Assignment, DedupItem, Story, StorySource
from .base import StoreBase
from .rows import format_time, story_from_row, story_source_from_row

__all__ = ["StoriesMixin", "StoryWriter"]

# A story row with its lead entry's text, as latest_stories and story() read it.
_STORY_SELECT = """SELECT s.*, e.summary, e.content, e.authors, e.categories, e.enclosures
    FROM stories s LEFT JOIN entries e ON e.id = s.lead_entry_id"""
# Below this many entries in an output's feeds, latest_stories lists their stories instead of testing each.
_FEW_ENTRIES = 5_000


class StoriesMixin(StoreBase):
    """The stories table: clustering's writes, and stories with their outlets for outputs and the CLI."""

    @contextmanager
    def story_writer(self) -> Iterator[StoryWriter]:
        """A transaction in which entries are assigned to stories; story rows are refreshed at the end."""
        with self.transaction():
            writer = StoryWriter(self.db.conn)
            yield writer
            writer.refresh()

    def latest_stories(
        self,
        limit: int,
        *,
        feed_ids: Iterable[int] | None = None,
        min_sources: int = 1,
        since: datetime | None = None,
    ) -> list[Story]:
        """The stories of the latest activity (their newest report first), with their sources, for an output."""
        where, params = ["s.feed_count >= ?"], [min_sources]
        if since is not None:
            where.append("s.published >= ?")
            params.append(format_time(since))  # type: ignore[arg-type]
        if feed_ids is not None:
            ids = sorted(set(feed_ids)) or [-1]
            marks = ",".join("?" * len(ids))
            # Few entries in these feeds: list their stories directly. Many: walk the newest stories and test
            # each, which stops early. (1M entries: a new feed 0 ms instead of 110; a broad tag stays ~10 ms.)
            counted = f"SELECT count(*) FROM (SELECT 1 FROM entries WHERE feed_id IN ({marks}) LIMIT ?)"
            if self._query(counted, [*ids, _FEW_ENTRIES])[0][0] < _FEW_ENTRIES:
                where.append(f"s.id IN (SELECT story_id FROM entries WHERE feed_id IN ({marks}))")
            else:
                where.append(f"EXISTS (SELECT 1 FROM entries e WHERE e.story_id = s.id AND e.feed_id IN ({marks}))")
            params.extend(ids)
        rows = self._rows(
            f"""{_STORY_SELECT} WHERE {" AND ".join(where)} ORDER BY s.latest DESC, s.id DESC LIMIT ?""",
            [*params, limit],
        )
        sources = self._sources([row["id"] for row in rows])
        return [story_from_row(row, sources.get(row["id"], ())) for row in rows]

    def story(self, key: str) -> Story | None:
        """One story by its number or its uid, with its sources; None when there is no such story."""
        column = "id" if key.isdigit() else "uid"
        rows = self._rows(
            f"{_STORY_SELECT} WHERE s.{column} = ?",
            (int(key) if column == "id" else key,),
        )
        if not rows:
            return None
        return story_from_row(rows[0], self._sources([rows[0]["id"]]).get(rows[0]["id"], ()))

    def story_entries(self, story_id: int) -> list[dict[str, Any]]:
        """Every entry of a story with its outlet and how it joined, earliest first."""
        return self._rows(
            """SELECT e.id, e.guid, e.title, e.url, e.published, e.first_seen, e.story_method, e.story_score,
                      COALESCE(f.configured_title, f.title, f.url) AS feed_title, f.url AS feed_url
               FROM entries e JOIN feeds f ON f.id = e.feed_id
               WHERE e.story_id = ? ORDER BY e.published, e.id""",
            (story_id,),
        )

    def _sources(self, story_ids: Sequence[int]) -> dict[int, tuple[StorySource, ...]]:
        """Each story's outlets: one source per feed (the lead, or the feed's earliest report), the lead first."""
        if not story_ids:
            return {}
        marks = ",".join("?" * len(story_ids))
        rows = self._rows(
            f"""SELECT * FROM (
                    SELECT e.story_id, e.title, e.url, e.published, e.id, f.priority, f.url AS feed_url,
                           f.site_url, COALESCE(f.configured_title, f.title, f.url) AS feed_title,
                           e.id = s.lead_entry_id AS lead,
                           ROW_NUMBER() OVER (PARTITION BY e.story_id, e.feed_id
                                              ORDER BY e.id = s.lead_entry_id DESC, e.published, e.id) AS nth
                    FROM entries e JOIN feeds f ON f.id = e.feed_id JOIN stories s ON s.id = e.story_id
                    WHERE e.story_id IN ({marks}))
                WHERE nth = 1 ORDER BY story_id, lead DESC, priority DESC, published, id""",
            list(story_ids),
        )
        grouped: dict[int, list[StorySource]] = {}
        for row in rows:
            grouped.setdefault(row["story_id"], []).append(story_source_from_row(row))
        return {story_id: tuple(items) for story_id, items in grouped.items()}


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
