"""Rows <-> models: the column lists the store writes and reads, and the conversions between them.

Times are ISO-8601 UTC text (`2026-11-26T03:12:01Z`), which sorts correctly as text.
"""

from __future__ import annotations

import json
import re
import sys
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..models import (
    DedupItem,
    Enclosure,
    Entry,
    FeedSchedule,
    FeedSource,
    FeedState,
    Story,
    StorySource,
    TermVector,
)
from .results import FeedHealth

__all__ = [
    "DATE_COLUMNS",
    "DEDUP_COLUMNS",
    "DEDUP_TEXT",
    "ENTRY_COLUMNS",
    "FEED_HEALTH_COLUMNS",
    "INSERT_ENTRY",
    "JOIN_TERMS",
    "MAX_ERROR_CHARS",
    "TERMS_COLUMNS",
    "UPDATE_ENTRY",
    "UPDATE_UNDATED_ENTRY",
    "dedup_item_from_row",
    "entry_row",
    "entry_values",
    "error_text",
    "feed_health_from_row",
    "feed_state_from_row",
    "format_time",
    "optional_time",
    "parse_time",
    "schedule_from_row",
    "story_from_row",
    "story_source_from_row",
    "term_vector_from_row",
    "term_vector_row",
    "without_dates",
]


# A stored problem (feeds.last_error) is one line of plain text: a feed's server writes part of it (the links an
# HTML page advertises, a status reason), so control characters and bidi overrides go, and it is capped.
MAX_ERROR_CHARS = 2_000
_NOT_IN_ERROR = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ERROR_SPACE = re.compile("[\t\n\r\x0b\x0c]+")


def error_text(message: str | None) -> str | None:
    """`message` as the one line stored in feeds.last_error (None stays None)."""
    if message is None:
        return None
    line = _NOT_IN_ERROR.sub("", _ERROR_SPACE.sub(" ", message[: MAX_ERROR_CHARS * 2])).strip()
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


ENTRY_COLUMNS = (
    "url, canonical_url, title, summary, summary_text, content, published, updated, "
    "authors, categories, enclosures, content_hash, source_hash"
)
INSERT_ENTRY = f"INSERT INTO entries (feed_id, guid, first_seen, {ENTRY_COLUMNS}) VALUES ({','.join('?' * 16)})"
UPDATE_ENTRY = "UPDATE entries SET {} WHERE id = ?".format(
    ", ".join(f"{name.strip()} = ?" for name in ENTRY_COLUMNS.split(","))
)
DATE_COLUMNS = (6, 7)  # published, updated: their places in ENTRY_COLUMNS
UPDATE_UNDATED_ENTRY = "UPDATE entries SET {} WHERE id = ?".format(
    ", ".join(f"{name.strip()} = ?" for i, name in enumerate(ENTRY_COLUMNS.split(",")) if i not in DATE_COLUMNS)
)
# With a stored term vector, an entry's summary text is not read (the bulk of its row, often overflow pages).
DEDUP_TEXT = "CASE WHEN t.entry_id IS NULL THEN e.summary_text ELSE '' END"
DEDUP_COLUMNS = (
    f"e.id, e.feed_id, e.title, {DEDUP_TEXT}, e.canonical_url, e.published, "
    "t.terms, t.weights, t.keys, t.title_key, t.title_weight, t.headline, t.has_summary"
)
JOIN_TERMS = "LEFT JOIN entry_terms t ON t.entry_id = e.id"
TERMS_COLUMNS = "entry_id, terms, weights, keys, title_key, title_weight, headline, has_summary"


def entry_values(entry: Entry) -> tuple[Any, ...]:
    """An entry's values for ENTRY_COLUMNS, in order."""
    return (
        entry.url,
        entry.canonical_url,
        entry.title,
        entry.summary,
        entry.summary_text,
        entry.content,
        format_time(entry.published),
        format_time(entry.updated),
        json.dumps(list(entry.authors), ensure_ascii=False),
        json.dumps(list(entry.categories), ensure_ascii=False),
        json.dumps([[e.url, e.type, e.length] for e in entry.enclosures], ensure_ascii=False),
        entry.content_hash,
        entry.source_hash or None,
    )


