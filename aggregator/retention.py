"""Retention: prune stories whose newest entry is older than `retention.keep_days`, never one an output shows.

A story's age is the date of its newest entry (published or updated), not when we fetched it, so an old
article found in a newly added feed is pruned at the next prune; nothing inside the dedup window is pruned,
since a story there may still gain sources.

Pruned entries leave a tombstone (feed, guid, content hash) in the store, so a feed that still lists an old
entry does not bring it back on the next fetch (reader has this gap: deleted entries return). Tombstones are
kept for good; they are a few dozen bytes each.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .config import Config
from .store import PruneResult, Store

__all__ = ["prune_store", "shown_story_ids"]


def shown_story_ids(config: Config, store: Store, now: datetime) -> set[int]:
    """Ids of the stories the configured outputs show now (the selection publish_outputs makes)."""
    return {story.id for output in config.outputs for story in store.stories_for_output(output, now)}


def prune_store(
    config: Config, store: Store, now: datetime, *, keep_days: int | None = None, dry_run: bool = False
) -> PruneResult | None:
    """Prune what retention allows (`keep_days` overrides the config); None when retention is not set."""
    days = keep_days if keep_days is not None else config.retention.keep_days
    if days is None:
        return None
    keep_for = max(timedelta(days=days), timedelta(hours=config.dedup.window_hours))
    return store.prune(now - keep_for, shown_story_ids(config, store, now), now, dry_run=dry_run)
