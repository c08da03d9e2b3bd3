"""Score a clustering of rumca-dev with its stratified estimator of pairwise precision and recall.

rumca-dev (``../shared/data/stories/rumca-dev/``) is two days of 54 real news feeds with summaries and 629
pairs of their entries labelled same event / different. Its README gives the estimator, implemented here as
written there:

- M_s: eligible pairs of stratum s that the clustering merged (exact, from ``strata.tsv.gz``; S0 otherwise);
- q_s: mean label of the labelled pairs of s that were merged (the stratum's mean below 5 such pairs);
- P = sum_s M_s q_s / sum_s M_s;  R = sum_s N_s mean(y m) / sum_s N_s mean(y).

Held-out halves: the labelled pairs split by a hash of their ``pair_id`` (``half(pair_id)``); constants are
chosen on half A and reported on both, so half B says how a choice carries over. Nothing here imports
aggregator: `clusters` is any mapping of rumca entry id -> story key.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

__all__ = ["DATA", "Pair", "Score", "half", "load_entries", "load_pairs", "score"]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stories" / "rumca-dev"
STRATA = ("S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
# Below this many merged labelled pairs, a stratum's precision is its overall mean label (the README's rule).
MIN_MERGED_LABELLED = 5
WINDOW = timedelta(hours=72)


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled pair: ids of both entries, stratum, label (1 same event, 0 different), the reader's reason."""

    pair_id: str
    a: str
    b: str
    stratum: str
    label: int
    reason: str
    text_a: str
    text_b: str


@dataclass(frozen=True, slots=True)
class Score:
    """Estimated pairwise precision and recall, and the shape of the clustering."""

    precision: float
    recall: float
    largest: int
    share_over_30: float
    stories: int
    false_merges: tuple[Pair, ...]
    misses: tuple[Pair, ...]


def half(pair_id: str) -> str:
    """ "A" or "B": the held-out half a labelled pair belongs to (a stable hash of its id)."""
    return "AB"[zlib.crc32(pair_id.encode()) % 2]


def load_entries(data: Path = DATA) -> list[dict[str, str]]:
    """Every entry of the two days: entry_id, feed_file, link, published, title."""
    with (data / "entries.tsv").open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))


def load_pairs(data: Path = DATA) -> list[Pair]:
    """The labelled pairs, unsure ones ("?") dropped."""
    pairs = []
    for line in (data / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        if raw["label"] not in ("0", "1"):
            continue
        text = [
            f"{p['outlet']} {p['published'][:16]}: {p['title']} | {p['summary'][:160]}" for p in (raw["a"], raw["b"])
        ]
        pairs.append(
            Pair(raw["pair_id"], raw["a"]["id"], raw["b"]["id"], raw["stratum"], int(raw["label"]),
                 raw["reason"], *text)
        )  # fmt: skip
    return pairs


@cache
def _strata(data: Path) -> dict[tuple[str, str], str]:
    with gzip.open(data / "strata.tsv.gz", "rt", encoding="utf-8") as file:
        rows = csv.reader(file, delimiter="\t")
        next(rows)
        return {(min(a, b), max(a, b)): s for a, b, s in rows}


@cache
def _population(data: Path) -> dict[str, int]:
    return dict(json.loads((data / "population.json").read_text(encoding="utf-8"))["N_s"])


def _merged_per_stratum(clusters: Mapping[str, object], data: Path) -> Counter[str]:
    """M_s: the eligible pairs (different feed files, at most 72 h apart) inside each story, by stratum."""
    entries = {e["entry_id"]: e for e in load_entries(data)}
    strata = _strata(data)
    members: dict[object, list[str]] = defaultdict(list)
    for entry_id, story in clusters.items():
        members[story].append(entry_id)
    merged: Counter[str] = Counter()
    for ids in members.values():
        for i, a in enumerate(ids):
            ea = entries[a]
            ta = datetime.fromisoformat(ea["published"])
            for b in ids[i + 1 :]:
                eb = entries[b]
                if ea["feed_file"] == eb["feed_file"]:
                    continue
                if abs(datetime.fromisoformat(eb["published"]) - ta) > WINDOW:
                    continue
                merged[strata.get((min(a, b), max(a, b)), "S0")] += 1
    return merged


def score(clusters: Mapping[str, object], halves: Iterable[str] = "AB", data: Path = DATA) -> Score:
    """Precision and recall of `clusters` (entry id -> story) estimated from the labelled pairs of `halves`."""
    pairs = [p for p in load_pairs(data) if half(p.pair_id) in halves]
    population = _population(data)
    by_stratum: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_stratum[pair.stratum].append(pair)

    def together(pair: Pair) -> bool:
        return pair.a in clusters and clusters[pair.a] == clusters.get(pair.b)

    merged = _merged_per_stratum(clusters, data)
    hits = weight = recall_hits = recall_total = 0.0
    for stratum in STRATA:
        labelled = by_stratum.get(stratum, [])
        if not labelled:
            continue
        mean = sum(p.label for p in labelled) / len(labelled)
        joined = [p.label for p in labelled if together(p)]
        q = sum(joined) / len(joined) if len(joined) >= MIN_MERGED_LABELLED else mean
        hits += merged[stratum] * q
        weight += merged[stratum]
        recall_hits += population[stratum] * sum(p.label for p in labelled if together(p)) / len(labelled)
        recall_total += population[stratum] * mean
    sizes = Counter(clusters.values())
    return Score(
        precision=hits / weight if weight else 1.0,
        recall=recall_hits / recall_total if recall_total else 0.0,
        largest=max(sizes.values(), default=0),
        share_over_30=sum(n for n in sizes.values() if n > 30) / max(1, len(clusters)),
        stories=len(sizes),
        false_merges=tuple(p for p in pairs if p.label == 0 and together(p)),
        misses=tuple(p for p in pairs if p.label == 1 and not together(p)),
    )


def breakdown(
    clusters: Mapping[str, object], halves: Iterable[str] = "AB", data: Path = DATA
) -> list[tuple[str, int, float, int, int]]:
    """Per stratum: merged eligible pairs M_s, the q_s used, labelled pairs merged, of which positive."""
    pairs = [p for p in load_pairs(data) if half(p.pair_id) in halves]
    merged = _merged_per_stratum(clusters, data)
    rows = []
    for stratum in STRATA:
        labelled = [p for p in pairs if p.stratum == stratum]
        joined = [p.label for p in labelled if p.a in clusters and clusters[p.a] == clusters.get(p.b)]
        mean = sum(p.label for p in labelled) / max(1, len(labelled))
        q = sum(joined) / len(joined) if len(joined) >= MIN_MERGED_LABELLED else mean
        rows.append((stratum, merged[stratum], q, len(joined), sum(joined)))
    return rows
