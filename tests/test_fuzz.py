"""Seeded mutations of real feeds through parse + normalize + store, and one real pass (issue 13).

Each case is a real feed (the small ones in tests/data always; ../shared/data's real feeds and feedparser's
corpus when present) mutated by a seeded generator: bytes flipped, the document truncated, a piece of another
feed spliced in, hostile snippets inserted (bad character references, links nh3 refuses, markup, DOCTYPEs,
encodings whose `<` is not the byte `<`). Bounded by count, never by time: the same cases every run.

What must hold: no exception escapes prepare_result (a document is parsed or refused with a ParseError);
whatever is parsed can be stored; and in a real `aggregator update` over mutated feeds and good ones, the pass
exits 0 with every good feed stored whole.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from conftest import DATA, SHARED, FeedFiles, query, update_json, write_config

from aggregator.errors import ParseError
from aggregator.models import FeedSource, FetchResult, FetchStatus
from aggregator.store import Store
from aggregator.update import prepare_result, store_result

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)
CASES = 300  # mutated documents through prepare_result and the store
PASS_CASES = 40  # of them, served in one real pass beside the good feeds
SHARED_FEED_BYTES = 40_000  # real feeds of ../shared/data above this size are left out (feedparser's time)

HOSTILE = [
    b"&#xD800;", b"&#x110000;", b"&#99999999999;", b"&#0;", b"&#xDFFF;&#xD800;", b"&#xD83D;&#xDE00;",
    b"<link>http://xn--a.com/</link>", b"<link>http://ex ample.com/x</link>",
    "<link>http://ex\u202eample.com/</link>".encode(), b"<link>http://a.example:99999/</link>",
    b"<description>&lt;p&gt;&lt;a href='/x'&gt;y&lt;/a&gt;&lt;script&gt;alert(1)&lt;/script&gt;</description>",
    b"<![CDATA[", b"]]>", b"<!--", b"-->", b"<!DOCTYPE rss [<!ENTITY e 'x'>]>", b"&e;", b"&nbsp;", b"&undefined;",
    b"<item><title>t</title><link>javascript:alert(1)</link></item>", b"<entry><id>", b"</item>", b"<item>",
    b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"\x1b]0;pwned\x07", "\x9b2J\u202e".encode(), b"<a/>" * 200,
    b"<x>" * 300, b' xml:base="http://xn--a.com/" ', b'<enclosure url="http://[::1" type="x" length="-1"/>',
    b"<pubDate>Thu, 31 Dec 9999 23:59:59 +9999</pubDate>", b"<guid>" + b"g" * 5000 + b"</guid>",
    b"<link>https://example.com/?q=<script></link>", b'<link href="https://x.example/&#x202e;gnp.exe"/>',
]  # fmt: skip
PROLOGS = [b'<?xml version="1.0" encoding="cp037"?>', b'<?xml version="1.0" encoding="utf-7"?>', b"\xef\xbb\xbf"]
JSON_HOSTILE = [
    b'"\\ud800"', b'"http://xn--a.com/"', b'{"url": "http://ex ample.com/", "content_html": "<a href=x>y</a>"}',
    b'"\\u001b]0;x\\u0007"', b"[" * 200, b'"date_published": "99999-01-01"', b"null", b"1e999",
]  # fmt: skip


def seeds() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(content type, body) of the documents mutations start from: real feeds, and feedparser's corpus."""
    real = sorted((DATA / "fuzz").glob("*.xml")) + sorted(DATA.glob("*.*"))
    corpus: list[Path] = []
    if SHARED.exists():
        real += sorted(p for p in (SHARED / "feeds").rglob("*.xml") if p.stat().st_size <= SHARED_FEED_BYTES)
        corpus = sorted((SHARED / "malformed" / "feedparser").rglob("*.xml"))
        corpus += sorted((SHARED / "malformed" / "feedparser").rglob("*.json"))
    return [(_content_type(p), p.read_bytes()) for p in real], [(_content_type(p), p.read_bytes()) for p in corpus]


def _content_type(path: Path) -> str:
    return {".json": "application/feed+json", ".atom": "application/atom+xml"}.get(path.suffix, "application/rss+xml")


