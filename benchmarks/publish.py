"""Publish benchmark: milliseconds to query, render and write each output format from a big store.

    python benchmarks/publish.py                         # 1,000,000 entries in 300,000 stories (~5 min to build)
    python benchmarks/publish.py --small                 # 20,000 entries in 6,000 stories: a quick smoke
    python benchmarks/publish.py --db /tmp/big.db        # build once into a file, reuse it on later runs

The store is made by `Store.open` (so it has the real schema, indexes and FTS triggers) and filled with
deterministic synthetic feeds, entries and stories through executemany. Each output is then published the way
`publish.publish_outputs` does it (`Store.latest_stories` -> `render` -> `write_atomically`, the file removed
first so every run really writes and fsyncs); the table shows the median of `--repeat` runs, split into query,
render and write. The target (issue 5): under 100 ms for 100 stories in any format, whatever the store's size.
Exit status 1 when a plain `limit: 100` output misses it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.config import Config, OutputConfig
from aggregator.models import FeedSource
from aggregator.publish import output_meta, write_atomically
from aggregator.render import render
from aggregator.store import Store, format_time

TARGET_MS = 100.0
FORMATS = ("atom", "rss", "json", "html", "opml")
# A feed just added to the config: no entries yet, so an output of its stories finds none in the whole store.
NEW_FEED = "https://new-outlet.example/feed.xml"
TAGS = ("world", "business", "technology", "science", "sport")
# The newest story is this old; stories go back one day per ~3,000 (a busy aggregator's rate).
NEWEST = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
STORIES_PER_DAY = 3_000
WORDS = (
    "minister", "election", "market", "storm", "court", "strike", "talks", "vote", "budget", "summit", "rates",
    "merger", "launch", "quake", "flood", "league", "final", "trial", "deal", "tariff", "energy", "climate",
    "chip", "rocket", "vaccine", "ceasefire", "protest", "inflation", "record", "report", "border", "harvest",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Case:
    """One output to publish: a format, a limit and optional filters."""

    format: str
    limit: int
    tags: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    min_sources: int = 1
    max_age_hours: float | None = None

    @property
    def label(self) -> str:
        """How the case is shown in the table."""
        extra = [f"tags={','.join(self.tags)}"] if self.tags else []
        extra += [f"feeds={len(self.feeds)}: {self.feeds[0].split('/')[2]}"] if self.feeds else []
        extra += [f"min_sources={self.min_sources}"] if self.min_sources > 1 else []
        extra += [f"max_age={self.max_age_hours:g}h"] if self.max_age_hours else []
        return f"{self.format} limit={self.limit}" + (f" ({' '.join(extra)})" if extra else "")


def main() -> int:
    """Build (or reuse) the store, publish each case, print the table and the query plans."""
    args = _arguments()
    workdir = Path(tempfile.mkdtemp(prefix="publish-bench-"))
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir)  # the outputs, and the store unless --db keeps it elsewhere


def run(args: argparse.Namespace, workdir: Path) -> int:
    """The benchmark proper; its files go in `workdir`."""
    db = Path(args.db) if args.db else workdir / "aggregator.db"
    started = time.perf_counter()
    built = build_store(db, args.entries, args.stories, args.feeds, args.seed)
    print(f"store: {db} ({_mb(db)} MB), {args.entries:,} entries in {args.stories:,} stories from "
          f"{args.feeds} feeds; {'built' if built else 'reused'} in {time.perf_counter() - started:.1f} s")  # fmt: skip
    feeds = tuple(
        FeedSource(url=_feed_url(i), title=f"Outlet {i}", tags=(TAGS[i % len(TAGS)],)) for i in range(args.feeds)
    )
    cases = [Case(fmt, limit) for limit in (100, 1000) for fmt in FORMATS]
    cases += [
        Case("atom", 100, tags=("science",)),
        Case("atom", 100, feeds=(_feed_url(1),)),
        Case("atom", 100, feeds=(NEW_FEED,)),
        Case("atom", 100, min_sources=3),
        Case("atom", 100, min_sources=8),
        Case("atom", 100, max_age_hours=24),
    ]
    failed = False
    with Store.open(db) as store:
        print(f"\n{'output':<44} {'query':>8} {'render':>8} {'write':>8} {'total':>8} {'bytes':>10}  (median ms)")
        for case in cases:
            times, size = publish_case(store, case, feeds, workdir, args.repeat)
            query, rendering, writing = (statistics.median(t) for t in zip(*times, strict=True))
            total = query + rendering + writing
            plain = case == Case(case.format, 100)
            over = total >= TARGET_MS
            mark = (" MISSED" if plain else " (over 100 ms; no target)") if over else ""
            failed |= plain and over
            print(f"{case.label:<44} {query:8.1f} {rendering:8.1f} {writing:8.1f} {total:8.1f} {size:10,}{mark}")
        print()
        explain(store)
    print(f"\ntarget: < {TARGET_MS:.0f} ms for 100 stories in any format: {'MISSED' if failed else 'met'}")
    return 1 if failed else 0


def publish_case(
    store: Store, case: Case, feeds: tuple[FeedSource, ...], workdir: Path, repeat: int
) -> tuple[list[tuple[float, float, float]], int]:
    """Publish one output `repeat` times as publish_outputs does; (query, render, write) ms of each run."""
    output = OutputConfig(
        path=f"out/{case.format}-{case.limit}", format=case.format, limit=case.limit, tags=case.tags, feeds=case.feeds,  # type: ignore[arg-type]
        min_sources=case.min_sources, max_age_hours=case.max_age_hours, url=f"https://news.example/{case.format}",
    )  # fmt: skip
    config = Config(outputs=(output,), site_url="https://news.example/", base_dir=workdir)
    meta = output_meta(config, output, store.install_id(), NEWEST + timedelta(hours=1))
    path = config.resolve(output.path)
    now = NEWEST + timedelta(hours=1)
    runs = []
    body = b""
    for _ in range(repeat):
        path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        feed_ids = store.feed_ids_with_tags(case.tags) if case.tags else None
        if case.feeds:
            by_url = store.feed_ids_with_urls(case.feeds)
            feed_ids = by_url if feed_ids is None else feed_ids & by_url
        since = now - timedelta(hours=case.max_age_hours) if case.max_age_hours else None
        stories = store.latest_stories(case.limit, feed_ids=feed_ids, min_sources=case.min_sources, since=since)
        t1 = time.perf_counter()
        body = render(stories, meta, feeds)
        t2 = time.perf_counter()
        write_atomically(path, body)
        t3 = time.perf_counter()
        runs.append(((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000))
    return runs, len(body)


def explain(store: Store) -> None:
    """Print SQLite's plan for the story queries latest_stories runs, plain and filtered."""
    plans = {
        "latest_stories (plain)": (
            "SELECT s.*, e.summary FROM stories s LEFT JOIN entries e ON e.id = s.lead_entry_id "
            "WHERE s.feed_count >= ? ORDER BY s.published DESC, s.id DESC LIMIT ?",
            [1, 100],
        ),
        "latest_stories (tags/feeds: EXISTS over entries)": (
            "SELECT s.* FROM stories s WHERE s.feed_count >= ? AND EXISTS (SELECT 1 FROM entries e "
            "WHERE e.story_id = s.id AND e.feed_id IN (1, 6, 11)) ORDER BY s.published DESC, s.id DESC LIMIT ?",
            [1, 100],
        ),
        "proposed for selective feed filters (IN over the feeds' entries)": (
            "SELECT s.* FROM stories s WHERE s.feed_count >= ? AND s.id IN (SELECT e.story_id FROM entries e "
            "WHERE e.feed_id IN (1)) ORDER BY s.published DESC, s.id DESC LIMIT ?",
            [1, 100],
        ),
        "story sources": (
            "SELECT e.story_id, e.title FROM entries e JOIN feeds f ON f.id = e.feed_id "
            "WHERE e.story_id IN (1, 2, 3) ORDER BY e.story_id, f.priority DESC, e.published, e.id",
            [],
        ),
    }
    for name, (sql, params) in plans.items():
        rows = store.db.conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        print(f"plan of {name}:")
        for row in rows:
            print(f"    {row[-1]}")


