"""schedule.py: which feeds are due and when each is polled again, as pure functions of state and `now`."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from aggregator.config import parse_config
from aggregator.models import FeedSchedule, FetchResult, FetchStatus, ParsedFeed
from aggregator.parse import parse_feed
from aggregator.schedule import (
    ADAPTIVE_MAX,
    ADAPTIVE_MIN,
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    REDIRECT_CONFIRMATIONS,
    Policy,
    adaptive_interval,
    backoff_seconds,
    cache_lifetime,
    declared_interval,
    feed_slot,
    host_of,
    is_due,
    next_wake,
    plan_next_fetch,
    retry_after_seconds,
    select_due,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
URL = "https://news.example/feed.xml"
FIXED = Policy(interval=1800, min_interval=300, adaptive=False, jitter=0.0)
ADAPTIVE = Policy(interval=1800, min_interval=300, adaptive=True, jitter=0.0)


def feed(**changes: object) -> FeedSchedule:
    values: dict[str, object] = {"feed_id": 1, "url": URL}
    values.update(changes)
    return FeedSchedule(**values)  # type: ignore[arg-type]


def ok(body: bytes | None = b"<rss><channel></channel></rss>", **changes: object) -> FetchResult:
    values: dict[str, object] = {"url": URL, "status": FetchStatus.OK, "http_status": 200, "body": body}
    values.update(changes)
    return FetchResult(**values)  # type: ignore[arg-type]


def not_modified(**changes: object) -> FetchResult:
    return FetchResult(URL, FetchStatus.NOT_MODIFIED, http_status=304, **changes)  # type: ignore[arg-type]


def failed(http_status: int | None, headers: dict[str, str] | None = None) -> FetchResult:
    return FetchResult(
        URL,
        FetchStatus.FAILED,
        http_status=http_status,
        headers=tuple((headers or {}).items()),
        error=f"HTTP {http_status}",
    )


def _ceil(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) + timedelta(seconds=1) if moment.microsecond else moment


def wait_of(plan_time: datetime | None, now: datetime = T0) -> float:
    assert plan_time is not None
    return (plan_time - now).total_seconds()


def rng() -> random.Random:
    return random.Random(7)


def slot_wait(interval: float, floor: float = 0.0, url: str = URL, now: datetime = T0) -> float:
    """The wait a success plans without jitter: to the feed's slot nearest a full interval, at least `floor`."""
    slot = feed_slot(url, interval, now + timedelta(seconds=interval))
    return math.ceil(max((slot - now).total_seconds(), floor))


# --- due ------------------------------------------------------------------------------------------------------


def test_never_fetched_feed_is_due_and_future_one_is_not() -> None:
    assert is_due(feed(), T0)
    assert is_due(feed(next_fetch_at=T0), T0)
    assert not is_due(feed(next_fetch_at=T0 + timedelta(seconds=1)), T0)
    assert not is_due(feed(disabled_reason="HTTP 410 Gone"), T0)


def test_select_due_orders_by_lateness_and_skips_held_hosts_and_in_flight() -> None:
    schedules = [
        feed(feed_id=1, next_fetch_at=T0 - timedelta(minutes=1)),
        feed(feed_id=2, next_fetch_at=T0 - timedelta(minutes=9)),
        feed(feed_id=3),  # never fetched: first
        feed(feed_id=4, next_fetch_at=T0 + timedelta(minutes=1)),  # not yet
        feed(feed_id=5, url="https://held.example/a", next_fetch_at=T0 - timedelta(hours=1)),
        feed(feed_id=6, next_fetch_at=T0 - timedelta(minutes=5)),
        feed(feed_id=7, url="https://was-held.example/a", next_fetch_at=T0 - timedelta(minutes=2)),
    ]
    holds = {"held.example": T0 + timedelta(minutes=10), "was-held.example": T0}
    due = select_due(schedules, T0, blocked_hosts=holds, exclude={6})
    assert [s.feed_id for s in due] == [3, 2, 7, 1]
    assert [s.feed_id for s in select_due(schedules, T0, blocked_hosts=holds, limit=2)] == [3, 2]


