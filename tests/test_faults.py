"""Faults of our own machine: a locked, read-only or full database, kill -9 mid-pass, busy readers, an
output folder we cannot write. Each ends in a clear one-line error or a wait, never in half-written data.

Where a fault needs a real filesystem (a full disk, a read-only folder), the test mounts a tiny tmpfs or a
read-only bind mount, which needs root (as in CI); without it those tests skip, and the SQLite-level
simulation of the same fault (PRAGMA max_page_count, PRAGMA query_only) still runs. Root ignores file modes,
so `chmod` would simulate nothing here.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FeedFiles, query, run_cli, update_json, write_config
from sqlite_utils import Database
from werkzeug import Request, Response

from aggregator.config import load_config
from aggregator.errors import StoreError
from aggregator.store import Store
from aggregator.update import run_pass

NOW = datetime(2026, 8, 19, 12, 0, tzinfo=UTC)


def rss(name: str, count: int, size: int = 0, start: int = 0) -> str:
    """An RSS feed of `count` dated entries, each with `size` extra bytes of description."""
    items = "".join(
        f"<item><guid isPermaLink='false'>{name}-{i}</guid><title>{name} story {i} about topic {i * 7919 % 997}"
        f"</title><link>https://{name}.example.com/{i}</link><pubDate>Wed, 19 Aug 2026 {i % 24:02d}:{i % 60:02d}"
        f":00 +0000</pubDate><description>{'x' * size}</description></item>"
        for i in range(start, start + count)
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>{name}</title>{items}</channel></rss>"


def integrity(db: Path) -> str:
    return str(query(db, "PRAGMA integrity_check")[0][0])


def failed_pass(config_path: Path, db: Path, prepare: Callable[[sqlite3.Connection], object]) -> StoreError:
    """The StoreError of a pass over a store whose connection `prepare` set up (a pragma that makes writes fail)."""
    store = Store.open(db)
    prepare(store.db.conn)
    try:
        with pytest.raises(StoreError) as error:
            pass_with(config_path, store)
    finally:
        store.close()
    return error.value


def pass_with(config_path: Path, store: Store) -> Any:
    config = load_config(config_path)

    async def run() -> Any:
        async with asyncio.timeout(60):
            return await run_pass(config, store, NOW)

    return asyncio.run(run())


@contextmanager
def mounted(target: Path, *args: str) -> Iterator[None]:
    """Mount something on `target` for the length of a block; skip the test when mounting is not possible."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {done.stderr.strip()}")
    try:
        yield
    finally:
        gc.collect()  # sqlite3 connections nobody closed still map the -shm file and keep the mount busy
        if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
            # never leave a mount behind: pytest's cleanup of old temporary folders would trip on it
            subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=True)


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made read-only by a read-only bind mount of itself (root ignores file modes)."""
    with mounted(folder, "--bind", str(folder)):
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
        yield


class Holder:
    """Another process's writer, as far as SQLite can tell: its own connection holding a write transaction."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def lock(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("UPDATE feeds SET priority = priority")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.release()
        self.conn.close()


@pytest.fixture
def two_feeds(feeds: FeedFiles, tmp_path: Path) -> tuple[Path, list[str]]:
    urls = [feeds.serve("/a.xml", rss("alpha", 20)), feeds.serve("/b.xml", rss("beta", 20))]
    config = write_config(tmp_path, urls, fetch={"concurrency": 1})
    return config, urls


# --- a locked database -----------------------------------------------------------------------------------


def test_a_locked_database_fails_after_the_busy_timeout_with_a_clear_error(two_feeds: Any, tmp_path: Path) -> None:
    config, _ = two_feeds
    db = tmp_path / "aggregator.db"
    update_json(config)
    holder = Holder(db)
    holder.lock()
    store = Store.open(db, busy_timeout=0.3)
    try:
        started = time.perf_counter()
        with pytest.raises(StoreError) as error:
            pass_with(config, store)
        assert 0.25 < time.perf_counter() - started < 5
        assert str(error.value) == (
            f"{db}: database is locked: another process kept a write transaction open for more than 0.3 s; "
            "try again when it is done"
        )
        holder.release()
        assert pass_with(config, store).failed == 0  # the same store works once the other writer is done
    finally:
        store.close()
        holder.close()
    assert integrity(db) == "ok"


