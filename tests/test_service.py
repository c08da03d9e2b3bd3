"""The service against a loopback server whose answers the test controls: what it polls, when, and how it stops.

In-process tests drive `Service.poll()` with a fake clock (no waiting for the schedule); the lifecycle tests run
`aggregator run` in a subprocess and send it real signals. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import query, run_cli, write_config

from aggregator.config import load_config
from aggregator.fetch import Fetcher
from aggregator.health import health_report
from aggregator.poller import Poller, PollStats
from aggregator.publisher import Publisher
from aggregator.schedule import feed_slot
from aggregator.service import Service, ServiceState
from aggregator.store import Store

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]


# --- a server the test controls -------------------------------------------------------------------------------


@dataclass
class Reply:
    """One canned answer: status, headers, body, and what to wait for before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    latency: float = 0.0
    # answer only once this is set (the test sets it when it is done with the request in flight)
    gate: threading.Event | None = None


Route = Callable[[dict[str, str]], Reply]


class ControlledServer:
    """A threaded HTTP server on a loopback address: per-path handlers, request counts, peak concurrency."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.starts: list[tuple[float, str]] = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer((host, 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        with self._lock:
            self.hits[path] += 1
            self.starts.append((time.monotonic(), path))
            self.active += 1
            self.peak = max(self.peak, self.active)
            self._lock.notify_all()
        try:
            route = self.routes.get(path)
            reply = route(dict(request.headers)) if route else Reply(404, body=b"not found")
            if reply.latency:
                time.sleep(reply.latency)
            if reply.gate is not None:
                reply.gate.wait(60)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a cancelled fetch hung up
                request.send_response(reply.status)
                for name, value in reply.headers.items():
                    request.send_header(name, value)
                if reply.status != 304:
                    request.send_header("Content-Length", str(len(reply.body)))
                request.end_headers()
                if reply.status != 304:
                    request.wfile.write(reply.body)
        finally:
            with self._lock:
                self.active -= 1
                self._lock.notify_all()

    def wait_until(self, condition: Callable[[ControlledServer], bool], timeout: float = 20.0) -> None:
        """Block (a handler thread, or the test) until `condition(self)` holds; AssertionError after `timeout`."""
        with self._lock:
            if not self._lock.wait_for(lambda: condition(self), timeout):
                raise AssertionError(f"timed out after {timeout} s waiting on the server")


_WORDS = [
    "harbour", "glacier", "violin", "senate", "copper", "orchard", "falcon", "lantern", "marble", "tundra",
    "comet", "saffron", "quarry", "meadow", "typhoon", "archive", "canyon", "ember", "fjord", "garnet", "hazel",
    "igloo", "jasmine", "kettle", "lagoon", "mosaic", "nectar", "obsidian", "pepper", "quartz", "ribbon",
    "sapphire", "tandem", "umbra", "velvet", "walnut", "yarrow", "zephyr", "anchor", "bramble", "cobalt", "dune",
]  # fmt: skip


def rss(name: str, items: int = 3) -> bytes:
    """A small RSS 2.0 feed of entries `name-0`..`name-{items-1}`, about an hour apart, unrelated to other feeds'."""

    def words(i: int, n: int) -> str:
        return " ".join(random.Random(f"{name}-{i}").sample(_WORDS, n))

    start = T0 - timedelta(minutes=random.Random(name).randrange(600))
    entries = "".join(
        f"<item><title>{name} story {i} {words(i, 6)}</title><link>https://example.org/{name}/{i}</link>"
        f"<guid>{name}-{i}</guid><pubDate>{format_datetime(start - timedelta(hours=i), usegmt=True)}</pubDate>"
        f"<description>{words(i + 100, 12)}</description></item>"
        for i in range(items)
    )
    return f"<rss version='2.0'><channel><title>{name}</title><link>https://example.org/{name}</link>{entries}</channel></rss>".encode()


def feed(body: bytes, *, etag: str = '"v1"', latency: float = 0.0) -> Route:
    """A feed that answers 304 to a matching If-None-Match."""

    def route(headers: dict[str, str]) -> Reply:
        if headers.get("If-None-Match") == etag:
            return Reply(304, {"ETag": etag}, latency=latency)
        return Reply(200, {"ETag": etag, "Content-Type": "application/rss+xml"}, body, latency=latency)

    return route


def fixed(reply: Reply) -> Route:
    return lambda headers: reply


@pytest.fixture
def server() -> Iterator[ControlledServer]:
    srv = ControlledServer()
    yield srv
    srv.close()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, moment: datetime) -> Clock:
        self.now = moment
        return self


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine to completion, failing (not hanging) after `timeout` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


