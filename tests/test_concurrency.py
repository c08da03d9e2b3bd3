"""Two `aggregator update`s at once (cron overlapping a slow pass, or beside the service), and a pass killed
with its parse worker running (issue 13, items 7 and 8).

Real subprocesses against a loopback corpus server and one SQLite file. Both passes must exit 0 and leave the
store consistent: every entry once, in exactly one story, every story's counts true.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import query

from aggregator.errors import StoreError
from aggregator.store import SCHEMA_VERSION, Store, core

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from corpus import CorpusServer, build_corpus, change_corpus, write_config

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
FEEDS = 12
ENTRIES = 8
ROUNDS = 3


def start_update(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(config), "update"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def two_updates_at_once(config: Path) -> None:
    """Start two passes together and wait for both: each exits 0 with no error line."""
    passes = [start_update(config), start_update(config)]
    for process in passes:
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr
        assert "error" not in stderr.lower(), stderr
        assert stdout.startswith(f"{FEEDS} feeds: "), stdout


def assert_consistent(db: Path, entries: int) -> None:
    assert query(db, "SELECT count(*), count(DISTINCT feed_id || ' ' || guid) FROM entries") == [(entries, entries)]
    assert query(db, "SELECT count(*) FROM entries WHERE story_id IS NULL") == [(0,)]
    assert query(db, "SELECT count(*) FROM stories WHERE id NOT IN (SELECT story_id FROM entries)") == [(0,)]
    wrong = query(
        db,
        """SELECT s.id FROM stories s WHERE s.entry_count != (SELECT count(*) FROM entries e WHERE e.story_id = s.id)
           OR s.feed_count != (SELECT count(DISTINCT feed_id) FROM entries e WHERE e.story_id = s.id)""",
    )
    assert wrong == []
    assert query(db, "SELECT count(*) FROM _sqlite_migrations") == query(
        db, "SELECT count(DISTINCT name) FROM _sqlite_migrations"
    )
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_updates_on_a_fresh_database_both_succeed(tmp_path: Path, round_: int) -> None:
    corpus = build_corpus(FEEDS, ENTRIES, seed=round_, now=NOW)
    with CorpusServer(corpus) as server:
        config = write_config(tmp_path, server.urls(), fetch={"per_host": 16})
        two_updates_at_once(config)
    assert_consistent(tmp_path / "aggregator.db", FEEDS * ENTRIES)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_updates_on_an_existing_database_both_succeed(tmp_path: Path, round_: int) -> None:
    corpus = build_corpus(FEEDS, ENTRIES, seed=round_, now=NOW)
    with CorpusServer(corpus) as server:
        config = write_config(tmp_path, server.urls(), fetch={"per_host": 16})
        first = start_update(config)
        assert first.communicate(timeout=180)[0].startswith(f"{FEEDS} feeds: {FEEDS} ok")
        assert first.returncode == 0
        server.set_corpus(change_corpus(corpus, 1.0, 4, seed=round_))  # every feed brings four new entries
        two_updates_at_once(config)
    assert_consistent(tmp_path / "aggregator.db", FEEDS * (ENTRIES + 4))


def test_opening_waits_while_another_process_switches_a_new_database_to_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a second `aggregator update` met on a new database: the first one holds it (here a plain write
    # transaction in rollback-journal mode), and SQLite refuses the switch to WAL at once, busy timeout or not.
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE first_process (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO first_process VALUES (1)")
    retrying = threading.Event()

    def sleep(seconds: float) -> None:
        retrying.set()
        time.sleep(seconds)

    monkeypatch.setattr(core, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep), raising=False)
    outcome: list[object] = []
    opener = threading.Thread(target=lambda: outcome.append(_open_or_error(path)))
    opener.start()
    try:
        assert retrying.wait(timeout=30) or outcome, "Store.open neither retried nor finished"
    finally:
        holder.execute("COMMIT")
        holder.close()
        opener.join(timeout=60)
    assert outcome == ["opened"]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "SELECT count(*) FROM _sqlite_migrations") == [(SCHEMA_VERSION,)]


def _open_or_error(path: Path) -> object:
    try:
        Store.open(path).close()
    except StoreError as e:
        return e
    return "opened"