def mutate(body: bytes, others: list[tuple[str, bytes]], rng: random.Random, json_like: bool) -> bytes:
    """One to three random mutations of `body`."""
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("flip", "truncate", "splice", "hostile", "hostile", "prolog"))
        where = rng.randint(0, len(body))
        if kind == "flip" and body:
            data = bytearray(body)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            body = bytes(data)
        elif kind == "truncate":
            body = body[:where]
        elif kind == "splice":
            _, other = rng.choice(others)
            start = rng.randint(0, len(other))
            body = body[:where] + other[start : start + rng.randint(1, 2000)] + body[where:]
        elif kind == "hostile":
            snippet = rng.choice(JSON_HOSTILE if json_like else HOSTILE)
            after_tag = body.find(b">", where)  # most land between tags or in text, where a feed's values are
            where = after_tag + 1 if after_tag >= 0 else where
            body = body[:where] + snippet + body[where:]
        elif kind == "prolog" and not json_like:
            body = rng.choice(PROLOGS) + re.sub(rb"^\s*<\?xml[^>]*\?>", b"", body)
    return body


def cases(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """`count` mutated documents, the same ones for the same seed: half of real feeds, half of the corpus."""
    rng = random.Random(seed)
    real, corpus = seeds()
    for number in range(count):
        content_type, body = rng.choice(corpus if corpus and number % 2 else real)
        yield content_type, mutate(body, real + corpus, rng, content_type.endswith("json"))


def test_no_exception_escapes_parsing_normalizing_or_storing(tmp_path: Path) -> None:
    outcomes = {"parsed": 0, "refused": 0, "entries": 0}
    urls = [f"https://fuzz.example/{n}.xml" for n in range(CASES)]
    with Store.open(tmp_path / "fuzz.db") as store:
        states = store.sync_feeds([FeedSource(url) for url in urls], NOW)
        for url, (content_type, body) in zip(urls, cases(CASES, seed=13), strict=True):
            result = FetchResult(url, FetchStatus.OK, 200, body=body, headers=(("content-type", content_type),))
            prepared = prepare_result(result, NOW)
            if isinstance(prepared, ParseError):
                outcomes["refused"] += 1
                assert str(prepared) and "\n" not in str(prepared)
            else:
                assert isinstance(prepared, tuple)
                _, entries = prepared
                outcomes["parsed"] += 1
                outcomes["entries"] += len(entries)
                for entry in entries:
                    assert entry.url is None or entry.url.lower().startswith(("http://", "https://"))
                    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]", entry.title)
            store_result(store, states[url], result, NOW, prepared)
    # the mutations reach both outcomes, and most documents still give entries
    assert outcomes["parsed"] > CASES // 2 and outcomes["refused"] > 0 and outcomes["entries"] > CASES // 2
    assert query(tmp_path / "fuzz.db", "PRAGMA integrity_check") == [("ok",)]


def test_a_pass_over_mutated_feeds_stores_every_good_feed(feeds: FeedFiles, tmp_path: Path) -> None:
    good = {}
    for path in [*sorted((DATA / "fuzz").glob("*.xml")), DATA / "full.atom", DATA / "full.json"]:
        good[feeds.serve_file(f"/good/{path.name}", path, _content_type(path))] = path
    mutated = [
        feeds.serve(f"/mutated/{n}", body, content_type)
        for n, (content_type, body) in enumerate(cases(PASS_CASES, seed=31))
    ]
    config = write_config(tmp_path, [*mutated[: PASS_CASES // 2], *good, *mutated[PASS_CASES // 2 :]])
    summary = update_json(config)
    assert summary["feeds"] == PASS_CASES + len(good)
    failed = {error["url"] for error in summary["errors"] if not error["error"].startswith("malformed feed")}
    assert not failed & set(good)
    db = tmp_path / "aggregator.db"
    for url, path in good.items():
        result = FetchResult(
            url, FetchStatus.OK, 200, body=path.read_bytes(), headers=(("content-type", _content_type(path)),)
        )
        prepared = prepare_result(result, NOW)
        assert isinstance(prepared, tuple)
        expected = sorted({entry.guid for entry in prepared[1]})
        stored = query(
            db, "SELECT e.guid FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE f.url = ? ORDER BY e.guid", (url,)
        )
        assert [guid for (guid,) in stored] == expected, path.name
    assert query(db, "SELECT count(*) FROM entries WHERE story_id IS NULL") == [(0,)]
    output = (tmp_path / "public" / "feed.atom").read_bytes()
    assert output.startswith(b"<?xml")
    json.dumps(summary)  # the summary itself is plain data
