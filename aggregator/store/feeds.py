"""Feeds: the subscriptions of feeds.yaml as rows, and what each fetch that stored no entry leaves on its feed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ..models import FeedSource, FeedState, FetchResult
from .base import StoreBase
from .rows import error_text, feed_state_from_row, format_time

__all__ = ["FeedsMixin"]


class FeedsMixin(StoreBase):
    """The feeds table: syncing it with the config, looking feeds up, recording fetches that stored nothing."""

    def sync_feeds(self, sources: Sequence[FeedSource], now: datetime) -> dict[str, FeedState]:
        """Make the feeds table match the config (new feeds added, removed ones marked inactive)."""
        stamp = format_time(now)
        with self.transaction():
            conn = self.db.conn
            self._adopt_moved_feeds(sources)
            conn.execute("UPDATE feeds SET active = 0")
            conn.executemany(
                """INSERT INTO feeds (url, configured_title, tags, priority, active, created_at)
                   VALUES (?, ?, ?, ?, 1, ?)
                   ON CONFLICT (url) DO UPDATE SET configured_title = excluded.configured_title,
                       tags = excluded.tags, priority = excluded.priority, active = 1""",
                [(s.url, s.title, json.dumps(list(s.tags)), s.priority, stamp) for s in sources],
            )
        return {row["url"]: feed_state_from_row(row) for row in self._rows("SELECT * FROM feeds WHERE active = 1")}

    def _adopt_moved_feeds(self, sources: Sequence[FeedSource]) -> None:
        # A feed moved by a permanent redirect whose new URL is now in feeds.yaml (instead of the old one)
        # keeps its row, so its entries are not fetched again as a new feed.
        conn = self.db.conn
        moved = conn.execute("SELECT id, url, fetch_url FROM feeds WHERE fetch_url IS NOT NULL").fetchall()
        if not moved:
            return
        configured = {source.url for source in sources}
        for feed_id, url, fetch_url in moved:
            if fetch_url not in configured or url in configured:
                continue
            if conn.execute("SELECT 1 FROM feeds WHERE url = ?", (fetch_url,)).fetchone() is None:
                conn.execute("UPDATE feeds SET url = fetch_url, fetch_url = NULL WHERE id = ?", (feed_id,))

    def enable_feed(self, url: str, now: datetime) -> bool | None:
        """Poll a disabled feed again, from the next pass on, as if new: True when it was disabled, False when
        it was not (nothing changes), None when no feed has that URL."""
        with self.transaction():
            cursor = self.db.conn.execute(
                """UPDATE feeds SET disabled_reason = NULL, disabled_at = NULL, error_count = 0,
                       failing_since = NULL, next_fetch_at = ? WHERE url = ? AND disabled_reason IS NOT NULL""",
                (format_time(now), url),
            )
            if cursor.rowcount:
                return True
            return False if self.db.conn.execute("SELECT 1 FROM feeds WHERE url = ?", (url,)).fetchone() else None

    def feeds(self) -> list[dict[str, Any]]:
        """Every feed row, active ones first, as plain dictionaries."""
        return self._rows("SELECT * FROM feeds ORDER BY active DESC, id")

    def feed_ids_with_tags(self, tags: Iterable[str]) -> set[int]:
        """Ids of active feeds carrying any of `tags`."""
        wanted = set(tags)
        return {row["id"] for row in self._rows("SELECT id, tags FROM feeds") if wanted & set(json.loads(row["tags"]))}

    def feed_ids_with_urls(self, urls: Iterable[str]) -> set[int]:
        """Ids of the feeds with these URLs."""
        wanted = set(urls)
        return {row["id"] for row in self._rows("SELECT id, url FROM feeds") if row["url"] in wanted}

    def feed_priorities(self) -> dict[int, int]:
        """Each feed's `priority` from feeds.yaml, by feed id (a higher one leads the stories it reports)."""
        return {row["id"]: row["priority"] for row in self._rows("SELECT id, priority FROM feeds")}

    def record_not_modified(self, state: FeedState, result: FetchResult, now: datetime) -> None:
        """A 304 (or an unchanged body): remember the fetch and any new validators; nothing else changes."""
        with self.transaction():
            self.db.conn.execute(
                """UPDATE feeds SET etag = ?, last_modified = ?, last_fetched_at = ?, last_status = ?,
                       last_error = NULL, error_count = 0, failing_since = NULL WHERE id = ?""",
                (result.etag, result.last_modified, format_time(now), result.http_status, state.feed_id),
            )

    def record_failure(self, state: FeedState, http_status: int | None, error: str, now: datetime) -> None:
        """A failed fetch or parse: the error is stored on the feed; its entries stay as they were."""
        stamp = format_time(now)
        with self.transaction():
            self.db.conn.execute(
                """UPDATE feeds SET last_fetched_at = ?, last_status = ?, last_error = ?,
                       error_count = error_count + 1, failing_since = COALESCE(failing_since, ?)
                   WHERE id = ?""",
                (stamp, http_status, error_text(error), stamp, state.feed_id),
            )