def make_service(config: Path, clock: Clock, **options: Any) -> Service:
    return Service(config, clock=clock, rng=random.Random(1), handle_signals=False, **options)


def schedule_of(db: Path, url: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone()
    assert row is not None, url
    return dict(row)


def slot_time(url: str, interval: float, target: datetime) -> datetime:
    """Where a feed's next fetch lands without jitter: its slot nearest `target`, in whole seconds."""
    slot = feed_slot(url, interval, target)
    return slot.replace(microsecond=0) + timedelta(seconds=1) if slot.microsecond else slot


def when(text: str | None) -> datetime:
    assert text is not None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# --- polling --------------------------------------------------------------------------------------------------


def test_polls_due_feeds_only_and_resumes_the_stored_schedule(tmp_path: Path, server: ControlledServer) -> None:
    for name in "abc":
        server.routes[f"/{name}"] = feed(rss(name))
    urls = [server.url(f"/{name}") for name in "abc"]
    config = write_config(tmp_path, urls, interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        summary = await service.poll()
        assert summary is not None and summary.new == 9
        assert await service.poll(T0 + timedelta(minutes=10)) is None  # nothing due: nothing fetched
        await service.stop()

    run(scenario())
    assert sum(server.hits.values()) == 3
    planned = {url: when(schedule_of(db, url)["next_fetch_at"]) for url in urls}
    # each feed at its own slot of the interval, about 30 minutes out
    assert planned == {url: slot_time(url, 1800, T0 + timedelta(minutes=30)) for url in urls}
    assert all(T0 + timedelta(minutes=15) <= t <= T0 + timedelta(minutes=45) for t in planned.values())
    first = min(planned.values())

    async def after_restart() -> None:
        service = make_service(config, clock.at(first))
        await service.open()
        summary = await service.poll()
        assert summary is not None and len(summary.outcomes) == 1 and summary.not_modified == 1
        await service.stop()

    run(after_restart())  # a new process picks up exactly the stored schedule
    assert sum(server.hits.values()) == 4
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def test_not_modified_path_keeps_entries_and_saves_new_validators(tmp_path: Path, server: ControlledServer) -> None:
    body = rss("a")
    server.routes["/a"] = feed(body, etag='"v1"')
    config = write_config(tmp_path, [server.url("/a")], interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()
    output = tmp_path / "public" / "feed.atom"
    url = server.url("/a")

    def planned() -> datetime:
        return when(schedule_of(db, url)["next_fetch_at"])

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        await service.poll()
        published = output.stat().st_mtime_ns
        # the server now sends a new ETag with the same bytes: stored, body not parsed again, nothing published
        server.routes["/a"] = feed(body, etag='"v2"')
        summary = await service.poll(clock.at(planned()).now)
        assert summary is not None and summary.not_modified == 1 and summary.new == 0
        assert schedule_of(db, url)["etag"] == '"v2"'
        summary = await service.poll(clock.at(planned()).now)
        assert summary is not None and summary.outcomes[0].http_status == 304
        assert output.stat().st_mtime_ns == published
        await service.stop()

    run(scenario())
    row = schedule_of(db, url)
    expected = slot_time(url, 1800, clock.now + timedelta(minutes=30))
    assert (row["last_status"], row["error_count"], when(row["next_fetch_at"])) == (304, 0, expected)
    assert query(db, "SELECT count(*) FROM entries") == [(3,)]


def test_retry_after_is_respected_and_429_holds_the_whole_host(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/busy"] = fixed(Reply(503, {"Retry-After": "7200"}))
    # (an HTTP-date Retry-After is measured against the response's Date, here the real clock, not the test's:
    # test_schedule.py covers that form)
    server.routes["/limited"] = fixed(Reply(429, {"Retry-After": "10800"}))
    server.routes["/other"] = feed(rss("o"))
    urls = [server.url(p) for p in ("/busy", "/limited", "/other")]
    config = write_config(tmp_path, urls, interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        await service.poll()
        assert dict(server.hits) == {"/busy": 1, "/limited": 1, "/other": 1}
        # /other is due again by 09:45 and /busy at 11:00, but their host said 429 until 12:00: nothing goes out
        assert await service.poll(clock.at(T0 + timedelta(minutes=30)).now) is None
        almost = clock.at(T0 + timedelta(hours=2, minutes=59)).now
        assert {state.url for state, _ in service.store.due_feeds(almost)} == {urls[0], urls[2]}
        assert await service.poll(almost) is None
        summary = await service.poll(clock.at(T0 + timedelta(hours=3)).now)
        assert summary is not None and {o.url for o in summary.outcomes} == set(urls)
        await service.stop()

    run(scenario())
    assert dict(server.hits) == {"/busy": 2, "/limited": 2, "/other": 2}
    busy = schedule_of(db, urls[0])
    assert busy["schedule_reason"] == "retry-after" and busy["error_count"] == 2


def test_backoff_grows_on_failures_and_resets_on_success(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/flaky"] = fixed(Reply(500, body=b"oops"))
    url = server.url("/flaky")
    config = write_config(tmp_path, [url], interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()
    gaps = []

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        for attempt in range(6):
            if attempt == 4:
                server.routes["/flaky"] = feed(rss("f"))
            before = clock.now
            summary = await service.poll()
            assert summary is not None and len(summary.outcomes) == 1
            planned = when(schedule_of(db, url)["next_fetch_at"])
            gaps.append(round((planned - before).total_seconds() / 60))
            if attempt >= 4:  # a success: back to the feed's slot of the normal interval
                assert planned == slot_time(url, 1800, before + timedelta(minutes=30))
            assert await service.poll(planned - timedelta(seconds=1)) is None  # not a moment early
            clock.at(planned)
        await service.stop()

    run(scenario())
    assert gaps[:4] == [30, 60, 120, 240]  # 4 failures double the wait...
    assert 15 <= gaps[4] <= 45 and gaps[5] == 30  # ...a success resets it (to the slot, then every 30 min)
    assert server.hits["/flaky"] == 6
    assert schedule_of(db, url)["error_count"] == 0


def test_prune_removes_old_stories_no_output_shows(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/a"] = feed(rss("a", 3))
    outputs = [{"path": "public/feed.atom", "max_age_hours": 24}]
    config = write_config(tmp_path, [server.url("/a")], outputs=outputs, retention={"keep_days": 2})
    db = tmp_path / "aggregator.db"
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        await service.poll()
        assert query(db, "SELECT count(*) FROM entries") == [(3,)]
        assert await service.prune() is not None  # nothing is old yet
        assert query(db, "SELECT count(*) FROM entries") == [(3,)]
        clock.at(T0 + timedelta(days=10))
        result = await service.prune()
        assert result is not None and (result.entries, result.stories) == (3, 3)
        await service.stop()

    run(scenario())
    assert query(db, "SELECT count(*) FROM entries") == [(0,)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def test_gone_disables_the_feed_for_good(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/gone"] = fixed(Reply(410))
    server.routes["/ok"] = feed(rss("k"))
    config = write_config(tmp_path, [server.url("/gone"), server.url("/ok")], interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        await service.poll()
        for days in (1, 30, 365):
            summary = await service.poll(clock.at(T0 + timedelta(days=days)).now)
            assert summary is not None and [o.url for o in summary.outcomes] == [server.url("/ok")]
        health = service.health()
        assert health["feeds"]["disabled"] == 1 and health["feeds"]["ok"] == 1
        await service.stop()

    run(scenario())
    assert server.hits["/gone"] == 1
    row = schedule_of(db, server.url("/gone"))
    assert row["disabled_reason"].startswith("HTTP 410") and row["next_fetch_at"] is None


@pytest.mark.parametrize(("code", "moves"), [(301, True), (308, True), (302, False), (307, False)])
def test_redirects_move_the_feed_only_when_permanent_and_confirmed(
    tmp_path: Path, server: ControlledServer, code: int, moves: bool
) -> None:
    server.routes["/old"] = fixed(Reply(code, {"Location": "/new"}))
    server.routes["/new"] = feed(rss("n"))
    old = server.url("/old")
    config = write_config(tmp_path, [old], interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        for attempt in range(5):
            summary = await service.poll(clock.at(T0 + timedelta(hours=attempt)).now)
            assert summary is not None and summary.failed == 0
        await service.stop()

    run(scenario())
    row = schedule_of(db, old)  # the row keeps the configured URL, so feeds.yaml still names it
    if moves:
        assert server.hits["/old"] == 3 and server.hits["/new"] == 5
        assert row["fetch_url"] == server.url("/new") and row["redirect_count"] == 0
    else:
        assert server.hits["/old"] == 5 and row["fetch_url"] is None and row["redirect_count"] == 0
    assert query(db, "SELECT count(*) FROM feeds") == [(1,)]
    assert query(db, "SELECT count(*) FROM entries") == [(3,)]


def test_moved_feed_keeps_its_row_when_feeds_yaml_is_updated_to_the_new_url(
    tmp_path: Path, server: ControlledServer
) -> None:
    server.routes["/old"] = fixed(Reply(301, {"Location": "/new"}))
    server.routes["/new"] = feed(rss("n"))
    config = write_config(tmp_path, [server.url("/old")], interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        for attempt in range(3):
            await service.poll(clock.at(T0 + timedelta(hours=attempt)).now)
        write_config(tmp_path, [server.url("/new")], interval="30m", jitter=0)
        assert await service.reload()
        assert await service.poll(clock.at(T0 + timedelta(hours=5)).now) is not None
        await service.stop()

    run(scenario())
    assert query(db, "SELECT url, fetch_url, active FROM feeds") == [(server.url("/new"), None, 1)]
    assert query(db, "SELECT count(*) FROM entries") == [(3,)]


def test_per_host_concurrency_never_exceeds_its_limit(tmp_path: Path) -> None:
    hosts = [ControlledServer("127.0.0.1"), ControlledServer("127.0.0.2")]
    try:
        urls = []
        for srv in hosts:
            for i in range(8):
                srv.routes[f"/{i}"] = _paired(srv, rss(f"h{i}", 1))
                urls.append(srv.url(f"/{i}"))
        config = write_config(tmp_path, urls, fetch={"concurrency": 16, "per_host": 2})
        run(_open_poll_stop(config, Clock()))
        assert [srv.peak for srv in hosts] == [2, 2]
        assert [sum(srv.hits.values()) for srv in hosts] == [8, 8]
    finally:
        for srv in hosts:
            srv.close()


def _paired(srv: ControlledServer, body: bytes) -> Route:
    """A feed that answers once a second request to its host is in flight (or every request has arrived), so
    the peak shows the limit whatever the machine's load, instead of hoping two requests overlap in time."""

    def route(headers: dict[str, str]) -> Reply:
        srv.wait_until(lambda s: s.active >= 2 or sum(s.hits.values()) == 8)
        return Reply(200, {"Content-Type": "application/rss+xml"}, body)

    return route


def test_min_host_spacing_separates_request_starts(
    tmp_path: Path, server: ControlledServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each request's start is read on the Fetcher's own clock as it gets its turn: at the server, a loaded
    # machine's thread wake-ups and connection set-up blur the gaps (0.185 s seen for 0.3 s of spacing).
    turns: list[float] = []
    wait_for_turn = Fetcher._wait_for_turn

    async def recorded(self: Fetcher, host: str) -> None:
        await wait_for_turn(self, host)
        turns.append(asyncio.get_running_loop().time())

    monkeypatch.setattr(Fetcher, "_wait_for_turn", recorded)
    for i in range(4):
        server.routes[f"/{i}"] = feed(rss(f"s{i}", 1))
    urls = [server.url(f"/{i}") for i in range(4)]
    config = write_config(tmp_path, urls, fetch={"per_host": 4, "min_host_spacing": 0.3})
    run(_open_poll_stop(config, Clock()))
    assert len(server.starts) == 4 and len(turns) == 4
    assert min(b - a for a, b in itertools.pairwise(sorted(turns))) >= 0.3 - 0.001  # asyncio's timer slack


async def _open_poll_stop(config: Path, clock: Clock) -> None:
    service = make_service(config, clock)
    await service.open()
    await service.poll()
    await service.stop()


def test_the_clock_polls_on_schedule_and_publishing_is_debounced(
    tmp_path: Path, server: ControlledServer, caplog: pytest.LogCaptureFixture
) -> None:
    serial = itertools.count()

    def changing(headers: dict[str, str]) -> Reply:  # a new entry on every fetch
        n = next(serial)
        return Reply(200, {"Content-Type": "application/rss+xml"}, rss(f"c{n}", 1))

    server.routes["/changing"] = changing
    server.routes["/quiet"] = feed(rss("q", 1))
    config = write_config(
        tmp_path,
        [server.url("/changing"), server.url("/quiet")],
        interval="1s",
        min_interval="1s",
        jitter=0,
        service={"publish_debounce_seconds": 2, "reload_check_seconds": 0},
    )
    caplog.set_level("INFO", logger="aggregator")

    async def scenario() -> float:
        service = Service(config, handle_signals=False)
        await service.start()
        started = time.monotonic()
        try:
            while server.hits["/changing"] < 4:
                await asyncio.sleep(0.05)
        finally:
            await service.stop()
        return time.monotonic() - started

    elapsed = run(scenario(), timeout=30)
    passes = caplog.text.count("pass: ")
    publishes = caplog.text.count("published: ")
    assert server.hits["/quiet"] >= 3  # polled every second or so too, answering 304
    assert passes >= 4
    # at most one publish per 2 s (plus the first at once and the last at stop), however many passes stored news
    assert 2 <= publishes <= elapsed / 2 + 2, (passes, publishes, elapsed)


# --- unexpected errors: logged, and nothing left unscheduled (issue 13 item 10) ------------------------------------


def test_a_database_error_in_the_clock_is_logged_and_the_clock_goes_on(
    tmp_path: Path, server: ControlledServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/f"] = feed(rss("f", 1))
    config = write_config(
        tmp_path, [server.url("/f")], interval="1s", min_interval="1s", jitter=0, service={"reload_check_seconds": 0}
    )
    db = tmp_path / "aggregator.db"
    caplog.set_level("INFO", logger="aggregator")

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            await asyncio.sleep(0.05)

    async def scenario() -> int:
        service = Service(config, handle_signals=False)
        await service.start()
        try:
            await until(lambda: server.hits["/f"] >= 1)
            # the feeds table gone from under the service: the store's reads fail with raw sqlite3 errors too
            with sqlite3.connect(db) as conn:
                conn.execute("ALTER TABLE feeds RENAME TO feeds_away")
            await until(lambda: "cannot plan the next poll" in caplog.text)
            with sqlite3.connect(db) as conn:
                conn.execute("ALTER TABLE feeds_away RENAME TO feeds")
            hits = server.hits["/f"]
            await until(lambda: server.hits["/f"] > hits)  # the clock still runs: the feed is polled again
            return hits
        finally:
            await service.stop()

    run(scenario(), timeout=60)
    planning = [r for r in caplog.records if r.getMessage().startswith("cannot plan the next poll")]
    assert planning and planning[0].getMessage().endswith("trying again in 1 s")
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_feed_whose_plan_cannot_be_stored_is_held_not_fetched_again_at_once(
    tmp_path: Path, server: ControlledServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/f"] = feed(rss("f", 1))
    url = server.url("/f")
    config = write_config(tmp_path, [url], interval="10m", min_interval="10s")
    db = tmp_path / "aggregator.db"
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        try:
            with sqlite3.connect(db) as conn:  # storing a plan fails; storing the feed itself still works
                conn.execute(
                    "CREATE TRIGGER no_plans BEFORE UPDATE OF next_fetch_at ON feeds "
                    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
                )
            summary = await service.poll()
            assert summary is not None and summary.new == 1
            assert await service.poll() is None  # held: not fetched again in a loop
            assert await service.poll(clock.at(T0 + timedelta(seconds=9)).now) is None
            summary = await service.poll(clock.at(T0 + timedelta(seconds=10)).now)  # the retry delay is over
            assert summary is not None and [o.url for o in summary.outcomes] == [url]
            with sqlite3.connect(db) as conn:
                conn.execute("DROP TRIGGER no_plans")
            assert await service.poll(clock.at(T0 + timedelta(seconds=20)).now) is not None
            assert await service.poll(clock.at(T0 + timedelta(seconds=40)).now) is None  # planned 10 min on
        finally:
            await service.stop()

    run(scenario())
    assert server.hits["/f"] == 3
    assert caplog.text.count(f"cannot store the schedule of {url}: ") == 2
    assert "disk I/O error" in caplog.text
    assert schedule_of(db, url)["next_fetch_at"] is not None


def test_the_service_reads_only_the_clock_it_is_given(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/f"] = feed(rss("f", 1))
    config = write_config(tmp_path, [server.url("/f")], service={"reload_check_seconds": 0})
    later = datetime.now(UTC) + timedelta(days=3)  # far from the wall clock, so a mix-up shows
    clock = Clock(later)

    async def scenario() -> None:
        service = Service(config, clock=clock, rng=random.Random(1), handle_signals=False)
        await service.start()
        try:
            assert service._scheduler is not None
            prune = service._scheduler.get_job("prune")
            assert prune.next_run_time == later + timedelta(minutes=10)
            service.publisher.note_news()
            service.publisher.request()  # what a clock-driven pass that stored news asks for
            publish = service._scheduler.get_job("publish")
            assert later <= publish.next_run_time <= later + timedelta(seconds=10)
        finally:
            await service.stop()

    run(scenario())


def test_a_document_not_read_again_keeps_the_interval_it_declared(tmp_path: Path, server: ControlledServer) -> None:
    body = rss("t", 2).replace(b"<channel>", b"<channel><ttl>120</ttl>")
    server.routes["/t"] = feed(body, etag='"v1"')
    url = server.url("/t")
    config = write_config(tmp_path, [url], interval="30m", adaptive=True, jitter=0)
    db = tmp_path / "aggregator.db"
    clock = Clock()
    seen: list[object] = []

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        for answer in ("ttl", "304", "same bytes"):
            if answer == "same bytes":
                server.routes["/t"] = feed(body, etag='"v2"')  # a new ETag, the same document
            summary = await service.poll()
            assert summary is not None and len(summary.outcomes) == 1, answer
            row = schedule_of(db, url)
            seen.append(row["declared_interval_seconds"])
            clock.at(when(row["next_fetch_at"]))
        await service.stop()

    run(scenario())
    assert seen == [7200, 7200, 7200]


# --- the parts alone: the scheduling loop, the publishing worker, the health report -----------------------------


def test_the_poller_alone_polls_what_is_due_and_plans_it(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/a"] = feed(rss("a", 2))
    url = server.url("/a")
    config = load_config(write_config(tmp_path, [url], interval="30m", jitter=0))
    news: list[str] = []

    async def scenario() -> None:
        with Store.open(config.database_path) as store:
            states = store.sync_feeds(config.sources(), T0)
            async with Fetcher(config.fetch, allow_private_addresses=True) as fetcher:
                poller = Poller(store, fetcher, clock=Clock(), rng=random.Random(1), on_news=lambda: news.append("x"))
                poller.use_config(config, states)
                summary = await poller.poll()
                assert summary is not None and (summary.ok, summary.new) == (1, 2)
                assert await poller.poll() is None  # planned half an hour on: nothing due
                stats = poller.stats()
                assert (stats.fetches, stats.in_flight, len(stats.drift)) == (1, 0, 1)
                assert stats.last_pass is not None and stats.last_pass["entries_new"] == 2

    run(scenario())
    assert news == ["x"]
    assert when(schedule_of(config.database_path, url)["next_fetch_at"]) == slot_time(
        url, 1800, T0 + timedelta(minutes=30)
    )


def test_the_publisher_alone_clusters_and_writes_only_when_there_is_news(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ["https://a.example/feed"]))
    output = config.resolve(config.outputs[0].path)
    clock = Clock()

    async def scenario() -> None:
        publisher = Publisher(lambda: config, config.database_path, clock=clock)
        with Store.open(config.database_path):
            pass
        await publisher.publish()  # a new publisher publishes once: a crash may have left news unpublished
        assert output.exists() and publisher.last_publish == {"at": "2026-03-01T09:00:00Z", "clustered": 0,
                                                                "outputs_changed": 1}  # fmt: skip
        output.unlink()
        await publisher.publish()  # nothing new: no work
        assert not output.exists()
        publisher.note_news()
        await publisher.publish()
        assert output.exists()
        assert await publisher.prune() is None  # retention.keep_days is not set

    run(scenario())


def test_the_health_report_alone() -> None:
    feeds = {"total": 2, "ok": 0, "failing": 2, "disabled": 0, "new": 0, "last_fetched_at": "2026-03-01T09:00:00Z"}
    stats = PollStats(last_pass=None, in_flight=1, fetches=4, scheduler_cpu_seconds=0.01234, drift=(0.4, 0.1, 0.2, 0.3))
    report = health_report(state="running", started_at=T0, feeds=feeds, polling=stats, last_publish=None)
    assert report["status"] == "failing"  # every fetched feed is failing: /health answers 503
    assert report["feeds"] == {"total": 2, "ok": 0, "failing": 2, "disabled": 0, "new": 0}
    assert (report["last_fetched_at"], report["started_at"]) == ("2026-03-01T09:00:00Z", "2026-03-01T09:00:00Z")
    assert (report["polling"], report["in_flight"], report["fetches"], report["scheduler_cpu_seconds"]) == (
        True, 1, 4, 0.012,
    )  # fmt: skip
    assert report["drift_seconds"] == {"samples": 4, "median": 0.25, "p99": 0.4}
    served = health_report(state="running", started_at=None, feeds={}, polling=None, last_publish=None)
    assert (served["status"], served["polling"], served["drift_seconds"]["samples"]) == ("ok", False, 0)


# --- config reload ----------------------------------------------------------------------------------------------


def test_reload_adds_and_removes_feeds_and_keeps_running_on_a_bad_config(
    tmp_path: Path, server: ControlledServer, caplog: pytest.LogCaptureFixture
) -> None:
    for name in "abc":
        server.routes[f"/{name}"] = feed(rss(name, 1))
    a, b, c = (server.url(f"/{name}") for name in "abc")
    config = write_config(tmp_path, [a, b], interval="30m")
    clock = Clock()

    async def scenario() -> None:
        service = make_service(config, clock)
        await service.open()
        await service.poll()
        write_config(tmp_path, [b, c], interval="30m")
        assert await service.reload()
        summary = await service.poll(clock.at(T0 + timedelta(minutes=1)).now)
        assert summary is not None and [o.url for o in summary.outcomes] == [c]  # the new feed, at once
        config.write_text("feeds: [{url: not a url}]\n", encoding="utf-8")
        assert not await service.reload()
        assert [feed.url for feed in service.config.feeds] == [b, c]
        summary = await service.poll(clock.at(T0 + timedelta(hours=2)).now)
        assert summary is not None and sorted(o.url for o in summary.outcomes) == [b, c]
        assert service.state is ServiceState.OPEN
        await service.stop()
        assert service.state is ServiceState.STOPPED

    run(scenario())
    assert "config reload failed, still running the previous config" in caplog.text
    assert "feeds[0].url" in caplog.text
    assert server.hits == Counter({"/a": 1, "/b": 2, "/c": 2})


# --- the process: signals, grace period, crash safety -----------------------------------------------------------


class ServiceProcess:
    """`aggregator run` in a subprocess, its stderr read line by line as it comes, so a test can wait for a line."""

    def __init__(self, config: Path, *args: str, preexec_fn: Callable[[], None] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(config), "run", *args],
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=preexec_fn,  # only resource limits, set before exec
        )
        self.lines: list[str] = []
        self._news = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._news:
                self.lines.append(line)
                self._news.notify_all()

    @property
    def stderr(self) -> str:
        with self._news:
            return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 20.0) -> str:
        """The first line of stderr containing `text`, once it is written; AssertionError after `timeout`."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._news:
            if not self._news.wait_for(lambda: found() is not None or not self._reader.is_alive(), timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {text!r} in:\n{''.join(self.lines)}")
            line = found()
        if line is None:
            raise AssertionError(f"the service ended without logging {text!r}:\n{self.stderr}")
        return line

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def kill(self) -> None:
        """kill -9, and reap it."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """Wait for the process to exit on its own (bounded, so a hang fails instead of blocking): code, stderr."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the service did not exit within {timeout} s:\n{self.stderr}") from None
        self._reader.join(timeout=10)
        return code, self.stderr


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _planned(db: Path) -> int:
    """How many feeds have their next fetch planned (0 while the database does not exist yet)."""
    try:
        return int(query(db, "SELECT count(*) FROM feeds WHERE next_fetch_at IS NOT NULL")[0][0])
    except sqlite3.Error:
        return 0


def _fetched(db: Path) -> int:
    """How many feeds have been fetched and stored (0 while the database does not exist yet)."""
    try:
        return int(query(db, "SELECT count(*) FROM feeds WHERE last_fetched_at IS NOT NULL")[0][0])
    except sqlite3.Error:
        return 0


def test_sigterm_exits_zero_within_the_grace_period_with_the_database_intact(
    tmp_path: Path, server: ControlledServer
) -> None:
    slow = threading.Event()  # the slow three answer only when the test ends: they must be cancelled
    for i in range(6):
        server.routes[f"/{i}"] = feed(rss(f"t{i}", 2)) if i < 3 else fixed(Reply(gate=slow))
    urls = [server.url(f"/{i}") for i in range(6)]
    config = write_config(
        tmp_path, urls, fetch={"per_host": 6, "deadline": 60, "read_timeout": 60}, service={"grace_seconds": 1}
    )
    db = tmp_path / "aggregator.db"
    service = ServiceProcess(config)
    try:
        # events, not a time budget: the fast three stored, and the slow three's requests at the server
        _wait_for(lambda: _fetched(db) == 3 and sum(server.hits.values()) == 6, 30, "3 feeds stored and 3 in flight")
        service.signal(signal.SIGTERM)
        code, stderr = service.finish()  # the slow three never answer: exiting at all means they were cancelled
    finally:
        slow.set()
    assert code == 0, stderr
    assert "stopping: 3 feeds in flight, waiting up to 1 s" in stderr
    assert f"cancelling 3 feeds still in flight: {', '.join(urls[3:])}" in stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    # the fast three were stored and published; the slow ones were not
    assert query(db, "SELECT count(*) FROM feeds WHERE last_fetched_at IS NOT NULL") == [(3,)]
    assert query(db, "SELECT count(*) FROM entries") == [(6,)]
    stories = query(db, "SELECT count(*) FROM stories")[0][0]
    assert stories > 0 and (tmp_path / "public" / "feed.atom").read_bytes().count(b"<entry>") == stories


def test_a_second_sigterm_cuts_the_grace_period_short(tmp_path: Path, server: ControlledServer) -> None:
    slow = threading.Event()
    server.routes["/slow"] = fixed(Reply(gate=slow))
    config = write_config(
        tmp_path, [server.url("/slow")], fetch={"deadline": 60, "read_timeout": 60}, service={"grace_seconds": 3600}
    )
    service = ServiceProcess(config)
    try:
        _wait_for(lambda: server.hits["/slow"] == 1, 20, "the request to be in flight")
        service.signal(signal.SIGTERM)
        service.wait_for_line("stopping: 1 feeds in flight, waiting up to 3600 s")
        service.signal(signal.SIGTERM)
        code, stderr = service.finish()  # long before the hour of grace is over
    finally:
        slow.set()
    assert code == 0, stderr
    assert "stop requested again: cancelling in-flight fetches now" in stderr
    assert f"cancelling 1 feeds still in flight: {server.url('/slow')}" in stderr
    assert query(tmp_path / "aggregator.db", "PRAGMA integrity_check") == [("ok",)]


def test_kill_9_during_a_pass_then_restart_completes_the_work(tmp_path: Path, server: ControlledServer) -> None:
    names = [f"k{i:02d}" for i in range(16)]
    held = threading.Event()  # the second half answers only after the kill
    for i, name in enumerate(names):
        server.routes[f"/{name}"] = feed(rss(name, 3)) if i < 8 else lambda headers, n=name: _gated(n, held)
    config = write_config(tmp_path, [server.url(f"/{name}") for name in names], fetch={"per_host": 16})
    db = tmp_path / "aggregator.db"
    output = tmp_path / "public" / "feed.atom"
    service = ServiceProcess(config)
    try:
        # under way: the first half stored, the second half's requests in flight
        _wait_for(lambda: _planned(db) == 8 and sum(server.hits.values()) == 16, 30, "the pass to be under way")
        service.kill()
    finally:
        held.set()
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "SELECT count(*) FROM entries") == [(24,)]
    hits_before = sum(server.hits.values())
    (unplanned,) = query(db, "SELECT count(*) FROM feeds WHERE next_fetch_at IS NULL")[0]
    assert unplanned == 8

    def finished() -> bool:
        done = query(db, "SELECT count(*) FROM feeds WHERE next_fetch_at IS NULL") == [(0,)]
        done = done and query(db, "SELECT count(*) FROM entries WHERE story_id IS NULL") == [(0,)]
        stories = query(db, "SELECT count(*) FROM stories")[0][0]
        return done and output.exists() and output.read_bytes().count(b"<entry>") == stories

    service = ServiceProcess(config)
    try:
        _wait_for(finished, 30, "the restarted service to finish every feed and publish")
    finally:
        service.signal(signal.SIGTERM)
        code, stderr = service.finish()
    assert code == 0, stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "SELECT count(*), count(DISTINCT guid) FROM entries") == [(48, 48)]
    # exactly the feeds that had no planned fetch when killed were fetched again: nothing lost, nothing twice
    assert sum(server.hits.values()) == hits_before + unplanned


def _gated(name: str, gate: threading.Event) -> Reply:
    gate.wait(60)
    return Reply(200, {"Content-Type": "application/rss+xml"}, rss(name, 3))


def test_sighup_reloads_the_config_of_a_running_service(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/a"] = feed(rss("a", 1))
    server.routes["/b"] = feed(rss("b", 1))
    config = write_config(tmp_path, [server.url("/a")], service={"reload_check_seconds": 0})
    service = ServiceProcess(config)
    try:
        _wait_for(lambda: server.hits["/a"] == 1, 20, "the first fetch")
        write_config(tmp_path, [server.url("/a"), server.url("/b")], service={"reload_check_seconds": 0})
        service.signal(signal.SIGHUP)
        _wait_for(lambda: server.hits["/b"] == 1, 20, "the feed added by SIGHUP to be fetched")
    finally:
        service.signal(signal.SIGINT)
        code, stderr = service.finish()
    assert code == 0, stderr
    assert "config reloaded: 2 feeds (1 added, 0 removed)" in stderr
    assert server.hits["/a"] == 1


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_bad_config_is_one_line_and_exit_code_2(tmp_path: Path, command: str) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("interval: 1m\n", encoding="utf-8")
    result = run_cli(command, config=config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {config}: interval: 60 s is below min_interval (300 s); lower min_interval to allow it\n"
    )


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = ServiceProcess(config, "--serve", "--port", str(port)).finish()
    assert code == 1
    assert stderr.strip().splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
