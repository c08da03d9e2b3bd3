"""Story clustering: decide which story each new entry joins (pure: no I/O, no clock).

A story is one *event*: one development reported by several outlets, not a topic. Entries arrive in
`published` order and each is compared with the stories that have members in the window (72 hours):

1. ``url``: an entry of the window has the same canonical URL (any feed, also the entry's own feed).
2. ``title``: an entry of the window has the same normalized title, and that title is informative enough
   (``"Live updates"`` from three outlets is three stories).
3. ``similar``: the entry is close enough to a story's members:

   - an entry with a summary is compared with *every* member (average linkage: the mean of its cosines with
     them), with terms weighted by how rare they are in general language *and* in the window, so the words of
     this week's big topic ("Israel", "Hamas", "Biden") identify nothing while the specifics of one event
     ("Hroza", "Kuiper", "Rutherglen") do; the score fades with the time since the story's latest report
     (`Params.decay_hours`). A topic's stories share vocabulary with each new report, but not with all
     members at once: averaging, rather than comparing with a centroid or the nearest member, keeps a chain
     of related reports from growing into a topic, and gives a big story no advantage over a small one.
   - an entry with a title only (some feeds send no summary) is compared with the story's centroid, with
     general-language weights: two headlines share too few words to tell one development from the next,
     and a centroid lets them meet the story the way its other reports word it.

   Either way the entry must share at least some informative weight with the story (one shared name is the
   classic false merge), and a story made only of the entry's own feed is never joined by similarity, so a
   feed's series ("Markets wrap") stays apart while an outlet's follow-up joins the story others report.
4. ``new``: otherwise the entry starts a story.

Stories never merge once created, so story ids stay stable: an entry that could join two stories joins the
better one. `StoryIndex.representative` names the member most like the others (a story's lead).

Candidate stories come from an inverted index of title and slug terms (term -> stories), never from a scan
of the window. The index holds what it is given until `evict()` drops entries older than the window.

Every constant is in `Params` (the matching) or below (how text becomes a term vector, baked into the
vectors stored in `entry_terms`), each with the data set and the number that chose it:
``benchmarks/tune_dedup.py`` measures both data sets and writes ``benchmarks/DEDUP.md``.
"""

from __future__ import annotations

import heapq
import math
import operator
import re
import sys
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import compress, repeat
from urllib.parse import urlsplit

from aggregator.models import Assignment, DedupItem, TermVector
from aggregator.zipf import zipf_frequency

__all__ = [
    "BIGRAM_FACTOR",
    "CJK_BIGRAM_WEIGHT",
    "DEFAULTS",
    "GENERIC_WORDS",
    "MAX_HEADLINE_WORDS",
    "MAX_SUMMARY_CHARS",
    "MAX_TERMS",
    "MAX_TITLE_CHARS",
    "MAX_WEIGHT",
    "MIN_TERM_WEIGHT",
    "SLUG_SHARE",
    "SUMMARY_BIGRAMS",
    "TITLE_BOOST",
    "WEIGHT_POWER",
    "Params",
    "StoryIndex",
    "normalize_title",
    "term_vector",
]


