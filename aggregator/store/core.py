"""The Store: one open database, its transactions and every query the pipeline, CLI and service make."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ..config import OutputConfig
from ..errors import QueryError, StoreError
from ..models import (
    DedupItem,
    Entry,
    FeedSource,
    FeedState,
    FetchResult,
    ParsedFeed,
    Story,
    StorySource,
    TermVector,
)
from ..schedule import FeedSchedule, Plan
from .results import FeedHealth, PruneResult, SavedFeed, SearchResult
from .rows import (
    DEDUP_COLUMNS,
    FEED_HEALTH_COLUMNS,
    INSERT_ENTRY,
    JOIN_TERMS,
    TERMS_COLUMNS,
    UPDATE_ENTRY,
    UPDATE_UNDATED_ENTRY,
    dedup_item_from_row,
    entry_row,
    entry_values,
    error_text,
    feed_health_from_row,
    feed_state_from_row,
    format_time,
    parse_time,
    schedule_from_row,
    story_from_row,
    term_vector_row,
    without_dates,
)
from .schema import migrations
from .search import (
    HITS_PER_STORY,
    MAX_HITS,
    SNIPPET_TOKENS,
    STORIES_BY_ID,
    check_fts_query,
    did_you_mean,
    query_error,
    search_match,
    with_spelling_variants,
)
from .stories import StoryWriter

BUSY_TIMEOUT_SECONDS = 30.0


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
            _use_wal(conn, busy_timeout)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = Database(conn, execute_plugins=False)
            _migrate(db)
        except sqlite3.Error as e:
            if "unable to open" in str(e) and path.parent.is_dir() and not os.access(path.parent, os.W_OK):
                # WAL mode needs the -wal and -shm files beside the database, so its folder must be writable
                raise StoreError(
                    f"{path}: cannot open the database: its folder {path.parent} is read-only ({e})"
                ) from e
            raise StoreError(f"{path}: cannot open the database: {explain(e, busy_timeout)}") from e
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
        with self._errors():
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

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Any SQLite failure inside becomes a StoreError naming the database: every public read goes through
        here (via _rows, _query or _iterate) or through transaction(), so none escapes as sqlite3.Error."""
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {explain(e, self.busy_timeout)}") from e

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._errors():
            cursor = self.db.conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors():
            return self.db.conn.execute(sql, params).fetchall()

    def _iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a query one at a time, for scans too large to hold (the dedup window)."""
        with self._errors():
            yield from self.db.conn.execute(sql, params)

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
        return {row["url"]: feed_state_from_row(row) for row in self._rows("SELECT * FROM feeds WHERE active = 1")}

    def enable_feed(self, url: str, now: datetime) -> bool:
        """Poll a disabled feed again, from the next pass on, as if new; False when no feed has that URL."""
        with self.transaction():
            cursor = self.db.conn.execute(
                """UPDATE feeds SET disabled_reason = NULL, disabled_at = NULL, error_count = 0,
                       failing_since = NULL, next_fetch_at = ? WHERE url = ?""",
                (format_time(now), url),
            )
        return cursor.rowcount > 0

    def feed_states(self) -> dict[str, FeedState]:
        """What we remember of every active feed, by URL."""
        return {row["url"]: feed_state_from_row(row) for row in self._rows("SELECT * FROM feeds WHERE active = 1")}

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
            self._mark_listed_tombstones(state.feed_id, buried)
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
                (stamp, http_status, error_text(error), stamp, state.feed_id),
            )

    # --- stories -------------------------------------------------------------------------------------

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

    def feed_priorities(self) -> dict[int, int]:
        """Each feed's `priority` from feeds.yaml, by feed id (a higher one leads the stories it reports)."""
        return {row["id"]: row["priority"] for row in self._rows("SELECT id, priority FROM feeds")}

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

    def install_id(self) -> str:
        """The random id this store got when it was made (m010): what makes this install's output ids unique."""
        (value,) = self.db.conn.execute("SELECT value FROM meta WHERE key = 'install_id'").fetchone()
        return str(value)

    def count(self, table: str) -> int:
        """Rows in one of our tables."""
        if table not in ("feeds", "entries", "stories"):
            raise ValueError(table)
        return int(self._query(f"SELECT count(*) FROM {table}")[0][0])

    # --- scheduling (service.py, schedule.py) -------------------------------------------------------

    def feed_schedules(self) -> dict[int, FeedSchedule]:
        """What scheduling knows of every active feed, by id (disabled ones included)."""
        return {row["id"]: schedule_from_row(row) for row in self._rows("SELECT * FROM feeds WHERE active = 1")}

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
        due = [(feed_state_from_row(row), schedule_from_row(row)) for row in rows if row["id"] not in skip]
        return due if limit is None else due[:limit]

    def next_fetch_after(self, moment: datetime) -> datetime | None:
        """The earliest planned fetch strictly after `moment`, among active, enabled feeds."""
        [(first,)] = self._query(
            """SELECT min(next_fetch_at) FROM feeds
               WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at > ?""",
            (format_time(moment),),
        )
        return parse_time(first) if first else None

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
        rows = self._query(
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
        """Full-text search (FTS5 syntax) over entry titles and summaries, best first, grouped by story.

        Each word is also searched in its other spelling (`labour` finds `labor`, see search.py).
        """
        check_fts_query(query)
        typed, query = query, with_spelling_variants(query)
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
        hit_limit = min(limit * HITS_PER_STORY, MAX_HITS)
        ranked = f"""SELECT e.id, e.story_id, entries_fts.rank AS rank FROM entries_fts
                     JOIN entries e ON e.id = entries_fts.rowid
                     WHERE {" AND ".join(where)} ORDER BY entries_fts.rank LIMIT ?"""
        try:
            hits = self._fts_rows(ranked, [*params, hit_limit])
        except QueryError:
            self._fts_rows(ranked, [typed, *params[1:], hit_limit])  # the error in the query as typed
            raise
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
                           snippet(entries_fts, 1, char(2), char(3), '…', {SNIPPET_TOKENS})
                    FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid JOIN feeds f ON f.id = e.feed_id
                    WHERE entries_fts MATCH ? AND entries_fts.rowid IN ({marks})""",
                [query, *wanted],
            )
        }
        story_ids = [key[1] for key in groups if key[0] == "story"]
        marks = ",".join("?" * len(story_ids))
        stories = {row["id"]: row for row in self._rows(STORIES_BY_ID.format(marks=marks), story_ids)}
        sources = self._sources(story_ids)
        results = []
        for (kind, key_id), members in groups.items():
            matches = tuple(search_match(details[entry_id], rank) for entry_id, rank in members)
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

    def did_you_mean(self, query: str) -> str | None:
        """For a query that found nothing: the same query with each word the index does not know replaced by
        the closest one it does (`goverment` -> `government`), or None."""
        try:
            return did_you_mean(self.db.conn, query)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _fts_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._query(sql, params)
        except StoreError as e:  # an FTS5 syntax error is the user's query, not the database
            raise query_error(str(e.__cause__)) or e from e.__cause__

    def feed_table(self, sources: Sequence[FeedSource], *, include_removed: bool = False) -> list[FeedHealth]:
        """The health of the configured feeds, in config order; then feeds no longer configured, if asked."""
        # Named columns, not *: the view's newest_entry costs a 1,000,000-entry index probe per feed.
        rows = self._query(f"SELECT {FEED_HEALTH_COLUMNS} FROM feed_health ORDER BY id")
        by_url = {row[1]: row for row in rows}
        table = [
            feed_health_from_row(by_url[source.url], source)
            if source.url in by_url
            else FeedHealth(url=source.url, title=source.title or source.url, tags=source.tags)
            for source in sources
        ]
        if include_removed:
            configured = {source.url for source in sources}
            table.extend(feed_health_from_row(row, None) for row in rows if row[1] not in configured)
        return table

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

    def _mark_listed_tombstones(self, feed_id: int, listed: set[str]) -> None:
        """Of a feed's tombstones, mark those its new document lists; prune may forget the others."""
        conn = self.db.conn
        conn.execute("UPDATE tombstones SET listed = 0 WHERE feed_id = ? AND listed", (feed_id,))
        conn.executemany(
            "UPDATE tombstones SET listed = 1 WHERE feed_id = ? AND guid = ?", ((feed_id, g) for g in listed)
        )

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


# Feeds due by a time: ordered by the partial index feeds_next_fetch, so the scan stops at the first future one.
_DUE_SQL = """SELECT * FROM feeds WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at <= ?
              ORDER BY next_fetch_at, id"""
# A story row with its lead entry's text, as latest_stories and story() read it.
_STORY_SELECT = """SELECT s.*, e.summary, e.content, e.authors, e.categories, e.enclosures
    FROM stories s LEFT JOIN entries e ON e.id = s.lead_entry_id"""
# Below this many entries in an output's feeds, latest_stories lists their stories instead of testing each.
_FEW_ENTRIES = 5_000


def _use_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the database in WAL mode. SQLite does not apply the busy timeout to this switch: a process opening a
    new database while another one switches it got "database is locked" at once, so it is retried here."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _migrate(db: Database) -> None:
    """Apply pending migrations under the write lock: two processes opening a new (or older) database at once
    take turns, and the second finds nothing left to do ("table tombstones already exists" before)."""
    if not migrations.pending(db):
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        migrations.apply(db)  # checks what is pending again, now that no other process can be migrating
        db.conn.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise


def explain(error: sqlite3.Error, busy_timeout: float) -> str:
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
