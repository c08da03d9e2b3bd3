"""Entries: writing what decide.py says one fetched feed stores, and reading entries back for clustering."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from ..decide import EntryForUpdate, FeedUpdateIntent, decide_update
from ..models import DedupItem, Entry, FeedState, FetchResult, ParsedFeed, TermVector
from .base import StoreBase
from .pruning import mark_listed_tombstones, tombstoned
from .results import SavedFeed
from .rows import (
    DEDUP_COLUMNS,
    INSERT_ENTRY,
    JOIN_TERMS,
    TERMS_COLUMNS,
    UPDATE_ENTRY,
    UPDATE_UNDATED_ENTRY,
    dedup_item_from_row,
    entry_row,
    entry_values,
    error_text,
    format_time,
    term_vector_row,
    without_dates,
)

__all__ = ["EntriesMixin"]


class EntriesMixin(StoreBase):
    """The entries and entry_terms tables."""

    def save_feed(
        self,
        state: FeedState,
        result: FetchResult,
        parsed: ParsedFeed,
        entries: Sequence[Entry],
        now: datetime,
    ) -> SavedFeed:
        """Store one successfully fetched feed and its entries in one transaction.

        What to write is decided by decide.decide_update from what this store holds of the document's entries;
        this reads that and writes what it says.
        """
        with self.transaction():
            guids = [entry.guid for entry in entries]
            stored = self._entries_for_update(state.feed_id, guids)
            buried = tombstoned(self.db.conn, state.feed_id, [guid for guid in guids if guid not in stored])
            return self._write_update(decide_update(state.feed_id, stored, buried, result, parsed, entries, now))

    def _write_update(self, update: FeedUpdateIntent) -> SavedFeed:
        """Write one feed's update intents (inside the caller's transaction)."""
        conn = self.db.conn
        stamp = format_time(update.fetched_at)
        conn.executemany(INSERT_ENTRY, [entry_row(update.feed_id, entry, stamp) for entry in update.new])
        conn.executemany("UPDATE entries SET source_hash = ? WHERE id = ?", [(h, i) for i, h in update.resent])
        rewritten = [(change, (*entry_values(change.entry), change.entry_id)) for change in update.changed]
        conn.executemany(UPDATE_ENTRY, [row for change, row in rewritten if not change.keep_dates])
        conn.executemany(UPDATE_UNDATED_ENTRY, [without_dates(row) for change, row in rewritten if change.keep_dates])
        mark_listed_tombstones(conn, update.feed_id, update.listed_tombstones)
        inserted = self._entries_for_update(update.feed_id, [entry.guid for entry in update.new])
        self._write_terms(
            [(inserted[entry.guid].entry_id, entry.terms) for entry in update.new]
            + [(change.entry_id, change.entry.terms) for change in update.changed]
        )
        conn.execute(
            """UPDATE feeds SET title = ?, site_url = ?, etag = ?, last_modified = ?, body_hash = ?,
                   last_fetched_at = ?, last_status = ?, last_error = ?, error_count = 0,
                   failing_since = CASE WHEN ? IS NULL THEN NULL ELSE failing_since END,
                   last_new_entry_at = CASE WHEN ? THEN ? ELSE last_new_entry_at END
               WHERE id = ?""",
            (
                update.title, update.site_url, update.etag, update.last_modified, update.body_hash,
                stamp, update.http_status, error_text(update.warning), update.warning,
                bool(update.new), stamp, update.feed_id,
            ),
        )  # fmt: skip
        return SavedFeed(new_ids=tuple(known.entry_id for known in inserted.values()), updated=len(update.changed))

    def source_hashes(self, feed_id: int) -> dict[str, str]:
        """guid -> source hash of every stored entry of a feed (those stored before m007 have none)."""
        rows = self._query(
            "SELECT guid, source_hash FROM entries WHERE feed_id = ? AND source_hash IS NOT NULL", (feed_id,)
        )
        return dict(rows)

    def _write_terms(self, vectors: Sequence[tuple[int, TermVector | None]]) -> None:
        """Store (or replace) entries' term vectors; an entry without one loses any stale row."""
        conn = self.db.conn
        conn.executemany(
            "DELETE FROM entry_terms WHERE entry_id = ?", [(entry_id,) for entry_id, terms in vectors if not terms]
        )
        conn.executemany(
            f"INSERT OR REPLACE INTO entry_terms ({TERMS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [term_vector_row(entry_id, terms) for entry_id, terms in vectors if terms],
        )

    def _entries_for_update(self, feed_id: int, guids: Sequence[str]) -> dict[str, EntryForUpdate]:
        """What this store holds of a feed's entries with these guids, by guid."""
        found: dict[str, EntryForUpdate] = {}
        for start in range(0, len(guids), 500):
            chunk = guids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor = self.db.conn.execute(
                f"SELECT guid, id, content_hash, source_hash FROM entries WHERE feed_id = ? AND guid IN ({marks})",
                (feed_id, *chunk),
            )
            found.update((guid, EntryForUpdate(*held)) for guid, *held in cursor)
        return found

    # --- for story clustering --------------------------------------------------------------------------------

    def has_unassigned(self) -> bool:
        """Whether any entry has no story yet (new this pass, or left by a pass that crashed before clustering)."""
        return bool(self._query("SELECT 1 FROM entries INDEXED BY entries_unassigned WHERE story_id IS NULL LIMIT 1"))

    def unassigned_batches(self, size: int = 2000) -> Iterator[list[DedupItem]]:
        """Entries without a story, oldest first (the order dedup must see them in), `size` at a time.

        Pages by (published, id), so the whole backlog (50,000 entries with their summary text after a cold
        pass over 1,000 feeds) is never in memory at once, and entries assigned meanwhile do not shift pages.
        """
        after: tuple[str, int] = ("", 0)
        while True:
            rows = self._query(
                f"""SELECT {DEDUP_COLUMNS} FROM entries e INDEXED BY entries_unassigned {JOIN_TERMS}
                    WHERE e.story_id IS NULL AND (e.published, e.id) > (?, ?) ORDER BY e.published, e.id LIMIT ?""",
                (*after, size),
            )
            if not rows:
                return
            after = (rows[-1][5], rows[-1][0])
            yield [dedup_item_from_row(row) for row in rows]

    def window_entries(self, since: datetime) -> Iterator[tuple[DedupItem, int]]:
        """Entries published since `since` that already have a story, to seed the dedup index.

        Their stored term vectors come with them (an entry without one brings its text instead).
        """
        rows = self._iterate(
            f"""SELECT {DEDUP_COLUMNS}, e.story_id FROM entries e {JOIN_TERMS}
                WHERE e.published >= ? AND e.story_id IS NOT NULL ORDER BY e.published, e.id""",
            (format_time(since),),
        )
        return ((dedup_item_from_row(row), row[-1]) for row in rows)