@dataclass(frozen=True, slots=True)
class Params:
    """How entries are matched to stories. Chosen on half A of rumca-dev's labelled pairs (real feeds with
    summaries) and half 0 of uci-dev.csv (headlines only); the other halves report how each choice carries
    over (benchmarks/DEDUP.md). feeds.yaml sets `window`, `threshold`, `title_only_threshold` and
    `decay_hours` (dedup.*)."""

    # A story stays open this long after a report; reports further apart never meet.
    window: timedelta = timedelta(hours=72)
    # Mean rarity-weighted cosine with a story's members at or above which an entry with a summary joins it.
    # rumca-dev half A: 0.35 -> P 0.74 / R 0.087, 0.40 -> P 0.85 / R 0.086, 0.45 -> P 0.84 / R 0.065: the
    # highest precision before recall drops (DEDUP.md has every sweep, both halves).
    threshold: float = 0.40
    # Cosine with a story's centroid at or above which a headline without summary joins it. uci-dev.csv half
    # 0: B-cubed F1 0.869 / 0.877 / 0.875 at 0.08 / 0.10 / 0.12, precision 0.98 throughout.
    title_only_threshold: float = 0.10
    # Window rarity: a term's weight is multiplied by (ln((N + prior) / (df + prior)) + 1) ** power, N the
    # entries of the window and df those using the term. rumca-dev half A: power 0 / 1 / 2 / 3 gave P 0.59 /
    # 0.77 / 0.85 / 0.84 at recall 0.08-0.09. The prior keeps a small window (a few feeds, a first pass) from
    # weighting words by chance; 1 measured 0.003 better than 3 on half A and 10 lost 0.07: 3 is a deliberate
    # margin for windows smaller than rumca-dev's.
    rarity_power: float = 2.0
    rarity_prior: float = 3.0
    # A story's score is multiplied by exp(-hours since its latest report / decay_hours): one development is
    # reported within a day or so. rumca-dev half A: 12 / 24 / 48 h / none gave P 0.83 / 0.85 / 0.80 / 0.78.
    decay_hours: float = 24.0
    # Informative word weight (sum of 8 - zipf over shared words) an entry with a summary must share with a
    # story. rumca-dev half A: 4 / 8 / 12 gave P 0.845 / 0.845 / 0.852 at the same recall.
    min_shared_weight: float = 12.0
    # The same for a headline alone, and its weak-share rule: below `strong_shared_weight` (about one rare
    # word: "Tips for playing Titanfall", "Nvidia") the cosine must reach `weak_share_cosine`. uci-dev.csv
    # (one feed per row, t=0.14): 6.0 cut pairwise recall to 0.717 / 0.621 from 0.862 / 0.644 at 4.0.
    title_min_shared_weight: float = 4.0
    strong_shared_weight: float = 6.0
    weak_share_cosine: float = 0.5
    headline_size_prior: float = 0.2
    # Terms in the titles of more entries of the window than this do not find candidates (they still count
    # in the score); only the stories sharing the most indexed weight are scored. tune_dedup.py --scale keeps
    # the cost flat with these.
    max_posting: int = 200
    max_candidates: int = 10
    # A story keeps its lead while the lead's likeness to the other members is within this fraction of the
    # best member's: a subscriber's link should not change with every report that joins. Not measured on
    # labels (it changes no clustering); 0.1 keeps the five wire copies of tests/test_render.py on one link.
    lead_margin: float = 0.1


DEFAULTS = Params()

# How an entry's text becomes a term vector. These are baked into the vectors stored in `entry_terms`: after
# changing one, empty that table (README, The store) so the vectors are built again.