def test_a_lock_taken_mid_pass_keeps_every_finished_feed(feeds: FeedFiles, tmp_path: Path) -> None:
    a = feeds.serve("/a.xml", rss("alpha", 30))
    config = write_config(tmp_path, [a, feeds.server.url_for("/b.xml")], fetch={"concurrency": 1})
    db = tmp_path / "aggregator.db"
    store = Store.open(db, busy_timeout=0.3)
    holder = Holder(db)

    def lock_then_answer(request: Request) -> Response:
        deadline = time.monotonic() + 10  # once alpha is stored, another writer takes the database
        while holder.conn.execute("SELECT count(*) FROM entries").fetchone()[0] < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        holder.lock()
        return Response(rss("beta", 30), content_type="application/rss+xml")

    feeds.server.expect_request("/b.xml").respond_with_handler(lock_then_answer)
    try:
        with pytest.raises(StoreError, match="database is locked"):
            pass_with(config, store)
    finally:
        store.close()
        holder.close()
    counts = dict(
        query(db, "SELECT f.url, count(e.id) FROM feeds f LEFT JOIN entries e ON e.feed_id = f.id GROUP BY f.url")
    )
    assert counts == {a: 30, feeds.server.url_for("/b.xml"): 0}  # alpha whole, beta not half-written
    assert integrity(db) == "ok"


def test_the_cli_waits_for_a_short_lived_writer(two_feeds: Any, tmp_path: Path) -> None:
    config, _ = two_feeds
    db = tmp_path / "aggregator.db"
    run_cli("check", config=config)
    Store.open(db).close()
    holder = Holder(db)
    holder.lock()
    timer = threading.Timer(1.0, holder.release)
    timer.start()
    try:
        started = time.perf_counter()
        summary = update_json(config)
        assert time.perf_counter() - started >= 0.9  # it waited for the lock instead of failing
    finally:
        timer.join()
        holder.close()
    assert summary["ok"] == 2 and summary["entries_new"] == 40


# --- a read-only database ----------------------------------------------------------------------------------


def test_a_read_only_connection_fails_cleanly(two_feeds: Any, tmp_path: Path) -> None:
    # the SQLite view of a read-only database; the next test makes the folder really read-only
    config, _ = two_feeds
    db = tmp_path / "aggregator.db"
    error = failed_pass(config, db, lambda conn: conn.execute("PRAGMA query_only = ON"))
    assert str(error) == (
        f"{db}: attempt to write a readonly database: the database file or its folder is read-only; nothing was written"
    )


def test_a_database_on_a_read_only_mount_is_a_one_line_error(two_feeds: Any, tmp_path: Path) -> None:
    config, _ = two_feeds
    data = tmp_path / "data"
    config.write_text(config.read_text().replace("database: aggregator.db", "database: data/aggregator.db"))
    update_json(config)
    before = query(data / "aggregator.db", "SELECT count(*) FROM entries")
    with read_only(data):
        result = run_cli("update", config=config)
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    # "cannot open the database: its folder ... is read-only" when SQLite must create its -wal and -shm files,
    # "attempt to write a readonly database" when they were left behind by a reader
    assert result.stderr.startswith(f"error: {data / 'aggregator.db'}: ")
    assert "read-only" in result.stderr
    assert query(data / "aggregator.db", "SELECT count(*) FROM entries") == before
    assert integrity(data / "aggregator.db") == "ok"


# --- a full disk ---------------------------------------------------------------------------------------------


