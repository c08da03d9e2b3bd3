"""Entries: storing one fetched feed's entries with their term vectors, and reading them back for clustering."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

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
        """Store one successfully fetched feed and its entries in one transaction."""
        stamp = format_time(now)
        with self.transaction():
            conn = self.db.conn
            known = self._known_entries(state.feed_id, [e.guid for e in entries])
            buried = tombstoned(conn, state.feed_id, [e.guid for e in entries if e.guid not in known])
            new_rows: list[tuple[Any, ...]] = []
            changed_rows: list[tuple[Any, ...]] = []
            changed_undated: list[tuple[Any, ...]] = []
            new_terms: dict[str, TermVector | None] = {}
            changed_terms: list[tuple[int, TermVector | None]] = []
            resent: list[tuple[str, int]] = []
            seen: set[str] = set()
            for entry in entries:
                if entry.guid in seen:  # a feed that repeats an id: the first occurrence wins
                    continue
                seen.add(entry.guid)
                if entry.guid in buried:  # pruned by retention: its tombstone keeps it from coming back
                    continue
                old = known.get(entry.guid)
                if old is None:
                    new_rows.append(entry_row(state.feed_id, entry, stamp))
                    new_terms[entry.guid] = entry.terms
                elif old[1] != entry.content_hash:
                    (changed_rows if entry.dated else changed_undated).append((*entry_values(entry), old[0]))
                    changed_terms.append((old[0], entry.terms))
                elif entry.source_hash and old[2] != entry.source_hash:  # the same content sent differently
                    resent.append((entry.source_hash, old[0]))
            conn.executemany(INSERT_ENTRY, new_rows)
            conn.executemany("UPDATE entries SET source_hash = ? WHERE id = ?", resent)
            conn.executemany(UPDATE_ENTRY, changed_rows)
            # an undated entry keeps the dates it was first stored with: it is not news again for changing
            conn.executemany(UPDATE_UNDATED_ENTRY, [without_dates(row) for row in changed_undated])
            mark_listed_tombstones(conn, state.feed_id, buried)
            new_entries = self._known_entries(state.feed_id, [row[1] for row in new_rows])
            new_ids = tuple(new_entries.values())
            self._write_terms([(new_entries[guid][0], terms) for guid, terms in new_terms.items()] + changed_terms)
            conn.execute(
                """UPDATE feeds SET title = ?, site_url = ?, etag = ?, last_modified = ?, body_hash = ?,
                       last_fetched_at = ?, last_status = ?, last_error = ?, error_count = ?,
                       failing_since = CASE WHEN ? IS NULL THEN NULL ELSE failing_since END,
                       last_new_entry_at = CASE WHEN ? THEN ? ELSE last_new_entry_at END
                   WHERE id = ?""",
                (
                    parsed.title, parsed.link, result.etag, result.last_modified, result.body_hash,
                    stamp, result.http_status, error_text(parsed.warning), 0, parsed.warning,
                    bool(new_rows), stamp, state.feed_id,
                ),
            )  # fmt: skip
        return SavedFeed(new_ids=tuple(known[0] for known in new_ids), updated=len(changed_rows) + len(changed_undated))

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

    def _known_entries(self, feed_id: int, guids: Sequence[str]) -> dict[str, tuple[int, str, str | None]]:
        found: dict[str, tuple[int, str, str | None]] = {}
        for start in range(0, len(guids), 500):
            chunk = guids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor = self.db.conn.execute(
                f"SELECT guid, id, content_hash, source_hash FROM entries WHERE feed_id = ? AND guid IN ({marks})",
                (feed_id, *chunk),
            )
            found.update((guid, (entry_id, content, source)) for guid, entry_id, content, source in cursor)
        return found

    # --- for story clustering --------------------------------------------------------------------------------

    def unassigned_entries(self) -> list[DedupItem]:
        """Entries that belong to no story yet, oldest first (the order dedup must see them in)."""
        rows = self._query(
            f"""SELECT {DEDUP_COLUMNS} FROM entries e INDEXED BY entries_unassigned {JOIN_TERMS}
                WHERE e.story_id IS NULL ORDER BY e.published, e.id"""
        )
        return [dedup_item_from_row(row) for row in rows]

    def unassigned_batches(self, size: int = 2000) -> Iterator[list[DedupItem]]:
        """Entries without a story, oldest first like unassigned_entries(), `size` at a time.

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