def test_next_wake_is_the_earliest_future_event_but_never_beyond_max_sleep() -> None:
    soon = T0 + timedelta(seconds=20)
    assert next_wake(soon, [T0 + timedelta(seconds=40)], T0, 60) == soon
    assert next_wake(T0 + timedelta(seconds=50), [T0 + timedelta(seconds=10)], T0, 60) == T0 + timedelta(seconds=10)
    assert next_wake(None, [], T0, 60) == T0 + timedelta(seconds=60)
    assert next_wake(T0 + timedelta(hours=1), [T0 - timedelta(seconds=1)], T0, 60) == T0 + timedelta(seconds=60)


def test_host_of_is_lower_case_host() -> None:
    assert host_of("https://Feeds.Example.COM:8443/x?y") == "feeds.example.com"


# --- success --------------------------------------------------------------------------------------------------


def test_success_waits_until_the_feeds_slot_plus_upward_jitter_in_whole_seconds() -> None:
    policy = Policy(interval=1800, min_interval=300, jitter=0.1)
    generator = rng()
    waits = [
        wait_of(plan_next_fetch(feed(), ok(), policy, T0, generator, failed=False).next_fetch_at) for _ in range(200)
    ]
    base = slot_wait(1800)
    assert 900 <= base < 2700
    assert all(base - 1 <= w <= base + 180 + 1 and w == int(w) for w in waits)
    assert len(set(waits)) > 50  # spread, not a fixed offset
    plan = plan_next_fetch(feed(), ok(), policy, T0, rng(), failed=False)
    assert (plan.interval_seconds, plan.reason) == (1800, "interval")
    # the same seed gives the same schedule: a test or a replay is reproducible
    assert plan == plan_next_fetch(feed(), ok(), policy, T0, rng(), failed=False)


def test_interval_below_the_floor_is_raised_to_it() -> None:
    policy = Policy(interval=60, min_interval=300, jitter=0.0)
    plan = plan_next_fetch(feed(), ok(), policy, T0, rng(), failed=False)
    assert (plan.interval_seconds, plan.reason) == (300, "min_interval")
    assert wait_of(plan.next_fetch_at) == slot_wait(300, floor=300) >= 300


def test_slots_spread_feeds_evenly_and_keep_their_place() -> None:
    urls = [f"https://host{i % 7}.example/feed/{i}" for i in range(2000)]
    offsets = [(feed_slot(url, 3600, T0).timestamp() - T0.timestamp()) for url in urls]
    assert all(-1800 <= offset < 1800 for offset in offsets)  # the slot nearest the target
    tenths = [sum(-1800 + k * 360 <= offset < -1800 + (k + 1) * 360 for offset in offsets) for k in range(10)]
    assert all(150 <= count <= 250 for count in tenths), tenths  # about 200 each: an even spread
    assert feed_slot(urls[0], 3600, T0) == feed_slot(urls[0], 3600, T0)
    assert feed_slot(urls[0], 3600, T0 + timedelta(hours=5)) == feed_slot(urls[0], 3600, T0) + timedelta(hours=5)


def test_a_late_fetch_goes_back_to_its_slot_instead_of_carrying_the_delay() -> None:
    policy = Policy(interval=1800, min_interval=300, jitter=0.0)
    slot = feed_slot(URL, 1800, T0)
    for late in (0, 1, 90, 600):
        now = slot + timedelta(seconds=late)
        plan = plan_next_fetch(feed(), not_modified(), policy, now, rng(), failed=False)
        assert plan.next_fetch_at == _ceil(slot + timedelta(seconds=1800)), late


