"""`add` and `remove` through the CLI: feed discovery over loopback, and feeds.yaml edited line for line."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest
from conftest import FeedFiles, run_cli

from aggregator.config import load_config
from aggregator.models import FeedSource

A = "https://alpha.example/world.xml"
B = "https://beta.example/rss"
C = "https://gamma.example/tech/atom.xml"

CONFIG = f"""\
# My subscriptions.
database: aggregator.db   # next to this file

outputs:
  - path: public/feed.atom
    format: atom
    title: "My news"

feeds:
  # World
  - url: {A}
    title: Alpha World   # the best one
    tags: [world]

  - url: {B}
    tags: [world]
  # Tech
  - url: {C}
    title: 'Gamma: tech'
    tags: [tech]

# retention comes last
retention:
  keep_days: 90
"""

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>New Feed</title><link>https://new.example/</link>
<item><guid>n1</guid><title>First</title><pubDate>Mon, 02 Nov 2026 10:00:00 GMT</pubDate></item>
<item><guid>n2</guid><title>Second</title><pubDate>Tue, 03 Nov 2026 10:00:00 GMT</pubDate></item>
</channel></rss>"""
ATOM = b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Atom Site</title>
<id>urn:atom-site</id><updated>2026-11-02T10:00:00Z</updated>
<entry><id>urn:e1</id><title>Only</title><updated>2026-11-02T10:00:00Z</updated></entry></feed>"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def page(*links: str) -> str:
    heads = "".join(f'<link rel="alternate" type="application/rss+xml" title="Feed" href="{href}">' for href in links)
    return f"<!DOCTYPE html><html><head><title>A site</title>{heads}</head><body><p>Hello</p></body></html>"


def test_add_a_feed_url_appends_three_lines_and_keeps_every_other_byte(config: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/new.xml", RSS)
    result = run_cli(
        "add", "--allow-private", url, "--title", "Example: news", "--tag", "tech", "--tag", "a, b", config=config
    )
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"added {url} (Example: news; 2 entries; the URL is a feed) to {config}\n"
    added = f'  - url: {url}\n    title: "Example: news"\n    tags: [tech, "a, b"]\n'
    assert config.read_text(encoding="utf-8") == CONFIG.replace("    tags: [tech]\n", "    tags: [tech]\n" + added)
    assert load_config(config).sources()[-1] == FeedSource(url, "Example: news", ("tech", "a, b"))


def test_add_refuses_a_loopback_feed_unless_allowed_and_names_the_option(config: Path, feeds: FeedFiles) -> None:
    # issue 16: the line said "allow_private_addresses is false" (feeds.yaml says true) and never named the fix
    url = feeds.serve("/new.xml", RSS)
    result = run_cli("add", url, config=config)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {url}: cannot fetch: refused: 127.0.0.1 is a loopback address (127.0.0.1), which "
        f"`aggregator add` reaches only when asked: aggregator add --allow-private {url}\n"
    )
    assert config.read_bytes() == CONFIG.encode()
    assert feeds.requests == []


def test_add_then_remove_gives_back_the_file_byte_for_byte(config: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/new.xml", RSS)
    assert run_cli("add", "--allow-private", url, config=config).exit_code == 0
    assert f"  - url: {url}\n\n# retention comes last" in config.read_text(encoding="utf-8")
    removed = run_cli("remove", url, config=config)
    assert (removed.exit_code, removed.stdout) == (0, f"removed {url} from {config}\n")
    assert config.read_bytes() == CONFIG.encode()


def test_remove_deletes_only_the_feeds_lines_and_keeps_comments(config: Path) -> None:
    assert run_cli("remove", B, config=config).exit_code == 0
    assert config.read_text(encoding="utf-8") == CONFIG.replace(f"  - url: {B}\n    tags: [world]\n", "")
    assert run_cli("remove", A, config=config).exit_code == 0
    without_a = f"  - url: {A}\n    title: Alpha World   # the best one\n    tags: [world]\n"
    assert config.read_text(encoding="utf-8") == CONFIG.replace(f"  - url: {B}\n    tags: [world]\n", "").replace(
        without_a, ""
    )
    assert run_cli("remove", C, config=config).exit_code == 0
    assert config.read_text(encoding="utf-8") == (
        "# My subscriptions.\ndatabase: aggregator.db   # next to this file\n\noutputs:\n  - path: public/feed.atom\n"
        '    format: atom\n    title: "My news"\n\nfeeds: []\n  # World\n\n  # Tech\n\n# retention comes last\n'
        "retention:\n  keep_days: 90\n"
    )
    assert load_config(config).feeds == ()


def test_add_discovers_the_feed_a_page_advertises(config: Path, feeds: FeedFiles) -> None:
    feed = feeds.serve("/news/rss", RSS)
    site = feeds.serve("/index.html", page("/news/rss"), "text/html; charset=utf-8")
    result = run_cli("add", "--allow-private", site, "--json", config=config)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "url": feed,
        "title": None,
        "feed_title": "New Feed",
        "tags": [],
        "entries": 2,
        "found": "advertised by the page",
    }
    assert load_config(config).sources()[-1] == FeedSource(feed)


