"""The SQLite store: schema, migrations and every query. The only module that speaks SQL.

Users query this database with their own tools, so its tables are a public contract documented in README.
WAL mode lets readers (sqlite3, Datasette) work while a pass writes; every feed's update is one transaction,
so a crash leaves each feed either before or after its update, never half-way. Times are ISO-8601 UTC text
(`2026-11-26T03:12:01Z`), which sorts correctly as text.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .errors import StoreError
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
)

__all__ = ["SCHEMA_VERSION", "SavedFeed", "Store", "format_time", "parse_time"]

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


SCHEMA_VERSION = len(migrations._migrations)


@dataclass(frozen=True, slots=True)
class SavedFeed:
    """What one feed's update wrote: ids of entries stored for the first time, and how many changed."""

    new_ids: tuple[int, ...]
    updated: int


class Store:
    """An open aggregator database. Create with `Store.open(path)`; close with `close()` or `with`."""

    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating and migrating as needed) the database at `path`."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = Database(conn, execute_plugins=False)
            migrations.apply(db)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{path}: cannot open the database: {e}") from e
        return cls(db, path)

    def close(self) -> None:
        """Close the connection."""
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; any SQLite failure becomes a StoreError naming the database."""
        try:
            with self.db.atomic():
                yield
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        try:
            cursor = self.db.conn.execute(sql, params)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # --- feeds ---------------------------------------------------------------------------------------

    def sync_feeds(self, sources: Sequence[FeedSource], now: datetime) -> dict[str, FeedState]:
        """Make the feeds table match the config (new feeds added, removed ones marked inactive)."""
        stamp = format_time(now)
        with self.transaction():
            conn = self.db.conn
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
            new_rows, changed_rows = [], []
            seen: set[str] = set()
            for entry in entries:
                if entry.guid in seen:  # a feed that repeats an id: the first occurrence wins
                    continue
                seen.add(entry.guid)
                old = known.get(entry.guid)
                if old is None:
                    new_rows.append(_entry_row(state.feed_id, entry, stamp))
                elif old[1] != entry.content_hash:
                    changed_rows.append((*_entry_values(entry), old[0]))
            conn.executemany(_INSERT_ENTRY, new_rows)
            conn.executemany(_UPDATE_ENTRY, changed_rows)
            new_ids = tuple(self._known_entries(state.feed_id, [row[1] for row in new_rows]).values())
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
        return SavedFeed(new_ids=tuple(i for i, _ in new_ids), updated=len(changed_rows))

    def _known_entries(self, feed_id: int, guids: Sequence[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(guids), 500):
            chunk = guids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor = self.db.conn.execute(
                f"SELECT guid, id, content_hash FROM entries WHERE feed_id = ? AND guid IN ({marks})",
                (feed_id, *chunk),
            )
            found.update((guid, (entry_id, content_hash)) for guid, entry_id, content_hash in cursor)
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
            f"""SELECT {_DEDUP_COLUMNS} FROM entries INDEXED BY entries_unassigned
                WHERE story_id IS NULL ORDER BY published, id"""
        )
        return [_dedup_item(row) for row in rows]

    def window_entries(self, since: datetime) -> list[tuple[DedupItem, int]]:
        """Entries published since `since` that already have a story, to seed the dedup index."""
        rows = self.db.conn.execute(
            f"""SELECT {_DEDUP_COLUMNS}, story_id FROM entries
                WHERE published >= ? AND story_id IS NOT NULL ORDER BY published, id""",
            (format_time(since),),
        )
        return [(_dedup_item(row), row[-1]) for row in rows]

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
        """The newest stories (by first report), with their sources, for an output."""
        where, params = ["s.feed_count >= ?"], [min_sources]
        if since is not None:
            where.append("s.published >= ?")
            params.append(format_time(since))  # type: ignore[arg-type]
        if feed_ids is not None:
            ids = sorted(set(feed_ids)) or [-1]
            marks = ",".join("?" * len(ids))
            where.append(
                f"EXISTS (SELECT 1 FROM entries e WHERE e.story_id = s.id AND e.feed_id IN ({marks}))"
            )
            params.extend(ids)
        rows = self._rows(
            f"""SELECT s.*, e.summary, e.content, e.authors, e.categories, e.enclosures
                FROM stories s LEFT JOIN entries e ON e.id = s.lead_entry_id
                WHERE {" AND ".join(where)} ORDER BY s.published DESC, s.id DESC LIMIT ?""",
            [*params, limit],
        )
        sources = self._sources([row["id"] for row in rows])
        return [_story(row, sources.get(row["id"], ())) for row in rows]

    def _sources(self, story_ids: Sequence[int]) -> dict[int, tuple[StorySource, ...]]:
        if not story_ids:
            return {}
        marks = ",".join("?" * len(story_ids))
        rows = self._rows(
            f"""SELECT e.story_id, e.title, e.url, e.published, f.url AS feed_url, f.site_url,
                       COALESCE(f.configured_title, f.title, f.url) AS feed_title
                FROM entries e JOIN feeds f ON f.id = e.feed_id
                WHERE e.story_id IN ({marks}) ORDER BY e.story_id, f.priority DESC, e.published, e.id""",
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
        return {
            row["id"]
            for row in self._rows("SELECT id, tags FROM feeds")
            if wanted & set(json.loads(row["tags"]))
        }

    def feed_ids_with_urls(self, urls: Iterable[str]) -> set[int]:
        """Ids of the feeds with these URLs."""
        wanted = set(urls)
        return {row["id"] for row in self._rows("SELECT id, url FROM feeds") if row["url"] in wanted}

    def story(self, key: str) -> Story | None:
        """One story by its number or its uid, with its sources; None when there is no such story."""
        column = "id" if key.isdigit() else "uid"
        rows = self._rows(
            f"""SELECT s.*, e.summary, e.content, e.authors, e.categories, e.enclosures
                FROM stories s LEFT JOIN entries e ON e.id = s.lead_entry_id WHERE s.{column} = ?""",
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


class StoryWriter:
    """Writes story assignments inside `Store.story_writer()`; creates stories as dedup starts them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._touched: set[int] = set()

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
        """Put one entry in a story, recording how it was matched."""
        self._conn.execute(
            "UPDATE entries SET story_id = ?, story_method = ?, story_score = ? WHERE id = ?",
            (story_id, assignment.method, round(assignment.score, 4), assignment.entry_id),
        )
        self._touched.add(story_id)

    def refresh(self) -> None:
        """Recompute lead entry, title, dates and counts of every story touched."""
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
    "authors, categories, enclosures, content_hash"
)
_INSERT_ENTRY = (
    f"INSERT INTO entries (feed_id, guid, first_seen, {_ENTRY_COLUMNS}) VALUES ({','.join('?' * 15)})"
)
_UPDATE_ENTRY = "UPDATE entries SET {} WHERE id = ?".format(
    ", ".join(f"{name.strip()} = ?" for name in _ENTRY_COLUMNS.split(","))
)
_DEDUP_COLUMNS = "id, feed_id, title, summary_text, canonical_url, published"


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
    )


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
    )


def _feed_state(row: dict[str, Any]) -> FeedState:
    return FeedState(
        feed_id=row["id"],
        url=row["url"],
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


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC text as stored: `2026-11-26T03:12:01Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """The inverse of format_time."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