def test_the_floor_holds_even_when_a_slot_is_nearer() -> None:
    # interval == min_interval: a late fetch cannot go back to its slot without polling too soon
    policy = Policy(interval=300, min_interval=300, jitter=0.0)
    now = feed_slot(URL, 300, T0) + timedelta(seconds=100)
    plan = plan_next_fetch(feed(), not_modified(), policy, now, rng(), failed=False)
    assert plan.next_fetch_at is not None and (plan.next_fetch_at - now).total_seconds() >= 300


def test_a_declared_interval_is_a_hard_floor_and_a_body_without_one_forgets_it() -> None:
    # what record_next_fetch passes for a 304: the stored declaration
    kept = feed(declared_seconds=7200)
    plan = plan_next_fetch(kept, not_modified(), ADAPTIVE, T0, rng(), failed=False, declared=7200)
    assert (plan.interval_seconds, plan.reason, plan.declared_seconds) == (7200, "declared", 7200)
    assert wait_of(plan.next_fetch_at) == slot_wait(7200, floor=7200)  # a declared interval is a hard floor
    # a new body that no longer declares one forgets it
    plan = plan_next_fetch(feed(declared_seconds=7200), ok(), ADAPTIVE, T0, rng(), failed=False)
    assert (plan.declared_seconds, plan.interval_seconds, wait_of(plan.next_fetch_at)) == (None, 1800, slot_wait(1800))


def test_fixed_interval_ignores_publisher_hints() -> None:
    result = ok(headers=(("cache-control", "max-age=86400"),))
    plan = plan_next_fetch(feed(), result, FIXED, T0, rng(), failed=False, declared=36000)
    assert (plan.interval_seconds, plan.reason, plan.declared_seconds) == (1800, "interval", 36000)
    assert wait_of(plan.next_fetch_at) == slot_wait(1800)


@pytest.mark.parametrize(
    ("body", "headers", "expected", "reason"),
    [
        (b"<rss version='2.0'><channel><ttl>120</ttl></channel></rss>", {}, 7200, "declared"),
        (b"<rss version='2.0'><channel><ttl>5</ttl></channel></rss>", {}, 1800, "interval"),  # a lower bound only
        (b"<rss version='2.0'><channel><ttl>100000</ttl></channel></rss>", {}, ADAPTIVE_MAX, "declared"),  # capped
        (None, {"cache-control": "public, max-age=3600"}, 3600, "cache"),
        (None, {"cache-control": "no-cache, max-age=3600"}, 1800, "interval"),
        (None, {"cache-control": "max-age=0"}, 1800, "interval"),
        (
            None,
            {"expires": "Sun, 01 Mar 2026 12:00:00 GMT", "date": "Sun, 01 Mar 2026 10:00:00 GMT"},
            7200,  # Expires - Date, whatever our clock says
            "cache",
        ),
    ],
)
def test_adaptive_respects_publisher_lower_bounds(
    body: bytes | None, headers: dict[str, str], expected: float, reason: str
) -> None:
    result = (
        ok(body, headers=tuple(headers.items())) if body is not None else not_modified(headers=tuple(headers.items()))
    )
    declared = declared_interval(parse_feed(body)) if body is not None else None
    plan = plan_next_fetch(feed(), result, ADAPTIVE, T0, rng(), failed=False, declared=declared)
    assert (plan.interval_seconds, plan.reason) == (expected, reason)
    floor = expected if reason != "interval" else 300
    assert wait_of(plan.next_fetch_at) == slot_wait(expected, floor=floor) >= floor


def test_adaptive_interval_follows_publishing_frequency() -> None:
    hourly = [T0 - timedelta(hours=h) for h in range(10)]
    plan = plan_next_fetch(feed(), not_modified(), ADAPTIVE, T0, rng(), failed=False, entry_times=hourly)
    assert (plan.interval_seconds, plan.reason) == (1800, "adaptive")
    every_minute = [T0 - timedelta(minutes=m) for m in range(30)]
    assert adaptive_interval(every_minute, T0) == ADAPTIVE_MIN
    weekly = [T0 - timedelta(weeks=w) for w in range(5)]
    assert adaptive_interval(weekly, T0) == ADAPTIVE_MAX
    six_hourly = [T0 - timedelta(hours=6 * k) for k in range(8)]
    assert adaptive_interval(six_hourly, T0) == 3 * 3600


