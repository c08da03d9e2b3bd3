"""Nothing a feed says reaches the terminal as a control sequence (issue 13, item 9).

Titles carry C1 controls (U+009B is a one-character CSI) and U+202E; an HTML page advertises links holding
`ESC]0;...BEL` (retitles the terminal) and `ESC[2J` (clears it). Every command that prints them is run through
the real CLI, as plain output (a pipe) and as a terminal would get it (rich forced to a terminal).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import FeedFiles, query, run_cli, update_json, write_config

# What a feed must not get to the terminal (rich's own styling, `ESC[1m`, is fine)
ESCAPES = ("\x1b]", "\x1b[2J", "\x07", "\x9b", "\u202e", "\u2066")
TITLE = "Evil \x9b31m title \u202egnp.exe \u2066isolated\u2069 end"
SHOWN = "Evil 31m title gnp.exe isolated end"
HOSTILE_PAGE = (
    "<html><head>"
    "<link rel='alternate' type='application/rss+xml' href='/a\x1b]0;pwned\x07.xml'>"
    "<link rel='alternate' type='application/rss+xml' href='/b\x1b[2J\x9b.xml'>"
    "</head><body>news</body></html>"
)


def assert_printable(text: str) -> None:
    assert not [c for c in ESCAPES if c in text], repr(text)


@pytest.fixture(params=["plain", "terminal"])
def terminal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each test runs twice: output to a pipe, and to what rich takes for a terminal (tables, highlights)."""
    if request.param == "terminal":
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("COLUMNS", "400")
    else:
        monkeypatch.delenv("FORCE_COLOR", raising=False)
    return bool(request.param == "terminal")


@pytest.fixture
def hostile(feeds: FeedFiles, tmp_path: Path) -> Path:
    """A store holding a story with a hostile title and a failing feed whose error carries escapes."""
    rss = (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Outlet \u202eX</title>"
        "<link>https://example.com/</link><item><guid>h1</guid>"
        f"<title>{TITLE}</title><link>https://example.com/h1</link>"
        "<description>Harbour news \x9b2J here</description>"
        "<pubDate>Wed, 19 Aug 2026 08:00:00 +0000</pubDate></item></channel></rss>"
    )
    feed = feeds.serve("/feed.xml", rss)
    page = feeds.serve("/page.html", HOSTILE_PAGE, "text/html")
    config = write_config(tmp_path, [feed, page])
    summary = update_json(config)
    assert (summary["ok"], summary["failed"]) == (1, 1)
    return config


def test_update_prints_and_stores_the_page_error_without_escapes(
    feeds: FeedFiles, tmp_path: Path, terminal: bool
) -> None:
    page = feeds.serve("/page.html", HOSTILE_PAGE, "text/html")
    config = write_config(tmp_path, [page])
    result = run_cli("update", config=config)
    assert result.exit_code == 0
    assert_printable(result.stdout + result.stderr)
    base = feeds.server.url_for("")
    assert (
        f"failed: {page}: not a feed but an HTML page; it advertises these feeds: {base}a]0;pwned.xml" in result.stdout
    )
    [(error,)] = query(tmp_path / "aggregator.db", "SELECT last_error FROM feeds")
    assert error == f"not a feed but an HTML page; it advertises these feeds: {base}a]0;pwned.xml, {base}b[2J.xml"


@pytest.mark.parametrize("command", [["feeds"], ["feeds", "--failing"], ["feeds", "--all"]])
def test_feeds_prints_stored_errors_and_titles_without_escapes(
    hostile: Path, terminal: bool, command: list[str]
) -> None:
    # an error stored raw (by an older release, or by hand) is cleaned when printed
    with sqlite3.connect(hostile.parent / "aggregator.db") as conn:
        conn.execute("UPDATE feeds SET last_error = ? WHERE url LIKE '%page.html'", ("a \x1b]0;pwned\x07 b\x1b[2J c",))
    result = run_cli(*command, config=hostile)
    assert result.exit_code == 0, result.stderr
    assert_printable(result.stdout)
    assert "a ]0;pwned b[2J c" in result.stdout
    if not command[1:]:
        assert "Outlet X" in result.stdout


@pytest.mark.parametrize("command", [["stories"], ["story", "1"], ["search", "harbour"], ["search", "evil"]])
def test_stories_story_and_search_print_titles_without_escapes(
    hostile: Path, terminal: bool, command: list[str]
) -> None:
    result = run_cli(*command, config=hostile)
    assert result.exit_code == 0, result.stderr
    assert_printable(result.stdout)
    shown = result.stdout.replace("\n", " ")
    if command[0] == "search" and command[1] == "evil" and not terminal:
        assert "[Evil] 31m title gnp.exe isolated end" in shown  # the highlight still marks the right word
    elif command[0] != "stories":  # the stories table may fold a long title over lines
        assert SHOWN in shown


@pytest.mark.parametrize("command", [["stories", "--json"], ["story", "1", "--json"], ["search", "evil", "--json"]])
def test_json_output_escapes_what_a_terminal_would_obey(hostile: Path, command: list[str]) -> None:
    result = run_cli(*command, config=hostile)
    assert result.exit_code == 0
    assert_printable(result.stdout)
    assert "\\u009b31m" in result.stdout and "\\u202egnp" in result.stdout
    data = json.loads(result.stdout)
    titles = [data["title"]] if isinstance(data, dict) else [item["title"] for item in data]
    assert titles == [TITLE]  # the data itself is intact


def test_markup_in_a_title_is_printed_as_text(feeds: FeedFiles, tmp_path: Path) -> None:
    # rich would read `[/x]` as a closing tag and fail; `[bold]` would restyle the row
    rss = (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>T</title><link>https://example.com/</link>"
        "<item><guid>m</guid><title>[bold]Loud[/bold] and [/x] closed</title><link>https://example.com/m</link>"
        "<pubDate>Wed, 19 Aug 2026 08:00:00 +0000</pubDate></item></channel></rss>"
    )
    config = write_config(tmp_path, [feeds.serve("/m.xml", rss)])
    update_json(config)
    for command in (["stories"], ["story", "1"]):
        result = run_cli(*command, config=config)
        assert result.exit_code == 0, result.stderr
        assert "[bold]Loud[/bold] and [/x] closed" in result.stdout.replace("\n", " ")


def test_add_reports_a_hostile_page_in_one_clean_line(feeds: FeedFiles, tmp_path: Path) -> None:
    page = feeds.serve("/page.html", HOSTILE_PAGE, "text/html")
    config = write_config(tmp_path, [])
    result = run_cli("add", page, "--allow-private", config=config)
    assert result.exit_code == 1
    assert_printable(result.stderr)
    assert result.stderr.startswith(f"error: {page}: the page advertises ")
    assert "a]0;pwned.xml" in result.stderr and "b[2J.xml" in result.stderr
    assert result.stderr.count("\n") == 1