def test_add_finds_a_feed_at_a_common_path_when_the_page_advertises_none(config: Path, feeds: FeedFiles) -> None:
    feed = feeds.serve("/atom.xml", ATOM, "application/atom+xml")
    site = feeds.serve("/blog/", page(), "text/html")
    result = run_cli("add", "--allow-private", site, config=config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"added {feed} (Atom Site; 1 entries; found at a common path) to {config}\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_add_of_an_unreachable_url_is_one_error_and_leaves_the_file_alone(config: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/feed.xml"
    result = run_cli("add", "--allow-private", url, config=config)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {url}: cannot fetch: cannot connect: ")
    assert result.stderr.count("\n") == 1
    assert config.read_bytes() == CONFIG.encode()


def test_add_of_a_page_without_a_feed_is_one_error_and_leaves_the_file_alone(config: Path, feeds: FeedFiles) -> None:
    site = feeds.serve("/about.html", page(), "text/html")
    result = run_cli("add", "--allow-private", site, config=config)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: {site}: an HTML page with no feed: it advertises none, and none of /feed, /rss, /rss.xml, "
        "/atom.xml, /feed.xml, /index.xml is a feed\n"
    )
    assert config.read_bytes() == CONFIG.encode()


def test_add_of_a_page_whose_advertised_feed_is_broken_names_it(config: Path, feeds: FeedFiles) -> None:
    feeds.serve("/broken.rss", b"<html><body>Not here</body></html>", "text/html")
    site = feeds.serve("/home.html", page("/broken.rss"), "text/html")
    result = run_cli("add", "--allow-private", site, config=config)
    assert result.exit_code == 1
    broken = feeds.server.url_for("/broken.rss")
    assert result.stderr.startswith(
        f"error: {site}: the page advertises {broken}, but none is a usable feed: {broken}: "
    )
    assert config.read_bytes() == CONFIG.encode()


def test_add_of_a_document_that_is_neither_feed_nor_page(config: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/data.txt", b"just some text", "text/plain")
    result = run_cli("add", "--allow-private", url, config=config)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {url}: not a feed")
    assert config.read_bytes() == CONFIG.encode()


def test_add_refuses_a_feed_already_subscribed_and_a_url_that_is_not_http(config: Path) -> None:
    again = run_cli("add", "--allow-private", A, config=config)
    assert (again.exit_code, again.stderr) == (2, f"error: {A} is already in {config}\n")
    ftp = run_cli("add", "--allow-private", "ftp://files.example/feed.xml", config=config)
    assert (ftp.exit_code, ftp.stderr) == (2, "error: 'ftp://files.example/feed.xml' is not an http or https URL\n")
    assert config.read_bytes() == CONFIG.encode()


def test_remove_of_a_feed_not_subscribed_suggests_a_near_match(config: Path) -> None:
    result = run_cli("remove", B + "/", config=config)
    assert (result.exit_code, result.stderr) == (2, f"error: {B}/ is not in {config} (did you mean {B}?)\n")
    assert config.read_bytes() == CONFIG.encode()


def test_an_invalid_config_is_never_edited(config: Path, feeds: FeedFiles) -> None:
    broken = CONFIG.replace("retention:", "retension:")
    config.write_text(broken, encoding="utf-8")
    url = feeds.serve("/new.xml", RSS)
    for args in (("add", "--allow-private", url), ("remove", A)):
        result = run_cli(*args, config=config)
        assert (result.exit_code, result.stderr) == (2, f"error: {config}: retension: unknown key\n")
    assert config.read_text(encoding="utf-8") == broken


def test_flow_style_feeds_are_re_emitted_and_keep_their_comments(tmp_path: Path, feeds: FeedFiles) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"# top comment\ndatabase: x.db  # the store\nfeeds: [{{url: '{A}'}}]\n", encoding="utf-8")
    url = feeds.serve("/new.xml", RSS)
    assert run_cli("add", "--allow-private", url, "--tag", "yes", config=config).exit_code == 0
    text = config.read_text(encoding="utf-8")
    assert text.startswith("# top comment\ndatabase: x.db  # the store\nfeeds:\n")
    assert load_config(config).sources() == (FeedSource(A), FeedSource(url, tags=("yes",)))


def test_the_file_keeps_its_permissions_and_its_symlink(tmp_path: Path, feeds: FeedFiles) -> None:
    real = tmp_path / "real.yaml"
    real.write_text(CONFIG, encoding="utf-8")
    real.chmod(0o600)
    link = tmp_path / "feeds.yaml"
    link.symlink_to(real)
    url = feeds.serve("/new.xml", RSS)
    assert run_cli("add", "--allow-private", url, config=link).exit_code == 0
    assert link.is_symlink()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert url in real.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.yaml", "real.yaml"]  # no temporary left
