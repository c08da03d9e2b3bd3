"""Story clustering: decide which story each new entry joins (pure: no I/O, no clock).

Entries arrive in `published` order. Each one is compared with the stories that have members published
within `window` of it, in this order:

1. ``url``: an entry of the window has the same canonical URL (any feed, also the entry's own feed).
2. ``title``: an entry of the window has the same normalized title, and that title is informative enough
   (``"Live updates"`` from three outlets is three stories).
3. ``similar``: the cosine between the entry's term vector and a story's *centroid* (the sum of its members'
   unit vectors) reaches the threshold, and the entry shares at least `MIN_SHARED_WEIGHT` of informative
   word weight with that story (a higher cosine when it shares little more than one rare word). A story
   made only of the entry's own feed is skipped, so a feed's entries never join each other by similarity
   (a feed's "Markets wrap" series stays apart), only through rules 1 and 2, yet an outlet's follow-up
   joins the story that other outlets report. (Scoring against the centroid without the feed's own members
   measured the same on uci-dev.csv, P 0.983 / 0.951, B3 F1 0.887 / 0.846, at several times the cost.) Among
   the stories that qualify, a mild size prior favours the established story over a young split-off.
   Entries with a summary need `DEFAULT_THRESHOLD`; titles alone score lower and need
   `TITLE_ONLY_THRESHOLD`.
4. ``new``: otherwise the entry starts a story.

Term weights come from general-language word frequencies (wordfreq): a word's weight is ``8 - zipf``, so
"the" weighs about 0.3 and "Titanfall" 5.4; unknown words weigh the most. Title terms count more than summary
terms, adjacent informative words also form a bigram term, and CJK text is cut into character bigrams.

Stories never merge once created, so story ids stay stable: an entry that bridges two stories joins the
best-scoring one only. Comparing with the centroid rather than with the nearest member keeps a chain of
pairwise-similar entries from drifting into one giant story.

Candidate stories come from an inverted index (term -> stories -> member count), never from a scan of the
window; terms held by more than `MAX_POSTING_STORIES` stories are too common to find candidates with.
The index holds what it was given until `evict()` drops entries older than the window: the caller evicts.

Every threshold below was measured with ``benchmarks/tune_dedup.py`` on ``uci-dev.csv`` (2,657 real
headlines, Google News story labels, titles only); see ``benchmarks/DEDUP.md``.
"""

from __future__ import annotations

import heapq
import math
import operator
import re
import sys
import unicodedata
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import compress, repeat
from urllib.parse import urlsplit

from aggregator.models import Assignment, DedupItem, TermVector
from aggregator.zipf import zipf_frequency

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW",
    "TITLE_ONLY_THRESHOLD",
    "StoryIndex",
    "normalize_title",
    "term_vector",
]

