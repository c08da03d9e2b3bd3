"""normalize.py: identity, canonical URLs, clean text, sanitized HTML and dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.models import Enclosure, ParsedEntry
from aggregator.normalize import canonical_url, clean_text, entry_guid, normalize_entry, sanitize_html

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.COM:443/a/b?x=1#frag", "https://example.com/a/b?x=1"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/p", "http://example.com:8080/p"),
        ("https://e.com/p?utm_source=rss&utm_medium=feed&id=7&fbclid=abc&gclid=z", "https://e.com/p?id=7"),
        ("https://e.com/p?b=2&a=1", "https://e.com/p?b=2&a=1"),
        ("https://e.com/Case/Path", "https://e.com/Case/Path"),
    ],
)
def test_canonical_url(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


def test_clean_text_drops_tags_scripts_and_entities() -> None:
    assert clean_text("  <b>Fed</b> &amp; ECB\n hold <script>alert(1)</script>rates\x00 ") == "Fed & ECB hold rates"
    assert clean_text("AT&amp;T &lt;3") == "AT&T <3"


def test_sanitize_html_removes_executable_content_and_resolves_links() -> None:
    dirty = (
        '<p onclick="x()">Hi <a href="/story">more</a> <a href="javascript:alert(1)">bad</a>'
        '<img src="img.png" onerror="x()"><script>alert(1)</script><iframe src="https://evil"></iframe>'
        '<a href="data:text/html;base64,PHNjcmlwdD4=">d</a></p>'
    )
    clean = sanitize_html(dirty, "https://news.example.com/world/item")
    assert clean is not None
    for bad in ("onclick", "onerror", "javascript:", "<script", "<iframe", "data:"):
        assert bad not in clean
    assert 'href="https://news.example.com/story"' in clean
    assert 'src="https://news.example.com/world/img.png"' in clean
    assert sanitize_html("   ", "https://e.com/") is None
    assert sanitize_html("plain < text", "https://e.com/") == "plain &lt; text"


def test_entry_guid_prefers_id_then_link_then_hash() -> None:
    assert entry_guid(ParsedEntry(id=" keep-exactly ", link="https://e.com/1")) == " keep-exactly "
    assert entry_guid(ParsedEntry(link="https://e.com/1")) == "https://e.com/1"
    hashed = entry_guid(ParsedEntry(title="T", published=NOW))
    assert hashed.startswith("sha1:") and hashed == entry_guid(ParsedEntry(title="T", published=NOW))
    assert hashed != entry_guid(ParsedEntry(title="T", published=NOW + timedelta(hours=1)))


def test_normalize_entry_fields() -> None:
    parsed = ParsedEntry(
        id="g1",
        link="/2026/08/story?utm_campaign=x",
        title="<em>Big</em> story",
        summary="<p>Short <b>summary</b></p>",
        content="<p>Long body</p><script>x</script>",
        published=NOW - timedelta(hours=2),
        updated=None,
        authors=("Ann",),
        categories=("World",),
        enclosures=(Enclosure("https://e.com/a.mp3", "audio/mpeg", 10),),
    )
    entry = normalize_entry(parsed, "https://news.example.com/feed.xml", NOW)
    assert entry.guid == "g1"
    assert entry.url == "https://news.example.com/2026/08/story?utm_campaign=x"
    assert entry.canonical_url == "https://news.example.com/2026/08/story"
    assert entry.title == "Big story"
    assert entry.summary == "<p>Short <b>summary</b></p>"
    assert entry.summary_text == "Short summary"
    assert entry.content == "<p>Long body</p>"
    assert entry.published == entry.updated == NOW - timedelta(hours=2)
    assert entry.authors == ("Ann",) and entry.categories == ("World",)
    assert len(entry.content_hash) == 32
    assert normalize_entry(parsed, "https://news.example.com/feed.xml", NOW).content_hash == entry.content_hash


@pytest.mark.parametrize(
    "published",
    [None, datetime(1970, 1, 1, tzinfo=UTC), NOW + timedelta(days=400)],
    ids=["missing", "epoch", "far-future"],
)
def test_missing_or_absurd_dates_become_first_seen(published: datetime | None) -> None:
    entry = normalize_entry(ParsedEntry(id="x", title="t", published=published), "https://e.com/f", NOW)
    assert entry.published == NOW
    assert entry.updated == NOW


def test_updated_never_before_published() -> None:
    parsed = ParsedEntry(id="x", published=NOW - timedelta(hours=1), updated=NOW - timedelta(hours=5))
    entry = normalize_entry(parsed, "https://e.com/f", NOW)
    assert entry.updated == entry.published == NOW - timedelta(hours=1)


def test_non_http_links_are_dropped() -> None:
    entry = normalize_entry(ParsedEntry(id="x", link="javascript:alert(1)"), "https://e.com/f", NOW)
    assert entry.url is None and entry.canonical_url is None


@pytest.mark.parametrize(
    "link",
    [
        "http://xn--a.com/a",
        "http://ex ample.com/a",
        "http://ex\u202eample.com/a",
        "http://a..b/",
        "http://a\x85b.com/",
        "http://999.1.1.1/",
        "http://news.123/",
    ],
)
def test_links_whose_host_cannot_exist_are_not_kept(link: str) -> None:
    parsed = ParsedEntry(id="x", link=link, summary='<a href="/more">more</a>')
    entry = normalize_entry(parsed, "https://f.example/", NOW)
    assert entry.url is None
    assert entry.summary == '<a href="https://f.example/more" rel="noopener noreferrer">more</a>'


@pytest.mark.parametrize(
    "link", ["http://bücher.de/a", "http://[::1]:8080/a", "https://www.bbc.co.uk/news/a_b-1", "http://10.0.0.1/a"]
)
def test_international_and_ip_hosts_are_kept(link: str) -> None:
    assert normalize_entry(ParsedEntry(id="x", link=link), "https://f.example/", NOW).url == link


def test_a_base_nh3_refuses_drops_relative_links_but_keeps_the_fragment() -> None:
    assert sanitize_html('<p><a href="/x">rel</a> <a href="https://a.example/">abs</a></p>', "http://xn--a.com/") == (
        '<p><a rel="noopener noreferrer">rel</a> <a href="https://a.example/" rel="noopener noreferrer">abs</a></p>'
    )
