"""update.py: the story clusterer that keeps its index between passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import query

from aggregator.config import parse_config
from aggregator.models import FeedSource, FetchResult, FetchStatus, ParsedEntry, ParsedFeed
from aggregator.normalize import normalize_entry
from aggregator.store import Store
from aggregator.update import StoryClusterer

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
