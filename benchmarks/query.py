"""Query benchmark: `search` and `feeds` latency on a large synthetic store.

    python benchmarks/query.py                 # 1,000,000 entries in 10,000 feeds (builds for a few minutes)
    python benchmarks/query.py --small         # 20,000 entries in 500 feeds: a smoke run
    python benchmarks/query.py --db big.db     # keep (or reuse) the store between runs

The store is made by the real schema (Store.open runs the migrations) and filled directly with executemany:
titles and summaries are words drawn from English word frequencies (wordfreq), so posting lists have
realistic lengths: a common word matches a large share of entries, a name a handful. A planted story
("Li Qiang", "cooperation organisation") is reported by 40 feeds. Entries are grouped three to a story.

Measured: Store.search (what `aggregator search` runs, without process start-up) for a mix of queries, and
Store.feed_table for every feed (what `aggregator feeds` runs). Each is run --repeat times after one warm-up;
the median and p95 over all runs are printed with the targets: search under 50 ms median, feeds under
200 ms for 10,000 feeds. The whole `feeds` command is timed in-process too, with the part spent loading a
feeds.yaml that lists every feed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from wordfreq import top_n_list, zipf_frequency

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from click.testing import CliRunner

from aggregator.cli import cli
from aggregator.config import load_config
from aggregator.models import FeedSource
from aggregator.store import Store, format_time

SEARCH_TARGET_MS = 50.0
FEEDS_TARGET_MS = 200.0
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLANTED_TITLE = "China proposes new global AI cooperation organisation, Li Qiang tells WAIC"
PLANTED_SUMMARY = "Premier Li Qiang told the World Artificial Intelligence Conference in Shanghai about the plan."


def build(path: Path, entries: int, feeds: int, seed: int) -> None:
    """Create the store at `path` with `entries` entries spread over `feeds` feeds."""
    rng = random.Random(seed)
    words = top_n_list("en", 30_000)
    cumulative = list(itertools.accumulate(10 ** zipf_frequency(word, "en") for word in words))
    started = time.perf_counter()
    with Store.open(path) as store, store.transaction():
        conn = store.db.conn
        stamp = format_time(NOW)
        conn.executemany(
            """INSERT INTO feeds (id, url, title, tags, active, last_fetched_at, last_status, error_count,
                                  failing_since, last_error, last_new_entry_at, created_at)
               VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (
                    i, f"https://outlet{i}.example/feed.xml", f"Outlet {i}",
                    json.dumps(["world"] if i % 3 else ["tech"]), stamp,
                    500 if i % 50 == 0 else 200, 3 if i % 50 == 0 else 0,
                    stamp if i % 50 == 0 else None, "HTTP 500" if i % 50 == 0 else None, stamp, stamp,
                )
                for i in range(1, feeds + 1)
            ],
        )  # fmt: skip
        stories = (entries + 2) // 3
        conn.executemany(
            "INSERT INTO stories (id, uid, title, first_seen, published, updated, entry_count, feed_count)"
            " VALUES (?, ?, '', ?, ?, ?, 3, 3)",
            ((i, f"urn:story:{i}", stamp, stamp, stamp) for i in range(1, stories + 1)),
        )
        batch: list[tuple[Any, ...]] = []
        for i in range(1, entries + 1):
            story = (i - 1) // 3 + 1
            feed = rng.randrange(1, feeds + 1)
            if i <= 120:  # the planted story: 40 stories of 3 entries, each from a different feed
                title, summary, feed = PLANTED_TITLE, PLANTED_SUMMARY, i
            else:
                title = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(6, 12))).capitalize()
                summary = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(20, 45)))
            published = format_time(NOW - timedelta(seconds=rng.randrange(0, 90 * 86400)))
            batch.append(
                (feed, f"urn:entry:{i}", f"https://outlet{feed}.example/{i}", title, summary, published, published,
                 stamp, f"{i:032x}", story)
            )  # fmt: skip
            if len(batch) == 20_000:
                _insert(conn, batch)
                batch.clear()
                print(f"\r  {i:,} entries ({time.perf_counter() - started:.0f} s)", end="", file=sys.stderr)
        _insert(conn, batch)
        conn.execute(
            """UPDATE stories SET title = (SELECT title FROM entries WHERE story_id = stories.id LIMIT 1),
                   published = (SELECT min(published) FROM entries WHERE story_id = stories.id)"""
        )
    with Store.open(path) as store:
        store.db.conn.execute("ANALYZE")
        store.db.conn.execute("INSERT INTO entries_fts(entries_fts) VALUES ('optimize')")
    print(f"\r  built {entries:,} entries in {feeds:,} feeds in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _insert(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        """INSERT INTO entries (feed_id, guid, url, title, summary_text, published, updated, first_seen,
                                content_hash, story_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        rows,
    )


def measure(run: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds of `repeat` runs after one warm-up run."""
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--small", action="store_true", help="20,000 entries in 500 feeds")
    parser.add_argument("--db", type=Path, help="store to build or reuse (default: a temporary file)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each query")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.small:
        args.entries, args.feeds = 20_000, 500
    with tempfile.TemporaryDirectory() as scratch:
        path = args.db or Path(scratch) / "query.db"
        if not path.exists():
            build(path, args.entries, args.feeds, args.seed)
        else:
            print(f"  reusing {path}", file=sys.stderr)
        with Store.open(path) as store:
            entries, feeds = store.count("entries"), store.count("feeds")
            print(f"store: {entries:,} entries, {feeds:,} feeds, {path.stat().st_size / 1e6:.0f} MB")
            some_feeds = set(range(1, 11))
            searches: dict[str, Callable[[], object]] = {
                '"Li Qiang"': lambda: store.search('"Li Qiang"'),
                "cooperation organisation": lambda: store.search("cooperation organisation"),
                "rare word (zipf ~2)": lambda: store.search("nonviolent"),
                "mid word (zipf ~4)": lambda: store.search("volcano"),
                "two mid words": lambda: store.search("election budget"),
                "mid OR mid": lambda: store.search("parliament OR tariff"),
                "prefix": lambda: store.search("volc*"),
                "common word (zipf ~5.5)": lambda: store.search("government"),
                "common word, --since 7d": lambda: store.search("government", since=NOW - timedelta(days=7)),
                "mid word, --feed x10": lambda: store.search("election", feed_ids=some_feeds),
            }
            all_search: list[float] = []
            print(f"\nsearch ({args.repeat} runs each, limit 20 stories)")
            print(f"  {'query':28} {'hits':>6} {'median ms':>10} {'p95 ms':>8}")
            for name, run in searches.items():
                hits = len(run())  # type: ignore[arg-type]
                times = measure(run, args.repeat)
                all_search += times
                print(f"  {name:28} {hits:>6} {statistics.median(times):>10.1f} {p95(times):>8.1f}")
            sources = [FeedSource(url=f"https://outlet{i}.example/feed.xml") for i in range(1, feeds + 1)]
            feed_times = measure(lambda: store.feed_table(sources), max(5, args.repeat // 2))
        # The whole command in-process: it also reads feeds.yaml (every feed) and prints every row.
        config = Path(scratch) / "feeds.yaml"
        config.write_text(
            json.dumps({"database": str(path.resolve()), "feeds": [{"url": source.url} for source in sources]}),
            encoding="utf-8",
        )  # JSON is YAML
        runner = CliRunner()
        command_times = measure(lambda: runner.invoke(cli, ["--config", str(config), "feeds"]), 3)
        config_times = measure(lambda: load_config(config), 3)
        search_median, feeds_median = statistics.median(all_search), statistics.median(feed_times)
        verdict = "ok" if search_median < SEARCH_TARGET_MS else "MISSED"
        print(
            f"\nsearch, all queries: median {search_median:.1f} ms, p95 {p95(all_search):.1f} ms "
            f"(target: median < {SEARCH_TARGET_MS:.0f} ms) {verdict}"
        )
        verdict = "ok" if feeds_median < FEEDS_TARGET_MS else "MISSED"
        print(
            f"feeds, {feeds:,} feeds: median {feeds_median:.1f} ms, p95 {p95(feed_times):.1f} ms "
            f"(target: < {FEEDS_TARGET_MS:.0f} ms) {verdict}"
        )
        print(
            f"`aggregator feeds` in-process: median {statistics.median(command_times):.0f} ms, of which loading "
            f"feeds.yaml {statistics.median(config_times):.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
