"""Shared fixtures: a loopback feed server, a config writer and the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aggregator.cli import cli

DATA = Path(__file__).parent / "data"
# Real-world files (../shared/data beside the checkout, or where AGGREGATOR_SHARED_DATA says). Tests that read
# them carry the marker `shared_data` (the fixture of that name adds it): they are skipped where the folder is
# missing, and fail there instead under AGGREGATOR_REQUIRE_SHARED_DATA=1 (.ci/run sets it). The summary at the
# end of a run says which of them ran.
SHARED = Path(os.environ.get("AGGREGATOR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
REQUIRE_SHARED = "AGGREGATOR_REQUIRE_SHARED_DATA"


@pytest.fixture(scope="session")
def make_httpserver() -> Iterator[HTTPServer]:
    """pytest-httpserver on 127.0.0.1, threaded so one slow handler does not stall the others."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


class FeedFiles:
    """Feeds served by a loopback server with ETag/Last-Modified and 304s, whose bodies a test can change."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.bodies: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []

    def serve(self, path: str, body: bytes | str, content_type: str = "application/rss+xml") -> str:
        """Serve (or replace) `body` at `path`; returns the full URL."""
        data = body.encode() if isinstance(body, str) else body
        first = path not in self.bodies
        self.bodies[path] = (data, content_type)
        if first:
            self.server.expect_request(path).respond_with_handler(lambda request: self._answer(path, request))
        return self.server.url_for(path)

    def serve_file(self, path: str, file: Path, content_type: str = "application/rss+xml") -> str:
        """Serve a file's bytes at `path`."""
        return self.serve(path, file.read_bytes(), content_type)

    def _answer(self, path: str, request: Request) -> Response:
        self.requests.append(path)
        body, content_type = self.bodies[path]
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        return Response(body, status=200, headers={"ETag": etag, "Content-Type": content_type})


@pytest.fixture
def feeds(httpserver: HTTPServer) -> FeedFiles:
    """Feed files served on 127.0.0.1 with conditional GET support."""
    return FeedFiles(httpserver)


def write_config(directory: Path, feeds: list[dict[str, Any] | str], **extra: Any) -> Path:
    """Write a feeds.yaml with one Atom output (public/feed.atom) unless `outputs` is given."""
    data: dict[str, Any] = {
        "database": "aggregator.db",
        "outputs": [{"path": "public/feed.atom", "format": "atom", "title": "Test feed", "limit": 100}],
        "feeds": [{"url": f} if isinstance(f, str) else f for f in feeds],
    }
    data.update(extra)
    path = directory / "feeds.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """A function that writes feeds.yaml into tmp_path and returns its path."""
    return lambda feeds, **extra: write_config(tmp_path, feeds, **extra)


def run_cli(*args: str, config: Path | None = None) -> Result:
    """Run the real CLI in-process; stdout and stderr are kept apart."""
    runner = CliRunner()
    full = (["--config", str(config)] if config else []) + list(args)
    return runner.invoke(cli, full, catch_exceptions=False)


def update_json(config: Path) -> dict[str, Any]:
    """Run `aggregator update --json` and return its summary."""
    result = run_cli("update", "--json", config=config)
    assert result.exit_code == 0, result.output + result.stderr
    return dict(json.loads(result.stdout))


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query against a database file, through plain sqlite3."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (the marker `shared_data`, which this fixture implies, skips a test without it)."""
    return SHARED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the `shared_data` fixture carries the marker of that name."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and item.get_closest_marker("shared_data") is None:
            item.add_marker(pytest.mark.shared_data)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a `shared_data` test when its folder is missing, or fail it under AGGREGATOR_REQUIRE_SHARED_DATA=1."""
    marker = item.get_closest_marker("shared_data")
    if marker is None:
        return
    needed = SHARED.joinpath(*marker.args)
    if needed.is_dir():
        return
    why = f"{needed} is not there (real-world data: ../shared/data beside the checkout, or $AGGREGATOR_SHARED_DATA)"
    if os.environ.get(REQUIRE_SHARED) == "1":
        pytest.fail(f"{why}, and {REQUIRE_SHARED}=1 requires it", pytrace=False)
    pytest.skip(why)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say which tests of real-world data ran, and which were skipped for want of it."""
    outcomes = {
        report.nodeid: outcome
        for outcome in ("passed", "failed", "skipped", "error")
        for report in terminalreporter.stats.get(outcome, ())
        if "shared_data" in getattr(report, "keywords", {})
    }
    if not outcomes:
        return
    ran = [nodeid for nodeid, outcome in outcomes.items() if outcome in ("passed", "failed")]
    missing = {nodeid: outcome for nodeid, outcome in outcomes.items() if nodeid not in ran}
    terminalreporter.write_sep("-", "tests of real-world data (../shared/data)")
    terminalreporter.write_line(f"{len(ran)} ran, {len(missing)} did not (no data); data: {SHARED}")
    for nodeid, outcome in missing.items():
        what = "SKIPPED" if outcome == "skipped" else f"FAILED ({REQUIRE_SHARED}=1)"
        terminalreporter.write_line(f"{what} {nodeid}: no data")
