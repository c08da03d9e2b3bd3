"""Querying the store through the CLI: `feeds`, `search`, `prune`, the public views and Datasette."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from conftest import FeedFiles, query, run_cli, update_json, write_config
from werkzeug import Request, Response

from aggregator.store import Store, format_time

REPO = Path(__file__).resolve().parents[1]

Item = tuple[str, str, str, datetime]  # guid, title, summary, published


def rss(title: str, items: list[Item]) -> bytes:
    """A small RSS 2.0 document."""
    parts = [f'<?xml version="1.0"?><rss version="2.0"><channel><title>{escape(title)}</title>']
    parts.append("<link>https://news.example/</link>")
    for guid, headline, summary, when in items:
        parts.append(
            f'<item><guid isPermaLink="false">urn:test:{guid}</guid><title>{escape(headline)}</title>'
            f"<link>https://news.example/{guid}</link><description>{escape(summary)}</description>"
            f"<pubDate>{format_datetime(when)}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


NOW = datetime.now(UTC).replace(microsecond=0)
WAIC_WIRE: Item = (
    "w1",
    "China proposes new global AI cooperation organisation",
    "Premier Li Qiang told the World Artificial Intelligence Conference in Shanghai that China will set up a "
    "global AI cooperation organisation.",
    NOW - timedelta(hours=3),
)
OIL: Item = ("w2", "Oil prices fall as demand worries grow", "Brent crude fell two percent.", NOW - timedelta(hours=5))
WAIC_ASIA: Item = (
    "a1",
    "Li Qiang calls for world AI cooperation body at Shanghai conference",
    "Chinese Premier Li Qiang proposed a global organisation for AI cooperation at the World Artificial "
    "Intelligence Conference.",
    NOW - timedelta(hours=2, minutes=20),
)


@dataclass
class Newsroom:
    config: Path
    db: Path
    wire: str
    asia: str
    broken: str


@pytest.fixture
def newsroom(feeds: FeedFiles, tmp_path: Path) -> Newsroom:
    """Three feeds (one failing) after one real update pass: the WAIC story reported by two outlets."""
    wire = feeds.serve("/wire.xml", rss("Wire", [WAIC_WIRE, OIL]))
    asia = feeds.serve("/asia.xml", rss("Asia Daily", [WAIC_ASIA]))
    feeds.server.expect_request("/broken.xml").respond_with_data("down for maintenance", status=500)
    broken = feeds.server.url_for("/broken.xml")
    config = write_config(
        tmp_path,
        [{"url": wire, "title": "Wire", "tags": ["world"]}, {"url": asia, "tags": ["asia", "world"]}, broken],
    )
    summary = update_json(config)
    assert (summary["ok"], summary["failed"], summary["entries_new"]) == (2, 1, 3)
    return Newsroom(config, tmp_path / "aggregator.db", wire, asia, broken)


def feed_times(db: Path) -> dict[str, tuple[Any, ...]]:
    rows = query(db, "SELECT url, last_fetched_at, next_fetch_at, last_new_entry_at, failing_since FROM feeds")
    return {row[0]: tuple(value or "" for value in row[1:]) for row in rows}


# --- feeds -------------------------------------------------------------------------------------------------


def test_feeds_prints_one_plain_line_per_feed_when_not_a_terminal(newsroom: Newsroom) -> None:
    result = run_cli("feeds", config=newsroom.config)
    assert result.exit_code == 0, result.stderr
    times = feed_times(newsroom.db)
    wire, asia, broken = times[newsroom.wire], times[newsroom.asia], times[newsroom.broken]
    assert result.stdout.splitlines() == [
        "status\ttitle\turl\ttags\tlast fetch\tnext fetch\tentries\tlast new entry\tproblem",
        f"ok\tWire\t{newsroom.wire}\tworld\t{wire[0]}\t{wire[1]}\t2\t{wire[2]}\t",
        f"ok\tAsia Daily\t{newsroom.asia}\tasia,world\t{asia[0]}\t{asia[1]}\t1\t{asia[2]}\t",
        f"failing since {broken[3]}\t{newsroom.broken}\t{newsroom.broken}\t\t{broken[0]}\t{broken[1]}\t0\t\t"
        "HTTP 500 INTERNAL SERVER ERROR",
    ]
    assert result.stderr == ""


def test_feeds_failing_json_lists_only_the_broken_feed(newsroom: Newsroom) -> None:
    result = run_cli("feeds", "--failing", "--json", config=newsroom.config)
    assert result.exit_code == 0, result.stderr
    last_fetched, next_fetch, _, failing_since = feed_times(newsroom.db)[newsroom.broken]
    (feed_id,) = query(newsroom.db, "SELECT id FROM feeds WHERE url = ?", (newsroom.broken,))[0]
    assert json.loads(result.stdout) == [
        {
            "url": newsroom.broken,
            "title": newsroom.broken,
            "tags": [],
            "status": "failing",
            "id": feed_id,
            "failing_since": failing_since,
            "error_count": 1,
            "last_status": 500,
            "last_error": "HTTP 500 INTERNAL SERVER ERROR",
            "last_fetched_at": last_fetched,
            "next_fetch_at": next_fetch or None,
            "last_new_entry_at": None,
            "entries": 0,
            "disabled_reason": None,
        }
    ]


def test_feeds_shows_configured_feeds_not_yet_fetched_and_removed_ones_with_all(
    newsroom: Newsroom, feeds: FeedFiles
) -> None:
    assert run_cli("remove", newsroom.broken, config=newsroom.config).exit_code == 0
    new = feeds.server.url_for("/new.xml")
    text = newsroom.config.read_text(encoding="utf-8")
    newsroom.config.write_text(text + f"- url: {new}\n  title: Not fetched yet\n", encoding="utf-8")
    plain = run_cli("feeds", config=newsroom.config).stdout.splitlines()
    assert [line.split("\t")[:3] for line in plain[1:]] == [
        ["ok", "Wire", newsroom.wire],
        ["ok", "Asia Daily", newsroom.asia],
        ["new", "Not fetched yet", new],
    ]
    every = json.loads(run_cli("feeds", "--all", "--json", config=newsroom.config).stdout)
    assert [(feed["url"], feed["status"], feed["id"] is None) for feed in every] == [
        (newsroom.wire, "ok", False),
        (newsroom.asia, "ok", False),
        (new, "new", True),
        (newsroom.broken, "removed", False),
    ]


def test_feed_health_view_matches_the_feeds_command(newsroom: Newsroom) -> None:
    rows = query(newsroom.db, "SELECT url, status, entries, error_count FROM feed_health ORDER BY id")
    assert rows == [(newsroom.wire, "ok", 2, 0), (newsroom.asia, "ok", 1, 0), (newsroom.broken, "failing", 0, 1)]


def test_story_sources_view_lists_each_outlet_of_a_story(newsroom: Newsroom) -> None:
    rows = query(
        newsroom.db,
        """SELECT story_title, feed_count, feed_title, entry_title FROM story_sources
           ORDER BY story_published, entry_published""",
    )
    assert rows == [
        (OIL[1], 1, "Wire", OIL[1]),
        (WAIC_WIRE[1], 2, "Wire", WAIC_WIRE[1]),
        (WAIC_WIRE[1], 2, "Asia Daily", WAIC_ASIA[1]),
    ]


# --- search ------------------------------------------------------------------------------------------------


def test_search_finds_the_waic_story_by_a_person(newsroom: Newsroom) -> None:
    result = run_cli("search", "Li Qiang", config=newsroom.config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"1. {WAIC_WIRE[1]}  (2 outlets, {format_time(WAIC_WIRE[3])})",
        "   https://news.example/w1",
        "   - Asia Daily: [Li] [Qiang] calls for world AI cooperation body at Shanghai conference",
        "     Chinese Premier [Li] [Qiang] proposed a global organisation for AI cooperation at the World "
        "Artificial Intelligence Conference.",
        f"   - Wire: {WAIC_WIRE[1]}",
        "     Premier [Li] [Qiang] told the World Artificial Intelligence Conference in Shanghai that China will "
        "set up a global AI cooperation organisation.",
    ]


def test_search_finds_the_waic_story_by_words_as_json_grouped_by_story(newsroom: Newsroom) -> None:
    result = run_cli("search", "cooperation organisation", "--json", config=newsroom.config)
    assert result.exit_code == 0, result.stderr
    (story,) = json.loads(result.stdout)
    ((story_id, uid),) = query(newsroom.db, "SELECT id, uid FROM stories WHERE feed_count = 2")
    assert {k: story[k] for k in ("story_id", "story_uid", "title", "url", "published", "feed_count")} == {
        "story_id": story_id,
        "story_uid": uid,
        "title": WAIC_WIRE[1],
        "url": "https://news.example/w1",
        "published": format_time(WAIC_WIRE[3]),
        "feed_count": 2,
    }
    # both words in the title rank first; every match is highlighted where the words are
    wire, asia = story["matches"]
    assert (wire["feed_title"], asia["feed_title"]) == ("Wire", "Asia Daily")
    assert wire["score"] > asia["score"] > 0
    spans = [
        [WAIC_WIRE[1].index(word), WAIC_WIRE[1].index(word) + len(word)] for word in ("cooperation", "organisation")
    ]
    assert wire["title_highlights"] == spans
    assert asia["title"] == WAIC_ASIA[1]
    assert [asia["title"][a:b] for a, b in asia["title_highlights"]] == ["cooperation"]
    assert [asia["snippet"][a:b] for a, b in asia["snippet_highlights"]] == ["organisation", "cooperation"]
    assert [source["feed_title"] for source in story["sources"]] == ["Wire", "Asia Daily"]


def test_search_filters_by_feed_tag_time_and_limit(newsroom: Newsroom) -> None:
    def feeds_matched(*args: str) -> list[list[str]]:
        result = run_cli("search", *args, "--json", config=newsroom.config)
        assert result.exit_code == 0, result.stderr
        return [[m["feed_title"] for m in story["matches"]] for story in json.loads(result.stdout)]

    assert feeds_matched("Li Qiang", "--feed", newsroom.wire) == [["Wire"]]
    assert feeds_matched("Li Qiang", "--tag", "asia") == [["Asia Daily"]]
    assert feeds_matched("Li Qiang", "--tag", "asia", "--feed", newsroom.wire) == []
    # "oil" is in one title, "qiang" in three documents: the rarer word ranks its story first
    assert feeds_matched("oil OR qiang") == [["Wire"], ["Asia Daily", "Wire"]]
    assert feeds_matched("oil OR qiang", "--limit", "1") == [["Wire"]]
    assert feeds_matched("oil OR qiang", "--since", "4h") == [["Asia Daily", "Wire"]]
    assert feeds_matched("oil OR qiang", "--since", format_time(NOW - timedelta(hours=2))) == []
    assert feeds_matched("NEAR(li qiang, 2) AND shanghai") == [["Asia Daily", "Wire"]]
    assert feeds_matched("title: qiang") == [["Asia Daily"]]
    assert feeds_matched("organi*") == [["Wire", "Asia Daily"]]
    empty = run_cli("search", "volcano", config=newsroom.config)
    assert (empty.exit_code, empty.stdout) == (0, "no stories match 'volcano'\n")


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ('"Li Qiang', "search query '\"Li Qiang': a double quote is not closed"),
        ("Li NEAR", "search query 'Li NEAR': NEAR needs a group, as in NEAR(li qiang, 5); to search for the "
         'word, write "near" in lower case or in quotes'),
        ("NEAR", "search query 'NEAR': NEAR needs a group, as in NEAR(li qiang, 5); to search for the word, "
         'write "near" in lower case or in quotes'),
        ("NEAR(li qiang", "search query: syntax error at the end; put words with punctuation in double quotes "
         '("U.S.", "AI-driven"). Syntax: words, "exact phrase", prefix*, AND, OR, NOT, NEAR(word word, 10), '
         "(groups), title: word"),
        ("U.S. tariffs", 'search query: syntax error near "."; put words with punctuation in double quotes '
         '("U.S.", "AI-driven"). Syntax: words, "exact phrase", prefix*, AND, OR, NOT, NEAR(word word, 10), '
         "(groups), title: word"),
        ("AI-driven", "search query: 'driven' is not a column to search (columns: title, summary_text); a '-' "
         "or ':' is query syntax, so put words that contain one in double quotes"),
        ("*", "search query is not valid (unknown special query: ). Syntax: words, \"exact phrase\", prefix*, "
         "AND, OR, NOT, NEAR(word word, 10), (groups), title: word"),
        ("  ", "the search query is empty"),
    ],
)  # fmt: skip
def test_search_syntax_errors_are_one_clear_line(newsroom: Newsroom, typed: str, message: str) -> None:
    result = run_cli("search", typed, config=newsroom.config)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")


def test_search_rejects_unknown_feeds_tags_and_times(newsroom: Newsroom) -> None:
    feed = run_cli("search", "qiang", "--feed", "https://nowhere.example/rss", config=newsroom.config)
    assert (feed.exit_code, feed.stderr) == (
        2,
        "error: --feed https://nowhere.example/rss: no such feed in the store\n",
    )
    tag = run_cli("search", "qiang", "--tag", "sport", config=newsroom.config)
    assert (tag.exit_code, tag.stderr) == (2, "error: --tag: no feed has the tag sport\n")
    since = run_cli("search", "qiang", "--since", "yesterday", config=newsroom.config)
    assert since.exit_code == 2
    assert "'yesterday' is not a date (2026-07-26), a time (2026-07-26T09:00Z) or an age (24h, 7d)" in since.stderr


# --- prune -------------------------------------------------------------------------------------------------


def test_prune_removes_old_stories_except_shown_ones_and_they_do_not_come_back(
    feeds: FeedFiles, tmp_path: Path
) -> None:
    recent: Item = ("r1", "Volcano erupts in Iceland", "Lava reached the town of Grindavik.", NOW - timedelta(hours=1))
    older: Item = ("o2", "Gardeners report record tomato harvest", "A sunny summer.", NOW - timedelta(days=150))
    oldest: Item = ("o1", "Museum restores ancient pottery", "Shards from 3000 BC.", NOW - timedelta(days=200))
    url = feeds.serve("/feed.xml", rss("Local", [recent, older, oldest]))
    # the output shows the two newest stories: `older` is past retention but still shown, so it stays
    output = {"path": "public/feed.atom", "format": "atom", "title": "Test", "limit": 2}
    config = write_config(tmp_path, [url], outputs=[output], retention={"keep_days": 30})
    db = tmp_path / "aggregator.db"
    assert update_json(config)["entries_new"] == 3
    assert query(db, "SELECT count(*) FROM entry_terms") == [(3,)]
    (old_hash,) = query(db, "SELECT content_hash FROM entries WHERE guid = 'urn:test:o1'")[0]

    dry = run_cli("prune", "--dry-run", config=config)
    assert dry.exit_code == 0, dry.stderr
    assert re.fullmatch(
        r"would prune 1 entries in 1 stories with no entry newer than (\S+); "
        r"kept 1 older stories that outputs still show\n",
        dry.stdout,
    )
    assert query(db, "SELECT count(*) FROM entries") == [(3,)]

    started = datetime.now(UTC).replace(microsecond=0)
    pruned = run_cli("prune", "--json", config=config)
    assert pruned.exit_code == 0, pruned.stderr
    counts = json.loads(pruned.stdout)
    cutoff = datetime.fromisoformat(counts.pop("cutoff"))
    assert counts == {"pruned": True, "entries": 1, "stories": 1, "kept_stories": 1, "tombstones": 0}
    assert started - timedelta(days=30) <= cutoff <= datetime.now(UTC) - timedelta(days=30)
    assert query(db, "SELECT guid FROM entries ORDER BY guid") == [("urn:test:o2",), ("urn:test:r1",)]
    assert query(db, "SELECT title FROM stories ORDER BY title") == [(older[1],), (recent[1],)]
    assert query(db, "SELECT guid, content_hash FROM tombstones") == [("urn:test:o1", old_hash)]
    assert query(db, "SELECT count(*) FROM entries_fts WHERE entries_fts MATCH 'pottery'") == [(0,)]
    # the story matcher's stored term vectors go with their entries
    assert query(db, "SELECT entry_id FROM entry_terms ORDER BY entry_id") == query(
        db, "SELECT id FROM entries ORDER BY id"
    )
    assert len(query(db, "SELECT id FROM entries")) == 2

    # the feed still lists the pruned entry (and has a new one): the next pass stores only the new one
    fresh: Item = ("r2", "Parliament passes budget", "The vote was close.", NOW - timedelta(minutes=10))
    feeds.serve("/feed.xml", rss("Local", [fresh, recent, older, oldest]))
    assert update_json(config)["entries_new"] == 1
    assert query(db, "SELECT guid FROM entries ORDER BY guid") == [
        ("urn:test:o2",),
        ("urn:test:r1",),
        ("urn:test:r2",),
    ]
    # now the output shows r2 and r1: `older` is no longer protected
    again = run_cli("prune", config=config)
    assert again.stdout.startswith("pruned 1 entries in 1 stories with no entry newer than ")
    assert again.stdout.endswith("; kept 0 older stories that outputs still show\n")
    assert query(db, "SELECT guid FROM entries ORDER BY guid") == [("urn:test:r1",), ("urn:test:r2",)]
    assert query(db, "SELECT guid FROM tombstones ORDER BY guid") == [("urn:test:o1",), ("urn:test:o2",)]


def test_prune_without_retention_keeps_everything(newsroom: Newsroom) -> None:
    result = run_cli("prune", config=newsroom.config)
    assert (result.exit_code, result.stdout) == (
        0,
        "retention.keep_days is not set in the config: entries are kept forever; nothing pruned\n",
    )
    assert query(newsroom.db, "SELECT count(*) FROM entries") == [(3,)]


def test_retention_keep_days_must_be_positive(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], retention={"keep_days": 0})
    result = run_cli("prune", config=config)
    assert result.exit_code == 2
    assert result.stderr == f"error: {config}: retention.keep_days: expected an integer >= 1\n"


def test_store_records_its_schema_version(newsroom: Newsroom) -> None:
    names = [row[0] for row in query(newsroom.db, "SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert "m003_query" in names
    with Store.open(newsroom.db) as store:  # opening again applies nothing twice
        assert store.count("entries") == 3


# --- Datasette ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return json.load(response)


def test_datasette_serves_the_story_sources_view_while_a_pass_writes(newsroom: Newsroom, feeds: FeedFiles) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        body = rss("Wire", [WAIC_WIRE, OIL, ("w3", "Markets rally", "Stocks rose.", NOW - timedelta(minutes=5))])
        return Response(body, content_type="application/rss+xml")

    feeds.server.clear()
    feeds.server.expect_request("/wire.xml").respond_with_handler(slow)
    feeds.server.expect_request("/asia.xml").respond_with_data(rss("Asia Daily", [WAIC_ASIA]))
    port = free_port()
    env = dict(os.environ, NO_COLOR="1")
    datasette = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", str(newsroom.db), "-m", str(REPO / "metadata.json"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(f"{base}/-/versions.json")
                break
            except OSError:
                assert datasette.poll() is None, datasette.stderr.read() if datasette.stderr else ""
                assert time.monotonic() < deadline, "datasette did not start within 30 s"
                time.sleep(0.1)
        updater = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(newsroom.config), "update"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            answered_during_pass = 0
            deadline = time.monotonic() + 30
            while updater.poll() is None:
                rows = get_json(f"{base}/aggregator/story_sources.json?_shape=array&feed_count=2")
                assert sorted(row["entry_title"] for row in rows) == sorted([WAIC_WIRE[1], WAIC_ASIA[1]])
                answered_during_pass += updater.poll() is None
                assert time.monotonic() < deadline, "the update pass did not finish within 30 s"
                time.sleep(0.05)
            assert updater.wait(timeout=30) == 0, updater.stderr.read() if updater.stderr else ""
        finally:
            if updater.poll() is None:
                updater.kill()
                updater.wait(timeout=10)
        assert answered_during_pass >= 2
        titles = {row["entry_title"] for row in get_json(f"{base}/aggregator/story_sources.json?_shape=array")}
        assert "Markets rally" in titles
        meta = get_json(f"{base}/aggregator/feed_health.json?_facet=status")
        assert meta["human_description_en"] or meta["table"] == "feed_health"
        assert get_json(f"{base}/-/metadata.json")["databases"]["aggregator"]["tables"]["story_sources"]
    finally:
        datasette.terminate()
        try:
            datasette.wait(timeout=10)
        except subprocess.TimeoutExpired:
            datasette.kill()
            datasette.wait(timeout=10)
