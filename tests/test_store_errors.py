"""Every public Store method turns SQLite's failures into StoreError: one line and exit code 3 from the CLI.

A database whose table pages are damaged (its schema and migration record intact, so it opens), and one on
which SQLite refuses every statement, read through every public read of Store and through `feeds`, `stories`
and `search`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_config

from aggregator.errors import StoreError
from aggregator.models import FeedSource, FetchResult, FetchStatus, ParsedEntry, ParsedFeed
from aggregator.normalize import normalize_entry
from aggregator.store import Store

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)
URL = "https://a.example/feed.xml"


def filled(path: Path) -> None:
    """A store with one feed of 300 entries, clustered, checkpointed into the main file."""
    with Store.open(path) as store:
        state = store.sync_feeds([FeedSource(URL)], NOW)[URL]
        entries = [
            normalize_entry(
                ParsedEntry(id=f"e{i}", title=f"Harbour story {i}", link=f"https://a.example/{i}",
                            summary="<p>" + "words of a summary " * 40 + "</p>", published=NOW - timedelta(hours=i)),
                URL, NOW,
            )
            for i in range(300)
        ]  # fmt: skip
        store.save_feed(state, FetchResult(URL, FetchStatus.OK, http_status=200, body=b"x"), ParsedFeed(), entries, NOW)
        from aggregator.clustering import cluster_new_entries
        from aggregator.config import parse_config

        cluster_new_entries(store, parse_config({}, path.parent / "feeds.yaml"), NOW)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def damage(path: Path) -> None:
    """Overwrite the root page of every table and index but the schema and the migrations table."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [
            root for name, root in conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0")
            if not name.startswith(("_sqlite_migrations", "sqlite_autoindex__sqlite_migrations", "idx__sqlite"))
        ]  # fmt: skip
    with path.open("r+b") as file:
        for root in roots:
            file.seek((root - 1) * page_size)
            file.write(b"\xa5" * page_size)


READS: dict[str, Callable[[Store], Any]] = {
    "feeds": lambda s: s.feeds(),
    "source_hashes": lambda s: s.source_hashes(1),
    "unassigned_batches": lambda s: list(s.unassigned_batches()),
    "window_entries": lambda s: list(s.window_entries(NOW - timedelta(days=30))),
    "install_id": lambda s: s.install_id(),
    "latest_stories": lambda s: s.latest_stories(10, feed_ids=[1]),
    "feed_ids_with_tags": lambda s: s.feed_ids_with_tags(["world"]),
    "feed_ids_with_urls": lambda s: s.feed_ids_with_urls([URL]),
    "story": lambda s: s.story("1"),
    "story_entries": lambda s: s.story_entries(1),
    "count": lambda s: s.count("entries"),
    "feed_schedules": lambda s: s.feed_schedules(),
    "due_feeds": lambda s: s.due_feeds(NOW),
    "next_fetch_after": lambda s: s.next_fetch_after(NOW - timedelta(days=1)),
    "host_holds": lambda s: s.host_holds(NOW),
    "entry_times": lambda s: s.entry_times(1),
    "feed_counts": lambda s: s.feed_counts(),
    "search": lambda s: s.search("harbour"),
    "feed_table": lambda s: s.feed_table([FeedSource(URL)]),
}


@pytest.mark.parametrize("read", list(READS))
def test_every_read_of_a_damaged_database_is_a_store_error(tmp_path: Path, read: str) -> None:
    path = tmp_path / "a.db"
    filled(path)
    damage(path)
    with Store.open(path) as store, pytest.raises(StoreError, match=r"a\.db: (.*malformed|vtable constructor failed)"):
        READS[read](store)


@pytest.mark.parametrize("read", list(READS))
def test_every_read_sqlite_refuses_is_a_store_error(tmp_path: Path, read: str) -> None:
    path = tmp_path / "a.db"
    filled(path)
    with Store.open(path) as store:
        store.db.conn.set_authorizer(lambda *request: sqlite3.SQLITE_DENY)  # SQLite refuses every statement
        with pytest.raises(StoreError, match=r"a\.db: not authorized"):
            READS[read](store)


@pytest.mark.parametrize("command", [["feeds"], ["feeds", "--failing"], ["stories"], ["search", "harbour"]])
def test_the_cli_reports_a_damaged_database_in_one_line_with_exit_code_3(tmp_path: Path, command: list[str]) -> None:
    config = write_config(tmp_path, [URL])
    filled(tmp_path / "aggregator.db")
    damage(tmp_path / "aggregator.db")
    result = run_cli(*command, config=config)
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    problem = (
        "database disk image is malformed: the file is damaged" if command[0] != "search" else "vtable constructor"
    )
    assert result.stderr.startswith(f"error: {tmp_path / 'aggregator.db'}: {problem}")
    assert result.stderr.count("\n") == 1


def test_the_cli_reports_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, [URL])
    (tmp_path / "aggregator.db").write_bytes(b"not a database at all " * 512)
    for command in (["feeds"], ["stories"], ["search", "harbour"]):
        result = run_cli(*command, config=config)
        assert result.exit_code == 3
        assert result.stderr.startswith(f"error: {tmp_path / 'aggregator.db'}: cannot open the database: file is not")
        assert result.stderr.count("\n") == 1
