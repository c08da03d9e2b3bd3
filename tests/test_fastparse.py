"""The lxml fast path agrees with feedparser on every stored field, or hands the document back.

The differential tests read each document both ways (parse_feed with the fast path off is the reference) and
compare the feed fields and every Entry field after normalize_entry, content hash included (source hash
not: it digests the parser's raw output). They print the agreement rate (`pytest -s tests/test_fastparse.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED

from aggregator import fastparse, parse
from aggregator.errors import ParseError
from aggregator.models import ParsedFeed
from aggregator.normalize import normalize_entry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from corpus import build_corpus

NOW = datetime(2026, 11, 26, tzinfo=UTC)
BASE = "https://example.com/feed.xml"
HEADERS = {"content-location": BASE, "content-type": "application/xml"}
REAL_FEEDS = SHARED / "feeds"
WELLFORMED = SHARED / "malformed" / "feedparser" / "wellformed"


def reference(body: bytes, monkeypatch: pytest.MonkeyPatch) -> ParsedFeed:
    """What parse_feed reads with the fast path switched off: feedparser."""
    with monkeypatch.context() as patched:
        patched.setattr(parse, "parse_fast", lambda *args: None)
        return parse.parse_feed(body, HEADERS)


def stored(feed: ParsedFeed) -> tuple[Any, ...]:
    """Everything the store keeps of a parsed feed, but the source hash (a digest of the parser's raw output,
    so it differs by parser; it only decides whether an entry is normalized again)."""
    entries = [replace(normalize_entry(entry, BASE, NOW), source_hash="") for entry in feed.entries]
    declared = (feed.ttl_minutes, feed.update_period, feed.update_frequency)
    return (feed.title, feed.link, feed.version, declared, feed.warning, entries)


def files(root: Path) -> Iterator[Path]:
    return (path for path in sorted(root.rglob("*")) if path.is_file() and path.suffix in (".xml", ".rss", ".atom"))


def agreement(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, list[str]]:
    """(documents, documents the fast path read, those where it disagreed with feedparser)."""
    total, fast_read, disagreed = 0, 0, []
    for path in files(root):
        body = path.read_bytes()
        total += 1
        fast = fastparse.parse_fast(body, HEADERS)
        if fast is None:
            continue
        fast_read += 1
        try:
            ref = reference(body, monkeypatch)
        except ParseError as e:
            disagreed.append(f"{path}: feedparser refused it ({e})")
            continue
        if stored(fast) != stored(ref):
            disagreed.append(str(path))
    return total, fast_read, disagreed


@pytest.mark.shared_data("feeds")
def test_agrees_with_feedparser_on_the_real_feeds(monkeypatch: pytest.MonkeyPatch) -> None:
    total, fast_read, disagreed = agreement(REAL_FEEDS, monkeypatch)
    print(f"\nreal feeds: {total} documents, fast path read {fast_read}, agreed on {fast_read - len(disagreed)}")
    assert disagreed == []
    assert total >= 100 and fast_read == total  # plain RSS 2.0 with a custom namespace: all of them


@pytest.mark.shared_data("malformed", "feedparser", "wellformed")
def test_agrees_with_feedparser_on_its_wellformed_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    total, fast_read, disagreed = agreement(WELLFORMED, monkeypatch)
    print(
        f"\nfeedparser wellformed/: {total} documents, fast path read {fast_read} ({fast_read / total:.0%}), "
        f"agreed on {fast_read - len(disagreed)}; the rest handed back to feedparser"
    )
    assert disagreed == []
    assert fast_read >= 400  # 506 when written; far fewer means the fast path stopped working


def test_agrees_on_the_benchmark_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    for body in build_corpus(4, 10).values():
        fast = fastparse.parse_fast(body, HEADERS)
        assert fast is not None
        assert stored(fast) == stored(reference(body, monkeypatch))


def test_parse_feed_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    body = next(iter(build_corpus(1, 3).values()))
    calls: list[bytes] = []
    real = fastparse.parse_fast

    def spy(data: bytes, headers: Any = None) -> ParsedFeed | None:
        calls.append(data)
        return real(data, headers)

    monkeypatch.setattr(parse, "parse_fast", spy)
    feed = parse.parse_feed(body, HEADERS)
    assert calls == [body]
    assert feed.version == "rss20" and len(feed.entries) == 3


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<rss version="2.0"><channel><title>t</title><item><title>&c;</title><link>https://x/1</link></item></channel></rss>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>&xxe;</title><item><title>t</title><link>https://x/1</link></item></channel></rss>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE rss SYSTEM "http://127.0.0.1:9/evil.dtd">
<rss version="2.0"><channel><title>t</title><item><title>t</title><link>https://x/1</link></item></channel></rss>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, EXTERNAL_DTD], ids=["billion-laughs", "xxe", "external-dtd"])
def test_entities_and_dtds_are_never_read_by_the_fast_path(body: bytes) -> None:
    # any DOCTYPE goes to parse.py's budget checks and feedparser (external entities off there)
    assert fastparse.parse_fast(body, HEADERS) is None
    assert fastparse.parse_fast(body.replace(b"<!DOCTYPE", b"<!-- -->\n<!DOCTYPE"), HEADERS) is None


def item(body: str) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:w="urn:x-wire">
<channel><title>t</title><link>https://x/</link><item>{body}</item></channel></rss>""".encode()


@pytest.mark.parametrize(
    "body",
    [
        item("<title>t</title>"),  # no link: feedparser would take a permalink guid
        item("<title>t</title><link>/relative</link>"),
        item('<link>https://x/1</link><description>&lt;a href="/rel"&gt;x&lt;/a&gt;</description>'),
        item("<link>https://x/1</link><description>&lt;br&gt;&lt;/br&gt;</description>"),
        item("<link>https://x/1</link><media:title>sets the title in feedparser</media:title>"),
        item("<link>https://x/1</link><author>a@x (A)</author>"),
        item("<link>https://x/1</link><w:note><title>nested</title></w:note>"),
        item("<link>https://x/1</link><title>a</title><title>b</title>"),
        b"<rss version='2.0'><channel><item><link>https://x/1</link></channel></rss>",  # not well-formed
        item("<link>https://x/1</link>").replace(b"utf-8", b"iso-8859-1"),
        "<rss version='2.0'><channel><title>caf\u00e9</title></channel></rss>".encode("latin-1"),
        b"<rss version='0.91'><channel><title>t</title></channel></rss>",
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id></entry></feed>',  # id as the link
        b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://x/"><title>t</title></feed>',
    ],
)
def test_hands_back_what_feedparser_reads_its_own_way(body: bytes) -> None:
    assert fastparse.parse_fast(body, HEADERS) is None


def test_foreign_elements_are_skipped() -> None:
    feed = fastparse.parse_fast(item("<title>t</title><link>https://x/1</link><w:publisher>Wire</w:publisher>"))
    assert feed is not None
    assert [(e.title, e.link) for e in feed.entries] == [("t", "https://x/1")]


def test_text_content_type_without_charset_needs_ascii() -> None:
    body = "<rss version='2.0'><channel><title>caf\u00e9</title></channel></rss>".encode()
    assert fastparse.parse_fast(body, {"content-type": "text/xml"}) is None
    assert fastparse.parse_fast(body, {"content-type": "application/rss+xml"}) is not None
