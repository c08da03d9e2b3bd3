"""Health: what the store says of each feed's state, for `aggregator feeds` and the service's /health."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import FeedSource
from .base import StoreBase
from .results import FeedHealth
from .rows import FEED_HEALTH_COLUMNS, feed_health_from_row

__all__ = ["HealthMixin"]


class HealthMixin(StoreBase):
    """Feeds by status, from the feed_health view and the feeds table."""

    def feed_table(self, sources: Sequence[FeedSource], *, include_removed: bool = False) -> list[FeedHealth]:
        """The health of the configured feeds, in config order; then feeds no longer configured, if asked."""
        # Named columns, not *: the view's newest_entry costs a 1,000,000-entry index probe per feed.
        rows = self._query(f"SELECT {FEED_HEALTH_COLUMNS} FROM feed_health ORDER BY id")
        by_url = {row[1]: row for row in rows}
        table = [
            feed_health_from_row(by_url[source.url], source)
            if source.url in by_url
            else FeedHealth(url=source.url, title=source.title or source.url, tags=source.tags)
            for source in sources
        ]
        if include_removed:
            configured = {source.url for source in sources}
            table.extend(feed_health_from_row(row, None) for row in rows if row[1] not in configured)
        return table

    def feed_counts(self) -> dict[str, Any]:
        """Active feeds by health (ok, failing, disabled, new) and the last fetch time, for /health."""
        row = self._rows(
            """SELECT count(*) AS total,
                      coalesce(sum(disabled_reason IS NOT NULL), 0) AS disabled,
                      coalesce(sum(disabled_reason IS NULL AND failing_since IS NOT NULL), 0) AS failing,
                      coalesce(sum(disabled_reason IS NULL AND failing_since IS NULL
                                   AND last_fetched_at IS NULL), 0) AS new,
                      max(last_fetched_at) AS last_fetched_at
               FROM feeds WHERE active = 1"""
        )[0]
        row["ok"] = row["total"] - row["disabled"] - row["failing"] - row["new"]
        return row