def test_a_full_database_stops_the_pass_with_nothing_half_written(feeds: FeedFiles, tmp_path: Path) -> None:
    # PRAGMA max_page_count is SQLite's own way to make a write hit SQLITE_FULL
    small = feeds.serve("/small.xml", rss("small", 5))
    big = feeds.serve("/big.xml", rss("big", 50, size=20_000))
    config = write_config(tmp_path, [small, big], fetch={"concurrency": 1})
    db = tmp_path / "aggregator.db"

    def cap(conn: sqlite3.Connection) -> None:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages + 40}")

    error = failed_pass(config, db, cap)
    assert str(error) == (
        f"{db}: database or disk is full: disk full; the last transaction was rolled back, free some space "
        "and run again"
    )
    counts = dict(
        query(db, "SELECT f.url, count(e.id) FROM feeds f LEFT JOIN entries e ON e.feed_id = f.id GROUP BY f.url")
    )
    assert counts == {small: 5, big: 0}
    assert integrity(db) == "ok"


def test_a_really_full_disk_is_a_one_line_error_and_the_database_survives(feeds: FeedFiles, tmp_path: Path) -> None:
    small = feeds.serve("/small.xml", rss("small", 5))
    config = write_config(tmp_path, [small], database=str(tmp_path / "disk" / "aggregator.db"))
    disk = tmp_path / "disk"
    with mounted(disk, "-t", "tmpfs", "-o", "size=640k", "tmpfs"):
        db = disk / "aggregator.db"
        update_json(config)
        big = feeds.serve("/big.xml", rss("big", 40, size=30_000))  # 1.2 MB of entries onto a 640 KiB disk
        write_config(tmp_path, [small, big], database=str(db))
        result = run_cli("update", config=config)
        assert result.exit_code == 3, result.output
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "database or disk is full: disk full" in result.stderr
        assert integrity(db) == "ok"
        counts = dict(
            query(db, "SELECT f.url, count(e.id) FROM feeds f LEFT JOIN entries e ON e.feed_id = f.id GROUP BY f.url")
        )
        assert counts == {small: 5, big: 0}


# --- kill -9 -------------------------------------------------------------------------------------------------

KILL_FEEDS = 6
KILL_ENTRIES = 150


@pytest.fixture
def slow_feeds(feeds: FeedFiles) -> tuple[list[str], threading.Event]:
    """Feeds that answer after 0.2 s while `slow` is set, so a pass is long enough to be killed mid-way."""
    slow = threading.Event()
    urls = []
    for n in range(KILL_FEEDS):
        body = rss(f"feed{n}", KILL_ENTRIES, size=200)

        def answer(request: Request, body: str = body) -> Response:
            if slow.is_set():
                time.sleep(0.2)
            return Response(body, content_type="application/rss+xml")

        feeds.server.expect_request(f"/slow{n}.xml").respond_with_handler(answer)
        urls.append(feeds.server.url_for(f"/slow{n}.xml"))
    return urls, slow


def entry_set(db: Path) -> list[tuple[Any, ...]]:
    return sorted(
        query(
            db,
            "SELECT f.url, e.guid, e.title, e.url, e.summary, e.published, e.content_hash, e.story_id IS NOT NULL "
            "FROM entries e JOIN feeds f ON f.id = e.feed_id",
        )
    )