def without_dates(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """An UPDATE_ENTRY row without its published and updated values, for UPDATE_UNDATED_ENTRY."""
    return tuple(value for i, value in enumerate(row) if i not in DATE_COLUMNS)


def entry_row(feed_id: int, entry: Entry, first_seen: str) -> tuple[Any, ...]:
    """A new entry's values for INSERT_ENTRY."""
    return (feed_id, entry.guid, first_seen, *entry_values(entry))


def dedup_item_from_row(row: Sequence[Any]) -> DedupItem:
    """A row of DEDUP_COLUMNS as what clustering looks at."""
    return DedupItem(
        entry_id=row[0],
        feed_id=row[1],
        title=row[2],
        summary_text=row[3],
        canonical_url=row[4],
        published=parse_time(row[5]),
        terms=term_vector_from_row(row[6:13]),
    )


def term_vector_row(entry_id: int, v: TermVector) -> tuple[Any, ...]:
    """An entry's term vector as a row of entry_terms (TERMS_COLUMNS)."""
    # both float arrays in one blob: the unit weights, then the raw weights
    return (entry_id, " ".join(v.terms), v.weights.tobytes() + v.raw.tobytes(), " ".join(v.keys), v.title_key,
            v.title_weight, int(v.headline), int(v.has_summary))  # fmt: skip


def term_vector_from_row(row: Sequence[Any]) -> TermVector | None:
    """A stored term vector; None when there is none (or it does not add up: then it is rebuilt from text)."""
    terms, blob, keys, title_key, title_weight, headline, has_summary = row
    if terms is None or not isinstance(blob, bytes) or len(blob) % 16:
        return None
    words = tuple(map(sys.intern, terms.split(" "))) if terms else ()
    values = array("d")
    values.frombytes(blob)
    half = len(values) // 2
    if half != len(words):
        return None
    return TermVector(
        terms=words,
        weights=values[:half],
        raw=values[half:],
        keys=tuple(map(sys.intern, keys.split(" "))) if keys else (),
        title_key=title_key,
        title_weight=title_weight,
        headline=bool(headline),
        has_summary=bool(has_summary),
    )


def schedule_from_row(row: dict[str, Any]) -> FeedSchedule:
    """A feeds row as what scheduling knows of the feed."""
    return FeedSchedule(
        feed_id=row["id"],
        url=row["fetch_url"] or row["url"],
        next_fetch_at=parse_time(row["next_fetch_at"]) if row["next_fetch_at"] else None,
        error_count=row["error_count"],
        disabled_reason=row["disabled_reason"],
        interval_seconds=row["interval_seconds"],
        declared_seconds=row["declared_interval_seconds"],
        redirect_url=row["redirect_url"],
        redirect_count=row["redirect_count"],
    )


def feed_state_from_row(row: dict[str, Any]) -> FeedState:
    """A feeds row as what a conditional GET needs."""
    return FeedState(
        feed_id=row["id"],
        url=row.get("fetch_url") or row["url"],  # a confirmed permanent redirect is fetched at its target
        etag=row["etag"],
        last_modified=row["last_modified"],
        body_hash=row["body_hash"],
    )


def story_source_from_row(row: dict[str, Any]) -> StorySource:
    """One outlet's report of a story (its feed, its own headline and link), as the outputs list it."""
    return StorySource(
        feed_title=row["feed_title"],
        feed_url=row["feed_url"],
        site_url=row["site_url"],
        title=row["title"],
        url=row["url"],
        published=parse_time(row["published"]),
    )


def story_from_row(row: dict[str, Any], sources: tuple[StorySource, ...]) -> Story:
    """A stories row joined with its lead entry's text, and its outlets, as an output's Story."""
    return Story(
        id=row["id"],
        uid=row["uid"],
        title=row["title"],
        url=row["url"],
        summary=row["summary"],
        content=row["content"],
        published=parse_time(row["published"]),
        updated=parse_time(row["updated"]),
        authors=tuple(json.loads(row["authors"] or "[]")),
        categories=tuple(json.loads(row["categories"] or "[]")),
        enclosures=tuple(Enclosure(*e) for e in json.loads(row["enclosures"] or "[]")),
        sources=sources,
        latest=optional_time(row.get("latest")),
    )


def optional_time(text: str | None) -> datetime | None:
    """parse_time for a column that may be NULL."""
    return parse_time(text) if text else None


FEED_HEALTH_COLUMNS = (
    "id, url, title, tags, failing_since, error_count, last_status, last_error, disabled_reason, "
    "last_fetched_at, next_fetch_at, last_new_entry_at, entries"
)


def feed_health_from_row(row: Sequence[Any], source: FeedSource | None) -> FeedHealth:
    """A row of FEED_HEALTH_COLUMNS as a line of `aggregator feeds`; `source` is its feed in the config, if any."""
    (feed_id, url, title, tags, failing_since, error_count, last_status, last_error, disabled_reason,
     last_fetched_at, next_fetch_at, last_new_entry_at, entries) = row  # fmt: skip
    # The view's status, except that the config, not the last pass, says whether a feed is still subscribed.
    if disabled_reason:
        status = "disabled"
    elif source is None:
        status = "removed"
    elif failing_since:
        status = "failing"
    elif last_fetched_at is None:
        status = "new"
    else:
        status = "ok"
    return FeedHealth(
        url=url,
        title=(source.title if source else None) or title,
        tags=source.tags if source else tuple(json.loads(tags)),
        status=status,
        id=feed_id,
        failing_since=optional_time(failing_since),
        error_count=error_count,
        last_status=last_status,
        last_error=last_error,
        last_fetched_at=optional_time(last_fetched_at),
        next_fetch_at=optional_time(next_fetch_at),
        last_new_entry_at=optional_time(last_new_entry_at),
        entries=entries,
        disabled_reason=disabled_reason or None,
    )


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC text as stored: `2026-11-26T03:12:01Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """The inverse of format_time."""
    # fromisoformat reads `...Z` (Python 3.11) and costs a tenth of strptime, which dominated search and
    # `feeds` latency (benchmarks/query.py).
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
