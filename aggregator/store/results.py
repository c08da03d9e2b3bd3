"""What the store's queries return beyond the pipeline's models: small frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..models import (
    StorySource,
)

__all__ = [
    "FeedHealth",
    "Highlighted",
    "PruneResult",
    "SavedFeed",
    "SearchMatch",
    "SearchResult",
]


@dataclass(frozen=True, slots=True)
class SavedFeed:
    """What one feed's update wrote: ids of entries stored for the first time, and how many changed."""

    new_ids: tuple[int, ...]
    updated: int


@dataclass(frozen=True, slots=True)
class Highlighted:
    """Text with the character spans a search matched, as (start, end) offsets."""

    text: str
    spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SearchMatch:
    """One entry that matched a search: its title and a snippet of its summary, highlighted."""

    entry_id: int
    feed_id: int
    feed_title: str
    feed_url: str
    title: Highlighted
    snippet: Highlighted
    url: str | None
    published: datetime
    # bm25 with title hits weighted 4:1 over summary hits, sign flipped so that higher is better
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One story (or a lone entry not yet in a story) with the entries of it that matched, best first."""

    story_id: int | None
    story_uid: str | None
    title: str
    url: str | None
    published: datetime
    feed_count: int
    score: float
    matches: tuple[SearchMatch, ...]
    sources: tuple[StorySource, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """One row of `aggregator feeds`: a feed's status and what the store holds of it."""

    url: str
    title: str
    tags: tuple[str, ...] = ()
    # ok, failing, new (never fetched), disabled (by the scheduler, see disabled_reason) or removed
    status: str = "new"
    id: int | None = None
    failing_since: datetime | None = None
    error_count: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_fetched_at: datetime | None = None
    next_fetch_at: datetime | None = None
    last_new_entry_at: datetime | None = None
    entries: int = 0
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What `Store.prune` removed (or would remove, on a dry run)."""

    cutoff: datetime
    entries: int
    stories: int
    # old stories kept because an output still shows them
    kept_stories: int
    dry_run: bool = False
    # tombstones forgotten: their feeds no longer list the entries
    tombstones: int = 0
