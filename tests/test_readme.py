"""Every shell command README.md shows works (issue 16): each is run against a store a real `aggregator update`
wrote over loopback feeds, or skipped here with the reason it cannot be.

The commands are read from README's code blocks when the tests are collected: every line of a `sh` block, and
the lines of an unlabelled block that start with a program. Each is one test case named by its text, so
`pytest -v tests/test_readme.py` lists what ran and what was skipped, and why. A command README gains that
this file does not know how to run fails until it is given a runner or a reason to skip. Synopsis lines
(`aggregator run [--serve] ...`) and the rows of the command table are checked against each command's --help.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from pytest_httpserver import HTTPServer

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent  # the virtualenv's scripts: aggregator, sqlite-utils, datasette
# Programs whose lines in an unlabelled block are commands (others are output, such as `error: ...`).
PROGRAMS = frozenset({"aggregator", "sqlite3", "sqlite-utils", "datasette", "curl", "pip", "python3", "docker"})
# Commands not run here, by their first words, and why.
SKIPPED = {
    ("python3", "-m", "venv"): "makes a virtualenv; .ci/run makes one the same way from a clean checkout",
    (".",): "a shell built-in (activates the virtualenv)",
    ("pytest",): "the test suite itself; .ci/run runs it",
    ("docker",): "needs a Docker daemon and the network to build the image",
}
DATASETTE_PORT = "8001"  # where README says Datasette listens (its default)
TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Command:
    """One simple command of README: its words, the text it came from and the README line it starts on."""

    argv: tuple[str, ...]
    text: str
    line: int

    def __str__(self) -> str:
        """The words joined by single spaces (README's continued lines and indentation folded)."""
        return re.sub(r"\s+", " ", " ".join(self.argv))


def code_blocks(markdown: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of each fenced code block."""
    language, start, lines = None, 0, []
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.startswith("```"):
            if language is None:
                language, start, lines = line[3:].strip(), number + 1, []
            else:
                yield language, start, lines
                language = None
        elif language is not None:
            lines.append(line)


def shell_commands(markdown: str) -> list[Command]:
    """The commands of README's shell blocks, a line continued while a quote is open, split at `&&`."""
    commands = []
    for language, start, lines in code_blocks(markdown):
        if language not in ("sh", "bash", ""):
            continue
        pending, first = "", 0
        for offset, line in enumerate(lines):
            if not pending:
                words = line.split()
                if not words or (language == "" and words[0] not in PROGRAMS):
                    continue
                first = start + offset
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:  # a quote still open: the command goes on on the next line
                continue
            for part in _split_and(words):
                commands.append(Command(tuple(part), pending, first))
            pending = ""
        assert not pending, f"README.md:{first}: a quote is never closed"
    return commands


def _split_and(words: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    return [part for part in parts if part]


def table_synopses(markdown: str) -> list[Command]:
    """The command table's first column: `aggregator add URL [--title T] ...`."""
    found = []
    for number, line in enumerate(markdown.splitlines(), 1):
        cell = re.match(r"\| `(aggregator [^`]+)` \|", line)
        if cell:
            text = cell.group(1).replace("\\|", "|")
            found.append(Command(tuple(text.split()), text, number))
    return found


COMMANDS = shell_commands(README.read_text(encoding="utf-8"))
SYNOPSES = [c for c in COMMANDS if any(w.startswith("[") for w in c.argv)] + table_synopses(
    README.read_text(encoding="utf-8")
)
RUNNABLE = [c for c in COMMANDS if c not in SYNOPSES]


# --- the store the commands run against -------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)
WAIC = "China proposes new global AI cooperation organisation"
FEEDS = {
    # the wire sends the WAIC story twice (an update under a new id): two reports, one outlet
    "wire": [
        ("w1", WAIC, "Premier Li Qiang told the AI conference in Shanghai that China will set up a global body.", 3),
        ("w1b", WAIC, "Updated: Premier Li Qiang said the organisation would be based in Shanghai.", 2),
        ("w2", "Labor Department says hiring slowed", "The government said employers added fewer jobs.", 5),
    ],
    "asia": [
        ("a1", "Li Qiang calls for world AI cooperation body", "Premier Li Qiang proposed a global AI body.", 2),
        ("a2", "Labour unions strike over pay", "Nurses and teachers walked out.", 4),
    ],
    "europe": [("e1", f"{WAIC} - Reuters", "Li Qiang proposed a global AI cooperation organisation.", 1)],
}


def rss(name: str, items: list[tuple[str, str, str, int]]) -> str:
    parts = "".join(
        f"<item><guid>urn:{name}:{guid}</guid><title>{title}</title><link>https://{name}.example/{guid}</link>"
        f"<description>{summary}</description>"
        f"<pubDate>{format_datetime(NOW - timedelta(hours=hours), usegmt=True)}</pubDate></item>"
        for guid, title, summary, hours in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name.title()} News</title>{parts}</channel></rss>'


@dataclass(frozen=True, slots=True)
class Site:
    """The folder a newcomer runs README's commands in: feeds.yaml, aggregator.db, public/, metadata.json."""

    folder: Path
    env: dict[str, str]

    def run(self, argv: tuple[str, ...] | list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        for name, items in FEEDS.items():
            server.expect_request(f"/{name}.xml").respond_with_data(
                rss(name, items), content_type="application/rss+xml"
            )
        folder = tmp_path_factory.mktemp("readme")
        config = {
            "database": "aggregator.db",
            "outputs": [
                {"path": "public/feed.atom", "format": "atom", "title": "Aggregated news"},
                {"path": "public/index.html", "format": "html", "title": "Aggregated news"},
            ],
            "feeds": [{"url": server.url_for(f"/{name}.xml")} for name in FEEDS]
            + [{"url": server.url_for("/gone.xml")}],  # answers 404: a feed whose status is not ok
        }
        (folder / "feeds.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        shutil.copy(REPO / "metadata.json", folder)  # README: run datasette where both files are
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1", COLUMNS="200")
        made = Site(folder, env)
        first = made.run(["aggregator", "update"])
        assert first.returncode == 0, first.stderr
        yield made
    finally:
        server.clear()
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def wait_for(url: str, process: subprocess.Popen[str]) -> None:
    """Until `url` answers 200, under a timeout; AssertionError if the process exits first."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            get(url)
            return
        except OSError:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, f"{url} did not answer within {TIMEOUT} s"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def datasette(site: Site) -> Iterator[str]:
    """README's `datasette ...` command, started on a free port (README: 8001) and left serving; its port."""
    (command,) = [c for c in RUNNABLE if c.argv[0] == "datasette"]
    port = str(free_port())
    process = subprocess.Popen(
        [*command.argv, "--port", port], cwd=site.folder, env=site.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/-/versions.json", process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


# --- what each command must print -----------------------------------------------------------------------------


def feed_counts(site: Site) -> dict[str, int]:
    with sqlite3.connect(site.folder / "aggregator.db") as conn:
        return dict(conn.execute("SELECT title, feed_count FROM stories").fetchall())


def check_outlets(site: Site, out: str) -> None:
    """The outlets example counts outlets (distinct feeds), not reports: the wire sent the WAIC story twice."""
    rows = [line.rsplit("|", 1) for line in out.splitlines()]
    counts = feed_counts(site)
    assert rows and all(int(outlets) == counts[title] for title, outlets in rows), (rows, counts)
    # the story's title is its lead's: the most representative report, here one of the WAIC wordings
    assert any(title.startswith(WAIC) and outlets == "3" for title, outlets in rows), rows


def check_tables(site: Site, out: str) -> None:
    assert {"table": "entries", "count": 6} in json.loads(out)


def check_views(site: Site, out: str) -> None:
    assert {row["view"] for row in json.loads(out)} >= {"story_sources", "feed_health"}


def check_search_li_qiang(site: Site, out: str) -> None:
    assert {row["title"] for row in json.loads(out)} == {WAIC, f"{WAIC} - Reuters", FEEDS["asia"][0][1]}


def check_not_ok(site: Site, out: str) -> None:
    assert "gone.xml" in out and "failing" in out and "wire.xml" not in out


def check_update(site: Site, out: str) -> None:
    assert out.startswith("4 feeds: "), out


def check_search_labour(site: Site, out: str) -> None:
    assert "[Labor] Department says hiring slowed" in out and "[Labour] unions strike over pay" in out


def check_search_phrase(site: Site, out: str) -> None:
    first = out.splitlines()[0]
    assert first.startswith("1. China proposes new global AI cooperation organisation") and "  (3 outlets" in first, out


def check_did_you_mean(site: Site, out: str) -> None:
    assert out == "no stories match 'goverment'\ndid you mean 'government'?\n"


# Checks of what a command prints, by the start of its text; every other command must exit 0.
CHECKS: dict[str, Callable[[Site, str], None]] = {
    "sqlite3 aggregator.db SELECT story_title,": check_outlets,
    "sqlite-utils tables aggregator.db --counts": check_tables,
    "sqlite-utils views aggregator.db": check_views,
    "sqlite-utils search aggregator.db entries Li Qiang": check_search_li_qiang,
    "sqlite-utils rows aggregator.db feed_health": check_not_ok,
    "aggregator update": check_update,
    "aggregator search labour": check_search_labour,
    'aggregator search "li qiang" AND title: ai': check_search_phrase,
    "aggregator search goverment": check_did_you_mean,
}


def skip_reason(command: Command) -> str | None:
    return next((why for words, why in SKIPPED.items() if command.argv[: len(words)] == words), None)


def check_pip_install(command: Command) -> None:
    """`pip install` is not run (it installs from the package index): what it installs must exist."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in (word for word in command.argv[2:] if not word.startswith("-")):
        name, _, extras = spec.partition("[")
        assert name in (".", project["name"]), f"{command}: installs {name!r}, not this project"
        for extra in filter(None, extras.rstrip("]").split(",")):
            assert extra.strip() in project["optional-dependencies"], f"{command}: no extra {extra!r} in pyproject"


@pytest.mark.parametrize("command", RUNNABLE, ids=str)
def test_readme_command_runs(command: Command, site: Site, request: pytest.FixtureRequest) -> None:
    why = skip_reason(command)
    if why is not None:
        pytest.skip(f"README.md:{command.line}: {why}")
    program = command.argv[0]
    if program == "pip" and command.argv[1:2] == ("install",):
        check_pip_install(command)
        return
    if program == "datasette":  # it serves until stopped: started by the fixture, asked for its view here
        port = request.getfixturevalue("datasette")
        rows = json.loads(get(f"http://127.0.0.1:{port}/aggregator/story_sources.json?_shape=array"))
        assert len(rows) == 6  # one row per report
        return
    argv = list(command.argv)
    if program == "curl":
        port = request.getfixturevalue("datasette")
        argv = [word.replace(f"127.0.0.1:{DATASETTE_PORT}", f"127.0.0.1:{port}") for word in argv]
        argv[1:1] = ["--fail", "--silent", "--show-error"]  # an HTTP error is an exit code, not a page
    assert program in PROGRAMS and shutil.which(program, path=site.env["PATH"]), (
        f"README.md:{command.line}: {command}: this test does not know how to run {program!r}: add a runner or "
        "a reason to skip it"
    )
    result = site.run(argv)
    assert result.returncode == 0, f"README.md:{command.line}: {command}\n{result.stdout}{result.stderr}"
    if program == "curl":
        rows = json.loads(result.stdout)
        assert rows and all(row["feed_count"] >= 3 for row in rows), rows
    check = next((check for start, check in CHECKS.items() if str(command).startswith(start)), None)
    if check is not None:
        check(site, result.stdout)


def test_every_check_matches_a_command_readme_shows() -> None:
    shown = [str(command) for command in RUNNABLE]
    assert [start for start in CHECKS if not any(text.startswith(start) for text in shown)] == []


@pytest.mark.parametrize("synopsis", SYNOPSES, ids=str)
def test_readme_synopsis_names_real_options(synopsis: Command) -> None:
    words = list(synopsis.argv)
    assert words[0] == "aggregator"
    help_text = run_cli(words[1], "--help")  # in-process: the same click commands, without 1 s of start-up each
    assert help_text.exit_code == 0, f"README.md:{synopsis.line}: no command {words[1]!r}\n{help_text.stderr}"
    named = re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", " ".join(words[2:]))
    missing = [option for option in named if not re.search(rf"(?<![\w-]){option}\b", help_text.stdout)]
    assert missing == [], f"README.md:{synopsis.line}: {synopsis.text}: no such option {missing}"


@pytest.mark.parametrize("command", ["run", "serve"])
def test_the_service_commands_start_serve_and_stop(command: str, site: Site) -> None:
    """`aggregator run` and `aggregator serve` run until stopped: started here on a free port, asked for the
    outputs and /health, then stopped with SIGTERM as README says."""
    argv = ["aggregator", command, *(["--serve"] if command == "run" else []), "--port", "0", "--log-format", "json"]
    process = subprocess.Popen(
        argv, cwd=site.folder, env=site.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        port = None
        deadline = time.monotonic() + TIMEOUT
        while port is None:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the service exited before serving"
            served = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", line)
            port = served.group(1) if served else None
            assert time.monotonic() < deadline
        assert get(f"http://127.0.0.1:{port}/feeds/feed.atom").startswith(b"<?xml")
        assert json.loads(get(f"http://127.0.0.1:{port}/health"))["polling"] is (command == "run")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
