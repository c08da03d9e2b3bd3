"""update.py: the story clusterer that keeps its index between passes, and what the parse worker hands the
store for one fetched body (prepare_result)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import query

from aggregator.clustering import StoryClusterer
from aggregator.config import parse_config
from aggregator.models import FeedSource, FetchResult, FetchStatus, ParsedEntry, ParsedFeed
from aggregator.normalize import identify, normalize_entry
from aggregator.parse import parse_feed
from aggregator.store import Store
from aggregator.update import prepare_result

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)


def _store_entry(store: Store, url: str, guid: str, title: str, published: datetime) -> None:
    state = store.sync_feeds([FeedSource("https://a.example/f"), FeedSource("https://b.example/f")], NOW)[url]
    entry = normalize_entry(ParsedEntry(id=guid, title=title, link=f"{url}/{guid}", published=published), url, NOW)
    result = FetchResult(url, FetchStatus.OK, http_status=200, body=guid.encode())
    store.save_feed(state, result, ParsedFeed(), [entry], NOW)


def test_kept_index_joins_later_reports_and_reseeds_for_an_older_backlog(tmp_path: Path) -> None:
    config = parse_config({"feeds": []}, tmp_path / "feeds.yaml")
    clusterer = StoryClusterer()
    title = "Marvell gives Google option to buy stake in custom chip deal"
    with Store.open(tmp_path / "a.db") as store:
        _store_entry(store, "https://a.example/f", "a1", title, NOW - timedelta(hours=1))
        assert clusterer.run(store, config, NOW) == 1
        _store_entry(store, "https://b.example/f", "b1", f"{title} - Reuters", NOW)
        assert clusterer.run(store, config, NOW) == 1  # the kept index answers: no seeding
        # a report published before the window the kept index still covers: seeded again, same answer
        _store_entry(
            store, "https://b.example/f", "b0", "Unrelated flood warning for river towns", NOW - timedelta(days=5)
        )
        assert clusterer.run(store, config, NOW) == 1
        clusterer.reset()
        assert clusterer.run(store, config, NOW) == 0
    rows = query(tmp_path / "a.db", "SELECT guid, story_id, story_method FROM entries ORDER BY guid")
    (a1, story_a, method_a), (b0, story_old, method_old), (b1, story_b, method_b) = rows
    assert (a1, b0, b1) == ("a1", "b0", "b1")
    assert story_a == story_b and (method_a, method_b) == ("new", "title")
    assert story_old not in (story_a,) and method_old == "new"


URL = "https://feeds.example.com/world.xml"


def body(*items: tuple[str, str]) -> bytes:
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>https://example.com/{guid}</link>"
        f"<pubDate>Wed, 19 Aug 2026 08:00:00 +0000</pubDate></item>"
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


def test_a_repeated_id_keeps_its_first_occurrence_even_when_that_one_is_unchanged(tmp_path: Path) -> None:
    stored = source_hashes(body(("a", "Harbour reopens")))
    repeated = body(("a", "Harbour reopens"), ("a", "A different story under the same id"))
    prepared = prepare_result(fetched(repeated), NOW, stored)
    assert isinstance(prepared, tuple)
    assert prepared[1] == []
    # with nothing stored both come back, and storing them keeps the first
    fresh = prepare_result(fetched(repeated), NOW)
    assert isinstance(fresh, tuple)
    assert [e.title for e in fresh[1]] == ["Harbour reopens", "A different story under the same id"]
    with Store.open(tmp_path / "a.db") as store:
        state = store.sync_feeds([FeedSource(URL)], NOW)[URL]
        store.save_feed(state, fetched(repeated), fresh[0], fresh[1], NOW)
    assert query(tmp_path / "a.db", "SELECT guid, title FROM entries") == [("a", "Harbour reopens")]