# A "title" of more words than this is not a headline (a feed bug, a whole article in <title>): it never
# joins or gathers a story by similarity, only by identical URL or title. uci-dev.csv's longest title has 18.
MAX_HEADLINE_WORDS = 40
# A word's weight is MAX_WEIGHT - zipf (zipf: log10 of frequency per billion words, 0 when unknown).
MAX_WEIGHT = 8.0
# Words lighter than this ("the", "of", "said": zipf >= 6.5) are neither scored nor indexed.
MIN_TERM_WEIGHT = 1.5
# Weights are raised to this power so rare names dominate common words. uci-dev.csv (one feed per row,
# t=0.10): B-cubed F1 0.808 / 0.821 at 1.5, 0.799 / 0.825 at 1.0, 0.774 / 0.790 at 2.0: a wash with 1.0.
WEIGHT_POWER = 1.5
# Title terms count this many times a summary term: headlines name the story, summaries wander. Not
# measurable on titles-only uci-dev.csv; chosen on the WAIC test case of tests/test_dedup.py.
TITLE_BOOST = 2.0
# A bigram of two adjacent informative words weighs this fraction of its lighter word. uci-dev.csv: 0.0 and
# 0.5 within 0.015 B-cubed F1 of each other; 1.0 lost 0.03 to 0.09 recall. Kept at 0.5 to favour exact phrases.
BIGRAM_FACTOR = 0.5
# Weight of one CJK character bigram (wordfreq cannot segment Chinese or Japanese without extra packages).
# One shared pair such as 中国 never matches; two need Params.weak_share_cosine; three reach the strong share.
CJK_BIGRAM_WEIGHT = 2.0
# Words of the link's slug count like summary words times this: most outlets put the headline, often a
# longer one, in the URL. uci-dev.csv (titles only, halves 0 / 1): 0 gives pair R 0.871 / 0.712 and
# B3 F1 0.867 / 0.834; 1.0 gives R 0.901 / 0.747, B3 F1 0.887 / 0.846 at pair P 0.983 / 0.951.
SLUG_SHARE = 1.0
# An entry's vector keeps its heaviest terms only (and every title and slug term): with WEIGHT_POWER the light
# tail barely moves a cosine, but it made up most of the index's memory and scoring time. On the 200x50
# benchmark corpus (summaries of ~1,500 characters), 32 instead of all terms took clustering from 7.9 to 3.3 s;
# the tests' hard cases and uci-dev.csv (titles, rarely more than 32 terms) come out the same.
MAX_TERMS = 32
# Text beyond these lengths is ignored: a 10,000-character title must not touch every story.
MAX_TITLE_CHARS = 300
# The lead of the summary names the story; the rest wanders. 95 % of the 2,693 real entries of
# shared/data/feeds have summaries of at most 310 characters (median 79), so this cuts only long ones.
MAX_SUMMARY_CHARS = 300
# Bigrams of summary words: off. BIGRAM_FACTOR was measured on titles (uci-dev.csv); in summaries bigrams
# doubled the terms of every vector for no measured gain.
SUMMARY_BIGRAMS = False
# Newsroom boilerplate that names no story: weight 0, so "Live updates" or "Morning briefing" never match.
# fmt: off
GENERIC_WORDS = frozenset({
    "blog", "breaking", "briefing", "bulletin", "daily", "digest", "edition", "evening", "headline",
    "headlines", "highlights", "latest", "live", "morning", "newsletter", "news", "podcast", "roundup",
    "stories", "story", "summary", "today", "top", "update", "updates", "video", "watch", "week", "weekly",
})
# fmt: on

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN_RE = re.compile(rf"[{_CJK}]+|\d+(?:[.,]\d+)*|[^\W\d_{_CJK}]+(?:'[^\W\d_{_CJK}]+)*")
_CJK_RE = re.compile(f"[{_CJK}]")
# A slug is three or more hyphenated words; shorter runs and ids ("a1b2-c3") are not text.
_SLUG_RE = re.compile(r"[a-z]+(?:-[a-z]+){2,}")
_TAIL_RE = re.compile(r"\s+(?:[-|–—]|::)\s+([^-|–—]{1,40})$")
_PREFIX_RE = re.compile(
    r"^(?:update|corrected|refile|rpt|exclusive|breaking|wrapup|factbox|analysis)\b[\s\d]*[-:]\s*", re.I
)
_ELLIPSIS_RE = re.compile(r"\s*(?:\.\.\.|…)\s*$")
_SCRIPT_LANGS = (("ARABIC", "ar"), ("CYRILLIC", "ru"), ("GREEK", "el"), ("HEBREW", "he"))


def normalize_title(title: str) -> str:
    """Lowercase the title, strip wire prefixes and suffixes (" - Reuters", " | CNA") and punctuation."""
    text = _strip_affixes(unicodedata.normalize("NFKC", title[:MAX_TITLE_CHARS]))
    return " ".join(m.group(0) for m in _TOKEN_RE.finditer(text.lower().replace("’", "'")))


def _strip_affixes(title: str) -> str:
    """Drop a truncation ellipsis, a wire prefix ("UPDATE 2-") and site-name tails ("- Bloomberg.com")."""
    text = _PREFIX_RE.sub("", _ELLIPSIS_RE.sub("", title.strip()))
    for _ in range(3):
        match = _TAIL_RE.search(text)
        if match is None or not _looks_like_source(match.group(1)):
            break
        head = text[: match.start()]
        if len(head.split()) < 2:
            break
        text = head
    return text