def test_adaptive_interval_slows_down_for_a_quiet_feed_and_ignores_future_dates() -> None:
    stopped = [T0 - timedelta(hours=8 + h) for h in range(10)]  # hourly, silent for 8 hours
    assert adaptive_interval(stopped, T0) == 2 * 3600
    future = [T0 + timedelta(days=300), T0 - timedelta(hours=1), T0 - timedelta(hours=2), T0 - timedelta(hours=3)]
    assert adaptive_interval(future, T0) == 1800
    assert adaptive_interval([T0], T0) is None
    assert adaptive_interval([], T0) is None


def test_adaptive_without_history_uses_the_configured_interval() -> None:
    plan = plan_next_fetch(feed(), ok(), ADAPTIVE, T0, rng(), failed=False, entry_times=[T0])
    assert (plan.interval_seconds, plan.reason) == (1800, "interval")


def test_declared_interval_reads_ttl_and_the_syndication_module_of_the_channel() -> None:
    def declared(document: bytes) -> float | None:
        return declared_interval(parse_feed(document))

    assert declared(b"<rss version='2.0'><channel><ttl> 60 </ttl><item/></channel></rss>") == 3600
    wordpress = (
        b'<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"><channel>'
        b"<sy:updatePeriod>\n\thourly\t</sy:updatePeriod><sy:updateFrequency>\n\t2\t</sy:updateFrequency>"
        b"<item><title>x</title></item></channel></rss>"
    )
    assert declared(wordpress) == 1800
    rss1 = (
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" '
        b'xmlns:syn="http://purl.org/rss/1.0/modules/syndication/"><channel rdf:about="x">'
        b'<syn:updatePeriod>daily</syn:updatePeriod></channel><item rdf:about="y"><title>a</title></item></rdf:RDF>'
    )
    assert declared(rss1) == 86400  # any prefix bound to the syndication namespace
    # both present: each is a lower bound, so the longer one holds; a ttl after the items is the channel's too
    both = b"<rss version='2.0' xmlns:sy='http://purl.org/rss/1.0/modules/syndication/'><channel><item/><ttl>30</ttl>"
    assert declared(both + b"<sy:updatePeriod>HOURLY</sy:updatePeriod></channel></rss>") == 3600
    assert declared(b"<rss version='2.0'><channel><item><title>x</title><ttl>60</ttl></item></channel></rss>") is None
    nothing = b"<rss version='2.0' xmlns:sy='http://purl.org/rss/1.0/modules/syndication/'><channel><ttl>0</ttl>"
    assert declared(nothing + b"<sy:updatePeriod>sometimes</sy:updatePeriod><item/></channel></rss>") is None
    assert declared(b'{"version": "https://jsonfeed.org/version/1.1", "title": "j", "items": []}') is None
    assert declared_interval(ParsedFeed(update_period="weekly", update_frequency=0)) is None


def test_cache_lifetime() -> None:
    def lookup(headers: dict[str, str]):  # type: ignore[no-untyped-def]
        return lambda name: headers.get(name)

    # s-maxage is for shared caches; a feed reader is a private one
    assert cache_lifetime(lookup({"cache-control": "s-maxage=50, max-age=100"}), T0) == 100
    assert cache_lifetime(lookup({"cache-control": "no-store"}), T0) is None
    # max-age wins over Expires (RFC 9111 5.3)
    expires = format_datetime(T0 + timedelta(hours=5), usegmt=True)
    assert cache_lifetime(lookup({"cache-control": "max-age=60", "expires": expires}), T0) == 60
    assert cache_lifetime(lookup({"expires": expires}), T0) == 5 * 3600
    assert cache_lifetime(lookup({"expires": "0"}), T0) is None
    assert cache_lifetime(lookup({"expires": format_datetime(T0 - timedelta(hours=1), usegmt=True)}), T0) is None


