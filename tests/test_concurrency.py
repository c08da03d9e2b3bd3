"""Two `aggregator update`s at once (cron overlapping a slow pass, or beside the service), and a pass killed
with its parse worker running (issue 13, items 7 and 8).

Real subprocesses against a loopback corpus server and one SQLite file. Both passes must exit 0 and leave the
store consistent: every entry once, in exactly one story, every story's counts true.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import query

from aggregator.errors import StoreError
from aggregator.store import SCHEMA_VERSION, Store, base
from aggregator.workers import POOL_MIN_FEEDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from corpus import CorpusServer, build_corpus, change_corpus, child_pids, running, write_config

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


@pytest.mark.parametrize("round_", range(ROUNDS - 1))  # the switch to WAL has its own test below
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

    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep), raising=False)
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


# --- item 8: the parse worker ends with its pass -------------------------------------------------------------


def wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_the_parse_worker_dies_with_a_killed_pass(tmp_path: Path, kill: signal.Signals) -> None:
    # Feeds on a server that accepts and never answers: the pass is mid-flight, its worker forked and idle.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    urls = [f"http://127.0.0.1:{port}/feed{n}.xml" for n in range(POOL_MIN_FEEDS + 4)]
    config = write_config(tmp_path, urls, fetch={"per_host": 16})
    update = start_update(config)
    workers: list[int] = []
    try:
        wait_for(lambda: child_pids(update.pid) and accepted)  # forked, and fetching
        workers = child_pids(update.pid)
        assert len(workers) == 1
        update.send_signal(kill)
        update.wait(timeout=60)
        wait_for(lambda: not running(workers[0]))
    finally:
        stop.set()
        if update.poll() is None:
            update.kill()
        for worker in workers:  # a failed test leaves no process behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        for conn in accepted:
            conn.close()
        listener.close()


def test_without_prctl_the_worker_still_notices_its_parent_is_gone() -> None:
    # The portable fallback on its own: a worker whose parent is no longer the one it was forked from exits.
    code = "import os; from aggregator.workers import _exit_without_parent; _exit_without_parent(os.getppid() + 1)"
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 1