# The window: a story stays open for three days after its latest entry.
DEFAULT_WINDOW = timedelta(hours=72)
# Cosine with a story centroid at or above which an entry joins it. uci-dev.csv (titles only, one feed per
# publisher, story-hash halves 0 / 1): 0.25 gives pairwise precision 0.978 / 0.986, recall 0.301 / 0.450;
# 0.10 would add recall (0.314 / 0.552) at precision 0.969 / 0.979, but the WAIC case of tests/test_dedup.py
# (with summaries) scores a distractor at 0.21 and its weakest true member at 0.36: 0.25 sits between.
DEFAULT_THRESHOLD = 0.25
# The threshold when the entry has no summary (titles only), where cosines run lower. uci-dev.csv, titles only,
# one feed per publisher, halves 0 / 1, with the same-feed rule comparing against other feeds' members:
# 0.08: pair P 0.976 / 0.981, R 0.878 / 0.735, B3 F1 0.875 / 0.846; 0.10: P 0.987 / 0.983, R 0.871 / 0.712,
# B3 F1 0.867 / 0.834; 0.12: R 0.869 / 0.698; 0.16: R 0.860 / 0.672. With SLUG_SHARE 1.0, through the whole
# pipeline (benchmarks/stories.py): 0.10 gives pair P 0.979 / 0.954, R 0.903 / 0.762, B3 F1 0.889 / 0.855;
# 0.12 gives P 0.980 / 0.963, R 0.899 / 0.745, B3 F1 0.885 / 0.849. 0.10 keeps recall >= 0.70 on both halves
# with margin, and the neighbourhood (0.10-0.12) holds the targets, so the choice is not a knife edge.
TITLE_ONLY_THRESHOLD = 0.10
# A "title" of more words than this is not a headline (a feed bug, a whole article in <title>): it never
# joins or gathers a story by similarity, only by identical URL or title. uci-dev.csv's longest title has 18.
MAX_HEADLINE_WORDS = 40
# Informative word weight (sum of 8 - zipf over shared words) an entry must share with a story besides the
# cosine. uci-dev.csv (one feed per row, t=0.14): 6.0 cut pairwise recall to 0.717 / 0.621 from 0.862 / 0.644
# at 4.0; 3.0 dropped precision on half 1 to 0.976 for +0.02 recall.
MIN_SHARED_WEIGHT = 4.0
# Below this shared weight (about one rare word: "Tips for playing Titanfall", "Nvidia") the cosine must
# reach WEAK_SHARE_COSINE instead of the threshold: a single shared name is the classic false merge.
# uci-dev.csv: costs recall (0.862 -> 0.761 on half 0) and buys precision on half 1 (0.981 -> 0.989).
STRONG_SHARED_WEIGHT = 6.0
WEAK_SHARE_COSINE = 0.5

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
# One shared pair such as 中国 never matches; two need cosine WEAK_SHARE_COSINE; three reach the strong share.
CJK_BIGRAM_WEIGHT = 2.0
# Terms held by more stories than this do not find candidates (they still count in the score). The
# synthetic 10,000-item window of tune_dedup.py --scale keeps the median under 1 ms with this.
MAX_POSTING_STORIES = 200
# Among the stories above the threshold, the entry joins the one of highest cosine * members**SIZE_PRIOR:
# a young two-entry story has a sharper centroid than the big story it split from, and should not win
# just for that. uci-dev.csv (t=0.10, one feed per publisher): B-cubed F1 0.436 / 0.633 at 0.0, 0.550 / 0.732
# at 0.2; 0.4 dropped pairwise precision on half 1 to 0.86 (one feed per row).
SIZE_PRIOR = 0.2
# Words of the link's slug count like summary words times this: most outlets put the headline, often a
# longer one, in the URL. uci-dev.csv (titles only, halves 0 / 1): 0 gives pair R 0.871 / 0.712 and
# B3 F1 0.867 / 0.834; 1.0 gives R 0.901 / 0.747, B3 F1 0.887 / 0.846 at pair P 0.983 / 0.951.
SLUG_SHARE = 1.0
# Candidates are found through the terms of the title and the URL slug only (summary terms still count in the
# score): headlines name the story, and indexing every summary word cost 1.1 GB and 280 s on the 1000x50
# benchmark corpus (50,000 entries of ~100 summary words). uci-dev.csv is titles only: unchanged.
# Only the stories sharing the most indexed weight are scored exactly. uci-dev.csv: 10 and 30 give the same
# clusters; on the 200x50 benchmark corpus 30 spent a third of the pass scoring hopeless candidates.
MAX_CANDIDATES = 10
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


@dataclass(slots=True)
class _Held:
    """An entry held in the index: what the window, eviction and matching need of it, copied from its item
    and TermVector. Not the text, nor the raw weights (only the entry being assigned needs those): the index
    holds every entry of the window (50,000 at 1000x50)."""

    entry_id: int
    feed_id: int
    canonical_url: str | None
    published: datetime
    story_id: int
    terms: tuple[str, ...]
    weights: array[float]  # the unit vector, parallel to terms
    keys: tuple[str, ...]
    title_key: str
    title_weight: float
    headline: bool

    def unit(self) -> Iterator[tuple[str, float]]:
        """The unit vector's (term, value) pairs, in the order they were built."""
        return zip(self.terms, self.weights, strict=True)


