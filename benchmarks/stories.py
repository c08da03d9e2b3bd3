"""Story clustering quality and speed through the real pipeline, on both labelled data sets.

rumca-dev (real feeds with summaries): serves its 54 RSS files on 127.0.0.1, runs `aggregator update` with the
default settings into a fresh database, maps the stored entries back to rumca's ids and prints the stratified
estimates of pairwise precision and recall (halves A / B of the labelled pairs, and all), the largest story,
the share of entries in stories of more than 30, and the ms per entry the pass spent clustering; then every
labelled pair it got wrong (false merges and misses), to read.

uci-dev.csv (2,657 real headlines, Google News same-story labels): one RSS feed per publisher (titles, links,
dates as in the file; no summaries), the same pass, pairwise and B-cubed precision / recall / F1 on the whole
file and on each half (crc32 of STORY mod 2), each half in its own database.

    python benchmarks/stories.py              # both data sets
    python benchmarks/stories.py --rumca      # rumca-dev only (--quiet: without the pairs it got wrong)
    python benchmarks/stories.py --scale      # ms per entry with 10k entries in the window, 10k/100k/1M stored
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import rumca  # noqa: E402
from corpus import CorpusServer, write_config  # noqa: E402
from tune_dedup import bcubed_scores, pairwise_scores  # noqa: E402

from aggregator.dedup import term_vector  # noqa: E402
from aggregator.models import Entry, FeedState, FetchResult, FetchStatus, ParsedEntry, ParsedFeed  # noqa: E402
from aggregator.normalize import normalize_entry  # noqa: E402
from aggregator.store import Store  # noqa: E402

DATA = HERE.parents[1] / "shared" / "data" / "stories" / "uci-dev.csv"


def load_rows(path: Path) -> list[dict[str, str]]:
    """The labelled headlines, as CSV rows."""
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def publisher_feeds(rows: list[dict[str, str]]) -> dict[str, bytes]:
    """One RSS 2.0 document per publisher: guid = the row ID, so stored entries map back to their labels."""
    by_publisher: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_publisher[row["PUBLISHER"].replace("\\", "")].append(row)
    feeds = {}
    for number, (publisher, items) in enumerate(sorted(by_publisher.items())):
        body = "".join(
            f"<item><guid isPermaLink='false'>{row['ID']}</guid><title>{escape(row['TITLE'])}</title>"
            f"<link>{escape(row['URL'])}</link><pubDate>{_rfc822(row['TIMESTAMP'])}</pubDate></item>"
            for row in sorted(items, key=lambda r: int(r["TIMESTAMP"]), reverse=True)
        )
        feeds[f"/publisher/{number:04d}.xml"] = (
            f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{escape(publisher)}"
            f"</title><link>https://{number}.example.com/</link>{body}</channel></rss>"
        ).encode()
    return feeds


def _rfc822(epoch_ms: str) -> str:
    return format_datetime(datetime.fromtimestamp(int(epoch_ms) / 1000, UTC), usegmt=True)


def update_once(feeds: dict[str, bytes], workdir: Path, dedup: dict[str, float] | None) -> dict[str, object]:
    """Serve `feeds` on loopback and run one `aggregator update` over them in `workdir`; its JSON summary."""
    with CorpusServer(feeds) as server:
        extra = {"dedup": dedup} if dedup else {}
        config = write_config(workdir, server.urls(), fetch={"per_host": 16, "concurrency": 32}, **extra)
        done = subprocess.run(
            [sys.executable, "-m", "aggregator", "--config", str(config), "update", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
    return dict(json.loads(done.stdout))


def run_pipeline(
    rows: list[dict[str, str]], workdir: Path, dedup: dict[str, float] | None = None
) -> tuple[dict[str, int], dict[str, object]]:
    """Serve the feeds, run one `aggregator update`, return entry guid -> story id and the pass summary."""
    summary = update_once(publisher_feeds(rows), workdir, dedup)
    with sqlite3.connect(workdir / "aggregator.db") as conn:
        stories = dict(conn.execute("SELECT guid, story_id FROM entries"))
    return stories, summary


def score(rows: list[dict[str, str]], stories: dict[str, int], label: str) -> None:
    """Print the clustering scores of `rows` against their labels."""
    gold = {row["ID"]: row["STORY"] for row in rows}
    pred = {key: stories[key] for key in gold}
    pp, pr, pf = pairwise_scores(pred, gold)
    bp, br, bf = bcubed_scores(pred, gold)
    print(
        f"{label:<8} n={len(rows):5d} stories={len(set(pred.values())):4d}/{len(set(gold.values())):3d}  "
        f"pairwise P={pp:.3f} R={pr:.3f} F1={pf:.3f}  B-cubed P={bp:.3f} R={br:.3f} F1={bf:.3f}"
    )


def quality(path: Path, dedup: dict[str, float] | None = None) -> None:
    """The pipeline over the whole file, then over each half separately (a fresh database each)."""
    rows = load_rows(path)
    halves = [[r for r in rows if zlib.crc32(r["STORY"].encode()) % 2 == half] for half in (0, 1)]
    for label, subset in (("all", rows), ("half 0", halves[0]), ("half 1", halves[1])):
        with tempfile.TemporaryDirectory() as tmp:
            stories, summary = run_pipeline(subset, Path(tmp), dedup)
        per_entry = 1000 * float(summary["cluster_seconds"]) / max(1, int(summary["clustered"]))  # type: ignore[arg-type]
        score(subset, stories, label)
        print(f"{'':<8} pass {summary['seconds']} s, clustering {per_entry:.3f} ms per entry")


def scale(sizes: tuple[int, ...], window: int, batch: int) -> None:
    """ms per clustered entry with `window` entries in the window and `size` entries stored in all."""
    from aggregator.clustering import StoryClusterer
    from aggregator.config import parse_config
    from aggregator.models import FeedSource
    from aggregator.store import Store

    titles = [row["TITLE"] for row in load_rows(DATA)]
    now = datetime(2026, 8, 20, tzinfo=UTC)
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            config = parse_config({"feeds": []}, Path(tmp) / "feeds.yaml")
            store = Store.open(Path(tmp) / "scale.db")
            urls = [f"https://f{i}.example.com/feed" for i in range(100)]
            filler = _Filler(store, store.sync_feeds([FeedSource(u) for u in urls], now), titles, now)
            old = size - window
            # filler older than the window, in one old story; then a window's worth of recent entries
            for start in range(0, old, 50_000):
                old_batch = min(50_000, old - start)
                filler.fill(start, old_batch, now - timedelta(days=400), timedelta(days=300), terms=False)
            store.db.conn.execute(
                "INSERT INTO stories (id, uid, title, first_seen, published, updated) "
                "VALUES (1, 'filler', '', '', '', '')"
            )
            store.db.conn.execute("UPDATE entries SET story_id = 1")
            filler.fill(old, window, now - timedelta(hours=48), timedelta(hours=47))
            clusterer = StoryClusterer()  # kept between passes, as the service keeps it
            clusterer.run(store, config, now)
            steady, one_shot = [], []
            for round_ in range(3):
                filler.fill(size + round_ * batch, batch, now - timedelta(minutes=30), timedelta(minutes=29))
                started = time.perf_counter()
                clustered = clusterer.run(store, config, now)
                steady.append(1000 * (time.perf_counter() - started) / clustered)
            # what a one-shot `aggregator update` pays: seeding the index from the window's entries
            started = time.perf_counter()
            seeded = StoryClusterer().index_for(store, config, now - timedelta(hours=72))
            one_shot.append(time.perf_counter() - started)
            # the index's memory, traced while a fresh one is seeded (tracing slows it: timed apart, above)
            tracemalloc.start()
            traced = StoryClusterer().index_for(store, config, now - timedelta(hours=72))
            index_bytes = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            store.close()
        print(
            f"stored {size:>9,}  window {len(seeded):,}  ms per entry, kept index (batches of {batch}): "
            f"{statistics.median(steady):.3f}  seeding a fresh index (once per one-shot pass): {one_shot[0]:.2f} s  "
            f"index {index_bytes / len(traced):,.0f} bytes per entry"
        )


class _Filler:
    """Stores synthetic entries (real headlines, numbered) spread over feeds, through Store.save_feed."""

    def __init__(self, store: Store, states: dict[str, FeedState], titles: list[str], now: datetime) -> None:
        self.store, self.states, self.titles, self.now = store, states, titles, now

    def fill(self, start: int, count: int, base: datetime, spread: timedelta, *, terms: bool = True) -> None:
        """Store entries number start..start+count, published from `base` over `spread`; with their term
        vectors, as a pass stores them (built in its parse worker), unless `terms` is False."""
        urls = list(self.states)
        per_feed: dict[str, list[Entry]] = defaultdict(list)
        for n in range(start, start + count):
            url = urls[n % len(urls)]
            published = base + spread * (n - start) / max(1, count)
            title = f"{self.titles[n % len(self.titles)]} {n // len(self.titles)}"
            # a summary of two other headlines (about 150 characters, the median real summary is 160)
            summary = f"{self.titles[(n * 7 + 3) % len(self.titles)]}. {self.titles[(n * 13 + 5) % len(self.titles)]}."
            parsed = ParsedEntry(id=str(n), title=title, link=f"{url}/{n}", published=published, summary=summary)
            entry = normalize_entry(parsed, url, self.now)
            if terms:
                entry = replace(entry, terms=term_vector(entry.title, entry.summary_text, entry.canonical_url))
            per_feed[url].append(entry)
        for url, entries in per_feed.items():
            result = FetchResult(url, FetchStatus.OK, http_status=200, body=str(start).encode())
            self.store.save_feed(self.states[url], result, ParsedFeed(), entries, self.now)


def run_rumca(workdir: Path, dedup: dict[str, float] | None = None) -> tuple[dict[str, int], dict[str, object]]:
    """Serve rumca-dev's feeds, run one `aggregator update`, return rumca entry id -> story id and the summary."""
    feeds = {f"/{path.name}": path.read_bytes() for path in sorted((rumca.DATA / "feeds").glob("*.xml"))}
    summary = update_once(feeds, workdir, dedup)
    ids = {(e["feed_file"], e["link"]): e["entry_id"] for e in rumca.load_entries()}
    with sqlite3.connect(workdir / "aggregator.db") as conn:
        rows = conn.execute("SELECT f.url, e.guid, e.story_id FROM entries e JOIN feeds f ON f.id = e.feed_id")
        stories = {ids[(url.rsplit("/", 1)[1], guid)]: story for url, guid, story in rows}
    return stories, summary