def _looks_like_source(tail: str) -> bool:
    """A short tail of capitalized words, digits or a domain: "Reuters", "WDRB 41", "tradingview.com"."""
    words = tail.split()
    if not 1 <= len(words) <= 4:
        return False
    return all(w[0].isupper() or w[0].isdigit() or not w[0].isascii() or "." in w for w in words)


def _word_weight(word: str) -> float:
    """Informative weight of a lowercased word: rare words weigh more, boilerplate nothing."""
    if word in GENERIC_WORDS:
        return 0.0
    lang = "en"
    if not word[0].isascii() and word[0].isalpha():
        name = unicodedata.name(word[0], "")
        lang = next((code for script, code in _SCRIPT_LANGS if name.startswith(script)), "en")
    weight = MAX_WEIGHT - zipf_frequency(word, lang)
    return weight if weight >= MIN_TERM_WEIGHT else 0.0


def _is_headline(title: str) -> bool:
    """Whether a title is short enough to be a headline rather than a feed's mistake."""
    return len(title[: MAX_TITLE_CHARS * 4].split()) <= MAX_HEADLINE_WORDS


def _stem(word: str) -> str:
    """Fold English plurals and possessives so "elephants" meets "elephant's"."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def _word(token: str) -> tuple[str, float]:
    """A lowercased word's term (its stem) and informative weight (0.0: not a term); the one cache of both."""
    return _stem(token), _word_weight(token)


def _terms(text: str, limit: int, bigrams: bool = True) -> dict[str, float]:
    """Weighted terms of one text field: words, bigrams of adjacent informative words (unless `bigrams` is
    False), CJK character bigrams."""
    text = unicodedata.normalize("NFKC", text[:limit]).lower().replace("’", "'")
    terms: dict[str, float] = {}
    previous, previous_weight = "", 0.0
    for token in _TOKEN_RE.findall(text):
        if token[0] >= "\u3040" and _CJK_RE.match(token):
            for i in range(max(1, len(token) - 1)):
                terms[token[i : i + 2]] = CJK_BIGRAM_WEIGHT
            previous = ""
            continue
        key, weight = _word(token)
        if weight == 0.0:
            previous = ""
            continue
        if weight > terms.get(key, 0.0):
            terms[key] = weight
        if previous and bigrams:
            terms[f"{previous}_{key}"] = BIGRAM_FACTOR * min(previous_weight, weight)
        previous, previous_weight = key, weight
    return terms


def _slug_text(url: str) -> str:
    """The words of a URL's slug ("/2026/08/china-proposes-ai-body" -> "china proposes ai body")."""
    return " ".join(slug.replace("-", " ") for slug in _SLUG_RE.findall(urlsplit(url).path.lower()))


def term_vector(title: str, summary_text: str, canonical_url: str | None) -> TermVector:
    """An entry's term vector (title terms boosted, summary and slug terms added, weights powered, at most
    MAX_TERMS of the heaviest kept) and its exact-match keys. Pure: the pass builds it beside parsing."""
    title_terms = _terms(_strip_affixes(unicodedata.normalize("NFKC", title[:MAX_TITLE_CHARS])), MAX_TITLE_CHARS)
    summary = _terms(summary_text, MAX_SUMMARY_CHARS, SUMMARY_BIGRAMS) if summary_text else {}
    keys = dict.fromkeys(title_terms)
    if canonical_url:
        for term, weight in _terms(_slug_text(canonical_url), MAX_TITLE_CHARS).items():
            if "_" not in term:
                summary.setdefault(term, weight * SLUG_SHARE)
                keys[term] = None
    raw = {t: max(w, summary.get(t, 0.0)) for t, w in title_terms.items()}
    for term, weight in summary.items():
        raw.setdefault(term, weight)
    shares = {t: (TITLE_BOOST if t in title_terms else 0.0) + (1.0 if t in summary else 0.0) for t in raw}
    vector = {t: share * raw[t] ** WEIGHT_POWER for t, share in shares.items()}
    if len(vector) > MAX_TERMS:
        kept = set(heapq.nlargest(MAX_TERMS, vector, key=vector.__getitem__)).union(keys)
        vector = {t: v for t, v in vector.items() if t in kept}
    norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
    title_key = normalize_title(title)
    return TermVector(
        terms=tuple(map(sys.intern, vector)),
        weights=array("d", [v / norm for v in vector.values()]),
        raw=array("d", [raw[t] for t in vector]),
        keys=tuple(map(sys.intern, keys)),
        title_key=title_key,
        title_weight=sum(_word(w)[1] for w in set(title_key.split())),
        headline=_is_headline(title),
        has_summary=bool(summary_text),
    )