@dataclass(slots=True)
class _Story:
    """A story's members in the window and their centroid.

    A story that has only ever had one member keeps no centroid dict of its own (`centroid` None): its
    centroid is that member's unit vector, built on demand by `view()` exactly as `add()` would have built it.
    Most stories of a busy window are such singletons, so this halves the index's memory.
    """

    centroid: dict[str, float] | None = None
    sq_norm: float = 0.0
    members: dict[int, _Held] = field(default_factory=dict)
    # the members of each feed, in membership order: a story can hold thousands of entries
    feeds: dict[int, list[_Held]] = field(default_factory=dict)

    def join(self, held: _Held) -> None:
        """List a new member under its feed (its vector goes into the centroid with add())."""
        self.feeds.setdefault(held.feed_id, []).append(held)

    def leave(self, held: _Held) -> None:
        """Unlist a member from its feed (its vector leaves the centroid with add(..., -1))."""
        own = self.feeds[held.feed_id]
        own.remove(held)
        if not own:
            del self.feeds[held.feed_id]

    def add(self, held: _Held, sign: float) -> None:
        """Add (sign 1) or remove (sign -1) one member's vector from the centroid."""
        if self.centroid is None:
            if sign > 0 and len(self.members) == 1:
                # the first member: the same arithmetic as below on an empty centroid (0.0 + value)
                sq_norm = self.sq_norm
                for value in held.weights:
                    new = 0.0 + sign * value
                    sq_norm += new * new - 0.0 * 0.0
                self.sq_norm = sq_norm
                return
            self.centroid = self.view()
        centroid = self.centroid
        for term, value in held.unit():
            old = centroid.get(term, 0.0)
            new = old + sign * value
            self.sq_norm += new * new - old * old
            if abs(new) < 1e-9:
                centroid.pop(term, None)
            else:
                centroid[term] = new

    def view(self) -> dict[str, float]:
        """The centroid (for a never-changed singleton, built from its only member's vector)."""
        if self.centroid is not None:
            return self.centroid
        held = next(iter(self.members.values()))  # the first member: the only one that has counted
        if min(held.weights, default=1.0) >= 1e-9:
            return dict(held.unit())  # unit values are positive, and 0.0 + v is v: built at C speed
        return {term: 0.0 + value for term, value in held.unit() if not abs(0.0 + value) < 1e-9}

    def in_window(self, when: datetime, window: timedelta) -> bool:
        """Whether a member was published within `window` of `when`, either side."""
        # newest first: in a time-ordered stream the first member tried is usually the answer
        return any(abs(h.published - when) <= window for h in reversed(self.members.values()))


