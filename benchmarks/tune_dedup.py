"""Measure and tune story clustering (aggregator.dedup) on labelled headlines.

Streams uci-dev.csv (2,657 headlines of 10-12 March 2014 with Google News story labels) in TIMESTAMP order
through StoryIndex, titles only, and prints pairwise and B-cubed precision / recall / F1 against the STORY
label, plus the time per item.

    python benchmarks/tune_dedup.py                  # the whole file at DEFAULT_THRESHOLD
    python benchmarks/tune_dedup.py --split          # each half (crc32 of STORY mod 2) on its own
    python benchmarks/tune_dedup.py --split --sweep  # thresholds 0.08 .. 0.40 on both halves
    python benchmarks/tune_dedup.py --set BIGRAM_FACTOR=0 --split   # an ablation: override a constant
    python benchmarks/tune_dedup.py --feed-per-entry  # one feed per row: no same-feed rule (diagnostic)
    python benchmarks/tune_dedup.py --scale 10000    # time per item with 10,000 synthetic items in the window

The metric functions are importable: pairwise_scores(pred, gold) and bcubed_scores(pred, gold) take two
dicts key -> cluster label over the same keys.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator import dedup
from aggregator.dedup import StoryIndex
from aggregator.models import DedupItem

DATA = Path("/work/shared/data/stories/uci-dev.csv")
SWEEP = (0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.22, 0.25, 0.30, 0.35, 0.40)


def pairwise_scores(pred: Mapping[Hashable, Hashable], gold: Mapping[Hashable, Hashable]) -> tuple[float, float, float]:
    """Pairwise precision, recall, F1: over all pairs of keys, is "same cluster" predicted and true?

    A clustering that puts no two keys together has precision 1.0 (it claims nothing false).
    """
    both = Counter((pred[k], gold[k]) for k in gold)
    pred_sizes = Counter(pred[k] for k in gold)
    gold_sizes = Counter(gold.values())
    same_both = sum(n * (n - 1) // 2 for n in both.values())
    same_pred = sum(n * (n - 1) // 2 for n in pred_sizes.values())
    same_gold = sum(n * (n - 1) // 2 for n in gold_sizes.values())
    precision = same_both / same_pred if same_pred else 1.0
    recall = same_both / same_gold if same_gold else 1.0
    return precision, recall, _f1(precision, recall)


def bcubed_scores(pred: Mapping[Hashable, Hashable], gold: Mapping[Hashable, Hashable]) -> tuple[float, float, float]:
    """B-cubed precision, recall, F1 (Bagga and Baldwin 1998): per-key overlap of its two clusters, averaged."""
    both = Counter((pred[k], gold[k]) for k in gold)
    pred_sizes = Counter(pred[k] for k in gold)
    gold_sizes = Counter(gold.values())
    if not gold:
        return 1.0, 1.0, 1.0
    precision = sum(both[pred[k], gold[k]] / pred_sizes[pred[k]] for k in gold) / len(gold)
    recall = sum(both[pred[k], gold[k]] / gold_sizes[gold[k]] for k in gold) / len(gold)
    return precision, recall, _f1(precision, recall)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@dataclass(frozen=True)
class Row:
    item: DedupItem
    story: str


def load(path: Path = DATA, feed_per_entry: bool = False) -> list[Row]:
    """The labelled headlines as DedupItems (one feed per publisher, summary empty), in TIMESTAMP order.

    With `feed_per_entry` every row gets its own feed id, which switches off the same-feed rule.
    """
    feeds: dict[str, int] = {}
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            publisher = rec["PUBLISHER"].replace("\\", "")
            item = DedupItem(
                entry_id=int(rec["ID"]),
                feed_id=feeds.setdefault(rec["ID"] if feed_per_entry else publisher, len(feeds) + 1),
                title=rec["TITLE"],
                summary_text="",
                canonical_url=rec["URL"] or None,
                published=datetime.fromtimestamp(int(rec["TIMESTAMP"]) / 1000, UTC),
            )
            rows.append(Row(item, rec["STORY"]))
    rows.sort(key=lambda r: (r.item.published, r.item.entry_id))
    return rows


def cluster(items: list[DedupItem], threshold: float) -> tuple[dict[int, int], list[float], Counter[str]]:
    """Stream items through a StoryIndex; return entry -> story, ms per item, and methods used."""
    index = StoryIndex(threshold=threshold)
    pred: dict[int, int] = {}
    times: list[float] = []
    methods: Counter[str] = Counter()
    next_story = 0
    for item in items:
        start = time.perf_counter()
        assignment = index.assign(item)
        story_id = assignment.story_id
        if story_id is None:
            next_story += 1
            story_id = next_story
        index.add(item, story_id)
        times.append((time.perf_counter() - start) * 1000)
        pred[item.entry_id] = story_id
        methods[assignment.method] += 1
    return pred, times, methods


def evaluate(rows: list[Row], threshold: float, label: str, verbose: bool = True) -> tuple[float, ...]:
    """Cluster the rows and print one line of scores; return (pair P, R, F1, B3 P, R, F1)."""
    pred, times, methods = cluster([r.item for r in rows], threshold)
    gold = {r.item.entry_id: r.story for r in rows}
    pair = pairwise_scores(pred, gold)
    b3 = bcubed_scores(pred, gold)
    if verbose:
        p95 = sorted(times)[int(0.95 * (len(times) - 1))]
        print(
            f"{label:<10} t={threshold:.2f} n={len(rows):>5} stories={len(set(pred.values())):>4}/"
            f"{len(set(gold.values())):<3} pair P={pair[0]:.3f} R={pair[1]:.3f} F1={pair[2]:.3f}  "
            f"B3 P={b3[0]:.3f} R={b3[1]:.3f} F1={b3[2]:.3f}  "
            f"ms median={statistics.median(times):.3f} p95={p95:.3f}  {dict(methods)}"
        )
    return (*pair, *b3)


def ceiling(rows: list[Row], label: str) -> None:
    """Print the best scores reachable when one feed never holds two entries of a story (rule 2)."""
    per_feed: Counter[tuple[str, int]] = Counter()
    pred: dict[int, tuple[str, int]] = {}
    for row in rows:
        key = (row.story, row.item.feed_id)
        pred[row.item.entry_id] = (row.story, per_feed[key])
        per_feed[key] += 1
    gold = {r.item.entry_id: r.story for r in rows}
    pair, b3 = pairwise_scores(pred, gold), bcubed_scores(pred, gold)
    print(
        f"{label:<10} ceiling under the same-feed rule: pair R={pair[1]:.3f} F1={pair[2]:.3f}  "
        f"B3 R={b3[1]:.3f} F1={b3[2]:.3f}"
    )


def halves(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    """Split by story label: crc32(STORY) mod 2 (stable across runs, unlike hash())."""
    parts: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        parts[zlib.crc32(row.story.encode()) % 2].append(row)
    return [(f"half {k}", parts[k]) for k in sorted(parts)]


def scale(n: int, probe: int = 1000, seed: int = 1) -> None:
    """Time assign() + add() with `n` synthetic headlines already in the window."""
    from wordfreq import top_n_list

    rng = random.Random(seed)
    words = top_n_list("en", 30000)
    weights = [1 / (rank + 10) for rank in range(len(words))]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = [
        DedupItem(
            i,
            rng.randrange(300),
            " ".join(rng.choices(words, weights, k=rng.randint(5, 12))),
            "",
            None,
            start + timedelta(seconds=10 * i),
        )
        for i in range(n + probe)
    ]
    index = StoryIndex()
    for i, item in enumerate(items[:n]):
        index.add(item, i)
    times = []
    for item in items[n:]:
        t0 = time.perf_counter()
        assignment = index.assign(item)
        index.add(item, assignment.story_id if assignment.story_id is not None else item.entry_id)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(
        f"scale: {n} items in window, {probe} probes: ms median={statistics.median(times):.3f} "
        f"p95={times[int(0.95 * (len(times) - 1))]:.3f} max={times[-1]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threshold", type=float, default=dedup.DEFAULT_THRESHOLD)
    parser.add_argument("--split", action="store_true", help="evaluate each story-hash half separately")
    parser.add_argument("--sweep", action="store_true", help="try the thresholds of SWEEP")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a dedup constant")
    parser.add_argument(
        "--feed-per-entry",
        action="store_true",
        help="one feed per row instead of per publisher (no same-feed rule)",
    )
    parser.add_argument("--scale", type=int, default=0, help="time with this many synthetic items in the window")
    args = parser.parse_args()

    for assignment in args.set:
        name, _, value = assignment.partition("=")
        setattr(dedup, name, type(getattr(dedup, name))(float(value)))
        print(f"set {name}={getattr(dedup, name)}")
    dedup._word_weight.cache_clear()

    if args.scale:
        scale(args.scale)
        return
    rows = load(args.data, args.feed_per_entry)
    parts = halves(rows) if args.split else [("all", rows)]
    if not args.feed_per_entry:
        for label, part in parts:
            ceiling(part, label)
    thresholds = SWEEP if args.sweep else (args.threshold,)
    for threshold in thresholds:
        for label, part in parts:
            evaluate(part, threshold, label)


if __name__ == "__main__":
    main()
