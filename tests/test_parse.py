"""parse.py: golden pairs of feed files and what we read from them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import DATA

from aggregator.errors import ParseError
from aggregator.models import Enclosure
from aggregator.parse import advertised_feeds, parse_feed


def test_rss() -> None:
    feed = parse_feed((DATA / "full.rss").read_bytes(), {"content-type": "application/rss+xml"})
    assert feed.version == "rss20"
    assert feed.title == "RSS Title"
    assert feed.link == "http://www.example.com/main.html"
    first = feed.entries[0]
    assert first.id == "7bd204c6-1655-4c27-aeee-53f933c5395f"
    assert first.title == "Example entry"
    assert first.link == "http://www.example.com/blog/post/1"
    assert first.published == datetime(2009, 9, 6, 16, 20, tzinfo=UTC)
    assert first.summary == "Here is some text containing an interesting description."


def test_atom() -> None:
    feed = parse_feed((DATA / "full.atom").read_bytes(), {"content-type": "application/atom+xml"})
    assert feed.version == "atom10"
    assert feed.title == "Example Feed"
    first = feed.entries[0]
    assert first.id == "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"
    assert first.title == "Atom-Powered Robots Run Amok"
    assert first.link == "http://example.org/2003/12/13/atom03"
    assert first.updated == datetime(2003, 12, 13, 18, 30, 2, tzinfo=UTC)


def test_json_feed() -> None:
    feed = parse_feed((DATA / "full.json").read_bytes(), {"content-type": "application/feed+json"})
    assert feed.version == "json11"
    assert feed.title == "My Example Feed"
    assert [e.id for e in feed.entries] == ["2", "1"]
    second = feed.entries[0]
    assert second.title == "Title"
    assert second.summary == "A summary"
    assert second.content == 'Content with <a href="http://example.com/">link</a>'
    assert second.published == datetime(2020, 1, 2, 21, 0, tzinfo=UTC)
    assert second.updated == datetime(2020, 1, 4, 0, 0, tzinfo=UTC)
    assert second.enclosures == (
        Enclosure("http://example.com/downloads/file.m4a", "audio/x-m4a", 12345678),
        Enclosure("http://example.com/downloads/another.mp3", None, None),
    )
    assert feed.entries[1].authors == ("Jane",)


def test_a_json_feed_date_that_is_not_rfc_3339_is_read_as_feedparser_reads_dates() -> None:
    # feedparser._parse_date (a private name that no longer exists at the top of feedparser) made this whole
    # feed "unreadable document: the parser failed (AttributeError ...)"
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": ['
        b'{"id": "1", "title": "a", "date_published": "Sun, 06 Sep 2009 16:20:00 GMT"},'
        b'{"id": "2", "title": "b", "date_published": "not a date"}]}'
    )
    feed = parse_feed(body)
    assert [(e.id, e.published) for e in feed.entries] == [("1", datetime(2009, 9, 6, 16, 20, tzinfo=UTC)), ("2", None)]


def test_real_capture_of_a_news_feed() -> None:
    feed = parse_feed((DATA / "cna_world.xml").read_bytes())
    assert feed.version == "rss20"
    assert feed.ttl_minutes == 30
    assert len(feed.entries) == 5
    first = feed.entries[0]
    assert first.id == "ef8464fa8a2fea4631c4ac65"
    assert first.title == "Thai schools hold shooting response drills after deadly school attack"
    assert first.published == datetime(2026, 8, 19, 8, 58, 57, tzinfo=UTC)
    assert first.authors == ("CNA",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body: the server sent no document"),
        (b"   \n", "empty body: the server sent no document"),
        (b"<html><body>Hello</body></html>", "not a feed but an HTML page (it advertises no feed)"),
        (b'{"hello": "world"}', "not a feed: a JSON document that is not a JSON Feed (no jsonfeed.org version)"),
        (b"{not json", "not a feed: invalid JSON"),
    ],
)
def test_not_a_feed(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as error:
        parse_feed(body)
    assert str(error.value).startswith(message)


def test_html_page_names_its_feeds() -> None:
    page = (
        b"<!DOCTYPE html><html><head>"
        b'<link rel="alternate" type="application/rss+xml" href="/rss.xml">'
        b'<link rel="alternate" type="application/atom+xml" href="https://cdn.example.com/atom.xml">'
        b'<link rel="stylesheet" href="/style.css"></head><body></body></html>'
    )
    with pytest.raises(ParseError) as error:
        parse_feed(page, {"content-location": "https://example.com/news/"})
    assert str(error.value) == (
        "not a feed but an HTML page; it advertises these feeds: "
        "https://example.com/rss.xml, https://cdn.example.com/atom.xml"
    )
    assert advertised_feeds(page.decode(), "https://example.com/") == (
        "https://example.com/rss.xml",
        "https://cdn.example.com/atom.xml",
    )


def test_every_real_capture_parses(shared_data: Path) -> None:
    files = sorted((shared_data / "feeds" / "laapy").glob("*/*.xml"))
    assert len(files) > 50
    for file in files:
        feed = parse_feed(file.read_bytes())
        assert feed.entries, file
        assert all(e.title for e in feed.entries), file