# --- the synthetic store -------------------------------------------------------------------------------------


def build_store(db: Path, n_entries: int, n_stories: int, n_feeds: int, seed: int) -> bool:
    """Fill a fresh store at `db`; an existing one with the same counts is reused. True when built."""
    if db.exists():
        with Store.open(db) as store:
            counts = (store.count("entries"), store.count("stories"), store.count("feeds"))
        if counts == (n_entries, n_stories, n_feeds + 1):
            return False
        raise SystemExit(f"{db} holds {counts} (entries, stories, feeds), not the requested sizes; remove it")
    if n_entries < n_stories:
        raise SystemExit("--entries must be at least --stories: every story has an entry")
    rng = random.Random(seed)
    with Store.open(db) as store:
        conn = store.db.conn
        created = format_time(NEWEST - timedelta(days=400))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO feeds (id, url, title, configured_title, site_url, tags, priority, active, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, 1, ?)",
            [
                (i + 1, _feed_url(i), f"Outlet {i}", f"Outlet {i}", f"https://outlet{i}.example/",
                 json.dumps([TAGS[i % len(TAGS)]]), created)
                for i in range(n_feeds)
            ] + [(n_feeds + 1, NEW_FEED, "New outlet", None, None, "[]", created)],
        )  # fmt: skip
        sizes = _story_sizes(n_entries, n_stories, min(n_feeds, 40), rng)
        story_rows: list[tuple[Any, ...]] = []
        entry_rows: list[tuple[Any, ...]] = []
        entry_id = 0
        for story_id, (size, entries) in enumerate(zip(sizes, _story_entries(sizes, n_feeds, rng), strict=True), 1):
            first_entry = entry_id + 1
            for offset, (feed, minutes) in enumerate(entries):
                entry_id += 1
                entry_rows.append(_entry_row(entry_id, story_id, feed, minutes, offset, rng))
            lead = entry_rows[-size]
            feed_count = len({feed for feed, _ in entries})
            story_rows.append(
                (story_id, _uid(story_id), lead[4], lead[3], first_entry, lead[10], lead[8],
                 entry_rows[-1][9], size, feed_count)
            )  # fmt: skip
            if len(entry_rows) >= 50_000:
                _flush(conn, story_rows, entry_rows)
        _flush(conn, story_rows, entry_rows)
        conn.execute("COMMIT")  # no ANALYZE: a real store has no statistics either
    return True


