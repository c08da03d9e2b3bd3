"""Output filters (tags, feeds, min_sources, max_age_hours) through a real pass."""

from __future__ import annotations

from pathlib import Path

import feedparser
from conftest import FeedFiles, update_json, write_config
from test_pipeline import rss

SHARED_LINK = "https://wire.example.com/2026/08/19/summit-ends"


def _titles(path: Path) -> list[str]:
    return [entry.title for entry in feedparser.parse(path.read_bytes()).entries]


def test_each_output_shows_only_its_stories(tmp_path: Path, feeds: FeedFiles) -> None:
    world = feeds.serve(
        "/world.xml",
        rss(
            [
                ("w1", "Summit ends with joint statement", SHARED_LINK, "Wed, 19 Aug 2026 10:00:00 +0000"),
                ("w2", "Floods hit river towns", "https://w.example.com/floods", "Wed, 19 Aug 2026 09:00:00 +0000"),
            ],
            "World",
        ),
    )
    tech = feeds.serve(
        "/tech.xml",
        rss(
            [
                ("t1", "Leaders sign pact at summit", SHARED_LINK, "Wed, 19 Aug 2026 10:30:00 +0000"),
                ("t2", "New phone chip unveiled", "https://t.example.com/chip", "Wed, 19 Aug 2026 08:00:00 +0000"),
            ],
            "Tech",
        ),
    )
    outputs = [
        {"path": "out/all.atom", "title": "All"},
        {"path": "out/world.atom", "title": "World", "tags": ["world"]},
        {"path": "out/tech.atom", "title": "Tech", "feeds": [tech]},
        {"path": "out/multi.atom", "title": "Multi", "min_sources": 2},
        {"path": "out/one.atom", "title": "One", "limit": 1},
        {"path": "out/recent.atom", "title": "Recent", "max_age_hours": 1},
    ]
    config = write_config(
        tmp_path, [{"url": world, "tags": ["world"]}, {"url": tech, "tags": ["technology"]}], outputs=outputs
    )
    summary = update_json(config)
    assert summary["entries_new"] == 4
    out = tmp_path / "out"
    assert _titles(out / "all.atom") == [
        "Summit ends with joint statement",
        "Floods hit river towns",
        "New phone chip unveiled",
    ]
    assert _titles(out / "world.atom") == ["Summit ends with joint statement", "Floods hit river towns"]
    assert _titles(out / "tech.atom") == ["Summit ends with joint statement", "New phone chip unveiled"]
    assert _titles(out / "multi.atom") == ["Summit ends with joint statement"]
    assert _titles(out / "one.atom") == ["Summit ends with joint statement"]
    assert _titles(out / "recent.atom") == []  # the items are from August; the pass runs later
