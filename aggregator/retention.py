"""Retention: prune stories whose newest entry is older than `retention.keep_days`, never one an output shows.

A story's age is the date of its newest entry (published or updated), not when we fetched it, so an old
article found in a newly added feed is pruned at the next prune; nothing inside the dedup window is pruned,
since a story there may still gain sources.

Pruned entries leave a tombstone (feed, guid, content hash) in the store, so a feed that still lists an old
entry does not bring it back on the next fetch (reader has this gap: deleted entries return). A tombstone is
needed only while its feed lists the entry: each new document of the feed marks the tombstones it lists
(`tombstones.listed`), and prune forgets the others once they are older than the dedup window (a feed that
rotates entries in and out of its document does not bring one back at once).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .config import Config
from .publish import stories_for_output
from .store import PruneResult, Store

__all__ = ["prune_store", "shown_story_ids"]


def shown_story_ids(config: Config, store: Store, now: datetime) -> set[int]:
    """Ids of the stories the configured outputs show now (the selection publish_outputs makes)."""
    return {story.id for output in config.outputs for story in stories_for_output(store, output, now)}


def prune_store(
    config: Config, store: Store, now: datetime, *, keep_days: int | None = None, dry_run: bool = False
) -> PruneResult | None:
    """Prune what retention allows (`keep_days` overrides the config); None when retention is not set."""
    days = keep_days if keep_days is not None else config.retention.keep_days
    if days is None:
        return None
    window = timedelta(hours=config.dedup.window_hours)
    keep_for = max(timedelta(days=days), window)
    shown = shown_story_ids(config, store, now)
    return store.prune(now - keep_for, shown, now, dry_run=dry_run, tombstones_before=now - window)
