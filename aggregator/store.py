"""The SQLite store: schema, migrations and every query. The only module that speaks SQL.

Users query this database with their own tools, so its tables are a public contract documented in README.
WAL mode lets readers (sqlite3, Datasette) work while a pass writes; every feed's update is one transaction,
so a crash leaves each feed either before or after its update, never half-way. Times are ISO-8601 UTC text
(`2026-11-26T03:12:01Z`), which sorts correctly as text.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import uuid
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .config import OutputConfig
from .errors import QueryError, StoreError
from .models import (
    Assignment,
    DedupItem,
    Enclosure,
    Entry,
    FeedSource,
    FeedState,
    FetchResult,
    ParsedFeed,
    Story,
    StorySource,
    TermVector,
)
from .schedule import FeedSchedule, Plan

__all__ = [
    "SCHEMA_VERSION",
    "FeedHealth",
    "Highlighted",
    "PruneResult",
    "SavedFeed",
    "SearchMatch",
    "SearchResult",
    "Store",
    "format_time",
    "parse_time",
]

BUSY_TIMEOUT_SECONDS = 30.0
_STORY_NAMESPACE = uuid.UUID("6f1d7a52-4b8e-4f0e-9c1a-0a6e2b7c3d10")

migrations = Migrations("aggregator")


@migrations()
def m001_initial(db: Database) -> None:
    """Feeds, entries, stories and full-text search over entries."""
    db.execute("""
        CREATE TABLE feeds (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            title TEXT,
            configured_title TEXT,
            site_url TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            priority INTEGER NOT NULL DEFAULT 0,
            active INTEGER NOT NULL DEFAULT 1,
            etag TEXT,
            last_modified TEXT,
            body_hash TEXT,
            last_fetched_at TEXT,
            last_status INTEGER,
            last_error TEXT,
            error_count INTEGER NOT NULL DEFAULT 0,
            failing_since TEXT,
            last_new_entry_at TEXT,
            created_at TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            url TEXT,
            lead_entry_id INTEGER,
            first_seen TEXT NOT NULL,
            published TEXT NOT NULL,
            updated TEXT NOT NULL,
            entry_count INTEGER NOT NULL DEFAULT 0,
            feed_count INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("""
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
            guid TEXT NOT NULL,
            url TEXT,
            canonical_url TEXT,
            title TEXT NOT NULL,
            summary TEXT,
            summary_text TEXT NOT NULL DEFAULT '',
            content TEXT,
            published TEXT NOT NULL,
            updated TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            authors TEXT NOT NULL DEFAULT '[]',
            categories TEXT NOT NULL DEFAULT '[]',
            enclosures TEXT NOT NULL DEFAULT '[]',
            content_hash TEXT NOT NULL,
            story_id INTEGER REFERENCES stories(id),
            story_method TEXT,
            story_score REAL,
            UNIQUE (feed_id, guid)
        )""")
    db.execute("CREATE INDEX entries_story ON entries(story_id)")
    db.execute("CREATE INDEX entries_canonical_url ON entries(canonical_url)")
    db.execute("CREATE INDEX entries_published ON entries(published)")
    db.execute("CREATE INDEX entries_unassigned ON entries(published, id) WHERE story_id IS NULL")
    db.execute("CREATE INDEX stories_published ON stories(published DESC, id DESC)")
    db.table("entries").enable_fts(["title", "summary_text"], create_triggers=True, tokenize="unicode61")


@migrations()
def m002_scheduling(db: Database) -> None:
    """The service's schedule: next fetch per feed, why, disabled feeds, confirmed redirects, held hosts."""
    for column in (
        "next_fetch_at TEXT",  # NULL: due now (never fetched)
        "interval_seconds INTEGER",  # the interval the last plan used, before jitter
        "schedule_reason TEXT",  # why: interval, adaptive, declared, cache, min_interval, backoff, retry-after
        "declared_interval_seconds INTEGER",  # the feed's own <ttl> or sy:updatePeriod, kept for 304s
        "disabled_reason TEXT",  # set: the scheduler stopped polling the feed (410 Gone, a duplicate)
        "disabled_at TEXT",
        "fetch_url TEXT",  # set: a confirmed permanent redirect; fetched instead of `url`
        "redirect_url TEXT",  # the permanent redirect target seen on the last fetches...
        "redirect_count INTEGER NOT NULL DEFAULT 0",  # ...and how many times in a row
    ):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column}")
    db.execute("CREATE INDEX feeds_next_fetch ON feeds(next_fetch_at) WHERE active = 1 AND disabled_reason IS NULL")
    # a 429 holds back every feed of its host until `until`
    db.execute("CREATE TABLE host_holds (host TEXT PRIMARY KEY, until TEXT NOT NULL, reason TEXT) WITHOUT ROWID")


@migrations()
def m003_query(db: Database) -> None:
    """Tombstones of pruned entries, the public views story_sources and feed_health, and query indexes."""
    # A pruned entry leaves (feed, guid, hash) so the next fetch of a feed that still lists it skips it.
    db.execute("""
        CREATE TABLE tombstones (
            feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
            guid TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            pruned_at TEXT NOT NULL,
            PRIMARY KEY (feed_id, guid)
        ) WITHOUT ROWID""")
    # Newest entry per feed for `aggregator feeds`; `--feed` and `--since` search filters.
    db.execute("CREATE INDEX entries_feed_published ON entries(feed_id, published)")
    # Entries per feed, kept by triggers: counting them for 10,000 feeds of a 1,000,000-entry store took
    # 300 ms (benchmarks/query.py); `aggregator feeds` must answer in under 200 ms.
    db.execute("ALTER TABLE feeds ADD COLUMN entry_count INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE feeds SET entry_count = (SELECT count(*) FROM entries e WHERE e.feed_id = feeds.id)")
    db.execute("""
        CREATE TRIGGER entries_count_insert AFTER INSERT ON entries BEGIN
            UPDATE feeds SET entry_count = entry_count + 1 WHERE id = new.feed_id;
        END""")
    db.execute("""
        CREATE TRIGGER entries_count_delete AFTER DELETE ON entries BEGIN
            UPDATE feeds SET entry_count = entry_count - 1 WHERE id = old.feed_id;
        END""")
    # Titles name the story; a title hit ranks above the same hit in a summary (search ranks by `rank`).
    db.execute("INSERT INTO entries_fts(entries_fts, rank) VALUES ('rank', 'bm25(4.0, 1.0)')")
    db.execute("""
        CREATE VIEW story_sources AS
        SELECT s.id AS story_id, s.uid AS story_uid, s.title AS story_title, s.url AS story_url,
               s.published AS story_published, s.updated AS story_updated, s.feed_count,
               e.id AS entry_id, e.title AS entry_title, e.url AS entry_url, e.published AS entry_published,
               e.story_method, e.story_score, f.id AS feed_id, f.url AS feed_url,
               COALESCE(f.configured_title, f.title, f.url) AS feed_title, f.site_url
        FROM stories s JOIN entries e ON e.story_id = s.id JOIN feeds f ON f.id = e.feed_id""")
    db.execute("""
        CREATE VIEW feed_health AS
        SELECT f.id, f.url, COALESCE(f.configured_title, f.title, f.url) AS title, f.tags, f.active,
               CASE WHEN NOT f.active THEN 'removed' WHEN f.disabled_reason IS NOT NULL THEN 'disabled'
                    WHEN f.failing_since IS NOT NULL THEN 'failing'
                    WHEN f.last_fetched_at IS NULL THEN 'new' ELSE 'ok' END AS status,
               f.failing_since, f.error_count, f.last_status, f.last_error, f.disabled_reason,
               f.last_fetched_at, f.next_fetch_at, f.last_new_entry_at,
               f.entry_count AS entries,
               (SELECT max(e.published) FROM entries e WHERE e.feed_id = f.id) AS newest_entry
        FROM feeds f""")


