"""prepare_result: what the parse worker hands the store for one fetched body."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.models import FetchResult, FetchStatus
from aggregator.normalize import identify
from aggregator.parse import parse_feed
from aggregator.update import prepare_result

NOW = datetime(2026, 11, 26, tzinfo=UTC)
URL = "https://feeds.example.com/world.xml"


def body(*items: tuple[str, str]) -> bytes:
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>https://example.com/{guid}</link>"
        f"<pubDate>Wed, 25 Nov 2026 08:00:00 +0000</pubDate></item>"
        for guid, title in items
    )
    return f"<rss version='2.0'><channel><title>World</title>{entries}</channel></rss>".encode()


def fetched(data: bytes) -> FetchResult:
    return FetchResult(URL, FetchStatus.OK, http_status=200, body=data, headers=(("content-type", "application/xml"),))


def source_hashes(data: bytes) -> dict[str, str]:
    """What the store would hold after storing `data`: guid -> source hash."""
    return dict(identify(entry, URL) for entry in parse_feed(data, {"content-location": URL}).entries)


def test_every_entry_is_normalized_with_its_term_vector_when_nothing_is_stored() -> None:
    prepared = prepare_result(fetched(body(("a", "Harbour reopens"), ("b", "Ferries resume"))), NOW)
    assert isinstance(prepared, tuple)
    _, entries = prepared
    assert [e.guid for e in entries] == ["a", "b"]
    assert all(e.terms is not None and e.source_hash for e in entries)
    assert entries[0].terms is not None and "harbour" in entries[0].terms.terms


def test_entries_the_feed_repeats_unchanged_are_left_out() -> None:
    stored = source_hashes(body(("a", "Harbour reopens"), ("b", "Ferries resume")))
    changed = body(("c", "Port strike ends"), ("a", "Harbour reopens"), ("b", "Ferries resume crossings"))
    prepared = prepare_result(fetched(changed), NOW, stored)
    assert isinstance(prepared, tuple)
    assert [e.guid for e in prepared[1]] == ["c", "b"]  # new, changed; "a" is as it was


def test_a_repeated_id_keeps_its_first_occurrence_even_when_that_one_is_unchanged() -> None:
    stored = source_hashes(body(("a", "Harbour reopens")))
    repeated = body(("a", "Harbour reopens"), ("a", "A different story under the same id"))
    prepared = prepare_result(fetched(repeated), NOW, stored)
    assert isinstance(prepared, tuple)
    assert prepared[1] == []
    fresh = prepare_result(fetched(repeated), NOW)
    assert isinstance(fresh, tuple)
    assert [e.title for e in fresh[1]] == ["Harbour reopens"]
