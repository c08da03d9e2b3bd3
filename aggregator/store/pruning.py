"""Pruning: deleting old stories and their entries, and the tombstones that keep pruned entries from returning.

Which stories an output still shows, and how old is old, is decided by retention.py; this deletes what it is
told to. A pruned entry leaves (feed, guid, content hash) in `tombstones`; each new document of its feed marks
the tombstones it still lists (`listed`), and prune forgets the others once they are old enough.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime

from .base import StoreBase
from .results import PruneResult
from .rows import format_time

__all__ = ["PruningMixin", "mark_listed_tombstones", "tombstoned"]


class PruningMixin(StoreBase):
    """Deleting old stories and entries, leaving tombstones."""

    def prune(
        self,
        cutoff: datetime,
        keep: Iterable[int],
        now: datetime,
        *,
        dry_run: bool = False,
        tombstones_before: datetime | None = None,
    ) -> PruneResult:
        """Delete the stories (but `keep`) whose newest entry predates `cutoff`, leaving tombstones of entries;
        forget the tombstones made before `tombstones_before` whose feed's latest document no longer lists them."""
        stamp, limit = format_time(now), format_time(cutoff)
        # A story's age is its newest entry's date (published or updated), not when we fetched it: an
        # old article found in a newly added feed is old news.
        doomed = "story_id IN (SELECT id FROM temp.prune_old) OR (story_id IS NULL AND max(published, updated) < ?)"
        with self.transaction():
            conn = self.db.conn
            for table in ("prune_keep", "prune_old"):
                conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY)")
                conn.execute(f"DELETE FROM temp.{table}")
            conn.executemany("INSERT OR IGNORE INTO temp.prune_keep (id) VALUES (?)", ((i,) for i in keep))
            conn.execute(
                """INSERT INTO temp.prune_old (id) SELECT story_id FROM entries WHERE story_id IS NOT NULL
                   GROUP BY story_id HAVING max(max(published, updated)) < ?""",
                (limit,),
            )
            (kept,) = conn.execute(
                "SELECT count(*) FROM temp.prune_old WHERE id IN (SELECT id FROM temp.prune_keep)"
            ).fetchone()
            conn.execute("DELETE FROM temp.prune_old WHERE id IN (SELECT id FROM temp.prune_keep)")
            (stories,) = conn.execute("SELECT count(*) FROM temp.prune_old").fetchone()
            (entries,) = conn.execute(f"SELECT count(*) FROM entries WHERE {doomed}", (limit,)).fetchone()
            forgotten = "NOT listed AND pruned_at < ?"
            forget_before = format_time(tombstones_before) if tombstones_before is not None else ""
            (tombstones,) = conn.execute(
                f"SELECT count(*) FROM tombstones WHERE {forgotten}", (forget_before,)
            ).fetchone()
            if not dry_run:
                conn.execute(f"DELETE FROM tombstones WHERE {forgotten}", (forget_before,))
                conn.execute(
                    f"""INSERT OR IGNORE INTO tombstones (feed_id, guid, content_hash, pruned_at)
                        SELECT feed_id, guid, content_hash, ? FROM entries WHERE {doomed}""",
                    (stamp, limit),
                )
                conn.execute(f"DELETE FROM entries WHERE {doomed}", (limit,))
                conn.execute("DELETE FROM stories WHERE id IN (SELECT id FROM temp.prune_old)")
            conn.execute("DELETE FROM temp.prune_keep")
            conn.execute("DELETE FROM temp.prune_old")
        return PruneResult(
            cutoff=cutoff, entries=entries, stories=stories, kept_stories=kept, dry_run=dry_run, tombstones=tombstones
        )


def tombstoned(conn: sqlite3.Connection, feed_id: int, guids: Sequence[str]) -> set[str]:
    """Which of `guids` a feed's tombstones name (inside the caller's transaction)."""
    found: set[str] = set()
    for start in range(0, len(guids), 500):
        chunk = guids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        cursor = conn.execute(f"SELECT guid FROM tombstones WHERE feed_id = ? AND guid IN ({marks})", (feed_id, *chunk))
        found.update(guid for (guid,) in cursor)
    return found


def mark_listed_tombstones(conn: sqlite3.Connection, feed_id: int, listed: Iterable[str]) -> None:
    """Of a feed's tombstones, mark those its new document lists; prune may forget the others."""
    conn.execute("UPDATE tombstones SET listed = 0 WHERE feed_id = ? AND listed", (feed_id,))
    conn.executemany("UPDATE tombstones SET listed = 1 WHERE feed_id = ? AND guid = ?", ((feed_id, g) for g in listed))
