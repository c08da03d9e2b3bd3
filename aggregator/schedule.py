"""When to poll each feed: pure functions of stored state, the last response and `now`.

The service is only a clock: it asks `is_due` / `select_due` which feeds to fetch and, after each fetch,
`plan_next_fetch` when to fetch that feed again. Nothing here reads the clock, sleeps or does I/O, and the
random jitter comes from a `random.Random` the caller passes, so every decision is reproducible in a test and
a restarted service resumes exactly the schedule it stored.

The rules, in order of precedence for one fetch:

1. 410 Gone disables the feed (with that reason) until the user re-enables it.
2. Any other failure backs off exponentially from the feed's interval (x2 per consecutive failure, capped at
   MAX_BACKOFF), never giving up; a 429 or 503 with Retry-After is not retried before it, and a 429 also
   holds back every feed of that host.
3. A success polls again about one interval later: the configured interval, or in adaptive mode one derived
   from how often the feed publishes (ADAPTIVE_MIN..ADAPTIVE_MAX) and raised to what the publisher declared
   (RSS <ttl>, sy:updatePeriod/updateFrequency, Cache-Control max-age, Expires), which are also hard lower
   bounds of the wait. "About": each feed has its own slot in the interval (`feed_slot`, a hash of its URL),
   so feeds are spread evenly and a late fetch does not push every later one back; one wait after a start
   or a delay may be as short as half an interval.
4. No wait is shorter than `min_interval`. Random jitter (up to `jitter` x interval) only ever makes a wait
   longer, or a capped backoff shorter, so that feeds configured alike do not fire together.
5. A permanent redirect (every hop 301/308) seen REDIRECT_CONFIRMATIONS times in a row to the same URL moves
   the feed there; a temporary redirect never does.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from .config import Config, FeedConfig
from .models import FeedSchedule, FetchResult, ParsedFeed, Plan

__all__ = [
    "ADAPTIVE_FACTOR",
    "ADAPTIVE_MAX",
    "ADAPTIVE_MIN",
    "ADAPTIVE_SAMPLE",
    "MAX_BACKOFF",
    "MAX_RETRY_AFTER",
    "QUIET_FACTOR",
    "REDIRECT_CONFIRMATIONS",
    "Policy",
    "adaptive_interval",
    "backoff_seconds",
    "cache_lifetime",
    "declared_interval",
    "feed_slot",
    "host_of",
    "is_due",
    "next_wake",
    "plan_next_fetch",
    "retry_after_seconds",
    "select_due",
]

# Bounds of the adaptive interval: a feed publishing every minute is still polled at most every 10 minutes
# (a reader does not need it sooner, and hosts of busy feeds are the ones that rate-limit), and a feed that
# publishes twice a year is still polled daily, so a revived feed is noticed within a day.
ADAPTIVE_MIN = 10 * 60.0
ADAPTIVE_MAX = 24 * 3600.0
# Poll about twice per typical gap between entries: a new entry then waits on average a quarter of the gap.
ADAPTIVE_FACTOR = 0.5
# A feed quiet for longer than its usual gap slows down to a quarter of the silence: a feed that published
# hourly and stopped 8 hours ago is polled every 2 hours, until it publishes again.
QUIET_FACTOR = 0.25
# How many of the newest entries describe "how often the feed publishes": about a day of a busy news feed.
ADAPTIVE_SAMPLE = 20
# Exponential backoff never waits longer than a day: a transient outage costs at most a day of news.
MAX_BACKOFF = 24 * 3600.0
# A Retry-After further out than a week is treated as a week: a misconfigured server must not park a feed
# for good (the issue: Miniflux users lose feeds to three transient errors).
MAX_RETRY_AFTER = 7 * 24 * 3600.0
# A permanent redirect must be seen this many fetches in a row, to the same target, before the stored URL
# moves: a site that 301s by mistake for an hour during a migration does not lose us the original URL.
REDIRECT_CONFIRMATIONS = 3

_SY_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}
# max-age, not s-maxage: we are a private cache
_MAX_AGE_RE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Policy:
    """The polling settings that apply to one feed (seconds), from feeds.yaml."""

    interval: float = 30 * 60.0
    min_interval: float = 5 * 60.0
    adaptive: bool = False
    jitter: float = 0.1

    @classmethod
    def from_config(cls, config: Config, feed: FeedConfig | None = None) -> Policy:
        """The policy of one configured feed: its own `interval`/`adaptive`, else the top-level ones."""
        interval = feed.interval if feed is not None and feed.interval is not None else config.interval
        adaptive = feed.adaptive if feed is not None and feed.adaptive is not None else config.adaptive
        return cls(interval=interval, min_interval=config.min_interval, adaptive=adaptive, jitter=config.jitter)


# --- which feeds are due ------------------------------------------------------------------------------------


def is_due(schedule: FeedSchedule, now: datetime) -> bool:
    """A feed is due when it is enabled and its next fetch time has come (or it was never fetched)."""
    if schedule.disabled_reason is not None:
        return False
    return schedule.next_fetch_at is None or schedule.next_fetch_at <= now


def select_due(
    schedules: Iterable[FeedSchedule],
    now: datetime,
    *,
    blocked_hosts: Mapping[str, datetime] | None = None,
    exclude: Iterable[int] = (),
    limit: int | None = None,
) -> list[FeedSchedule]:
    """The due feeds, most overdue first (never fetched before all), minus held hosts and `exclude` ids."""
    skip = set(exclude)
    held = {host for host, until in (blocked_hosts or {}).items() if until > now}
    due = [s for s in schedules if s.feed_id not in skip and is_due(s, now) and not (held and host_of(s.url) in held)]
    due.sort(key=lambda s: (s.next_fetch_at is not None, s.next_fetch_at or now, s.feed_id))
    return due if limit is None else due[:limit]


def next_wake(
    next_due: datetime | None, host_unblocks: Iterable[datetime], now: datetime, max_sleep: float
) -> datetime:
    """When the clock should look again: the next due time or host release, but never later than max_sleep."""
    latest = now + timedelta(seconds=max_sleep)
    candidates = [t for t in (next_due, *host_unblocks) if t is not None and t > now]
    return min([*candidates, latest])


def host_of(url: str) -> str:
    """The host part of a URL, lower-case, as politeness limits count it."""
    return (urlsplit(url).hostname or "").lower()


# --- when to poll again ---------------------------------------------------------------------------------------


def plan_next_fetch(
    schedule: FeedSchedule,
    result: FetchResult,
    policy: Policy,
    now: datetime,
    rng: random.Random,
    *,
    failed: bool,
    entry_times: Sequence[datetime] = (),
    declared: float | None = None,
) -> Plan:
    """Decide the next fetch of one feed after `result` (`failed` when the fetch or the parse failed).

    `declared` is the interval the feed declares (declared_interval of the document just read; of a document not
    read again, a 304 or the same bytes, what the last one declared: `schedule.declared_seconds`).
    """
    if failed:
        return _plan_failure(schedule, result, policy, now, rng)
    interval, reason = policy.interval, "interval"
    floor = policy.min_interval
    if policy.adaptive:
        derived = adaptive_interval(entry_times, now)
        if derived is not None:
            interval, reason = derived, "adaptive"
        bounds = [("declared", declared), ("cache", cache_lifetime(result.header, now))]
        for name, bound in bounds:
            if bound is not None:
                floor = max(floor, min(bound, ADAPTIVE_MAX))
                if min(bound, ADAPTIVE_MAX) > interval:
                    interval, reason = min(bound, ADAPTIVE_MAX), name
    if interval < policy.min_interval:
        interval, reason = policy.min_interval, "min_interval"
    slot = feed_slot(schedule.url, interval, now + timedelta(seconds=interval))
    wait = max((slot - now).total_seconds(), floor) + interval * rng.uniform(0, policy.jitter)
    redirect_url, redirect_count, move_to = _redirects(schedule, result)
    return Plan(
        feed_id=schedule.feed_id,
        next_fetch_at=_ceil_second(now + timedelta(seconds=wait)),
        interval_seconds=round(interval),
        reason=reason,
        declared_seconds=None if declared is None else round(declared),
        redirect_url=redirect_url,
        redirect_count=redirect_count,
        move_to=move_to,
    )


def feed_slot(url: str, interval: float, target: datetime) -> datetime:
    """The feed's own moment in each `interval` nearest to `target`; its phase is a hash of the URL.

    Like `H` in Jenkins cron lines: feeds that share an interval are spread evenly over it and keep their
    places across restarts, and a fetch made late returns to its place the next time instead of carrying
    the delay along, so a burst (the first start, a slow minute) does not repeat at every interval.
    """
    phase = int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "big") / 2**64 * interval
    cycles = round((target.timestamp() - phase) / interval)
    return datetime.fromtimestamp(cycles * interval + phase, UTC)


def _plan_failure(
    schedule: FeedSchedule, result: FetchResult, policy: Policy, now: datetime, rng: random.Random
) -> Plan:
    base = max(policy.interval, policy.min_interval)
    if result.http_status == 410:
        return Plan(
            feed_id=schedule.feed_id,
            next_fetch_at=None,
            interval_seconds=round(base),
            reason="gone",
            declared_seconds=schedule.declared_seconds,
            disabled_reason=result.error or "HTTP 410 Gone",
        )
    wait = max(backoff_seconds(schedule.error_count + 1, base, rng, policy.jitter), policy.min_interval)
    reason = "backoff"
    host = host_until = None
    if result.http_status in (429, 503):
        retry_after = retry_after_seconds(result.header("retry-after"), result.header("date"), now)
        if retry_after is not None and retry_after > wait:
            wait, reason = retry_after, "retry-after"
        if result.http_status == 429:
            host = host_of(result.final_url or result.url)
            hold = retry_after if retry_after is not None else wait
            host_until = _ceil_second(now + timedelta(seconds=hold))
    # a failure neither confirms nor breaks a redirect streak: the next success decides
    return Plan(
        feed_id=schedule.feed_id,
        next_fetch_at=_ceil_second(now + timedelta(seconds=wait)),
        interval_seconds=round(base),
        reason=reason,
        declared_seconds=schedule.declared_seconds,
        redirect_url=schedule.redirect_url,
        redirect_count=schedule.redirect_count,
        host=host,
        host_until=host_until,
    )


def _redirects(schedule: FeedSchedule, result: FetchResult) -> tuple[str | None, int, str | None]:
    """(redirect_url, consecutive sightings, URL to move to now) after a successful fetch."""
    target = result.final_url
    if not result.permanent_redirect or not target or target == schedule.url:
        return None, 0, None  # no redirect, or a temporary one: the streak is broken
    count = schedule.redirect_count + 1 if schedule.redirect_url == target else 1
    if count >= REDIRECT_CONFIRMATIONS:
        return None, 0, target
    return target, count, None


def backoff_seconds(failures: int, base: float, rng: random.Random, jitter: float = 0.1) -> float:
    """Wait after `failures` consecutive failures: base x 2^(failures-1), capped at MAX_BACKOFF, jittered down."""
    delay = min(MAX_BACKOFF, base * 2.0 ** min(max(failures, 1) - 1, 32))
    return delay * (1 - rng.uniform(0, jitter))


def retry_after_seconds(value: str | None, date: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks us to wait (delta-seconds or an HTTP date), capped; None if unusable.

    An HTTP date is measured against the response's own Date header when there is one, so a server whose
    clock is off still gets the wait it meant.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    moment = _http_date(value)
    if moment is None:
        return None
    reference = _http_date(date) if date else None
    seconds = (moment - (reference or now)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def cache_lifetime(header: Callable[[str], str | None], now: datetime) -> float | None:
    """How long the response says it stays fresh: Cache-Control max-age, else Expires minus Date."""
    control = header("cache-control")
    if control:
        if "no-store" in control.lower() or "no-cache" in control.lower():
            return None
        found = _MAX_AGE_RE.search(control)
        if found:
            return float(found.group(1)) or None
    expires = header("expires")
    if not expires:
        return None
    moment = _http_date(expires)
    if moment is None:
        return None
    date = header("date")
    reference = _http_date(date) if date else None
    seconds = (moment - (reference or now)).total_seconds()
    return seconds if seconds > 0 else None


def declared_interval(feed: ParsedFeed) -> float | None:
    """The shortest polling interval a feed document asks for: RSS <ttl>, or sy:updatePeriod/updateFrequency.

    When both are present the longer one wins: each is a lower bound.
    """
    found: list[float] = []
    if feed.ttl_minutes:
        found.append(feed.ttl_minutes * 60.0)
    period = _SY_PERIODS.get((feed.update_period or "").lower())
    times = feed.update_frequency if feed.update_frequency is not None else 1
    if period is not None and times > 0:
        found.append(period / times)
    return max(found) if found else None


def adaptive_interval(entry_times: Sequence[datetime], now: datetime) -> float | None:
    """An interval from how often the feed publishes, bounded to ADAPTIVE_MIN..ADAPTIVE_MAX; None if unknown.

    Uses the median gap between the newest ADAPTIVE_SAMPLE entry dates (robust to bursts), and the silence
    since the newest entry when that is unusually long. Dates in the future are ignored (bad feed clocks).
    """
    times = sorted({t for t in entry_times if t <= now}, reverse=True)[:ADAPTIVE_SAMPLE]
    if len(times) < 2:
        return None
    gaps = [(newer - older).total_seconds() for newer, older in itertools.pairwise(times)]
    interval = max(ADAPTIVE_FACTOR * statistics.median(gaps), QUIET_FACTOR * (now - times[0]).total_seconds())
    return min(max(interval, ADAPTIVE_MIN), ADAPTIVE_MAX)


def _http_date(text: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ceil_second(moment: datetime) -> datetime:
    """Round up to a whole second, the precision the store keeps, so the stored time is the planned one."""
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment
