"""aggregator/store: schema, migrations, WAL, per-feed transactions, stored term vectors, the queries' indexes."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.clustering import cluster_new_entries
from aggregator.config import parse_config
from aggregator.dedup import term_vector
from aggregator.errors import StoreError
from aggregator.models import DedupItem, FeedSource, FetchResult, FetchStatus, ParsedEntry, ParsedFeed
from aggregator.normalize import normalize_entry
from aggregator.store import SCHEMA_VERSION, Store

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)


def unassigned(store: Store) -> list[DedupItem]:
    """Every entry without a story, oldest first, as clustering reads them."""
    return [item for batch in store.unassigned_batches() for item in batch]


def _fill(store: Store, url: str, titles: list[str]) -> None:
    state = store.sync_feeds([FeedSource(url)], NOW)[url]
    entries = [
        normalize_entry(ParsedEntry(id=f"{url}#{i}", title=t, link=f"{url}/{i}", published=NOW), url, NOW)
        for i, t in enumerate(titles)
    ]
    result = FetchResult(url, FetchStatus.OK, http_status=200, body=b"x")
    store.save_feed(state, result, ParsedFeed(title="T"), entries, NOW)


def test_new_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.db"
    with Store.open(path):
        pass
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert {"feeds", "entries", "stories", "entries_fts", "_sqlite_migrations"} <= names
    applied = conn.execute("SELECT count(*) FROM _sqlite_migrations WHERE migration_set = 'aggregator'").fetchone()
    assert applied == (SCHEMA_VERSION,)
    with Store.open(path):  # reopening applies nothing twice
        pass
    assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone() == (SCHEMA_VERSION,)


def test_unopenable_database_is_a_store_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db: cannot open the database"):
        Store.open(not_a_db)


def test_removed_feeds_become_inactive_and_keep_entries(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db") as store:
        _fill(store, "https://a.example/f", ["one", "two"])
        states = store.sync_feeds([FeedSource("https://b.example/f")], NOW)
        assert list(states) == ["https://b.example/f"]
        assert store.count("entries") == 2
        assert [(f["url"], f["active"]) for f in store.feeds()] == [
            ("https://b.example/f", 1),
            ("https://a.example/f", 0),
        ]


def test_entries_without_a_story_are_clustered_by_the_next_pass(tmp_path: Path) -> None:
    config = parse_config({"feeds": []}, tmp_path / "feeds.yaml")
    with Store.open(tmp_path / "a.db") as store:
        _fill(store, "https://a.example/f", ["Rates held", "Port strike"])
        # as if a crash had happened between storing the feed and clustering
        assert len(unassigned(store)) == 2
        assert cluster_new_entries(store, config, NOW) == 2
        assert unassigned(store) == []
        assert cluster_new_entries(store, config, NOW) == 0
        assert store.count("stories") == 2


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT * FROM stories s ORDER BY s.published DESC, s.id DESC LIMIT 100", "stories_published"),
        (
            "SELECT id FROM entries INDEXED BY entries_unassigned WHERE story_id IS NULL ORDER BY published, id",
            "entries_unassigned",
        ),
        ("SELECT id FROM entries WHERE story_id IN (1, 2, 3)", "entries_story"),
        ("SELECT id FROM entries WHERE canonical_url = 'x'", "entries_canonical_url"),
        ("SELECT guid FROM entries WHERE feed_id = 1 AND guid IN ('a', 'b')", "sqlite_autoindex_entries_1"),
    ],
)
def test_queries_use_indexes(tmp_path: Path, sql: str, index: str) -> None:
    with Store.open(tmp_path / "a.db") as store:
        plan = " ".join(row[-1] for row in store.db.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
    assert index in plan, plan


def test_term_vectors_round_trip_and_a_broken_one_is_rebuilt(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db") as store:
        url = "https://a.example.com/feed"
        state = store.sync_feeds([FeedSource(url)], NOW)[url]
        parsed = [ParsedEntry(id=f"e{i}", title=t, link=f"{url}/{i}", published=NOW) for i, t in
                  enumerate(["Volcano erupts near Grindavik", "Parliament passes budget"])]  # fmt: skip
        entries = [normalize_entry(p, url, NOW) for p in parsed]
        vectors = [term_vector(e.title, e.summary_text, e.canonical_url) for e in entries]
        entries = [replace(e, terms=v) for e, v in zip(entries, vectors, strict=True)]
        result = FetchResult(url, FetchStatus.OK, http_status=200, body=b"x")
        store.save_feed(state, result, ParsedFeed(title="T"), entries, NOW)
        assert [item.terms for item in unassigned(store)] == vectors
        # a row that does not add up (one float short) reads as missing, and the entry brings its text
        store.db.conn.execute("UPDATE entry_terms SET weights = substr(weights, 9) WHERE entry_id = 1")
        first, second = unassigned(store)
        assert (first.terms, first.title) == (None, "Volcano erupts near Grindavik")
        assert second.terms == vectors[1]
        config = parse_config({"feeds": [{"url": url}]}, tmp_path / "feeds.yaml")
        assert cluster_new_entries(store, config, NOW) == 2
