"""The schema as migrations: each one a step from the previous version, applied in order by Store.open."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = [
    "SCHEMA_VERSION",
    "m001_initial",
    "m002_scheduling",
    "m003_query",
    "m004_output_filters",
    "m005_fts_on_text_updates",
    "m006_entry_terms",
    "m007_source_hash",
    "m008_story_latest",
    "m009_search_stemming",
    "m010_install_id",
    "m011_tombstones_listed",
    "migrate",
    "migration",
    "migrations",
]

migrations = Migrations("aggregator")
# The names of the steps, in order: the schema's version is how many there are.
_STEPS: list[str] = []

_Step = Callable[[Database], None]


def migration(step: _Step) -> _Step:
    """Register `step` as the next migration (sqlite-utils' `@migrations()`), counted in SCHEMA_VERSION."""
    _STEPS.append(step.__name__)
    return migrations()(step)


@migration
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


@migration
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


@migration
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


@migration
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


@migration
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


@migration
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


@migration
def m007_source_hash(db: Database) -> None:
    """entries.source_hash: a digest of the entry as its feed sent it, so a pass over a changed feed does not
    normalize again the entries it repeats unchanged (issue 8)."""
    db.execute("ALTER TABLE entries ADD COLUMN source_hash TEXT")


@migration
def m008_story_latest(db: Database) -> None:
    """stories.latest: when the story's newest report was published, the order outputs list stories in, so a
    story that another outlet reports moves up (issue 12)."""
    db.execute("ALTER TABLE stories ADD COLUMN latest TEXT")
    db.execute("""
        UPDATE stories SET latest = coalesce(
            (SELECT max(published) FROM entries WHERE story_id = stories.id), published)""")
    db.execute("CREATE INDEX stories_latest ON stories(latest DESC, id DESC)")


@migration
def m009_search_stemming(db: Database) -> None:
    """Search matches the forms of a word (labour, labours, labouring) through FTS5's porter stemmer (issue 16)."""
    # The tokenizer of an FTS5 table cannot change: it is built again, with the same columns, external content
    # and ranking, from the entries. The triggers that keep it in step refer to it by name and stay.
    # 1,000,000 entries takes about a minute, once.
    db.execute("DROP TABLE entries_fts")
    db.execute("""
        CREATE VIRTUAL TABLE entries_fts USING FTS5 (
            title, summary_text,
            tokenize='porter unicode61',
            content="entries"
        )""")
    db.execute("INSERT INTO entries_fts (entries_fts) VALUES ('rebuild')")
    db.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('rank', 'bm25(4.0, 1.0)')")


@migration
def m010_install_id(db: Database) -> None:
    """A random id for this install, made once, so output feed ids differ from every other install's (issue 16)."""
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    db.execute("INSERT INTO meta (key, value) VALUES ('install_id', ?)", (str(uuid.uuid4()),))


@migration
def m011_tombstones_listed(db: Database) -> None:
    """tombstones.listed: whether the feed's latest document still lists the pruned entry; prune forgets a
    tombstone its feed no longer lists (issue 16)."""
    db.execute("ALTER TABLE tombstones ADD COLUMN listed INTEGER NOT NULL DEFAULT 1")


SCHEMA_VERSION = len(_STEPS)


def migrate(db: Database) -> None:
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
