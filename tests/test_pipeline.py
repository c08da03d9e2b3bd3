"""End to end through the real CLI: loopback feeds -> SQLite -> Atom output."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from conftest import DATA, FeedFiles, query, run_cli, update_json, write_config
from lxml import etree
from pytest_httpserver import HTTPServer
from werkzeug import Response


def rss(items: list[tuple[str, str, str, str]], title: str = "Outlet") -> str:
    """An RSS 2.0 document from (guid, title, link, pubDate) tuples."""
    body = "".join(
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{t}</title><link>{link}</link>"
        f"<pubDate>{date}</pubDate><description>&lt;p&gt;About {t}&lt;/p&gt;</description></item>"
        for guid, t, link, date in items
    )
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{title}</title>"
        f"<link>https://{title.lower()}.example.com/</link>{body}</channel></rss>"
    )


def atom(entries: list[tuple[str, str, str, str]], title: str = "Atom Outlet") -> str:
    """An Atom 1.0 document from (id, title, link, updated) tuples."""
    body = "".join(
        f"<entry><id>{i}</id><title>{t}</title><link href='{link}'/><updated>{u}</updated>"
        f"<summary>Summary of {t}</summary></entry>"
        for i, t, link, u in entries
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
        f"<title>{title}</title><id>urn:feed</id><updated>2026-08-19T12:00:00Z</updated>{body}</feed>"
    )


RSS_A = [
    ("a-1", "Central bank holds rates steady", "https://a.example.com/rates", "Wed, 19 Aug 2026 08:00:00 +0000"),
    ("a-2", "Storm closes ports in the south", "https://a.example.com/storm", "Wed, 19 Aug 2026 09:00:00 +0000"),
    ("a-3", "Chipmaker shares jump on deal", "https://a.example.com/chips", "Wed, 19 Aug 2026 10:00:00 +0000"),
]
ATOM_B = [
    ("tag:b,2026:1", "Election results delayed", "https://b.example.com/election", "2026-08-19T07:30:00Z"),
    # the same article as a-3, linked with tracking parameters: it must join a-3's story
    ("tag:b,2026:2", "Chip shares rally", "https://A.example.com:443/chips?utm_source=rss&amp;fbclid=x#top",
     "2026-08-19T10:30:00Z"),
]  # fmt: skip


@pytest.fixture
def pipeline(tmp_path: Path, feeds: FeedFiles) -> tuple[Path, FeedFiles]:
    feeds.serve("/a.xml", rss(RSS_A, "Alpha"))
    feeds.serve("/b.atom", atom(ATOM_B), "application/atom+xml")
    feeds.serve_file("/c.json", DATA / "full.json", "application/feed+json")
    config = write_config(
        tmp_path,
        [
            {"url": feeds.server.url_for("/a.xml"), "tags": ["world"]},
            {"url": feeds.server.url_for("/b.atom"), "title": "Bravo"},
            feeds.server.url_for("/c.json"),
        ],
    )
    return config, feeds


def entries(db: Path) -> list[tuple[object, ...]]:
    return query(
        db, "SELECT id, feed_id, guid, title, url, first_seen, content_hash, story_id FROM entries ORDER BY id"
    )


def test_cold_pass_stores_exactly_the_entries(pipeline: tuple[Path, FeedFiles]) -> None:
    config, _ = pipeline
    summary = update_json(config)
    assert (summary["ok"], summary["not_modified"], summary["failed"]) == (3, 0, 0)
    assert summary["entries_new"] == 3 + 2 + 2
    db = config.parent / "aggregator.db"
    guids = query(db, "SELECT f.url, e.guid, e.title FROM entries e JOIN feeds f ON f.id = e.feed_id ORDER BY e.id")
    by_feed: dict[str, list[tuple[str, str]]] = {}
    for url, guid, title in guids:
        by_feed.setdefault(url.rsplit("/", 1)[1], []).append((guid, title))
    assert sorted(by_feed["a.xml"]) == [(g, t) for g, t, _, _ in RSS_A]
    assert sorted(by_feed["b.atom"]) == [(g, t) for g, t, _, _ in ATOM_B]
    assert sorted(by_feed["c.json"]) == [("1", ""), ("2", "Title")]
    canonical = query(db, "SELECT canonical_url FROM entries WHERE guid = 'tag:b,2026:2'")
    assert canonical == [("https://a.example.com/chips",)]
    feed_rows = query(db, "SELECT title, last_status, last_error, error_count FROM feeds ORDER BY id")
    assert feed_rows == [("Alpha", 200, None, 0), ("Atom Outlet", 200, None, 0), ("My Example Feed", 200, None, 0)]


def test_same_canonical_url_across_feeds_shares_a_story(pipeline: tuple[Path, FeedFiles]) -> None:
    config, _ = pipeline
    update_json(config)
    db = config.parent / "aggregator.db"
    rows = query(db, "SELECT guid, story_id, story_method FROM entries WHERE guid IN ('a-3', 'tag:b,2026:2')")
    (_first, story_a, method_a), (_second, story_b, method_b) = sorted(rows)
    assert story_a == story_b
    assert sorted([method_a, method_b]) == ["new", "url"]
    assert query(db, "SELECT count(*) FROM entries WHERE story_id IS NULL") == [(0,)]
    assert query(db, "SELECT entry_count, feed_count, title FROM stories WHERE id = ?", (story_a,)) == [
        (2, 2, "Chipmaker shares jump on deal")
    ]


def test_second_pass_is_all_304_and_writes_nothing(pipeline: tuple[Path, FeedFiles]) -> None:
    config, feeds = pipeline
    update_json(config)
    db = config.parent / "aggregator.db"
    output = config.parent / "public" / "feed.atom"
    before_rows, before_bytes, before_mtime = entries(db), output.read_bytes(), output.stat().st_mtime_ns
    time.sleep(0.01)
    summary = update_json(config)
    assert (summary["ok"], summary["not_modified"], summary["failed"]) == (0, 3, 0)
    assert (summary["entries_new"], summary["entries_updated"]) == (0, 0)
    assert entries(db) == before_rows
    assert output.read_bytes() == before_bytes
    assert output.stat().st_mtime_ns == before_mtime
    assert feeds.requests.count("/a.xml") == 2


def test_changed_feed_updates_exactly_the_changed_entries(pipeline: tuple[Path, FeedFiles]) -> None:
    config, feeds = pipeline
    update_json(config)
    db = config.parent / "aggregator.db"
    before = {row[2]: row for row in entries(db)}
    changed = [RSS_A[0], (RSS_A[1][0], "Storm closes three ports", *RSS_A[1][2:]), RSS_A[2]]
    new_item = ("a-4", "Markets close higher", "https://a.example.com/markets", "Wed, 19 Aug 2026 11:00:00 +0000")
    feeds.serve("/a.xml", rss([new_item, *changed], "Alpha"))
    summary = update_json(config)
    assert (summary["ok"], summary["not_modified"]) == (1, 2)
    assert (summary["entries_new"], summary["entries_updated"]) == (1, 1)
    after = {row[2]: row for row in entries(db)}
    assert set(after) == set(before) | {"a-4"}
    storm_before, storm_after = before["a-2"], after["a-2"]
    assert storm_after[3] == "Storm closes three ports"
    assert storm_after[0] == storm_before[0]  # same row
    assert storm_after[5] == storm_before[5]  # first_seen kept
    assert storm_after[6] != storm_before[6]  # content hash changed
    for guid in before.keys() - {"a-2"}:
        assert after[guid] == before[guid]


def test_output_parses_back_with_stable_ids_newest_first(pipeline: tuple[Path, FeedFiles]) -> None:
    config, feeds = pipeline
    update_json(config)
    output = config.parent / "public" / "feed.atom"
    first = feedparser.parse(output.read_bytes())
    assert first.version == "atom10" and not first.bozo
    titles = [e.title for e in first.entries]
    # 6 stories: 7 entries, two of which share the chips story; the JSON feed's entries have no date
    assert len(titles) == 6
    dated = [e for e in first.entries if e.published_parsed.tm_year == 2026 and e.published_parsed.tm_mon == 8]
    assert [e.title for e in dated] == [
        "Chipmaker shares jump on deal",
        "Storm closes ports in the south",
        "Central bank holds rates steady",
        "Election results delayed",
    ]
    chips = dated[0]
    assert chips.link == "https://a.example.com/chips"
    assert chips.source.title == "Alpha"
    assert "Reported by 2 outlets" in chips.content[0].value and "Bravo" in chips.content[0].value
    ids = {e.title: e.id for e in first.entries}
    feeds.serve(
        "/a.xml",
        rss([*RSS_A, ("a-5", "Late news", "https://a.example.com/late", "Thu, 20 Aug 2026 01:00:00 +0000")], "Alpha"),
    )
    update_json(config)
    second = feedparser.parse(output.read_bytes())
    assert second.entries[0].title == "Late news"
    assert {e.title: e.id for e in second.entries if e.title in ids} == ids


def test_publish_rewrites_only_when_needed(pipeline: tuple[Path, FeedFiles]) -> None:
    config, _ = pipeline
    update_json(config)
    output = config.parent / "public" / "feed.atom"
    before = output.read_bytes()
    output.unlink()
    result = run_cli("publish", config=config)
    assert result.exit_code == 0
    assert result.stdout.strip() == f"{output}: written"
    assert output.read_bytes() == before
    assert run_cli("publish", config=config).stdout.strip() == f"{output}: unchanged"


def test_check_prints_what_it_would_poll(pipeline: tuple[Path, FeedFiles]) -> None:
    config, feeds = pipeline
    result = run_cli("check", config=config)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"config: {config} (ok)"
    assert "feeds: 3" in lines
    assert f"  {feeds.server.url_for('/a.xml')} [world]" in lines
    assert f"  {feeds.server.url_for('/b.atom')} 'Bravo'" in lines
    assert feeds.requests == []


def test_db_option_overrides_database(pipeline: tuple[Path, FeedFiles], tmp_path: Path) -> None:
    config, _ = pipeline
    other = tmp_path / "elsewhere" / "other.db"
    assert run_cli("--db", str(other), "update", config=config).exit_code == 0
    assert query(other, "SELECT count(*) FROM entries") == [(7,)]
    assert not (config.parent / "aggregator.db").exists()


def test_human_summary_line(pipeline: tuple[Path, FeedFiles]) -> None:
    config, _ = pipeline
    result = run_cli("update", config=config)
    assert result.exit_code == 0
    assert result.stdout.startswith("3 feeds: 3 ok, 0 not modified, 0 failed; entries: 7 new, 0 updated (")


# --- bad input: each failure is recorded on its feed while the others are stored completely ----------------


def _broken(server: HTTPServer) -> dict[str, str]:
    server.expect_request("/404.xml").respond_with_data("nope", status=404)
    server.expect_request("/410.xml").respond_with_data("gone", status=410)
    server.expect_request("/500.xml").respond_with_data("oops", status=500)
    server.expect_request("/page.html").respond_with_data(
        "<!doctype html><html><head><title>News</title>"
        "<link rel='alternate' type='application/rss+xml' href='/real-feed.xml'></head><body>hi</body></html>",
        content_type="text/html",
    )
    server.expect_request("/empty.xml").respond_with_data("", content_type="application/rss+xml")
    server.expect_request("/slow.xml").respond_with_handler(lambda request: (time.sleep(3), Response("late"))[1])
    return {
        "404": server.url_for("/404.xml"),
        "410": server.url_for("/410.xml"),
        "500": server.url_for("/500.xml"),
        "html": server.url_for("/page.html"),
        "empty": server.url_for("/empty.xml"),
        "slow": server.url_for("/slow.xml"),
        "refused": "http://127.0.0.1:9/feed.xml",
    }


def test_bad_feeds_are_recorded_and_good_ones_stored(tmp_path: Path, feeds: FeedFiles) -> None:
    good = feeds.serve("/good.xml", rss(RSS_A, "Alpha"))
    recovered = feeds.serve(
        "/broken.xml",
        "<?xml version='1.0'?><rss version='2.0'><channel><title>Broken</title>"
        "<item><title>Recovered item</title><link>https://x.example.com/1</link></item>"
        "<item><title>Unclosed & bad</title></channel>",
    )
    broken = _broken(feeds.server)
    config = write_config(tmp_path, [good, recovered, *broken.values()], fetch={"read_timeout": 0.5, "deadline": 1.5})
    summary = update_json(config)
    assert summary["feeds"] == 9, summary
    assert len(summary["errors"]) == 8, summary["errors"]
    assert (summary["ok"], summary["failed"]) == (2, 7)
    db = tmp_path / "aggregator.db"
    status = {
        url: (s, e, n) for url, s, e, n in query(db, "SELECT url, last_status, last_error, error_count FROM feeds")
    }
    assert status[good] == (200, None, 0)
    assert status[broken["404"]] == (404, "HTTP 404 NOT FOUND", 1)
    assert status[broken["410"]] == (410, "HTTP 410 GONE: the feed is gone for good", 1)
    assert status[broken["500"]] == (500, "HTTP 500 INTERNAL SERVER ERROR", 1)
    assert status[broken["html"]] == (
        200, f"not a feed but an HTML page; it advertises these feeds: {feeds.server.url_for('/real-feed.xml')}", 1
    )  # fmt: skip
    assert status[broken["empty"]] == (200, "empty body: the server sent no document", 1)
    assert status[broken["slow"]][0] is None and "timed out" in status[broken["slow"]][1]
    assert status[broken["refused"]][0] is None and status[broken["refused"]][1].startswith("cannot connect")
    assert status[recovered][0] == 200 and status[recovered][1].startswith("malformed feed, read what could be")
    assert query(db, "SELECT count(*) FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE f.url = ?", (good,)) == [
        (3,)
    ]
    recovered_titles = query(
        db, "SELECT e.title FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE f.url = ? ORDER BY e.id", (recovered,)
    )
    assert recovered_titles[0] == ("Recovered item",)


def test_a_feed_that_breaks_later_loses_nothing(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/a.xml", rss(RSS_A, "Alpha"))
    config = write_config(tmp_path, [url])
    update_json(config)
    db = tmp_path / "aggregator.db"
    stored = entries(db)
    output = (tmp_path / "public" / "feed.atom").read_bytes()
    for broken_body in ["<html><body>maintenance</body></html>", "", "<?xml version='1.0'?><rss"]:
        feeds.serve("/a.xml", broken_body)
        summary = update_json(config)
        assert summary["entries_new"] == 0
        assert entries(db) == stored
    assert query(db, "SELECT error_count FROM feeds") == [(3,)]
    assert (tmp_path / "public" / "feed.atom").read_bytes() == output


def test_json_summary_lists_errors(tmp_path: Path, feeds: FeedFiles) -> None:
    config = write_config(tmp_path, ["http://127.0.0.1:9/closed.xml"])
    result = run_cli("update", "--json", config=config)
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["failed"] == 1
    assert summary["errors"][0]["url"] == "http://127.0.0.1:9/closed.xml"
    assert summary["errors"][0]["error"].startswith("cannot connect")


def test_stories_and_story_commands_show_sources_and_methods(pipeline: tuple[Path, FeedFiles]) -> None:
    config, _ = pipeline
    update_json(config)
    listed = json.loads(run_cli("stories", "--min-sources", "2", "--json", config=config).stdout)
    assert [(s["title"], [src["feed"] for src in s["sources"]]) for s in listed] == [
        ("Chipmaker shares jump on deal", ["Alpha", "Bravo"])
    ]
    shown = json.loads(run_cli("story", str(listed[0]["id"]), "--json", config=config).stdout)
    assert shown["uid"] == listed[0]["uid"]
    assert [(e["guid"], e["feed_title"], e["story_method"]) for e in shown["entries"]] == [
        ("a-3", "Alpha", "new"),
        ("tag:b,2026:2", "Bravo", "url"),
    ]
    by_uid = run_cli("story", listed[0]["uid"], config=config)
    assert by_uid.exit_code == 0 and "Chipmaker shares jump on deal" in by_uid.stdout
    missing = run_cli("story", "999", config=config)
    assert (missing.exit_code, missing.stderr) == (2, "error: no story '999'\n")


def test_a_resent_identical_body_without_validators_counts_as_not_modified(tmp_path: Path, feeds: FeedFiles) -> None:
    feeds.server.expect_request("/plain.xml").respond_with_data(rss(RSS_A, "Alpha"), content_type="application/rss+xml")
    config = write_config(tmp_path, [feeds.server.url_for("/plain.xml")])
    assert update_json(config)["entries_new"] == 3
    db = tmp_path / "aggregator.db"
    before = entries(db)
    second = update_json(config)
    assert (second["ok"], second["not_modified"], second["entries_new"]) == (0, 1, 0)
    assert entries(db) == before


def test_an_outlet_is_listed_once_however_many_of_its_entries_a_story_holds(tmp_path: Path, feeds: FeedFiles) -> None:
    link = "https://a.example.com/live/summit"
    alpha = feeds.serve(
        "/a.xml",
        rss(
            [
                ("a-1", "Summit opens", link, "Wed, 19 Aug 2026 08:00:00 +0000"),
                ("a-2", "Summit: leaders arrive", f"{link}?utm_source=rss", "Wed, 19 Aug 2026 09:00:00 +0000"),
            ],
            "Alpha",
        ),
    )
    bravo = feeds.serve("/b.xml", rss([("b-1", "Summit begins", link, "Wed, 19 Aug 2026 08:30:00 +0000")], "Bravo"))
    config = write_config(tmp_path, [alpha, bravo])
    update_json(config)
    listed = json.loads(run_cli("stories", "--json", config=config).stdout)
    # the lead (the report most like the others) first, then each other outlet's earliest report
    assert [[(s["feed"], s["title"]) for s in story["sources"]] for story in listed] == [
        [("Bravo", "Summit begins"), ("Alpha", "Summit opens")]
    ]
    assert query(tmp_path / "aggregator.db", "SELECT entry_count, feed_count FROM stories") == [(3, 2)]


def undated_rss(items: list[tuple[str, str]]) -> str:
    """An RSS 2.0 document of (guid, title) items with no dates at all."""
    body = "".join(
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{title}</title>"
        f"<link>https://u.example.com/{guid}</link><description>About {title}</description></item>"
        for guid, title in items
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>Undated</title>{body}</channel></rss>"


def test_an_undated_entry_keeps_its_first_date_when_its_feed_changes(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/undated.xml", undated_rss([("u-1", "Harbour reopens after storm")]))
    config = write_config(tmp_path, [url])
    db = tmp_path / "aggregator.db"
    assert update_json(config)["entries_new"] == 1
    (first,) = query(db, "SELECT guid, published, updated, first_seen, content_hash FROM entries")
    time.sleep(1.1)  # stand-in dates have one-second resolution: a later pass would give a later one
    feeds.serve(
        "/undated.xml", undated_rss([("u-2", "Ferries resume crossings"), ("u-1", "Harbour reopens after storm")])
    )
    summary = update_json(config)
    assert (summary["ok"], summary["entries_new"], summary["entries_updated"]) == (1, 1, 0)
    rows = query(db, "SELECT guid, published, updated, first_seen, content_hash FROM entries ORDER BY id")
    assert rows[0] == first  # not news again: same dates, same hash
    assert rows[1][0] == "u-2" and rows[1][1] > first[1]


def test_an_undated_entry_whose_text_changes_is_updated_but_keeps_its_dates(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/undated.xml", undated_rss([("u-1", "Harbour reopens after storm")]))
    config = write_config(tmp_path, [url])
    db = tmp_path / "aggregator.db"
    update_json(config)
    (before,) = query(db, "SELECT published, updated, first_seen, title FROM entries")
    time.sleep(1.1)
    feeds.serve("/undated.xml", undated_rss([("u-1", "Harbour reopens after three-day storm")]))
    assert update_json(config)["entries_updated"] == 1
    (after,) = query(db, "SELECT published, updated, first_seen, title FROM entries")
    assert after == (*before[:3], "Harbour reopens after three-day storm")


def test_the_progress_bar_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # a pass forks its worker processes only while it has a single thread: a bar with a refresh thread
    # would cost an interactive `aggregator update` both of them
    import threading

    from rich.console import Console
    from rich.progress import Progress

    from aggregator import cli
    from aggregator.models import FeedOutcome, FetchStatus

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    redrawn: list[int] = []
    monkeypatch.setattr(Progress, "refresh", lambda self: redrawn.append(len(self.tasks)))
    before = threading.active_count()
    with cli._progress(3, enabled=True) as advance:
        assert threading.active_count() == before
        advance(FeedOutcome("https://example.com/feed", FetchStatus.OK))
        assert threading.active_count() == before
    assert redrawn == [1, 1]  # a real bar: redrawn by the feed's advance and as it closes, never by a thread


def test_a_pass_without_a_terminal_never_loads_rich(tmp_path: Path, feeds: FeedFiles) -> None:
    # cron and --json passes do not pay for rich's import (about 0.1 s); a pass that stored nothing (every feed
    # unchanged) does not import clustering either
    config = write_config(tmp_path, [feeds.serve("/a.xml", rss(RSS_A, "Alpha"))])
    code = (
        "import sys\nfrom aggregator.cli import main\n"
        f"sys.argv = ['aggregator', '--config', {str(config)!r}, 'update']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('rich', 'pygments')"
        " or name in ('aggregator.clustering', 'aggregator.dedup')))"
    )

    def update_in_a_process() -> list[str]:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
        return done.stdout.splitlines()

    cold = update_in_a_process()
    assert cold[0].startswith(f"1 feeds: 1 ok, 0 not modified, 0 failed; entries: {len(RSS_A)} new")
    assert cold[-1] == "['aggregator.clustering', 'aggregator.dedup']"
    unchanged = update_in_a_process()
    assert unchanged[0].startswith("1 feeds: 0 ok, 1 not modified, 0 failed; entries: 0 new")
    assert unchanged[-1] == "[]"


def test_entries_a_crash_left_without_a_story_are_clustered_by_the_next_pass(tmp_path: Path, feeds: FeedFiles) -> None:
    config = write_config(tmp_path, [feeds.serve("/a.xml", rss(RSS_A, "Alpha"))])
    db = tmp_path / "aggregator.db"
    assert update_json(config)["clustered"] == len(RSS_A)
    with sqlite3.connect(db) as conn:  # as if the last pass died between storing and clustering
        conn.execute("UPDATE entries SET story_id = NULL, story_method = NULL, story_score = NULL")
        conn.execute("DELETE FROM stories")
    again = update_json(config)
    assert (again["entries_new"], again["clustered"]) == (0, len(RSS_A))
    assert query(db, "SELECT count(*) FROM entries WHERE story_id IS NULL") == [(0,)]


def test_update_skips_a_feed_the_service_disabled_until_it_is_enabled(tmp_path: Path, feeds: FeedFiles) -> None:
    alpha = feeds.serve("/a.xml", rss(RSS_A, "Alpha"))
    gone = feeds.serve("/gone.xml", rss(RSS_A[:1], "Gone"))
    config = write_config(tmp_path, [alpha, gone])
    db = tmp_path / "aggregator.db"
    assert update_json(config)["feeds"] == 2
    with sqlite3.connect(db) as conn:  # as the service records a 410
        conn.execute(
            "UPDATE feeds SET disabled_reason = 'gone: HTTP 410', disabled_at = '2026-11-26T00:00:00Z' WHERE url = ?",
            (gone,),
        )
    feeds.requests.clear()
    assert update_json(config)["feeds"] == 1
    assert feeds.requests == ["/a.xml"]

    enabled = run_cli("enable", gone, config=config)
    assert (enabled.exit_code, enabled.stdout) == (0, f"enabled {gone}: the next pass fetches it\n")
    assert query(db, "SELECT disabled_reason, error_count FROM feeds WHERE url = ?", (gone,)) == [(None, 0)]
    assert update_json(config)["feeds"] == 2
    assert "/gone.xml" in feeds.requests

    unknown = run_cli("enable", "https://nowhere.example/feed", config=config)
    assert unknown.exit_code != 0
    assert unknown.stderr == "error: https://nowhere.example/feed: no such feed in the store\n"

    # a feed that is not disabled: said so, and its row (its schedule, its errors) is left as it is
    before = query(db, "SELECT * FROM feeds WHERE url = ?", (alpha,))
    again = run_cli("enable", alpha, config=config)
    assert (again.exit_code, again.stdout) == (0, f"{alpha} is not disabled: nothing to do\n")
    assert query(db, "SELECT * FROM feeds WHERE url = ?", (alpha,)) == before


def test_export_opml_names_untitled_feeds_by_their_own_title(tmp_path: Path, feeds: FeedFiles) -> None:
    untitled = feeds.serve("/a.xml", rss(RSS_A, "Alpha Daily"))
    titled = feeds.serve("/b.xml", rss(RSS_A[:1], "Beta Wire"))
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"database: aggregator.db\nfeeds:\n  - url: {untitled}\n  - url: {titled}\n    title: My Beta\n",
        encoding="utf-8",
    )

    def outlines() -> list[tuple[str | None, str | None]]:
        exported = run_cli("export-opml", config=config)
        assert exported.exit_code == 0, exported.stderr
        root = etree.fromstring(exported.stdout_bytes)
        return [(o.get("text"), o.get("title")) for o in root.iter("outline")]

    assert outlines() == [(untitled, None), ("My Beta", "My Beta")]  # nothing fetched yet: the URL
    assert not (tmp_path / "aggregator.db").exists()  # exporting never creates a database
    assert update_json(config)["ok"] == 2
    assert outlines() == [("Alpha Daily", "Alpha Daily"), ("My Beta", "My Beta")]  # feeds.yaml's title wins


def test_a_feed_that_answers_410_is_disabled_by_update_until_enabled(tmp_path: Path, feeds: FeedFiles) -> None:
    alpha = feeds.serve("/a.xml", rss(RSS_A, "Alpha"))
    feeds.server.expect_request("/gone.xml").respond_with_data("gone", status=410)
    gone = feeds.server.url_for("/gone.xml")
    config = write_config(tmp_path, [alpha, gone])
    db = tmp_path / "aggregator.db"
    first = update_json(config)
    assert (first["feeds"], first["ok"], first["failed"]) == (2, 1, 1)
    assert first["errors"] == [
        {"url": gone, "error": "HTTP 410 GONE: the feed is gone for good"}
    ]  # werkzeug's reason phrase
    ((reason,),) = query(db, "SELECT disabled_reason FROM feeds WHERE url = ?", (gone,))
    assert reason and "410" in reason
    assert update_json(config)["feeds"] == 1  # not fetched again
    assert run_cli("enable", gone, config=config).exit_code == 0
    assert update_json(config)["failed"] == 1  # fetched again, and gone again


def test_update_backs_off_a_failing_feed_from_its_count_before_the_fetch(tmp_path: Path, feeds: FeedFiles) -> None:
    # the plan starts from the feed as it was before this pass: a first failure waits one interval, a second two
    feeds.server.expect_request("/down.xml").respond_with_data("down", status=500)
    down = feeds.server.url_for("/down.xml")
    config = write_config(tmp_path, [down], interval="30m", jitter=0)
    db = tmp_path / "aggregator.db"
    for failures, minutes in ((1, 30), (2, 60)):
        assert update_json(config)["failed"] == 1
        ((fetched_at, next_at, errors, reason),) = query(
            db, "SELECT last_fetched_at, next_fetch_at, error_count, schedule_reason FROM feeds"
        )
        waited = datetime.fromisoformat(next_at) - datetime.fromisoformat(fetched_at)
        assert (errors, reason) == (failures, "backoff")
        assert timedelta(minutes=minutes) <= waited <= timedelta(minutes=minutes, seconds=2)