class StoryIndex:
    """In-memory index of the recent entries of the time window, for candidate search."""

    def __init__(
        self,
        window: timedelta = DEFAULT_WINDOW,
        threshold: float = DEFAULT_THRESHOLD,
        title_only_threshold: float = TITLE_ONLY_THRESHOLD,
    ) -> None:
        """Create an empty index; seed it with add() from the store."""
        self.window = window
        self.threshold = threshold
        self.title_only_threshold = title_only_threshold
        self._held: dict[int, _Held] = {}
        self._stories: dict[int, _Story] = {}
        self._postings: dict[str, dict[int, int]] = {}
        self._by_url: dict[str, dict[int, _Held]] = {}
        self._by_title: dict[str, dict[int, _Held]] = {}
        self._ages: list[tuple[datetime, int]] = []
        # the vector assign() used for its item, reused by the add() of the same item that follows
        self._pending: tuple[DedupItem, TermVector] | None = None

    def __len__(self) -> int:
        """Number of entries held."""
        return len(self._held)

    def assign(self, item: DedupItem) -> Assignment:
        """Decide which story the item joins (story_id None: a new one); the caller then calls add()."""
        vector = _item_terms(item)
        self._pending = (item, vector)
        exact = self._exact_match(item, vector)
        if exact is not None:
            return exact
        if not vector.headline:
            return Assignment(item.entry_id, None, "new", 0.0)
        threshold = self.threshold if vector.has_summary else self.title_only_threshold
        best: tuple[float, int, float] | None = None  # (rank, story id, cosine)
        best_score = 0.0
        # the sums below run at C speed over these, parallel to the entry's terms: a bigram's raw weight is
        # zeroed, as only words count towards the shared weight
        unit_terms, unit_values = vector.terms, vector.weights
        word_weights = [0.0 if "_" in t else w for t, w in zip(unit_terms, vector.raw, strict=True)]
        for story_id in self._candidates(vector):
            story = self._stories[story_id]
            if not story.in_window(item.published, self.window):
                continue
            if item.feed_id in story.feeds and len(story.feeds) == 1:
                continue  # only entries of this feed: they join each other through rules 1 and 2 only
            centroid, sq_norm = story.view(), story.sq_norm
            # the centroid's value of each term (0.0 when absent; a centroid holds no zeros)
            values = list(map(centroid.get, unit_terms, repeat(0.0)))
            shared = sum(compress(word_weights, values))
            if shared < MIN_SHARED_WEIGHT:
                continue
            dot = sum(map(operator.mul, unit_values, values))
            score = dot / math.sqrt(sq_norm) if sq_norm > 0 else 0.0
            if shared < STRONG_SHARED_WEIGHT and score < WEAK_SHARE_COSINE:
                continue
            best_score = max(best_score, score)
            rank = score * len(story.members) ** SIZE_PRIOR
            if score >= threshold and (best is None or rank > best[0]):
                best = (rank, story_id, score)
        if best is not None:
            return Assignment(item.entry_id, best[1], "similar", round(best[2], 4))
        return Assignment(item.entry_id, None, "new", round(best_score, 4))

    def add(self, item: DedupItem, story_id: int) -> None:
        """Record the item as a member of story_id (seeding from the store, or after assign())."""
        pending, self._pending = self._pending, None
        if item.entry_id in self._held:
            self._remove(item.entry_id)
        vector = pending[1] if pending is not None and pending[0] is item else _item_terms(item)
        held = _Held(
            item.entry_id, item.feed_id, item.canonical_url, item.published, story_id,
            vector.terms, vector.weights, vector.keys, vector.title_key, vector.title_weight, vector.headline,
        )  # fmt: skip
        self._held[item.entry_id] = held
        story = self._stories.get(story_id)
        if story is None:
            story = self._stories[story_id] = _Story()
        story.members[item.entry_id] = held
        story.join(held)
        story.add(held, 1.0)
        if vector.headline:
            postings = self._postings
            for term in vector.keys:
                posting = postings.get(term)
                if posting is None:
                    postings[term] = {story_id: 1}
                else:
                    posting[story_id] = posting.get(story_id, 0) + 1
        if item.canonical_url:
            self._by_url.setdefault(item.canonical_url, {})[item.entry_id] = held
        if vector.title_key:
            self._by_title.setdefault(vector.title_key, {})[item.entry_id] = held
        heapq.heappush(self._ages, (item.published, item.entry_id))

    def evict(self, before: datetime) -> None:
        """Drop the items published before `before`, so memory stays bounded by the window."""
        while self._ages and self._ages[0][0] < before:
            published, entry_id = heapq.heappop(self._ages)
            held = self._held.get(entry_id)
            if held is not None and held.published == published:
                self._remove(entry_id)

    def _exact_match(self, item: DedupItem, vector: TermVector) -> Assignment | None:
        """Join the story of a window entry with the same canonical URL or informative normalized title."""
        if item.canonical_url:
            held = self._latest_in_window(self._by_url.get(item.canonical_url), item)
            if held is not None:
                return Assignment(item.entry_id, held.story_id, "url", 1.0)
        title_key = vector.title_key
        held = self._latest_in_window(self._by_title.get(title_key), item) if title_key else None
        if held is not None and held.title_weight >= MIN_SHARED_WEIGHT:
            return Assignment(item.entry_id, held.story_id, "title", 1.0)
        return None

    def _latest_in_window(self, entries: dict[int, _Held] | None, item: DedupItem) -> _Held | None:
        """The most recently published of `entries` within the window of `item`, if any."""
        near = [h for h in (entries or {}).values() if abs(h.published - item.published) <= self.window]
        return max(near, key=lambda h: h.published, default=None)

    def _candidates(self, vector: TermVector) -> list[int]:
        """Stories sharing indexed terms with the vector, most shared weight first, at most MAX_CANDIDATES."""
        shared: dict[int, float] = {}
        raw = dict(zip(vector.terms, vector.raw, strict=True))
        for term in vector.keys:
            weight = raw[term]
            posting = self._postings.get(term)
            if posting is None or len(posting) > MAX_POSTING_STORIES:
                continue
            # shared[s] = shared.get(s, 0.0) + weight for each story s of the posting, at C speed, same order
            sums = map(operator.add, map(shared.get, posting, repeat(0.0)), repeat(weight))
            shared.update(zip(posting, sums, strict=True))
        return sorted(shared, key=shared.__getitem__, reverse=True)[:MAX_CANDIDATES]

    def _remove(self, entry_id: int) -> None:
        """Forget one entry: its story membership, centroid share, postings and lookups."""
        held = self._held.pop(entry_id)
        story = self._stories[held.story_id]
        del story.members[entry_id]
        story.leave(held)
        if not story.members:
            del self._stories[held.story_id]  # its centroid goes with it
        else:
            story.add(held, -1.0)
        for term in held.keys if held.headline else ():
            posting = self._postings[term]
            posting[held.story_id] -= 1
            if posting[held.story_id] <= 0:
                del posting[held.story_id]
                if not posting:
                    del self._postings[term]
        for lookup, key in ((self._by_url, held.canonical_url), (self._by_title, held.title_key)):
            if key and key in lookup:
                lookup[key].pop(entry_id, None)
                if not lookup[key]:
                    del lookup[key]