def _item_terms(item: DedupItem) -> TermVector:
    """The item's stored term vector, or one built from its text."""
    return item.terms or term_vector(item.title, item.summary_text, item.canonical_url)


def _words(terms: Iterable[str]) -> Iterator[str]:
    """The single words among terms (bigrams "a_b" are made of them)."""
    return (t for t in terms if "_" not in t)


@dataclass(slots=True)
class _Held:
    """An entry held in the index: what the window, eviction and matching need of it (not its text). The
    index holds every entry of the window (50,000 at 1000x50): its vectors are float32, parallel to terms."""

    entry_id: int
    feed_id: int
    canonical_url: str | None
    published: datetime
    story_id: int
    terms: tuple[str, ...]
    weights: array[float] | None  # the unit vector with general-language weights (headlines alone only)
    rare: array[float]  # the unit vector with window rarity, as it was when the entry joined
    keys: tuple[str, ...]
    title_key: str
    title_weight: float
    headline: bool
    has_summary: bool


@dataclass(slots=True)
class _Story:
    """A story's members in the window and the sums its scores are computed from.

    Most stories of a window have one member: such a story keeps no sums of its own, its member's vectors
    are its sums (`centroid` and `rare_sum` stay None until a second member joins).
    """

    members: dict[int, _Held] = field(default_factory=dict)
    centroid: dict[str, float] | None = None  # sum of the general unit vectors of members without summary
    rare_sum: dict[str, float] | None = None  # sum of the members' rarity unit vectors
    latest: datetime | None = None
    feed_ids: set[int] = field(default_factory=set)
    summaries: int = 0  # members with a summary
    _norm: float | None = None  # the centroid's length, computed when first needed after a change

    def add(self, held: _Held) -> None:
        """Count a new member in the sums."""
        if len(self.members) == 1:
            (first,) = self.members.values()
            self.centroid, self.rare_sum = {}, {}
            _accumulate(self.centroid, first.terms, first.weights)
            _accumulate(self.rare_sum, first.terms, first.rare)
        self.members[held.entry_id] = held
        if self.centroid is not None and self.rare_sum is not None:
            _accumulate(self.centroid, held.terms, held.weights)
            _accumulate(self.rare_sum, held.terms, held.rare)
        if self.latest is None or held.published > self.latest:
            self.latest = held.published
        self.feed_ids.add(held.feed_id)
        self.summaries += held.has_summary
        self._norm = None

    def rebuild(self) -> None:
        """Recompute the sums from the members (after one left: subtracting would leave rounding residue)."""
        members = list(self.members.values())
        self.members, self.centroid, self.rare_sum, self.latest = {}, None, None, None
        self.feed_ids, self.summaries = set(), 0
        for held in members:
            self.add(held)

    def shared_weight(self, words: Mapping[str, float]) -> float:
        """The informative weight of the entry's `words` (word -> weight) that the members also use."""
        # (map over C-level get: these run for every candidate of every entry)
        if self.rare_sum is None:
            (only,) = self.members.values()
            return sum(map(words.get, only.terms, repeat(0.0)))
        return sum(compress(words.values(), map(self.rare_sum.__contains__, words)))

    def rare_dot(self, rare: Mapping[str, float]) -> float:
        """The dot product of an entry's rarity vector with the sum of the members' rarity vectors."""
        if self.rare_sum is None:
            (only,) = self.members.values()
            return float(sum(map(operator.mul, map(rare.get, only.terms, repeat(0.0)), only.rare)))
        return float(sum(map(operator.mul, rare.values(), map(self.rare_sum.get, rare, repeat(0.0)))))

    def centroid_cosine(self, unit: Mapping[str, float]) -> float:
        """The cosine of an entry's general unit vector with the centroid of the members (all without
        summary: headlines meet headlines this way only)."""
        if self.centroid is None:
            (only,) = self.members.values()
            weights = only.weights or ()
            dot = sum(unit.get(t, 0.0) * v for t, v in zip(only.terms, weights, strict=True))
            return dot / (math.sqrt(sum(v * v for v in weights)) or 1.0)
        if self._norm is None:
            self._norm = math.sqrt(sum(v * v for v in self.centroid.values()))
        centroid = self.centroid
        dot = sum(v * centroid.get(t, 0.0) for t, v in unit.items())
        return dot / self._norm if self._norm else 0.0

    def likeness(self, held: _Held) -> float:
        """How like the other members a member is: its rarity vector's dot with theirs summed."""
        if self.rare_sum is None:
            return 0.0
        rare_sum = self.rare_sum
        return sum(v * (rare_sum.get(t, 0.0) - v) for t, v in zip(held.terms, held.rare, strict=True))

    def in_window(self, when: datetime, window: timedelta) -> bool:
        """Whether a member was published within `window` of `when`, either side."""
        return any(abs(h.published - when) <= window for h in self.members.values())