# --- failures -------------------------------------------------------------------------------------------------


def test_backoff_doubles_per_consecutive_failure_up_to_a_day() -> None:
    waits = [
        wait_of(plan_next_fetch(feed(error_count=n), failed(500), FIXED, T0, rng(), failed=True).next_fetch_at)
        for n in range(8)
    ]
    assert waits == [1800, 3600, 7200, 14400, 28800, 57600, MAX_BACKOFF, MAX_BACKOFF]
    plan = plan_next_fetch(feed(error_count=2), failed(None), FIXED, T0, rng(), failed=True)
    assert plan.reason == "backoff" and plan.next_fetch_at is not None and plan.disabled_reason is None
    # never given up: a thousand failures still retry within a day
    far = plan_next_fetch(feed(error_count=1000), failed(500), FIXED, T0, rng(), failed=True)
    assert wait_of(far.next_fetch_at) == MAX_BACKOFF


def test_backoff_jitter_only_shortens_and_respects_the_floor() -> None:
    generator = rng()
    delays = [backoff_seconds(3, 1800, generator, 0.25) for _ in range(200)]
    assert all(7200 * 0.75 <= d <= 7200 for d in delays) and len(set(delays)) > 50
    capped = [backoff_seconds(50, 1800, generator, 0.25) for _ in range(50)]
    assert all(d <= MAX_BACKOFF for d in capped)
    policy = Policy(interval=300, min_interval=300, jitter=0.5)
    plan = plan_next_fetch(feed(), failed(500), policy, T0, rng(), failed=True)
    assert wait_of(plan.next_fetch_at) == 300


def test_a_parse_failure_of_a_200_backs_off_too() -> None:
    plan = plan_next_fetch(feed(error_count=1), ok(b"<html>"), FIXED, T0, rng(), failed=True)
    assert (wait_of(plan.next_fetch_at), plan.reason) == (3600, "backoff")


def test_retry_after_seconds_pushes_the_feed_and_429_holds_the_host() -> None:
    plan = plan_next_fetch(feed(), failed(503, {"retry-after": "7200"}), FIXED, T0, rng(), failed=True)
    assert (wait_of(plan.next_fetch_at), plan.reason, plan.host) == (7200, "retry-after", None)
    plan = plan_next_fetch(feed(), failed(429, {"retry-after": "7200"}), FIXED, T0, rng(), failed=True)
    assert (wait_of(plan.next_fetch_at), plan.host, wait_of(plan.host_until)) == (7200, "news.example", 7200)
    # a Retry-After shorter than the backoff does not make us come back sooner
    plan = plan_next_fetch(feed(error_count=3), failed(503, {"retry-after": "60"}), FIXED, T0, rng(), failed=True)
    assert (wait_of(plan.next_fetch_at), plan.reason) == (14400, "backoff")
    # ...but the host is only held for as long as it asked
    plan = plan_next_fetch(feed(error_count=3), failed(429, {"retry-after": "60"}), FIXED, T0, rng(), failed=True)
    assert wait_of(plan.host_until) == 60
    # a 429 without Retry-After holds the host for the backoff
    plan = plan_next_fetch(feed(), failed(429), FIXED, T0, rng(), failed=True)
    assert wait_of(plan.host_until) == wait_of(plan.next_fetch_at) == 1800


