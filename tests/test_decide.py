"""aggregator/decide.py: what storing one fetched feed writes, decided on plain values (no SQLite)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from aggregator.decide import EntryChange, EntryForUpdate, FeedUpdateIntent, decide_update
from aggregator.models import Entry, FetchResult, FetchStatus, ParsedFeed

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)
URL = "https://a.example/feed"
RESULT = FetchResult(URL, FetchStatus.OK, http_status=200, body=b"<rss/>", etag='"e1"', last_modified="Thu, 20 Aug")


def entry(guid: str, content: str = "c", source: str = "s", *, dated: bool = True) -> Entry:
    return Entry(
        guid=guid, url=f"{URL}/{guid}", canonical_url=f"{URL}/{guid}", title=guid, summary=None, summary_text="",
        content=None, published=NOW, updated=NOW, content_hash=content, source_hash=source, dated=dated,
    )  # fmt: skip


def decide(
    entries: list[Entry],
    stored: dict[str, EntryForUpdate] | None = None,
    tombstoned: set[str] | None = None,
    parsed: ParsedFeed | None = None,
) -> FeedUpdateIntent:
    return decide_update(7, stored or {}, tombstoned or set(), RESULT, parsed or ParsedFeed(), entries, NOW)


def test_entries_the_store_does_not_hold_are_new_in_document_order() -> None:
    a, b = entry("a"), entry("b")
    assert decide([a, b]).new == (a, b)


def test_an_entry_held_unchanged_writes_nothing() -> None:
    update = decide([entry("a")], stored={"a": EntryForUpdate(1, "c", "s")})
    assert (update.new, update.changed, update.resent) == ((), (), ())


def test_a_changed_entry_is_rewritten_in_place_with_its_dates() -> None:
    changed = entry("a", content="c2")
    update = decide([changed], stored={"a": EntryForUpdate(1, "c", "s")})
    assert update.changed == (EntryChange(1, changed, keep_dates=False),)
    assert update.new == ()


def test_a_changed_undated_entry_keeps_its_first_dates() -> None:
    changed = entry("a", content="c2", dated=False)
    update = decide([changed], stored={"a": EntryForUpdate(1, "c", "s")})
    assert update.changed == (EntryChange(1, changed, keep_dates=True),)


def test_the_same_content_sent_differently_rewrites_only_its_source_hash() -> None:
    update = decide([entry("a", source="s2")], stored={"a": EntryForUpdate(1, "c", "s")})
    assert (update.resent, update.changed) == (((1, "s2"),), ())
    # stored before m007 (no source hash): recorded now
    assert decide([entry("a")], stored={"a": EntryForUpdate(1, "c", None)}).resent == ((1, "s"),)
    # an entry without a source hash (normalized without one) records none
    assert decide([entry("a", source="")], stored={"a": EntryForUpdate(1, "c", "s")}).resent == ()


def test_a_tombstoned_entry_stays_out_and_its_tombstone_is_marked_listed() -> None:
    update = decide([entry("old"), entry("b")], tombstoned={"old"})
    assert [e.guid for e in update.new] == ["b"]
    assert update.listed_tombstones == frozenset({"old"})


def test_a_repeated_id_counts_once_the_first_occurrence_wins() -> None:
    first, again = entry("a", content="first"), entry("a", content="again")
    assert decide([first, again]).new == (first,)
    update = decide([replace(first, content_hash="c2"), again], stored={"a": EntryForUpdate(1, "c", "s")})
    assert [change.entry.content_hash for change in update.changed] == ["c2"]


def test_the_feed_row_takes_the_document_and_the_response() -> None:
    parsed = ParsedFeed(title="A feed", link="https://a.example/", warning="malformed feed, read what was recovered")
    update = decide([], parsed=parsed)
    assert update == FeedUpdateIntent(
        feed_id=7, fetched_at=NOW, title="A feed", site_url="https://a.example/", etag='"e1"',
        last_modified="Thu, 20 Aug", body_hash=RESULT.body_hash, http_status=200,
        warning="malformed feed, read what was recovered",
    )  # fmt: skip