def _accumulate(sums: dict[str, float], terms: tuple[str, ...], values: Iterable[float] | None) -> None:
    """Add one vector (terms, values) into a sum (None: a vector the member does not keep)."""
    for term, value in zip(terms, values or (), strict=values is not None):
        sums[term] = sums.get(term, 0.0) + value


class StoryIndex:
    """In-memory index of the entries of the time window: candidate search, scores, window rarity."""

    def __init__(self, params: Params = DEFAULTS) -> None:
        """Create an empty index; seed it with add() from the store."""
        self.params = params
        self._held: dict[int, _Held] = {}
        self._stories: dict[int, _Story] = {}
        # term -> the story of each member whose title or slug holds it (a story once per such member)
        self._postings: dict[str, list[int]] = {}
        self._by_url: dict[str, list[_Held]] = {}
        self._by_title: dict[str, list[_Held]] = {}
        self._ages: list[tuple[datetime, int]] = []
        # window rarity: how many counted entries use each word; entries observed before they are added
        self._df: dict[str, int] = {}
        self._counted = 0
        self._observed: set[int] = set()
        self._rarities: dict[str, float] = {}  # see _rarity
        # the vector assign() used for its item, reused by the add() of the same item that follows
        self._pending: tuple[DedupItem, TermVector, dict[str, float] | None] | None = None

    def __len__(self) -> int:
        """Number of entries held."""
        return len(self._held)

    def observe(self, items: Iterable[DedupItem]) -> None:
        """Count the words of entries about to be assigned, so the window's rarity includes them from the
        first one on (a first pass stores a whole window at once)."""
        for item in items:
            if item.entry_id not in self._held and item.entry_id not in self._observed:
                self._observed.add(item.entry_id)
                self._count(_item_terms(item).terms, 1)

    def assign(self, item: DedupItem) -> Assignment:
        """Decide which story the item joins (story_id None: a new one); the caller then calls add()."""
        vector = _item_terms(item)
        self._pending = (item, vector, None)
        exact = self._exact_match(item, vector)
        if exact is not None:
            return exact
        if not vector.headline:
            return Assignment(item.entry_id, None, "new", 0.0)
        rare = self._rarity_vector(vector)
        self._pending = (item, vector, rare)
        words = {t: w for t, w in zip(vector.terms, vector.raw, strict=True) if "_" not in t}
        unit = dict(zip(vector.terms, vector.weights, strict=True))
        best_id, best, best_margin = None, 0.0, -math.inf
        for story_id in self._candidates(vector):
            story = self._stories[story_id]
            if not story.in_window(item.published, self.params.window):
                continue
            if story.feed_ids == {item.feed_id}:
                continue  # only entries of this feed: they join each other through rules 1 and 2 only
            # headlines meet headlines by the centroid; as soon as either side has a summary, by the members
            if vector.has_summary or story.summaries:
                value, threshold = self._event_score(item, words, rare, story), self.params.threshold
            else:
                value, threshold = self._headline_score(words, unit, story), self.params.title_only_threshold
            margin = value - threshold
            if not (vector.has_summary or story.summaries) and margin >= 0:
                margin = value * len(story.members) ** self.params.headline_size_prior - threshold
            if margin > best_margin:
                best_id, best, best_margin = story_id, value, margin
        if best_id is None or best_margin < 0:
            return Assignment(item.entry_id, None, "new", round(best, 4))
        return Assignment(item.entry_id, best_id, "similar", round(best, 4))

    def add(self, item: DedupItem, story_id: int) -> None:
        """Record the item as a member of story_id (seeding from the store, or after assign())."""
        pending, self._pending = self._pending, None
        if item.entry_id in self._held:
            self._remove(item.entry_id)
        vector, rare = _item_terms(item), None
        if pending is not None and pending[0] is item:
            vector, rare = pending[1], pending[2]
        if item.entry_id in self._observed:
            self._observed.discard(item.entry_id)
        else:
            self._count(vector.terms, 1)
        rare = rare if rare is not None else self._rarity_vector(vector)
        held = _Held(
            item.entry_id, item.feed_id, item.canonical_url, item.published, story_id, vector.terms,
            None if vector.has_summary else array("f", vector.weights),
            array("f", map(rare.__getitem__, vector.terms)), vector.keys,
            vector.title_key, vector.title_weight, vector.headline, vector.has_summary,
        )  # fmt: skip
        self._held[item.entry_id] = held
        self._stories.setdefault(story_id, _Story()).add(held)
        if vector.headline:
            for term in vector.keys:
                self._postings.setdefault(term, []).append(story_id)
        if item.canonical_url:
            self._by_url.setdefault(item.canonical_url, []).append(held)
        if vector.title_key:
            self._by_title.setdefault(vector.title_key, []).append(held)
        heapq.heappush(self._ages, (item.published, item.entry_id))

    def evict(self, before: datetime) -> None:
        """Drop the items published before `before`, so memory stays bounded by the window."""
        while self._ages and self._ages[0][0] < before:
            published, entry_id = heapq.heappop(self._ages)
            held = self._held.get(entry_id)
            if held is not None and held.published == published:
                self._remove(entry_id)

    def representative(
        self, story_id: int, priority: Callable[[int], int] = lambda feed_id: 0, current: int | None = None
    ) -> int | None:
        """The member that best represents the story (its lead): among the members of the feeds of highest
        `priority`, the one most like the others (the highest mean rarity-weighted cosine with them; on a tie
        the one that joined first, so a later copy never takes over). The `current` lead stays while it is
        within `Params.lead_margin` of the best, so a story's link does not flip with each new report. None
        when the index holds no member of the story."""
        story = self._stories.get(story_id)
        if story is None:
            return None
        top = max(priority(h.feed_id) for h in story.members.values())
        likeness = {h.entry_id: story.likeness(h) for h in story.members.values() if priority(h.feed_id) == top}
        best = max(likeness.values())
        if current in likeness and likeness[current] >= best - self.params.lead_margin * abs(best):
            return current
        return next(entry_id for entry_id, value in likeness.items() if value >= best - 1e-9)

    def _event_score(
        self, item: DedupItem, words: Mapping[str, float], rare: Mapping[str, float], story: _Story
    ) -> float:
        """An entry with a summary against a story: the mean rarity-weighted cosine with its members, faded
        by the hours since the story's latest report; 0 when they share too little informative weight."""
        if story.shared_weight(words) < self.params.min_shared_weight:
            return 0.0
        mean = story.rare_dot(rare) / len(story.members)
        assert story.latest is not None
        hours = abs((item.published - story.latest).total_seconds()) / 3600
        return mean * math.exp(-hours / self.params.decay_hours)

    def _headline_score(self, words: Mapping[str, float], unit: Mapping[str, float], story: _Story) -> float:
        """A headline alone against a story: the cosine with its centroid (general-language weights); 0 when
        they share too little, or below `weak_share_cosine` when they share about one rare word."""
        params = self.params
        shared = story.shared_weight(words)
        if shared < params.title_min_shared_weight:
            return 0.0
        cosine = story.centroid_cosine(unit)
        if shared < params.strong_shared_weight and cosine < params.weak_share_cosine:
            return 0.0
        return cosine

    def _rarity_vector(self, vector: TermVector) -> dict[str, float]:
        """The vector's terms re-weighted by their rarity in the window, as a unit vector."""
        rarity = self._rarity
        weighted = {t: w * min(map(rarity, t.split("_"))) for t, w in zip(vector.terms, vector.weights, strict=True)}
        norm = math.sqrt(sum(v * v for v in weighted.values())) or 1.0
        return {t: v / norm for t, v in weighted.items()}

    def _rarity(self, word: str) -> float:
        """A word's rarity factor in the window: (ln((N + prior) / (df + prior)) + 1) ** power.

        Cached until the counts change: a pass counts its entries first (observe), so while it assigns them
        the counts, and these factors, stay the same."""
        factor = self._rarities.get(word)
        if factor is None:
            params = self.params
            inverse = math.log((self._counted + params.rarity_prior) / (self._df.get(word, 0) + params.rarity_prior))
            factor = self._rarities[word] = float((inverse + 1.0) ** params.rarity_power)
        return factor

    def _count(self, terms: Iterable[str], sign: int) -> None:
        """Add (1) or remove (-1) one entry's words from the window's document frequencies."""
        self._rarities.clear()
        df = self._df
        for word in _words(terms):
            count = df.get(word, 0) + sign
            if count > 0:
                df[word] = count
            else:
                df.pop(word, None)
        self._counted += sign

    def _exact_match(self, item: DedupItem, vector: TermVector) -> Assignment | None:
        """Join the story of a window entry with the same canonical URL or informative normalized title."""
        if item.canonical_url:
            held = self._latest_in_window(self._by_url.get(item.canonical_url), item)
            if held is not None:
                return Assignment(item.entry_id, held.story_id, "url", 1.0)
        title_key = vector.title_key
        held = self._latest_in_window(self._by_title.get(title_key), item) if title_key else None
        if held is not None and held.title_weight >= self.params.title_min_shared_weight:
            return Assignment(item.entry_id, held.story_id, "title", 1.0)
        return None

    def _latest_in_window(self, entries: list[_Held] | None, item: DedupItem) -> _Held | None:
        """The most recently published of `entries` within the window of `item`, if any."""
        window = self.params.window
        near = [h for h in entries or () if abs(h.published - item.published) <= window]
        return max(near, key=lambda h: h.published, default=None)

    def _candidates(self, vector: TermVector) -> list[int]:
        """Stories sharing indexed terms with the vector, most shared weight first, at most max_candidates."""
        shared: dict[int, float] = {}
        raw = dict(zip(vector.terms, vector.raw, strict=True))
        for term in vector.keys:
            posting = self._postings.get(term)
            if posting is None or len(posting) > self.params.max_posting:
                continue
            for story_id in dict.fromkeys(posting):
                shared[story_id] = shared.get(story_id, 0.0) + raw[term]
        return sorted(shared, key=shared.__getitem__, reverse=True)[: self.params.max_candidates]

    def _remove(self, entry_id: int) -> None:
        """Forget one entry: its story membership and sums, postings, lookups and word counts."""
        held = self._held.pop(entry_id)
        self._count(held.terms, -1)
        story = self._stories[held.story_id]
        del story.members[entry_id]
        if story.members:
            story.rebuild()
        else:
            del self._stories[held.story_id]
        for term in held.keys if held.headline else ():
            posting = self._postings[term]
            posting.remove(held.story_id)
            if not posting:
                del self._postings[term]
        for lookup, key in ((self._by_url, held.canonical_url), (self._by_title, held.title_key)):
            if key and key in lookup:
                lookup[key].remove(held)
                if not lookup[key]:
                    del lookup[key]
