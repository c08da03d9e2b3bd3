"""A one-shot pass over many feeds, as `aggregator update` runs it: parsing in a forked worker process.

Run in a subprocess (the test's own loopback server thread would keep this process from forking), against
the benchmark corpus: every entry stored once, stories exactly as clustering the same store again gives,
and a changed pass that stores and clusters only the new entries.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import query

from aggregator.clustering import cluster_new_entries
from aggregator.config import load_config
from aggregator.store import Store
from aggregator.workers import POOL_MIN_FEEDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from corpus import CorpusServer, build_corpus, change_corpus, write_config

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
FEEDS = POOL_MIN_FEEDS + 8


def update(config: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(config), "update", "--json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def stories(db: Path) -> set[frozenset[str]]:
    """The stories as sets of entry guids: comparable between two databases."""
    grouped: dict[int, set[str]] = {}
    for guid, story_id in query(db, "SELECT guid, story_id FROM entries"):
        grouped.setdefault(story_id, set()).add(guid)
    return {frozenset(guids) for guids in grouped.values()}


def test_a_pass_with_a_parse_worker_stores_and_clusters_every_entry_once(tmp_path: Path) -> None:
    corpus = build_corpus(FEEDS, 6, seed=3, now=NOW)
    with CorpusServer(corpus) as server:
        config = write_config(tmp_path, server.urls(), fetch={"per_host": 16})
        db = tmp_path / "aggregator.db"
        cold = update(config)
        assert (cold["ok"], cold["entries_new"], cold["clustered"]) == (FEEDS, FEEDS * 6, FEEDS * 6)
        assert query(db, "SELECT count(*) FROM entries WHERE story_id IS NULL") == [(0,)]
        # the same store clustered again here, from scratch: the same stories
        here = tmp_path / "here.db"
        shutil.copy(db, here)
        with sqlite3.connect(here) as conn:
            conn.execute("UPDATE entries SET story_id = NULL, story_method = NULL, story_score = NULL")
            conn.execute("DELETE FROM stories")
        with Store.open(here) as store:
            assert cluster_new_entries(store, load_config(config, database=str(here)), datetime.now(UTC)) == FEEDS * 6
        assert stories(here) == stories(db)
        assert len(stories(db)) < FEEDS * 6  # the corpus retells stories across feeds: there was work to do

        # a changed pass: only the new entries are stored and clustered; the others keep their stories
        before = query(db, "SELECT id, story_id FROM entries ORDER BY id")
        server.set_corpus(change_corpus(corpus, 0.5, 2, seed=3))
        changed = update(config)
        assert (changed["ok"], changed["entries_new"], changed["clustered"]) == (FEEDS // 2, FEEDS, FEEDS)
        assert query(db, "SELECT count(*) FROM entries WHERE story_id IS NULL") == [(0,)]
        assert query(db, f"SELECT id, story_id FROM entries ORDER BY id LIMIT {len(before)}") == before