def test_retry_after_http_date_is_measured_against_the_response_date() -> None:
    headers = {"retry-after": "Sun, 01 Mar 2026 14:00:00 GMT", "date": "Sun, 01 Mar 2026 11:00:00 GMT"}
    plan = plan_next_fetch(feed(), failed(503, headers), FIXED, T0, rng(), failed=True)
    assert wait_of(plan.next_fetch_at) == 3 * 3600  # the server's clock is 2 h ahead of ours: its 3 h count


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("120", None, 120),
        (" 0 ", None, 0),
        ("99999999", None, MAX_RETRY_AFTER),
        ("Sun, 01 Mar 2026 09:30:00 GMT", None, 1800),
        ("Sun, 01 Mar 2026 08:00:00 GMT", None, 0),  # in the past: no wait
        ("soon", None, None),
        ("-5", None, None),
        (None, None, None),
    ],
)
def test_retry_after_parsing(value: str | None, date: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, date, T0) == expected


def test_gone_disables_the_feed() -> None:
    plan = plan_next_fetch(feed(), failed(410), FIXED, T0, rng(), failed=True)
    assert plan.next_fetch_at is None and plan.disabled_reason == "HTTP 410" and plan.reason == "gone"


# --- redirects ------------------------------------------------------------------------------------------------


def test_permanent_redirect_moves_the_feed_after_consistent_sightings() -> None:
    new = "https://news.example/new.xml"
    state = feed()
    for sighting in range(1, REDIRECT_CONFIRMATIONS):
        plan = plan_next_fetch(state, ok(final_url=new, permanent_redirect=True), FIXED, T0, rng(), failed=False)
        assert (plan.redirect_url, plan.redirect_count, plan.move_to) == (new, sighting, None)
        state = feed(redirect_url=plan.redirect_url, redirect_count=plan.redirect_count)
    plan = plan_next_fetch(state, ok(final_url=new, permanent_redirect=True), FIXED, T0, rng(), failed=False)
    assert (plan.move_to, plan.redirect_url, plan.redirect_count) == (new, None, 0)


def test_redirect_streak_restarts_on_a_new_target_or_a_plain_answer_and_survives_failures() -> None:
    state = feed(redirect_url="https://a.example/", redirect_count=2)
    plan = plan_next_fetch(
        state, ok(final_url="https://b.example/", permanent_redirect=True), FIXED, T0, rng(), failed=False
    )
    assert (plan.redirect_url, plan.redirect_count, plan.move_to) == ("https://b.example/", 1, None)
    plan = plan_next_fetch(state, ok(final_url=URL), FIXED, T0, rng(), failed=False)
    assert (plan.redirect_url, plan.redirect_count) == (None, 0)
    plan = plan_next_fetch(state, failed(500), FIXED, T0, rng(), failed=True)
    assert (plan.redirect_url, plan.redirect_count) == ("https://a.example/", 2)


def test_temporary_redirect_never_moves_the_feed() -> None:
    state = feed()
    for _ in range(10):
        result = ok(final_url="https://elsewhere.example/feed", permanent_redirect=False)
        plan = plan_next_fetch(state, result, FIXED, T0, rng(), failed=False)
        assert (plan.move_to, plan.redirect_count) == (None, 0)
        state = feed(redirect_url=plan.redirect_url, redirect_count=plan.redirect_count)


# --- policy from the config -----------------------------------------------------------------------------------


def test_policy_from_config_per_feed_overrides() -> None:
    config = parse_config(
        {
            "interval": "2h",
            "min_interval": 1,
            "adaptive": True,
            "jitter": 0.2,
            "feeds": [
                {"url": "https://a.example/"},
                {"url": "https://b.example/", "interval": "90s", "adaptive": False},
            ],
        },
        Path("feeds.yaml"),
    )
    assert Policy.from_config(config, config.feeds[0]) == Policy(7200, 60, True, 0.2)
    assert Policy.from_config(config, config.feeds[1]) == Policy(90, 60, False, 0.2)
    assert Policy.from_config(parse_config({}, Path("feeds.yaml"))) == Policy(1800, 300, False, 0.1)