def fetched_feeds(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
            return int(conn.execute("SELECT count(*) FROM feeds WHERE last_fetched_at IS NOT NULL").fetchone()[0])
    except sqlite3.Error:
        return -1  # not created yet, or mid-migration


@pytest.mark.parametrize("kill_after", [0, 3, KILL_FEEDS], ids=["after-sync", "mid-pass", "after-fetching"])
def test_kill_9_mid_pass_then_restart_equals_a_clean_run(
    slow_feeds: tuple[list[str], threading.Event], tmp_path: Path, kill_after: int
) -> None:
    urls, slow = slow_feeds
    clean_dir, killed_dir = tmp_path / "clean", tmp_path / "killed"
    clean_dir.mkdir()
    killed_dir.mkdir()
    clean = write_config(clean_dir, urls, fetch={"concurrency": 1})
    killed = write_config(killed_dir, urls, fetch={"concurrency": 1})
    update_json(clean)

    slow.set()
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(killed), "update"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = killed_dir / "aggregator.db"
    deadline = time.monotonic() + 30
    while fetched_feeds(db) < kill_after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    slow.clear()
    assert process.returncode == -signal.SIGKILL or kill_after == KILL_FEEDS  # the last point may miss the end
    if db.exists():
        assert integrity(db) == "ok"
        partial = entry_set(db)
        assert len(partial) == len(set(partial))
        assert {row[0] for row in partial} <= set(urls)

    update_json(killed)
    assert integrity(db) == "ok"
    assert entry_set(db) == entry_set(clean_dir / "aggregator.db")  # same entries, none twice, all in stories
    assert len(entry_set(db)) == KILL_FEEDS * KILL_ENTRIES


# --- readers ------------------------------------------------------------------------------------------------


def test_readers_holding_the_database_open_do_not_block_a_pass(
    two_feeds: Any, tmp_path: Path, feeds: FeedFiles
) -> None:
    config, _ = two_feeds
    db = tmp_path / "aggregator.db"
    update_json(config)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    before = reader.execute("SELECT count(*) FROM entries").fetchone()[0]  # a read transaction, held open
    errors: list[BaseException] = []
    stop = threading.Event()

    def browse() -> None:  # what sqlite-utils or Datasette do: short reads, over and over
        try:
            browser = Database(db)
            while not stop.is_set():
                browser.execute("SELECT count(*) FROM entries").fetchone()
                list(browser["stories"].rows_where(limit=5))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=browse)
    thread.start()
    try:
        feeds.serve("/a.xml", rss("alpha", 40))
        summary = update_json(config)
        assert summary["entries_new"] == 20
        assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == before  # its snapshot holds
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == before + 20
    finally:
        stop.set()
        thread.join(timeout=10)
        reader.close()
    assert not errors
    assert integrity(db) == "ok"


# --- outputs ---------------------------------------------------------------------------------------------------


def test_an_output_folder_that_is_a_file_is_a_clear_error(two_feeds: Any, tmp_path: Path) -> None:
    config, _ = two_feeds
    (tmp_path / "public").write_text("not a folder", encoding="utf-8")
    result = run_cli("update", config=config)
    assert result.exit_code == 4
    assert result.stderr == (
        f"error: {tmp_path / 'public' / 'feed.atom'}: cannot write the output: {tmp_path / 'public'} is a file, "
        "not a folder\n"
    )
    assert query(tmp_path / "aggregator.db", "SELECT count(*) FROM entries") == [(40,)]  # the pass itself was kept


def test_a_read_only_output_folder_keeps_the_previous_output(two_feeds: Any, tmp_path: Path, feeds: FeedFiles) -> None:
    config, _ = two_feeds
    update_json(config)
    public = tmp_path / "public"
    previous = (public / "feed.atom").read_bytes()
    # five new stories with a new outlet's wording: the output must change (rss("alpha", 25) could join
    # existing stories within the same second and leave the output as it was)
    new = rss("alpha", 20).replace(
        "</channel>",
        "".join(
            f"<item><guid>volcano-{i}</guid><title>Volcano {i} erupts near Reykjavik, flights grounded</title>"
            f"<link>https://alpha.example.com/volcano/{i}</link></item>"
            for i in range(5)
        )
        + "</channel>",
    )
    feeds.serve("/a.xml", new)
    with read_only(public):
        result = run_cli("update", config=config)
        assert result.exit_code == 4
        assert result.stderr == (f"error: {public / 'feed.atom'}: cannot write the output: Read-only file system\n")
        assert (public / "feed.atom").read_bytes() == previous
    assert sorted(p.name for p in public.iterdir()) == ["feed.atom"]  # no temporary file left behind
    assert query(tmp_path / "aggregator.db", "SELECT count(*) FROM entries") == [(45,)]
    assert update_json(config)["failed"] == 0  # writable again: the next pass publishes
    assert (public / "feed.atom").read_bytes() != previous
