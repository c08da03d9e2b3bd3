"""Small immutable values passed between the pipeline stages.

Named by lifecycle, as in lemon24/reader: *Parsed* is what a feed said, *Entry* is what we store, *Story* is
what we publish. Every datetime is timezone-aware UTC.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "Assignment",
    "Clock",
    "DedupItem",
    "Enclosure",
    "Entry",
    "FeedOutcome",
    "FeedSchedule",
    "FeedSource",
    "FeedState",
    "FetchResult",
    "FetchStatus",
    "OutputMeta",
    "ParsedEntry",
    "ParsedFeed",
    "PassSummary",
    "Plan",
    "Story",
    "StorySource",
    "TermVector",
]

# Where the service and its parts read the time (UTC); tests pass a clock they move by hand.
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class FeedSource:
    """A feed as configured in feeds.yaml."""

    url: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers of a feed between fetches: enough for a conditional GET."""

    feed_id: int
    url: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None


@dataclass(frozen=True, slots=True)
class FeedSchedule:
    """What the store remembers of a feed's polling: the input of every decision of schedule.py."""

    feed_id: int
    url: str
    next_fetch_at: datetime | None = None
    error_count: int = 0
    disabled_reason: str | None = None
    interval_seconds: int | None = None
    declared_seconds: int | None = None
    redirect_url: str | None = None
    redirect_count: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What to store after one fetch: when to poll next and why, and any move, disabling or host hold."""

    feed_id: int
    next_fetch_at: datetime | None
    interval_seconds: int
    reason: str
    declared_seconds: int | None = None
    redirect_url: str | None = None
    redirect_count: int = 0
    move_to: str | None = None
    disabled_reason: str | None = None
    host: str | None = None
    host_until: datetime | None = None


class FetchStatus(StrEnum):
    """How one fetch ended."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one HTTP GET of a feed; `body` is set only for a 200."""

    url: str
    status: FetchStatus
    http_status: int | None = None
    final_url: str | None = None
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    elapsed_ms: float = 0.0
    permanent_redirect: bool = False

    @property
    def body_hash(self) -> str | None:
        """A digest of the body, to skip parsing when a server resends the same bytes."""
        return hashlib.sha256(self.body).hexdigest()[:32] if self.body is not None else None

    def header(self, name: str) -> str | None:
        """Return the first response header called `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class Enclosure:
    """A media file attached to an entry (podcast audio, an image)."""

    url: str
    type: str | None = None
    length: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One entry as the feed published it, before normalizing. HTML fields are unsanitized."""

    id: str | None = None
    link: str | None = None
    title: str | None = None
    summary: str | None = None
    content: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    enclosures: tuple[Enclosure, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A whole feed document as parsed: its metadata and entries in document order."""

    title: str | None = None
    link: str | None = None
    entries: tuple[ParsedEntry, ...] = ()
    version: str = ""
    # how often the publisher says to poll: RSS <ttl>, and the syndication module's sy:updatePeriod (hourly,
    # daily, weekly, monthly, yearly) divided by sy:updateFrequency
    ttl_minutes: int | None = None
    update_period: str | None = None
    update_frequency: int | None = None
    # set when the document was malformed but feedparser recovered entries from it
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """A normalized entry, ready to store: clean text, sanitized HTML, canonical URL, UTC dates."""

    guid: str
    url: str | None
    canonical_url: str | None
    title: str
    summary: str | None
    summary_text: str
    content: str | None
    published: datetime
    updated: datetime
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    enclosures: tuple[Enclosure, ...] = ()
    content_hash: str = ""
    # the entry as the feed sent it (normalize.source_hash): unchanged, it is not normalized again
    source_hash: str = ""
    # False when the feed gave no usable date and `published` is when we first saw it: such an entry keeps
    # its first date when it is stored again
    dated: bool = True
    # what story matching needs of the text, built by the pass (dedup.term_vector) and stored beside the
    # entry; None: computed when the entry is clustered
    terms: TermVector | None = None


@dataclass(frozen=True, slots=True)
class TermVector:
    """An entry's text as story matching sees it: weighted terms and the keys to exact matches.

    Built once per entry (dedup.term_vector), stored in `entry_terms`, read back when the dedup index is
    seeded, so no pass re-reads the text of the whole window. The arrays are float64, parallel to `terms`.
    """

    terms: tuple[str, ...]
    weights: array[float]  # the unit vector
    raw: array[float]  # each term's informative weight (its share of "shared weight")
    keys: tuple[str, ...]  # the terms candidates are found by: those of the title and the URL slug
    title_key: str  # the normalized title, for exact-title matches
    title_weight: float  # the informative weight of the title's words
    headline: bool  # short enough to be a headline (else it never matches by similarity)
    has_summary: bool  # built from a summary too (entries with titles only need a lower threshold)


@dataclass(frozen=True, slots=True)
class StorySource:
    """One outlet's report of a story, as shown in the output."""

    feed_title: str
    feed_url: str
    site_url: str | None
    title: str
    url: str | None
    published: datetime


@dataclass(frozen=True, slots=True)
class Story:
    """One aggregated story: its lead entry's text plus every outlet that reported it."""

    id: int
    uid: str
    title: str
    url: str | None
    summary: str | None
    published: datetime
    updated: datetime
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    enclosures: tuple[Enclosure, ...] = ()
    sources: tuple[StorySource, ...] = ()
    content: str | None = None
    # when the newest report was published: outputs list stories by it, newest first (None: `published`)
    latest: datetime | None = None


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    """What one feed's part of a pass did; a failure is a value here, never an exception."""

    url: str
    status: FetchStatus
    new: int = 0
    updated: int = 0
    error: str | None = None
    http_status: int | None = None
    elapsed_ms: float = 0.0
    bytes: int = 0
    # the polling interval the document read declares (schedule.declared_interval), seconds
    declared_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class PassSummary:
    """Totals of one update pass, as printed by `aggregator update`."""

    outcomes: tuple[FeedOutcome, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    clustered: int = 0
    cluster_seconds: float = 0.0

    @property
    def ok(self) -> int:
        """Feeds fetched and stored."""
        return sum(o.status is FetchStatus.OK for o in self.outcomes)

    @property
    def not_modified(self) -> int:
        """Feeds that answered 304 or an unchanged body."""
        return sum(o.status is FetchStatus.NOT_MODIFIED for o in self.outcomes)

    @property
    def failed(self) -> int:
        """Feeds whose fetch or parse failed."""
        return sum(o.status is FetchStatus.FAILED for o in self.outcomes)

    @property
    def new(self) -> int:
        """Entries stored for the first time."""
        return sum(o.new for o in self.outcomes)

    @property
    def updated(self) -> int:
        """Entries whose content changed."""
        return sum(o.updated for o in self.outcomes)

    def as_dict(self) -> dict[str, object]:
        """The summary as plain JSON-ready data."""
        return {
            "feeds": len(self.outcomes),
            "ok": self.ok,
            "not_modified": self.not_modified,
            "failed": self.failed,
            "entries_new": self.new,
            "entries_updated": self.updated,
            "seconds": round(self.seconds, 3),
            "clustered": self.clustered,
            "cluster_seconds": round(self.cluster_seconds, 3),
            "errors": [{"url": o.url, "error": o.error} for o in self.outcomes if o.error],
        }


@dataclass(frozen=True, slots=True)
class DedupItem:
    """The part of a stored entry that story clustering looks at."""

    entry_id: int
    feed_id: int
    title: str
    summary_text: str
    canonical_url: str | None
    published: datetime
    # as stored (and then `summary_text` is not read from the store: the vector is all that is needed);
    # None: dedup builds it from the text
    terms: TermVector | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which story an entry joins and why; `story_id` None means it starts a new story."""

    entry_id: int
    story_id: int | None
    method: str
    score: float


@dataclass(frozen=True, slots=True)
class OutputMeta:
    """Feed-level facts of one output document, taken from its `outputs:` entry in feeds.yaml."""

    title: str
    format: str
    id: str
    self_url: str | None = None
    site_url: str | None = None
    hub_url: str | None = None
    description: str | None = None
    # (title, media type, href) of the other outputs, for HTML autodiscovery links
    alternates: tuple[tuple[str, str, str], ...] = ()
    # The time of the pass that writes the output: the `updated` of an output with no story. One with stories
    # is dated by its newest story, so that an unchanged store gives the same bytes.
    pass_time: datetime | None = None
