"""Schedules: each feed's next fetch, the hosts held back after a 429, and the plans the service stores.

What to plan is decided by schedule.py (pure); this stores its `Plan`s and answers the clock's questions
(which feeds are due, when the next one is).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..models import FeedSchedule, FeedState, Plan
from .base import StoreBase
from .rows import feed_state_from_row, format_time, parse_time, schedule_from_row

__all__ = ["SchedulesMixin"]

# Feeds due by a time: ordered by the partial index feeds_next_fetch, so the scan stops at the first future one.
_DUE_SQL = """SELECT * FROM feeds WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at <= ?
              ORDER BY next_fetch_at, id"""


class SchedulesMixin(StoreBase):
    """The scheduling columns of feeds and the host_holds table."""

    def feed_schedules(self) -> dict[int, FeedSchedule]:
        """What scheduling knows of every active feed, by id (disabled ones included)."""
        return {row["id"]: schedule_from_row(row) for row in self._rows("SELECT * FROM feeds WHERE active = 1")}

    def due_feeds(
        self, now: datetime, *, limit: int | None = None, exclude: Iterable[int] = ()
    ) -> list[tuple[FeedState, FeedSchedule]]:
        """Active, enabled feeds whose next fetch time has come (never fetched first), minus `exclude` ids."""
        skip = set(exclude)
        rows = self._rows(
            f"""SELECT * FROM (SELECT * FROM feeds
                                 WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at IS NULL ORDER BY id)
                UNION ALL SELECT * FROM ({_DUE_SQL}) LIMIT ?""",
            (format_time(now), -1 if limit is None else limit + len(skip)),
        )
        due = [(feed_state_from_row(row), schedule_from_row(row)) for row in rows if row["id"] not in skip]
        return due if limit is None else due[:limit]

    def next_fetch_after(self, moment: datetime) -> datetime | None:
        """The earliest planned fetch strictly after `moment`, among active, enabled feeds."""
        [(first,)] = self._query(
            """SELECT min(next_fetch_at) FROM feeds
               WHERE active = 1 AND disabled_reason IS NULL AND next_fetch_at > ?""",
            (format_time(moment),),
        )
        return parse_time(first) if first else None

    def host_holds(self, now: datetime) -> dict[str, datetime]:
        """Hosts that asked us (429) to wait, with the time until which they are held; expired ones are gone."""
        rows = self._rows("SELECT host, until FROM host_holds WHERE until > ?", (format_time(now),))
        return {row["host"]: parse_time(row["until"]) for row in rows}

    def entry_times(self, feed_id: int, limit: int = 20) -> list[datetime]:
        """Publication dates of a feed's newest entries, newest first (for the adaptive interval)."""
        rows = self._query(
            "SELECT published FROM entries WHERE feed_id = ? ORDER BY published DESC LIMIT ?", (feed_id, limit)
        )
        return [parse_time(row[0]) for row in rows]

    def record_schedule(self, plan: Plan, now: datetime) -> str | None:
        """Store a plan for one feed in one transaction; returns "moved" or "duplicate" when it moved the feed."""
        stamp = format_time(now)
        moved: str | None = None
        with self.transaction():
            conn = self.db.conn
            conn.execute(
                """UPDATE feeds SET next_fetch_at = ?, interval_seconds = ?, schedule_reason = ?,
                       declared_interval_seconds = ?, redirect_url = ?, redirect_count = ?,
                       disabled_reason = COALESCE(?, disabled_reason),
                       disabled_at = CASE WHEN ? IS NULL THEN disabled_at ELSE ? END
                   WHERE id = ?""",
                (
                    None if plan.next_fetch_at is None else format_time(plan.next_fetch_at),
                    plan.interval_seconds, plan.reason, plan.declared_seconds, plan.redirect_url,
                    plan.redirect_count, plan.disabled_reason, plan.disabled_reason, stamp, plan.feed_id,
                ),
            )  # fmt: skip
            if plan.host is not None and plan.host_until is not None:
                conn.execute("DELETE FROM host_holds WHERE until <= ?", (stamp,))  # expired ones
                conn.execute(
                    """INSERT INTO host_holds (host, until, reason) VALUES (?, ?, ?)
                       ON CONFLICT (host) DO UPDATE SET until = max(until, excluded.until), reason = excluded.reason""",
                    (plan.host, format_time(plan.host_until), plan.reason),
                )
            if plan.move_to is not None:
                moved = self._move_feed(plan.feed_id, plan.move_to, stamp)
        return moved

    def _move_feed(self, feed_id: int, target: str, stamp: str) -> str:
        conn = self.db.conn
        taken = conn.execute(
            "SELECT 1 FROM feeds WHERE (url = ? OR fetch_url = ?) AND id != ?", (target, target, feed_id)
        ).fetchone()
        if taken:
            conn.execute(
                "UPDATE feeds SET disabled_reason = ?, disabled_at = ?, next_fetch_at = NULL WHERE id = ?",
                (f"moved permanently to {target}, which is already a feed here", stamp, feed_id),
            )
            return "duplicate"
        conn.execute(
            """UPDATE feeds SET fetch_url = CASE WHEN url = ? THEN NULL ELSE ? END,
                   redirect_url = NULL, redirect_count = 0 WHERE id = ?""",
            (target, target, feed_id),
        )
        return "moved"