def rumca_quality(dedup: dict[str, float] | None = None, show: bool = True) -> None:
    """The pipeline over rumca-dev: P and R on each held-out half of the labelled pairs and on all of them."""
    with tempfile.TemporaryDirectory() as tmp:
        stories, summary = run_rumca(Path(tmp), dedup)
    per_entry = 1000 * float(summary["cluster_seconds"]) / max(1, int(summary["clustered"]))  # type: ignore[arg-type]
    for halves in ("A", "B", "AB"):
        result = rumca.score(stories, halves)
        print(
            f"rumca-dev pairs {halves:<2}  P={result.precision:.3f} R={result.recall:.3f}  "
            f"stories={result.stories} largest={result.largest} in stories over 30: {result.share_over_30:.1%}"
        )
    print(f"{'':<8} pass {summary['seconds']} s, clustering {per_entry:.3f} ms per entry")
    if show:
        result = rumca.score(stories)
        for title, pairs in (("false merges", result.false_merges), ("misses", result.misses)):
            print(f"\n{title} ({len(pairs)}):")
            for pair in pairs:
                print(f"  {pair.pair_id} {pair.stratum} {pair.reason}\n    A {pair.text_a}\n    B {pair.text_b}")


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--scale", action="store_true", help="time clustering as the store grows")
    parser.add_argument("--rumca", action="store_true", help="rumca-dev only (real feeds with summaries)")
    parser.add_argument("--quiet", action="store_true", help="not the pairs of rumca-dev it got wrong")
    parser.add_argument("--title-only-threshold", type=float, help="dedup.title_only_threshold for the pass")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="stored entries for --scale")
    args = parser.parse_args()
    if args.scale:
        scale(tuple(int(s) for s in args.sizes.split(",")), window=10_000, batch=1_000)
    elif args.rumca:
        rumca_quality(show=not args.quiet)
    else:
        dedup = {"title_only_threshold": args.title_only_threshold} if args.title_only_threshold else None
        quality(args.data, dedup)
        rumca_quality(show=not args.quiet)


if __name__ == "__main__":
    main()