@migrations()
def m004_output_filters(db: Database) -> None:
    """An index for outputs filtered by `tags:` or `feeds:` (benchmarks/publish.py)."""
    # latest_stories checks, story by story, whether one of the output's feeds reported it. Covering that
    # check took an output whose feeds matched no recent story from 720 to ~110 ms on the benchmark's
    # 1,000,000-entry store, and one feed's output from 28 to 9 ms.
    db.execute("CREATE INDEX entries_feed_story ON entries(feed_id, story_id)")
    # Statistics from an earlier ANALYZE (someone ran it by hand) would not know the new index, and the
    # planner then probes it once per feed for the outlets of 1,000 stories: 124 instead of 9 ms.
    if db["sqlite_stat1"].exists():
        db.execute("ANALYZE entries")


@migrations()
def m005_fts_on_text_updates(db: Database) -> None:
    """Re-index an entry for search only when its title or summary text changes (issue 8)."""
    # sqlite-utils' trigger fires on every UPDATE, so assigning an entry to a story deleted and re-inserted its
    # text in entries_fts: 0.3 ms per entry, 3 of the 35 seconds of a cold 200x50 benchmark pass.
    db.execute("DROP TRIGGER IF EXISTS entries_au")
    db.execute("""
        CREATE TRIGGER entries_au AFTER UPDATE OF title, summary_text ON entries BEGIN
          INSERT INTO entries_fts (entries_fts, rowid, title, summary_text)
            VALUES('delete', old.rowid, old.title, old.summary_text);
          INSERT INTO entries_fts (rowid, title, summary_text) VALUES (new.rowid, new.title, new.summary_text);
        END""")


@migrations()
def m006_entry_terms(db: Database) -> None:
    """Each entry's story-matching term vector, so seeding the dedup index re-reads no text (issue 8)."""
    # Derived data: a missing row is rebuilt from the entry's text when it is clustered. Re-tokenizing the
    # window's 50,000 summaries was 25 of the 32 seconds of a 1000x50 benchmark pass with few new entries.
    db.execute("""
        CREATE TABLE entry_terms (
            entry_id INTEGER PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
            terms TEXT NOT NULL,
            weights BLOB NOT NULL,
            keys TEXT NOT NULL,
            title_key TEXT NOT NULL,
            title_weight REAL NOT NULL,
            headline INTEGER NOT NULL,
            has_summary INTEGER NOT NULL
        )""")


@migrations()
def m007_source_hash(db: Database) -> None:
    """entries.source_hash: a digest of the entry as its feed sent it, so a pass over a changed feed does not
    normalize again the entries it repeats unchanged (issue 8)."""
    db.execute("ALTER TABLE entries ADD COLUMN source_hash TEXT")


SCHEMA_VERSION = len(migrations._migrations)


@dataclass(frozen=True, slots=True)
class SavedFeed:
    """What one feed's update wrote: ids of entries stored for the first time, and how many changed."""

    new_ids: tuple[int, ...]
    updated: int