def _flush(conn: Any, story_rows: list[tuple[Any, ...]], entry_rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO stories (id, uid, title, url, lead_entry_id, first_seen, published, updated, entry_count, "
        "feed_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        story_rows,
    )
    conn.executemany(
        "INSERT INTO entries (id, feed_id, guid, url, canonical_url, title, summary, summary_text, content, "
        "published, updated, first_seen, authors, categories, enclosures, content_hash, story_id, story_method, "
        "story_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row[:3], row[3], row[3], *row[4:]) for row in entry_rows],
    )
    story_rows.clear()
    entry_rows.clear()


def _story_sizes(n_entries: int, n_stories: int, largest: int, rng: random.Random) -> list[int]:
    """Entries per story: every story has one, the rest spread with a long tail (most news is one outlet's)."""
    sizes = [1] * n_stories
    extra = n_entries - n_stories
    weights = [1.0 / (1 + i % 97) ** 1.2 for i in range(n_stories)]
    rng.shuffle(weights)
    chosen = rng.choices(range(n_stories), weights=weights, k=extra)
    for index in chosen:
        sizes[index] += 1
    # cap a story at `largest` entries, moving the overflow to the smallest stories deterministically
    overflow = sum(max(0, s - largest) for s in sizes)
    sizes = [min(s, largest) for s in sizes]
    index = 0
    while overflow:
        if sizes[index] < largest:
            sizes[index] += 1
            overflow -= 1
        index = (index + 7919) % n_stories
    return sizes


def _story_entries(sizes: list[int], n_feeds: int, rng: random.Random) -> Iterator[list[tuple[int, float]]]:
    """For each story (newest first): its entries' (feed id, minutes after the story's start), lead first."""
    for story_index, size in enumerate(sizes):
        start = story_index * (24 * 60 / STORIES_PER_DAY)
        feeds = rng.sample(range(1, n_feeds + 1), min(size, n_feeds))
        feeds += [rng.randrange(1, n_feeds + 1) for _ in range(size - len(feeds))]
        minutes = sorted(rng.uniform(0, 180) for _ in range(size - 1))
        yield [(feeds[0], -start)] + [(feed, -start + m) for feed, m in zip(feeds[1:], minutes, strict=True)]


def _entry_row(
    entry_id: int, story_id: int, feed: int, minutes: float, offset: int, rng: random.Random
) -> tuple[Any, ...]:
    published = format_time(NEWEST + timedelta(minutes=minutes))
    words = rng.sample(WORDS, 6)
    title = f"{words[0].title()} {words[1]} as {words[2]} {words[3]} (story {story_id})"
    url = f"https://outlet{feed - 1}.example/{story_id}/{offset}"
    text = " ".join(rng.choice(WORDS) for _ in range(45))
    summary = f'<p>{text[:200]} <a href="{url}#more" rel="noopener noreferrer">more</a></p><p>{text[200:]}</p>'
    return (
        entry_id, feed, f"{url}#guid", url, title, summary, text, None, published, published, published,
        json.dumps([f"Reporter {feed}"]), json.dumps([words[4], words[5]]), "[]",
        uuid.UUID(int=rng.getrandbits(128)).hex, story_id, "new" if offset == 0 else "url", 1.0,
    )  # fmt: skip


def _uid(story_id: int) -> str:
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-story-{story_id}"))


def _feed_url(index: int) -> str:
    return f"https://outlet{index}.example/feed.xml"


def _mb(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) // 1_000_000


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--stories", type=int, default=300_000)
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--small", action="store_true", help="20,000 entries in 6,000 stories")
    parser.add_argument("--db", help="database file to build (or reuse when it already has these sizes)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per output; the median is shown")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    if args.small:
        args.entries, args.stories = 20_000, 6_000
    return args


if __name__ == "__main__":
    sys.exit(main())
