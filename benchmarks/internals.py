"""What feedparser's private date parser saves over its public API (benchmarks/README.md, "Library internals").

    python benchmarks/internals.py

Reads every date of ../shared/data/feeds both ways (aggregator.feedparser_internals.parse_date, and
feedparser.parse() of a one-item document holding the date), checks they agree, and times the fast path
(fastparse.py) over rumca-dev's real feeds with each, beside feedparser itself.
"""

from __future__ import annotations

import calendar
import html
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator import fastparse
from aggregator.feedparser_internals import parse_date

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def public_parse_date(text: str) -> datetime | None:
    """A date read through feedparser's public API only."""
    document = f"<rss version='2.0'><channel><item><pubDate>{html.escape(text)}</pubDate></item></channel></rss>"
    parsed = feedparser.parse(document).entries[0].get("published_parsed")
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None


def per_call_us(function: Callable[[str], object], texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        function(text)
    return (time.perf_counter() - started) / len(texts) * 1e6


def fast_path_ms(bodies: list[bytes]) -> float:
    """Milliseconds per document the fast path reads (documents it hands back are not counted)."""
    started, read = time.perf_counter(), 0
    for body in bodies:
        read += fastparse.parse_fast(body) is not None
    return (time.perf_counter() - started) / max(read, 1) * 1000


def main() -> None:
    texts = [
        found.decode("utf-8", "replace")
        for path in sorted((DATA / "feeds").rglob("*"))
        if path.is_file()
        for found in re.findall(rb"<(?:pubDate|published|updated)>([^<]{5,60})</", path.read_bytes())
    ]
    assert all(parse_date(text) == public_parse_date(text) for text in texts[:300])
    print(f"{len(texts)} dates: {per_call_us(parse_date, texts):.1f} us each with the pinned parser, "
          f"{per_call_us(public_parse_date, texts):.1f} us through feedparser.parse()")  # fmt: skip
    bodies = [p.read_bytes() for p in sorted((DATA / "stories" / "rumca-dev" / "feeds").rglob("*")) if p.is_file()]
    pinned = fast_path_ms(bodies)
    fastparse.parse_date = public_parse_date  # type: ignore[assignment]
    public = fast_path_ms(bodies)
    started = time.perf_counter()
    for body in bodies:
        feedparser.parse(body, sanitize_html=False)
    whole = (time.perf_counter() - started) / len(bodies) * 1000
    print(f"fast path per real feed: {pinned:.1f} ms with the pinned parser, {public:.1f} ms with the public one; "
          f"feedparser alone {whole:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