@dataclass(frozen=True, slots=True)
class Highlighted:
    """Text with the character spans a search matched, as (start, end) offsets."""

    text: str
    spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SearchMatch:
    """One entry that matched a search: its title and a snippet of its summary, highlighted."""

    entry_id: int
    feed_id: int
    feed_title: str
    feed_url: str
    title: Highlighted
    snippet: Highlighted
    url: str | None
    published: datetime
    # bm25 with title hits weighted 4:1 over summary hits, sign flipped so that higher is better
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One story (or a lone entry not yet in a story) with the entries of it that matched, best first."""

    story_id: int | None
    story_uid: str | None
    title: str
    url: str | None
    published: datetime
    feed_count: int
    score: float
    matches: tuple[SearchMatch, ...]
    sources: tuple[StorySource, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """One row of `aggregator feeds`: a feed's status and what the store holds of it."""

    url: str
    title: str
    tags: tuple[str, ...] = ()
    # ok, failing, new (never fetched), disabled (by the scheduler, see disabled_reason) or removed
    status: str = "new"
    id: int | None = None
    failing_since: datetime | None = None
    error_count: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_fetched_at: datetime | None = None
    next_fetch_at: datetime | None = None
    last_new_entry_at: datetime | None = None
    entries: int = 0
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What `Store.prune` removed (or would remove, on a dry run)."""

    cutoff: datetime
    entries: int
    stories: int
    # old stories kept because an output still shows them
    kept_stories: int
    dry_run: bool = False


class Store:
    """An open aggregator database. Create with `Store.open(path)`; close with `close()` or `with`."""

    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self.path = path
        self.busy_timeout = BUSY_TIMEOUT_SECONDS

    @classmethod
    def open(cls, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> Store:
        """Open (creating and migrating as needed) the database at `path`.

        `busy_timeout` is how long a write waits for another process's write transaction to end before it
        fails with "database is locked".
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = Database(conn, execute_plugins=False)
            migrations.apply(db)
        except sqlite3.Error as e:
            if "unable to open" in str(e) and path.parent.is_dir() and not os.access(path.parent, os.W_OK):
                # WAL mode needs the -wal and -shm files beside the database, so its folder must be writable
                raise StoreError(
                    f"{path}: cannot open the database: its folder {path.parent} is read-only ({e})"
                ) from e
            raise StoreError(f"{path}: cannot open the database: {_explain(e, busy_timeout)}") from e
        except OSError as e:
            raise StoreError(f"{path}: cannot open the database: {e.strerror or e}") from e
        store = cls(db, path)
        store.busy_timeout = busy_timeout
        return store

    def close(self) -> None:
        """Close the connection."""
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; any SQLite failure becomes a StoreError naming the database.

        It starts with BEGIN IMMEDIATE: the write lock is taken (waiting up to the busy timeout for another
        writer) before anything is read, so a transaction never reads, then finds its snapshot stale when it
        writes; that fails at once with "database is locked", busy timeout or not. Nested, it is a savepoint.
        """
        conn = self.db.conn
        try:
            if conn.in_transaction:
                with self.db.atomic():
                    yield
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {_explain(e, self.busy_timeout)}") from e

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        try:
            cursor = self.db.conn.execute(sql, params)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {_explain(e, self.busy_timeout)}") from e
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # --- feeds ---------------------------------------------------------------------------------------

    def sync_feeds(self, sources: Sequence[FeedSource], now: datetime) -> dict[str, FeedState]:
        """Make the feeds table match the config (new feeds added, removed ones marked inactive)."""
        stamp = format_time(now)
        with self.transaction():
            conn = self.db.conn
            self._adopt_moved_feeds(sources)
            conn.execute("UPDATE feeds SET active = 0")
            conn.executemany(
                """INSERT INTO feeds (url, configured_title, tags, priority, active, created_at)
                   VALUES (?, ?, ?, ?, 1, ?)
                   ON CONFLICT (url) DO UPDATE SET configured_title = excluded.configured_title,
                       tags = excluded.tags, priority = excluded.priority, active = 1""",
                [(s.url, s.title, json.dumps(list(s.tags)), s.priority, stamp) for s in sources],
            )
        return {row["url"]: _feed_state(row) for row in self._rows("SELECT * FROM feeds WHERE active = 1")}

    def feed_states(self) -> dict[str, FeedState]:
        """What we remember of every active feed, by URL."""
        return {row["url"]: _feed_state(row) for row in self._rows("SELECT * FROM feeds WHERE active = 1")}

    def feeds(self) -> list[dict[str, Any]]:
        """Every feed row, active ones first, as plain dictionaries."""
        return self._rows("SELECT * FROM feeds ORDER BY active DESC, id")

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
            buried = self._tombstoned(state.feed_id, [e.guid for e in entries if e.guid not in known])
            new_rows: list[tuple[Any, ...]] = []
            changed_rows: list[tuple[Any, ...]] = []
            changed_undated: list[tuple[Any, ...]] = []
            new_terms: dict[str, TermVector | None] = {}
            changed_terms: list[tuple[int, TermVector | None]] = []
            seen: set[str] = set()
            for entry in entries:
                if entry.guid in seen:  # a feed that repeats an id: the first occurrence wins
                    continue
                seen.add(entry.guid)
                if entry.guid in buried:  # pruned by retention: its tombstone keeps it from coming back
                    continue
                old = known.get(entry.guid)
                if old is None:
                    new_rows.append(_entry_row(state.feed_id, entry, stamp))
                    new_terms[entry.guid] = entry.terms
                elif old[1] != entry.content_hash:
                    (changed_rows if entry.dated else changed_undated).append((*_entry_values(entry), old[0]))
                    changed_terms.append((old[0], entry.terms))
                elif entry.source_hash and old[2] != entry.source_hash:  # the same content sent differently
                    conn.execute("UPDATE entries SET source_hash = ? WHERE id = ?", (entry.source_hash, old[0]))
            conn.executemany(_INSERT_ENTRY, new_rows)
            conn.executemany(_UPDATE_ENTRY, changed_rows)
            # an undated entry keeps the dates it was first stored with: it is not news again for changing
            conn.executemany(_UPDATE_UNDATED_ENTRY, [_without_dates(row) for row in changed_undated])
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
                    stamp, result.http_status, parsed.warning, 0, parsed.warning,
                    bool(new_rows), stamp, state.feed_id,
                ),
            )  # fmt: skip
        return SavedFeed(new_ids=tuple(known[0] for known in new_ids), updated=len(changed_rows) + len(changed_undated))

    def source_hashes(self, feed_id: int) -> dict[str, str]:
        """guid -> source hash of every stored entry of a feed (those stored before m007 have none)."""
        rows = self.db.conn.execute(
            "SELECT guid, source_hash FROM entries WHERE feed_id = ? AND source_hash IS NOT NULL", (feed_id,)
        )
        return dict(rows.fetchall())

    def _write_terms(self, vectors: Sequence[tuple[int, TermVector | None]]) -> None:
        """Store (or replace) entries' term vectors; an entry without one loses any stale row."""
        conn = self.db.conn
        conn.executemany(
            "DELETE FROM entry_terms WHERE entry_id = ?", [(entry_id,) for entry_id, terms in vectors if not terms]
        )
        conn.executemany(
            f"INSERT OR REPLACE INTO entry_terms ({_TERMS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [_terms_row(entry_id, terms) for entry_id, terms in vectors if terms],
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

    def record_not_modified(self, state: FeedState, result: FetchResult, now: datetime) -> None:
        """A 304 (or an unchanged body): remember the fetch and any new validators; nothing else changes."""
        with self.transaction():
            self.db.conn.execute(
                """UPDATE feeds SET etag = ?, last_modified = ?, last_fetched_at = ?, last_status = ?,
                       last_error = NULL, error_count = 0, failing_since = NULL WHERE id = ?""",
                (result.etag, result.last_modified, format_time(now), result.http_status, state.feed_id),
            )

    def record_failure(self, state: FeedState, http_status: int | None, error: str, now: datetime) -> None:
        """A failed fetch or parse: the error is stored on the feed; its entries stay as they were."""
        stamp = format_time(now)
        with self.transaction():
            self.db.conn.execute(
                """UPDATE feeds SET last_fetched_at = ?, last_status = ?, last_error = ?,
                       error_count = error_count + 1, failing_since = COALESCE(failing_since, ?)
                   WHERE id = ?""",
                (stamp, http_status, error, stamp, state.feed_id),
            )

    # --- stories -------------------------------------------------------------------------------------

    def unassigned_entries(self) -> list[DedupItem]:
        """Entries that belong to no story yet, oldest first (the order dedup must see them in)."""
        rows = self.db.conn.execute(
            f"""SELECT {_DEDUP_COLUMNS} FROM entries e INDEXED BY entries_unassigned {_JOIN_TERMS}
                WHERE e.story_id IS NULL ORDER BY e.published, e.id"""
        )
        return [_dedup_item(row) for row in rows]

    def unassigned_batches(self, size: int = 2000) -> Iterator[list[DedupItem]]:
        """Entries without a story, oldest first like unassigned_entries(), `size` at a time.

        Pages by (published, id), so the whole backlog (50,000 entries with their summary text after a cold
        pass over 1,000 feeds) is never in memory at once, and entries assigned meanwhile do not shift pages.
        """
        after: tuple[str, int] = ("", 0)
        while True:
            rows = self.db.conn.execute(
                f"""SELECT {_DEDUP_COLUMNS} FROM entries e INDEXED BY entries_unassigned {_JOIN_TERMS}
                    WHERE e.story_id IS NULL AND (e.published, e.id) > (?, ?) ORDER BY e.published, e.id LIMIT ?""",
                (*after, size),
            ).fetchall()
            if not rows:
                return
            after = (rows[-1][5], rows[-1][0])
            yield [_dedup_item(row) for row in rows]

    def window_entries(self, since: datetime) -> Iterator[tuple[DedupItem, int]]:
        """Entries published since `since` that already have a story, to seed the dedup index.

        Their stored term vectors come with them (an entry without one brings its text instead).
        """
        rows = self.db.conn.execute(
            f"""SELECT {_DEDUP_COLUMNS}, e.story_id FROM entries e {_JOIN_TERMS}
                WHERE e.published >= ? AND e.story_id IS NOT NULL ORDER BY e.published, e.id""",
            (format_time(since),),
        )
        return ((_dedup_item(row), row[-1]) for row in rows)

    @contextmanager
    def story_writer(self) -> Iterator[StoryWriter]:
        """A transaction in which entries are assigned to stories; story rows are refreshed at the end."""
        with self.transaction():
            writer = StoryWriter(self.db.conn)
            yield writer
            writer.refresh()

    def stories_for_output(self, output: OutputConfig, now: datetime) -> list[Story]:
        """The stories one output shows now: its feed, tag, source-count and age filters, newest first."""
        feed_ids = self.feed_ids_with_tags(output.tags) if output.tags else None
        if output.feeds:
            by_url = self.feed_ids_with_urls(output.feeds)
            feed_ids = by_url if feed_ids is None else feed_ids & by_url
        since = now - timedelta(hours=output.max_age_hours) if output.max_age_hours else None
        return self.latest_stories(output.limit, feed_ids=feed_ids, min_sources=output.min_sources, since=since)

    def latest_stories(
        self,
        limit: int,
        *,
        feed_ids: Iterable[int] | None = None,
        min_sources: int = 1,
        since: datetime | None = None,
    ) -> list[Story]:
        """The newest stories (by first report), with their sources, for an output."""
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
            if self.db.conn.execute(counted, [*ids, _FEW_ENTRIES]).fetchone()[0] < _FEW_ENTRIES:
                where.append(f"s.id IN (SELECT story_id FROM entries WHERE feed_id IN ({marks}))")
            else:
                where.append(f"EXISTS (SELECT 1 FROM entries e WHERE e.story_id = s.id AND e.feed_id IN ({marks}))")
            params.extend(ids)
        rows = self._rows(
            f"""{_STORY_SELECT} WHERE {" AND ".join(where)} ORDER BY s.published DESC, s.id DESC LIMIT ?""",
            [*params, limit],
        )
        sources = self._sources([row["id"] for row in rows])
        return [_story(row, sources.get(row["id"], ())) for row in rows]

    def _sources(self, story_ids: Sequence[int]) -> dict[int, tuple[StorySource, ...]]:
        """Each story's outlets: one source per feed (its earliest report), the lead's feed first."""
        if not story_ids:
            return {}
        marks = ",".join("?" * len(story_ids))
        rows = self._rows(
            f"""SELECT * FROM (
                    SELECT e.story_id, e.title, e.url, e.published, e.id, f.priority, f.url AS feed_url,
                           f.site_url, COALESCE(f.configured_title, f.title, f.url) AS feed_title,
                           ROW_NUMBER() OVER (PARTITION BY e.story_id, e.feed_id ORDER BY e.published, e.id) AS nth
                    FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE e.story_id IN ({marks}))
                WHERE nth = 1 ORDER BY story_id, priority DESC, published, id""",
            list(story_ids),
        )
        grouped: dict[int, list[StorySource]] = {}
        for row in rows:
            grouped.setdefault(row["story_id"], []).append(
                StorySource(
                    feed_title=row["feed_title"],
                    feed_url=row["feed_url"],
                    site_url=row["site_url"],
                    title=row["title"],
                    url=row["url"],
                    published=parse_time(row["published"]),
                )
            )
        return {story_id: tuple(items) for story_id, items in grouped.items()}

    def feed_ids_with_tags(self, tags: Iterable[str]) -> set[int]:
        """Ids of active feeds carrying any of `tags`."""
        wanted = set(tags)
        return {row["id"] for row in self._rows("SELECT id, tags FROM feeds") if wanted & set(json.loads(row["tags"]))}

    def feed_ids_with_urls(self, urls: Iterable[str]) -> set[int]:
        """Ids of the feeds with these URLs."""
        wanted = set(urls)
        return {row["id"] for row in self._rows("SELECT id, url FROM feeds") if row["url"] in wanted}

    def story(self, key: str) -> Story | None:
        """One story by its number or its uid, with its sources; None when there is no such story."""
        column = "id" if key.isdigit() else "uid"
        rows = self._rows(
            f"{_STORY_SELECT} WHERE s.{column} = ?",
            (int(key) if column == "id" else key,),
        )
        if not rows:
            return None
        return _story(rows[0], self._sources([rows[0]["id"]]).get(rows[0]["id"], ()))

    def story_entries(self, story_id: int) -> list[dict[str, Any]]:
        """Every entry of a story with its outlet and how it joined, earliest first."""
        return self._rows(
            """SELECT e.id, e.guid, e.title, e.url, e.published, e.first_seen, e.story_method, e.story_score,
                      COALESCE(f.configured_title, f.title, f.url) AS feed_title, f.url AS feed_url
               FROM entries e JOIN feeds f ON f.id = e.feed_id
               WHERE e.story_id = ? ORDER BY e.published, e.id""",
            (story_id,),
        )

    def count(self, table: str) -> int:
        """Rows in one of our tables."""
        if table not in ("feeds", "entries", "stories"):
            raise ValueError(table)
        return int(self.db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    # --- scheduling (service.py, schedule.py) -------------------------------------------------------

    def due_feeds(
        self, now: datetime, *, limit: int | None = None, exclude: Iterable[int] = ()
    ) -> list[tuple[FeedState, FeedSchedule]]:
        """Active, enabled feeds whose next fetch time has come (never fetched first), minus `exclude` ids."""
        skip = set(exclude)
        rows = self._rows(
            f"""SELECT * FROM (SELECT * FROM feeds
                                 WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at IS NULL ORDER BY id)
                UNION ALL SELECT * FROM ({_DUE_SQL}) LIMIT ?""",
            (format_time(now), -1 if limit is None else limit + len(skip)),
        )
        due = [(_feed_state(row), _feed_schedule(row)) for row in rows if row["id"] not in skip]
        return due if limit is None else due[:limit]

    def next_fetch_after(self, moment: datetime) -> datetime | None:
        """The earliest planned fetch strictly after `moment`, among active, enabled feeds."""
        row = self.db.conn.execute(
            """SELECT min(next_fetch_at) FROM feeds
               WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at > ?""",
            (format_time(moment),),
        ).fetchone()
        return parse_time(row[0]) if row[0] else None

    def host_holds(self, now: datetime) -> dict[str, datetime]:
        """Hosts that asked us (429) to wait, with the time until which they are held; expired ones are gone."""
        rows = self._rows("SELECT host, until FROM host_holds WHERE until > ?", (format_time(now),))
        return {row["host"]: parse_time(row["until"]) for row in rows}

    def record_schedule(self, plan: Plan, now: datetime) -> str | None:
        """Store a plan for one feed in one transaction; returns "moved" or "duplicate" when it moved the feed."""
        stamp = format_time(now)
        moved: str | None = None
        with self.transaction():
            conn = self.db.conn
            conn.execute(
                """UPDATE feeds SET next_fetch_at = ?, interval_seconds = ?, schedule_reason = ?,
                       declared_interval_seconds = ?, redirect_url = ?, redirect_count = ?,
                       disabled_reason = COALESCE(?, disabled_reason),
                       disabled_at = CASE WHEN ? IS NULL THEN disabled_at ELSE ? END
                   WHERE id = ?""",
                (
                    None if plan.next_fetch_at is None else format_time(plan.next_fetch_at),
                    plan.interval_seconds, plan.reason, plan.declared_seconds, plan.redirect_url,
                    plan.redirect_count, plan.disabled_reason, plan.disabled_reason, stamp, plan.feed_id,
                ),
            )  # fmt: skip
            if plan.host is not None and plan.host_until is not None:
                conn.execute("DELETE FROM host_holds WHERE until <= ?", (stamp,))  # expired ones
                conn.execute(
                    """INSERT INTO host_holds (host, until, reason) VALUES (?, ?, ?)
                       ON CONFLICT (host) DO UPDATE SET until = max(until, excluded.until), reason = excluded.reason""",
                    (plan.host, format_time(plan.host_until), plan.reason),
                )
            if plan.move_to is not None:
                moved = self._move_feed(plan.feed_id, plan.move_to, stamp)
        return moved

    def _move_feed(self, feed_id: int, target: str, stamp: str) -> str:
        conn = self.db.conn
        taken = conn.execute(
            "SELECT 1 FROM feeds WHERE (url = ? OR fetch_url = ?) AND id != ?", (target, target, feed_id)
        ).fetchone()
        if taken:
            conn.execute(
                "UPDATE feeds SET disabled_reason = ?, disabled_at = ?, next_fetch_at = NULL WHERE id = ?",
                (f"moved permanently to {target}, which is already a feed here", stamp, feed_id),
            )
            return "duplicate"
        conn.execute(
            """UPDATE feeds SET fetch_url = CASE WHEN url = ? THEN NULL ELSE ? END,
                   redirect_url = NULL, redirect_count = 0 WHERE id = ?""",
            (target, target, feed_id),
        )
        return "moved"

    def _adopt_moved_feeds(self, sources: Sequence[FeedSource]) -> None:
        # A feed moved by a permanent redirect whose new URL is now in feeds.yaml (instead of the old one)
        # keeps its row, so its entries are not fetched again as a new feed.
        conn = self.db.conn
        moved = conn.execute("SELECT id, url, fetch_url FROM feeds WHERE fetch_url IS NOT NULL").fetchall()
        if not moved:
            return
        configured = {source.url for source in sources}
        for feed_id, url, fetch_url in moved:
            if fetch_url not in configured or url in configured:
                continue
            if conn.execute("SELECT 1 FROM feeds WHERE url = ?", (fetch_url,)).fetchone() is None:
                conn.execute("UPDATE feeds SET url = fetch_url, fetch_url = NULL WHERE id = ?", (feed_id,))

    def entry_times(self, feed_id: int, limit: int = 20) -> list[datetime]:
        """Publication dates of a feed's newest entries, newest first (for the adaptive interval)."""
        rows = self.db.conn.execute(
            "SELECT published FROM entries WHERE feed_id = ? ORDER BY published DESC LIMIT ?", (feed_id, limit)
        )
        return [parse_time(row[0]) for row in rows]

    def feed_counts(self) -> dict[str, Any]:
        """Active feeds by health (ok, failing, disabled, new) and the last fetch time, for /health."""
        row = self._rows(
            """SELECT count(*) AS total,
                      coalesce(sum(disabled_reason IS NOT NULL), 0) AS disabled,
                      coalesce(sum(disabled_reason IS NULL AND failing_since IS NOT NULL), 0) AS failing,
                      coalesce(sum(disabled_reason IS NULL AND failing_since IS NULL
                                   AND last_fetched_at IS NULL), 0) AS new,
                      max(last_fetched_at) AS last_fetched_at
               FROM feeds WHERE active = 1"""
        )[0]
        row["ok"] = row["total"] - row["disabled"] - row["failing"] - row["new"]
        return row

    # --- queries for people: search, feed health, retention -------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        since: datetime | None = None,
        feed_ids: Iterable[int] | None = None,
    ) -> list[SearchResult]:
        """Full-text search (FTS5 syntax) over entry titles and summaries, best first, grouped by story."""
        _check_fts_query(query)
        where: list[str] = ["entries_fts MATCH ?"]
        params: list[Any] = [query]
        if since is not None:
            where.append("e.published >= ?")
            params.append(format_time(since))
        if feed_ids is not None:
            ids = sorted(set(feed_ids)) or [-1]
            where.append(f"e.feed_id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        # Rank first, highlight after: snippet() for every match of a common word would cost more than the
        # ranking itself. Several entries of one story may rank high, so take more hits than stories.
        hit_limit = min(limit * _HITS_PER_STORY, _MAX_HITS)
        hits = self._fts_rows(
            f"""SELECT e.id, e.story_id, entries_fts.rank AS rank FROM entries_fts
                JOIN entries e ON e.id = entries_fts.rowid
                WHERE {" AND ".join(where)} ORDER BY entries_fts.rank LIMIT ?""",
            [*params, hit_limit],
        )
        groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
        for entry_id, story_id, rank in hits:
            key = ("story", story_id) if story_id is not None else ("entry", entry_id)
            if key in groups or len(groups) < limit:
                groups.setdefault(key, []).append((entry_id, rank))
        if not groups:
            return []
        wanted = [entry_id for members in groups.values() for entry_id, _ in members]
        marks = ",".join("?" * len(wanted))
        details = {
            row[0]: row
            for row in self._fts_rows(
                f"""SELECT e.id, e.feed_id, COALESCE(f.configured_title, f.title, f.url), f.url, e.url,
                           e.published, highlight(entries_fts, 0, char(2), char(3)),
                           snippet(entries_fts, 1, char(2), char(3), '…', {_SNIPPET_TOKENS})
                    FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid JOIN feeds f ON f.id = e.feed_id
                    WHERE entries_fts MATCH ? AND entries_fts.rowid IN ({marks})""",
                [query, *wanted],
            )
        }
        story_ids = [key[1] for key in groups if key[0] == "story"]
        marks = ",".join("?" * len(story_ids))
        stories = {row["id"]: row for row in self._rows(_STORIES_BY_ID.format(marks=marks), story_ids)}
        sources = self._sources(story_ids)
        results = []
        for (kind, key_id), members in groups.items():
            matches = tuple(_search_match(details[entry_id], rank) for entry_id, rank in members)
            story = stories.get(key_id) if kind == "story" else None
            lead = matches[0]
            results.append(
                SearchResult(
                    story_id=story["id"] if story else None,
                    story_uid=story["uid"] if story else None,
                    title=story["title"] if story else lead.title.text,
                    url=story["url"] if story else lead.url,
                    published=parse_time(story["published"]) if story else lead.published,
                    feed_count=story["feed_count"] if story else 1,
                    score=lead.score,
                    matches=matches,
                    sources=sources.get(key_id, ()) if story else (),
                )
            )
        return results

    def _fts_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self.db.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            raise _query_error(str(e)) or StoreError(f"{self.path}: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e

    def feed_table(self, sources: Sequence[FeedSource], *, include_removed: bool = False) -> list[FeedHealth]:
        """The health of the configured feeds, in config order; then feeds no longer configured, if asked."""
        # Named columns, not *: the view's newest_entry costs a 1,000,000-entry index probe per feed.
        rows = self.db.conn.execute(f"SELECT {_FEED_HEALTH_COLUMNS} FROM feed_health ORDER BY id").fetchall()
        by_url = {row[1]: row for row in rows}
        table = [
            _feed_health(by_url[source.url], source)
            if source.url in by_url
            else FeedHealth(url=source.url, title=source.title or source.url, tags=source.tags)
            for source in sources
        ]
        if include_removed:
            configured = {source.url for source in sources}
            table.extend(_feed_health(row, None) for row in rows if row[1] not in configured)
        return table

    def prune(self, cutoff: datetime, keep: Iterable[int], now: datetime, *, dry_run: bool = False) -> PruneResult:
        """Delete the stories (but `keep`) whose newest entry predates `cutoff`, leaving tombstones of entries."""
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
            if not dry_run:
                conn.execute(
                    f"""INSERT OR IGNORE INTO tombstones (feed_id, guid, content_hash, pruned_at)
                        SELECT feed_id, guid, content_hash, ? FROM entries WHERE {doomed}""",
                    (stamp, limit),
                )
                conn.execute(f"DELETE FROM entries WHERE {doomed}", (limit,))
                conn.execute("DELETE FROM stories WHERE id IN (SELECT id FROM temp.prune_old)")
            conn.execute("DELETE FROM temp.prune_keep")
            conn.execute("DELETE FROM temp.prune_old")
        return PruneResult(cutoff=cutoff, entries=entries, stories=stories, kept_stories=kept, dry_run=dry_run)

    def _tombstoned(self, feed_id: int, guids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(guids), 500):
            chunk = guids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor = self.db.conn.execute(
                f"SELECT guid FROM tombstones WHERE feed_id = ? AND guid IN ({marks})", (feed_id, *chunk)
            )
            found.update(guid for (guid,) in cursor)
        return found


class StoryWriter:
    """Writes story assignments inside `Store.story_writer()`; creates stories as dedup starts them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._touched: set[int] = set()
        self._assigned: list[tuple[int, str, float, int]] = []  # written in batches by flush()

    def new_story(self, item: DedupItem) -> int:
        """Create a story for the entry that starts it; the uid derives from that entry, so it never changes."""
        feed_url, guid = self._conn.execute(
            "SELECT f.url, e.guid FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE e.id = ?",
            (item.entry_id,),
        ).fetchone()
        uid = "urn:uuid:" + str(uuid.uuid5(_STORY_NAMESPACE, f"{feed_url}\n{guid}"))
        stamp = format_time(item.published)
        cursor = self._conn.execute(
            "INSERT INTO stories (uid, title, first_seen, published, updated) VALUES (?, ?, ?, ?, ?)",
            (uid, item.title, stamp, stamp, stamp),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def assign(self, assignment: Assignment, story_id: int) -> None:
        """Put one entry in a story, recording how it was matched (written by the next flush())."""
        self._assigned.append((story_id, assignment.method, round(assignment.score, 4), assignment.entry_id))
        self._touched.add(story_id)
        if len(self._assigned) >= 1000:
            self.flush()

    def flush(self) -> None:
        """Write the assignments made so far: one executemany instead of one statement per entry."""
        self._conn.executemany(
            "UPDATE entries SET story_id = ?, story_method = ?, story_score = ? WHERE id = ?", self._assigned
        )
        self._assigned.clear()

    def refresh(self) -> None:
        """Recompute lead entry, title, dates and counts of every story touched."""
        self.flush()
        ids = sorted(self._touched)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            self._conn.execute(_REFRESH_STORIES.format(marks=marks), chunk + chunk)


# The lead entry is the earliest report, unless a feed has a higher `priority` (wire services first, say).
_REFRESH_STORIES = """
WITH ranked AS (
    SELECT e.story_id, e.id, e.title, e.url,
           ROW_NUMBER() OVER (PARTITION BY e.story_id ORDER BY f.priority DESC, e.published, e.id) AS rank
    FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE e.story_id IN ({marks})
), totals AS (
    SELECT story_id, min(first_seen) AS first_seen, min(published) AS published,
           max(max(updated, first_seen)) AS updated, count(*) AS entry_count,
           count(DISTINCT feed_id) AS feed_count
    FROM entries WHERE story_id IN ({marks}) GROUP BY story_id
)
UPDATE stories SET
    lead_entry_id = r.id, title = r.title, url = r.url, first_seen = t.first_seen, published = t.published,
    updated = t.updated, entry_count = t.entry_count, feed_count = t.feed_count
FROM ranked r JOIN totals t ON t.story_id = r.story_id
WHERE r.rank = 1 AND stories.id = r.story_id
"""

_ENTRY_COLUMNS = (
    "url, canonical_url, title, summary, summary_text, content, published, updated, "
    "authors, categories, enclosures, content_hash, source_hash"
)
_INSERT_ENTRY = f"INSERT INTO entries (feed_id, guid, first_seen, {_ENTRY_COLUMNS}) VALUES ({','.join('?' * 16)})"
_UPDATE_ENTRY = "UPDATE entries SET {} WHERE id = ?".format(
    ", ".join(f"{name.strip()} = ?" for name in _ENTRY_COLUMNS.split(","))
)
_DATE_COLUMNS = (6, 7)  # published, updated: their places in _ENTRY_COLUMNS
_UPDATE_UNDATED_ENTRY = "UPDATE entries SET {} WHERE id = ?".format(
    ", ".join(f"{name.strip()} = ?" for i, name in enumerate(_ENTRY_COLUMNS.split(",")) if i not in _DATE_COLUMNS)
)
# Feeds due by a time: ordered by the partial index feeds_next_fetch, so the scan stops at the first future one.
_DUE_SQL = """SELECT * FROM feeds WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at <= ?
              ORDER BY next_fetch_at, id"""
# A story row with its lead entry's text, as latest_stories and story() read it.
_STORY_SELECT = """SELECT s.*, e.summary, e.content, e.authors, e.categories, e.enclosures
    FROM stories s LEFT JOIN entries e ON e.id = s.lead_entry_id"""
# Below this many entries in an output's feeds, latest_stories lists their stories instead of testing each.
_FEW_ENTRIES = 5_000
# With a stored term vector, an entry's summary text is not read (the bulk of its row, often overflow pages).
_DEDUP_TEXT = "CASE WHEN t.entry_id IS NULL THEN e.summary_text ELSE '' END"
_DEDUP_COLUMNS = (
    f"e.id, e.feed_id, e.title, {_DEDUP_TEXT}, e.canonical_url, e.published, "
    "t.terms, t.weights, t.keys, t.title_key, t.title_weight, t.headline, t.has_summary"
)
_JOIN_TERMS = "LEFT JOIN entry_terms t ON t.entry_id = e.id"
_TERMS_COLUMNS = "entry_id, terms, weights, keys, title_key, title_weight, headline, has_summary"


def _entry_values(entry: Entry) -> tuple[Any, ...]:
    return (
        entry.url,
        entry.canonical_url,
        entry.title,
        entry.summary,
        entry.summary_text,
        entry.content,
        format_time(entry.published),
        format_time(entry.updated),
        json.dumps(list(entry.authors), ensure_ascii=False),
        json.dumps(list(entry.categories), ensure_ascii=False),
        json.dumps([[e.url, e.type, e.length] for e in entry.enclosures], ensure_ascii=False),
        entry.content_hash,
        entry.source_hash or None,
    )


def _without_dates(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(value for i, value in enumerate(row) if i not in _DATE_COLUMNS)


def _entry_row(feed_id: int, entry: Entry, first_seen: str) -> tuple[Any, ...]:
    return (feed_id, entry.guid, first_seen, *_entry_values(entry))


def _dedup_item(row: Sequence[Any]) -> DedupItem:
    return DedupItem(
        entry_id=row[0],
        feed_id=row[1],
        title=row[2],
        summary_text=row[3],
        canonical_url=row[4],
        published=parse_time(row[5]),
        terms=_term_vector(row[6:13]),
    )


def _terms_row(entry_id: int, v: TermVector) -> tuple[Any, ...]:
    # both float arrays in one blob: the unit weights, then the raw weights
    return (entry_id, " ".join(v.terms), v.weights.tobytes() + v.raw.tobytes(), " ".join(v.keys), v.title_key,
            v.title_weight, int(v.headline), int(v.has_summary))  # fmt: skip


def _term_vector(row: Sequence[Any]) -> TermVector | None:
    """A stored term vector; None when there is none (or it does not add up: then it is rebuilt from text)."""
    terms, blob, keys, title_key, title_weight, headline, has_summary = row
    if terms is None or not isinstance(blob, bytes) or len(blob) % 16:
        return None
    words = tuple(map(sys.intern, terms.split(" "))) if terms else ()
    values = array("d")
    values.frombytes(blob)
    half = len(values) // 2
    if half != len(words):
        return None
    return TermVector(
        terms=words,
        weights=values[:half],
        raw=values[half:],
        keys=tuple(map(sys.intern, keys.split(" "))) if keys else (),
        title_key=title_key,
        title_weight=title_weight,
        headline=bool(headline),
        has_summary=bool(has_summary),
    )


def _feed_schedule(row: dict[str, Any]) -> FeedSchedule:
    return FeedSchedule(
        feed_id=row["id"],
        url=row["fetch_url"] or row["url"],
        next_fetch_at=parse_time(row["next_fetch_at"]) if row["next_fetch_at"] else None,
        error_count=row["error_count"],
        disabled_reason=row["disabled_reason"],
        interval_seconds=row["interval_seconds"],
        declared_seconds=row["declared_interval_seconds"],
        redirect_url=row["redirect_url"],
        redirect_count=row["redirect_count"],
    )


def _feed_state(row: dict[str, Any]) -> FeedState:
    return FeedState(
        feed_id=row["id"],
        url=row.get("fetch_url") or row["url"],  # a confirmed permanent redirect is fetched at its target
        etag=row["etag"],
        last_modified=row["last_modified"],
        body_hash=row["body_hash"],
    )


def _story(row: dict[str, Any], sources: tuple[StorySource, ...]) -> Story:
    return Story(
        id=row["id"],
        uid=row["uid"],
        title=row["title"],
        url=row["url"],
        summary=row["summary"],
        content=row["content"],
        published=parse_time(row["published"]),
        updated=parse_time(row["updated"]),
        authors=tuple(json.loads(row["authors"] or "[]")),
        categories=tuple(json.loads(row["categories"] or "[]")),
        enclosures=tuple(Enclosure(*e) for e in json.loads(row["enclosures"] or "[]")),
        sources=sources,
    )


# Hits fetched per story asked for: the entries of one story often rank together.
_HITS_PER_STORY = 5
_MAX_HITS = 2000
# Tokens of summary around the hits; about two lines of a terminal.
_SNIPPET_TOKENS = 24
_MARK_START, _MARK_END = "\x02", "\x03"
_STORIES_BY_ID = "SELECT id, uid, title, url, published, feed_count FROM stories WHERE id IN ({marks})"
_FTS_COLUMNS = ("title", "summary_text")
_FTS_HELP = 'words, "exact phrase", prefix*, AND, OR, NOT, NEAR(word word, 10), (groups), title: word'
# Outside double quotes, NEAR is an operator only when a group follows: "Li NEAR" is a mistake, not a word.
_BARE_NEAR = re.compile(r"(?<![\w\"])NEAR(?!\s*\()(?![\w])")


def _check_fts_query(query: str) -> None:
    if not query.strip():
        raise QueryError("the search query is empty")
    unquoted = re.sub(r'"[^"]*"', " ", query)
    if unquoted.count('"') % 2:
        raise QueryError(f"search query {query!r}: a double quote is not closed")
    if _BARE_NEAR.search(unquoted):
        raise QueryError(
            f"search query {query!r}: NEAR needs a group, as in NEAR(li qiang, 5); to search for the word, "
            'write "near" in lower case or in quotes'
        )


def _query_error(message: str) -> QueryError | None:
    """The FTS5 complaint about a query as a user error, or None when the error is not about the query."""
    if message == "unterminated string":
        return QueryError("search query: a double quote is not closed")
    if message.startswith("fts5: syntax error near"):
        near = message.removeprefix("fts5: syntax error near").strip()
        where = "at the end" if near == '""' else f"near {near}"
        return QueryError(
            f"search query: syntax error {where}; put words with punctuation in double quotes "
            f'("U.S.", "AI-driven"). Syntax: {_FTS_HELP}'
        )
    if message.startswith("no such column:"):
        name = message.removeprefix("no such column:").strip()
        return QueryError(
            f"search query: {name!r} is not a column to search (columns: {', '.join(_FTS_COLUMNS)}); a '-' or "
            f"':' is query syntax, so put words that contain one in double quotes"
        )
    if message.startswith(("unknown special query", "fts5:")):
        return QueryError(f"search query is not valid ({message}). Syntax: {_FTS_HELP}")
    return None


def _highlighted(marked: str | None) -> Highlighted:
    if not marked:
        return Highlighted("")
    text: list[str] = []
    spans: list[tuple[int, int]] = []
    length, start = 0, None
    for part in re.split(f"([{_MARK_START}{_MARK_END}])", marked):
        if part == _MARK_START:
            start = length
        elif part == _MARK_END:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            text.append(part)
            length += len(part)
    return Highlighted("".join(text), tuple(spans))


def _search_match(row: Sequence[Any], rank: float) -> SearchMatch:
    entry_id, feed_id, feed_title, feed_url, url, published, title, snippet = row
    return SearchMatch(
        entry_id=entry_id,
        feed_id=feed_id,
        feed_title=feed_title,
        feed_url=feed_url,
        title=_highlighted(title),
        snippet=_highlighted(snippet),
        url=url,
        published=parse_time(published),
        score=float(f"{-rank:.4g}"),
    )


def _optional_time(text: str | None) -> datetime | None:
    return parse_time(text) if text else None


_FEED_HEALTH_COLUMNS = (
    "id, url, title, tags, failing_since, error_count, last_status, last_error, disabled_reason, "
    "last_fetched_at, next_fetch_at, last_new_entry_at, entries"
)


def _feed_health(row: Sequence[Any], source: FeedSource | None) -> FeedHealth:
    (feed_id, url, title, tags, failing_since, error_count, last_status, last_error, disabled_reason,
     last_fetched_at, next_fetch_at, last_new_entry_at, entries) = row  # fmt: skip
    # The view's status, except that the config, not the last pass, says whether a feed is still subscribed.
    if disabled_reason:
        status = "disabled"
    elif source is None:
        status = "removed"
    elif failing_since:
        status = "failing"
    elif last_fetched_at is None:
        status = "new"
    else:
        status = "ok"
    return FeedHealth(
        url=url,
        title=(source.title if source else None) or title,
        tags=source.tags if source else tuple(json.loads(tags)),
        status=status,
        id=feed_id,
        failing_since=_optional_time(failing_since),
        error_count=error_count,
        last_status=last_status,
        last_error=last_error,
        last_fetched_at=_optional_time(last_fetched_at),
        next_fetch_at=_optional_time(next_fetch_at),
        last_new_entry_at=_optional_time(last_new_entry_at),
        entries=entries,
        disabled_reason=disabled_reason or None,
    )


def _explain(error: sqlite3.Error, busy_timeout: float) -> str:
    """SQLite's message with what it means for the user, for the faults a running service meets."""
    text = str(error)
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return (
            f"{text}: another process kept a write transaction open for more than {busy_timeout:g} s; "
            "try again when it is done"
        )
    if "readonly database" in lowered or "read-only" in lowered:
        return f"{text}: the database file or its folder is read-only; nothing was written"
    if "database or disk is full" in lowered:
        return f"{text}: disk full; the last transaction was rolled back, free some space and run again"
    if "disk i/o error" in lowered:
        return f"{text}: the disk failed a read or write; the last transaction was rolled back"
    if "unable to open database file" in lowered:
        return f"{text}: check that the folder exists and is writable"
    if "file is not a database" in lowered or "malformed" in lowered:
        return f"{text}: the file is damaged or not an aggregator database"
    return text


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC text as stored: `2026-11-26T03:12:01Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """The inverse of format_time."""
    # fromisoformat reads `...Z` (Python 3.11) and costs a tenth of strptime, which dominated search and
    # `feeds` latency (benchmarks/query.py).
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
