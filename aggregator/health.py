"""What the service's /health reports: its state, the last pass and publish, feeds by status, scheduling drift and
the process's usage, as JSON-ready data (README, The service)."""

from __future__ import annotations

import resource
import statistics
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import __version__
from .poller import PollStats
from .store import format_time

__all__ = ["health_report"]


def health_report(
    *,
    state: str,
    started_at: datetime | None,
    feeds: Mapping[str, Any],
    polling: PollStats | None,
    last_publish: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The /health document; `feeds` is Store.feed_counts(), `polling` None for a service that only serves.

    "status" is "failing" (HTTP 503) when every feed that was fetched is failing.
    """
    counts = dict(feeds)
    last_fetched_at = counts.pop("last_fetched_at", None)
    failing = bool(counts.get("total")) and not counts.get("ok") and bool(counts.get("failing"))
    drift = sorted(polling.drift) if polling is not None else []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return {
        "status": "failing" if failing else "ok",
        "state": state,
        "version": __version__,
        "started_at": format_time(started_at) if started_at else None,
        "polling": polling is not None,
        "last_pass": polling.last_pass if polling is not None else None,
        "last_publish": last_publish,
        "last_fetched_at": last_fetched_at,
        "feeds": counts,
        "in_flight": polling.in_flight if polling is not None else 0,
        "fetches": polling.fetches if polling is not None else 0,
        # CPU spent deciding what to poll and when (selection, planning, storing plans, the clock), as opposed
        # to fetching, parsing and storing the feeds themselves
        "scheduler_cpu_seconds": round(polling.scheduler_cpu_seconds, 3) if polling is not None else 0.0,
        "drift_seconds": {
            "samples": len(drift),
            "median": round(statistics.median(drift), 3) if drift else None,
            "p99": round(drift[min(len(drift) - 1, int(len(drift) * 0.99))], 3) if drift else None,
        },
        "process": {
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "max_rss_mb": round(usage.ru_maxrss / scale, 1),
        },
    }
