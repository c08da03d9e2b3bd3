"""The service's logs: text lines, or one JSON object per line for log collectors (`--log-format json`).

Identical lines are collapsed (RepeatFilter): a client opening a thousand sockets, or a fault that recurs on
every tick, costs a line and a count per minute, not megabytes of log.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["REPEAT_PERIOD", "JsonFormatter", "RepeatFilter", "configure_logging"]

# Identical log lines within this many seconds are written once, then counted.
REPEAT_PERIOD = 60.0
# Distinct lines remembered at once; past it the oldest is forgotten (its count reported), bounding memory.
_MAX_REMEMBERED = 10_000

# Attributes of every LogRecord, and those a library adds that are not fields for a log shipper: uvicorn's
# `color_message` repeats the message with ANSI colour codes for its own terminal formatter.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update((key, value) for key, value in vars(record).items() if key not in _RECORD_FIELDS)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


@dataclass(slots=True)
class _Seen:
    first: logging.LogRecord
    repeats: int = 0


class RepeatFilter(logging.Filter):
    """A handler's filter that lets the first of identical lines through and counts the repeats for `period`.

    Lines are identical when logger, level and message are. When a period with repeats is over, one line
    reports them through `emit` (the handler's `handle`): the message, followed by "[N more like this in the
    last 60 s]", with the count in the record's `repeats` field (a field of its own in JSON logs). The times
    are the records' own, so the filter reads no clock.
    """

    def __init__(self, emit: Callable[[logging.LogRecord], object], period: float = REPEAT_PERIOD) -> None:
        super().__init__()
        self._emit = emit
        self.period = period
        self._seen: OrderedDict[tuple[str, int, str], _Seen] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """True for a line to write: a new one, or the report of repeats; False for a repeat within the period."""
        if hasattr(record, "repeats"):
            return True
        key = (record.name, record.levelno, record.getMessage())
        with self._lock:
            reports = self._expire(record.created)
            seen = self._seen.get(key)
            if seen is not None:
                seen.repeats += 1
            else:
                self._seen[key] = _Seen(record)
                if len(self._seen) > _MAX_REMEMBERED:
                    reports.extend(self._forget_oldest())
        for report in reports:
            self._emit(report)
        return seen is None

    def _expire(self, now: float) -> list[logging.LogRecord]:
        reports: list[logging.LogRecord] = []
        while self._seen and now - next(iter(self._seen.values())).first.created >= self.period:
            reports.extend(self._forget_oldest())
        return reports

    def _forget_oldest(self) -> list[logging.LogRecord]:
        _, seen = self._seen.popitem(last=False)
        return [_with_repeats(seen.first, seen.repeats, self.period)] if seen.repeats else []


def _with_repeats(first: logging.LogRecord, repeats: int, period: float) -> logging.LogRecord:
    """The line that reports `repeats` repeats of `first`, at the logger, level and place of `first`."""
    record = logging.LogRecord(
        first.name,
        first.levelno,
        first.pathname,
        first.lineno,
        "%s [%d more like this in the last %g s]",
        (first.getMessage(), repeats, period),
        None,
        first.funcName,
    )
    record.repeats = repeats
    return record


def _uvicorn_by_name(record: logging.LogRecord) -> bool:
    """uvicorn logs its start and stop on the logger `uvicorn.error`, at INFO: shown as `uvicorn`, so that a
    reader (or a log shipper's alert) does not take "Started server process" for an error."""
    if record.name == "uvicorn.error":
        record.name = "uvicorn"
    return True


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at `level`, as text lines or (fmt="json") one JSON object per line; repeats collapsed."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_uvicorn_by_name)
    handler.addFilter(RepeatFilter(handler.handle))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # APScheduler logs every job run and httpx every request at INFO, httpcore every socket event at DEBUG:
    # the service logs one line per fetch itself.
    for noisy in ("apscheduler", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
