"""Story clustering: known hard cases (false merges, missed merges) with exact outcomes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator import dedup
from aggregator.dedup import StoryIndex, normalize_title, term_vector
from aggregator.models import Assignment, DedupItem

T0 = datetime(2025, 7, 26, 2, 0, tzinfo=UTC)


def item(
    entry_id: int,
    feed_id: int,
    title: str,
    summary: str = "",
    url: str | None = None,
    minutes: float = 0.0,
) -> DedupItem:
    """A DedupItem published `minutes` after T0, with a unique URL unless one is given."""
    return DedupItem(
        entry_id=entry_id,
        feed_id=feed_id,
        title=title,
        summary_text=summary,
        canonical_url=url or f"https://feed{feed_id}.example/{entry_id}",
        published=T0 + timedelta(minutes=minutes),
    )


def run(items: Sequence[DedupItem], index: StoryIndex | None = None) -> tuple[list[Assignment], list[int]]:
    """Stream items through an index as the pipeline does; return the assignments and the story of each."""
    index = index if index is not None else StoryIndex()
    assignments, stories = [], []
    for it in items:
        assignment = index.assign(it)
        story_id = assignment.story_id if assignment.story_id is not None else 1000 + it.entry_id
        index.add(it, story_id)
        assignments.append(assignment)
        stories.append(story_id)
    return assignments, stories


def groups(items: Sequence[DedupItem], stories: Sequence[int]) -> set[frozenset[int]]:
    """The clustering as a set of entry-id sets."""
    by_story: dict[int, set[int]] = {}
    for it, story_id in zip(items, stories, strict=True):
        by_story.setdefault(story_id, set()).add(it.entry_id)
    return {frozenset(members) for members in by_story.values()}


def test_public_names() -> None:
    assert set(dedup.__all__) == {
        "DEFAULT_THRESHOLD",
        "DEFAULT_WINDOW",
        "TITLE_ONLY_THRESHOLD",
        "StoryIndex",
        "normalize_title",
        "term_vector",
    }
    assert dedup.DEFAULT_WINDOW.total_seconds() == 72 * 3600


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Fed holds rates steady - Reuters", "fed holds rates steady"),
        ("Fed holds rates steady | CNA", "fed holds rates steady"),
        ("UPDATE 2-Fed holds rates steady", "fed holds rates steady"),
        ("AI startup raises $12 billion - Bloomberg News - tradingview.com", "ai startup raises 12 billion"),
        ("Who Won The Bachelor 2014: Who Did Juan Pablo  ...", "who won the bachelor 2014 who did juan pablo"),
        # a content tail is not a site name: kept
        (
            "ECB unlikely to end sterilisation of SMP purchases - traders",
            "ecb unlikely to end sterilisation of smp purchases traders",
        ),
        ("", ""),
        ("🔥🔥 !!!", ""),
    ],
)
def test_normalize_title(title: str, expected: str) -> None:
    assert normalize_title(title) == expected


# The WAIC hard case (26 July 2025): five outlets word one announcement five ways, while three other AI
# stories of the same days share "AI", "China", "Shanghai" or "World AI Conference" with them.
WAIC_SAME = [
    item(
        1,
        1,
        "China proposes new global AI cooperation organisation - Reuters",
        "China wants to create a new organisation to foster global cooperation on artificial intelligence, "
        "Premier Li Qiang told the World Artificial Intelligence Conference in Shanghai on Saturday.",
        minutes=0,
    ),
    item(
        3,
        2,
        "Li Qiang calls for world AI cooperation body at Shanghai conference",
        "Premier Li Qiang proposed a global organisation for AI cooperation, warning that artificial "
        "intelligence risks becoming an exclusive game for a few countries and companies.",
        minutes=45,
    ),
    item(
        5,
        3,
        "At WAIC, Beijing floats a multilateral body to govern AI",
        "Beijing wants a new international organisation to coordinate AI governance and cooperation, "
        "Premier Li Qiang said as the World Artificial Intelligence Conference opened.",
        minutes=120,
    ),
    item(
        7,
        4,
        "China seeks to lead global AI governance with new cooperation organisation",
        "Premier Li Qiang said China would set up a world AI cooperation organisation to share technology "
        "with developing countries.",
        minutes=200,
    ),
    item(
        8,
        5,
        "Beijing pitches global body to coordinate artificial intelligence rules",
        "Chinese Premier Li Qiang proposed a global AI cooperation organisation at the opening of the "
        "World Artificial Intelligence Conference.",
        minutes=300,
    ),
]
WAIC_OTHERS = [
    item(
        2,
        6,
        "Humanoid robots steal the show at Shanghai's World AI Conference",
        "Robots from Unitree and dozens of Chinese start-ups boxed, danced and served drinks at the World "
        "Artificial Intelligence Conference in Shanghai, drawing big crowds.",
        minutes=30,
    ),
    item(
        4,
        7,
        "US weighs new curbs on Nvidia AI chip exports to China",
        "US officials are considering tighter export controls on Nvidia's AI chips to China, people familiar "
        "with the matter said, as Washington worries about Beijing's AI ambitions.",
        minutes=90,
    ),
    item(
        6,
        8,
        "White House unveils AI action plan to speed data centre permits",
        "The Trump administration released an artificial intelligence action plan that loosens environmental "
        "rules for data centres and promotes US AI exports to allies.",
        minutes=150,
    ),
]


def _by_time(items: Sequence[DedupItem]) -> list[DedupItem]:
    return sorted(items, key=lambda i: i.published)


def test_waic_wordings_become_one_story_and_other_ai_news_stays_apart() -> None:
    items = _by_time(WAIC_SAME + WAIC_OTHERS)
    assignments, stories = run(items)
    assert groups(items, stories) == {frozenset({1, 3, 5, 7, 8}), frozenset({2}), frozenset({4}), frozenset({6})}
    methods = {a.entry_id: a.method for a in assignments}
    assert methods == {1: "new", 2: "new", 3: "similar", 4: "new", 5: "similar", 6: "new", 7: "similar", 8: "similar"}


def test_waic_titles_only_known_limits() -> None:
    # Titles alone use the lower TITLE_ONLY_THRESHOLD (chosen on uci-dev.csv, where recall needs it), and two
    # short headlines share little: "China" + "AI" + "new" put the chip-export story (4) with the Reuters
    # wording (1) at cosine 0.20, and "Shanghai" + "World AI Conference" put Li Qiang (3) and the WAIC
    # wording (5) with the robots story (2). With their summaries (the test above) every one is right: real
    # feeds nearly always carry a summary, which is why the summary threshold stays at DEFAULT_THRESHOLD.
    bare = [
        item(i.entry_id, i.feed_id, i.title, "", minutes=(i.published - T0).total_seconds() / 60)
        for i in WAIC_SAME + WAIC_OTHERS
    ]
    items = _by_time(bare)
    _, stories = run(items)
    assert groups(items, stories) == {
        frozenset({1, 4, 7}),  # 4 is the known false merge
        frozenset({2, 3, 5}),  # 3 and 5 are the known false merges
        frozenset({6}),
        frozenset({8}),
    }


def test_wire_headline_with_suffixes_across_feeds_is_one_story() -> None:
    title = "Fed holds rates steady as inflation cools"
    items = [
        item(1, 1, f"{title} - Reuters"),
        item(2, 2, f"{title} | Reuters", minutes=5),
        item(3, 3, f"{title} - CNA", minutes=10),
    ]
    assignments, stories = run(items)
    assert len(set(stories)) == 1
    assert [a.method for a in assignments] == ["new", "title", "title"]


def test_same_feed_different_titles_never_join() -> None:
    items = [
        item(1, 1, "Apple unveils iPhone 17 with thinner design"),
        item(2, 1, "Apple unveils iPhone 17 Air, its thinnest iPhone yet", minutes=10),
        # another outlet's wording joins one of them (the same-feed rule is per feed)
        item(3, 2, "Apple unveils thinner iPhone 17 Air", minutes=20),
    ]
    assignments, stories = run(items)
    assert [a.method for a in assignments] == ["new", "new", "similar"]
    assert stories[0] != stories[1]
    assert stories[2] in (stories[0], stories[1])


def test_same_feed_same_url_joins() -> None:
    url = "https://example.com/news/apple-iphone-17"
    items = [
        item(1, 1, "Apple unveils iPhone 17", url=url),
        item(2, 1, "Apple unveils iPhone 17 with thinner design (updated)", url=url, minutes=30),
    ]
    assignments, stories = run(items)
    assert [a.method for a in assignments] == ["new", "url"]
    assert stories[0] == stories[1]
    assert assignments[1].score == 1.0


def test_same_feed_same_normalized_title_joins() -> None:
    items = [
        item(1, 1, "Apple unveils iPhone 17 - Reuters"),
        item(2, 1, "Apple unveils iPhone 17!", minutes=30),
    ]
    assignments, stories = run(items)
    assert [a.method for a in assignments] == ["new", "title"]
    assert stories[0] == stories[1]


@pytest.mark.parametrize("title", ["Live updates", "Morning briefing", "Top stories", "Breaking news", "Daily digest"])
def test_generic_headlines_do_not_merge_across_feeds(title: str) -> None:
    items = [item(i, i, title, minutes=i) for i in (1, 2, 3)]
    assignments, stories = run(items)
    assert len(set(stories)) == 3
    assert [a.method for a in assignments] == ["new", "new", "new"]


def test_odd_titles_do_not_crash_or_swallow_other_items() -> None:
    rng = random.Random(7)
    words = ["markets", "election", "storm", "football", "vaccine", "bitcoin", "Nvidia", "Paris", "court"]
    huge = " ".join(rng.choice(words) for _ in range(2000))[:10_000]
    odd = [
        item(1, 1, ""),
        item(2, 2, "🔥🔥🔥"),
        item(3, 3, "!!! ??? ..."),
        item(4, 4, huge),
        item(5, 5, "中国提出成立世界人工智能合作组织"),
        item(6, 6, "الصين تقترح إنشاء منظمة عالمية للتعاون في الذكاء الاصطناعي"),
        item(7, 7, "中国、AI協力の国際組織設立を提案"),
        item(8, 8, "東京株式市場、日経平均が続落"),
    ]
    later = [
        item(11, 11, "", minutes=1),
        item(12, 12, "🔥🔥🔥", minutes=1),
        item(13, 13, "Bitcoin falls below $100,000 as markets slide", minutes=2),
        item(14, 14, "Storm Amy hits Paris as court delays election", minutes=2),
        item(15, 15, "中国提出成立世界人工智能合作组织", minutes=3),
        item(16, 16, "中国股市收盘上涨", minutes=3),
    ]
    items = odd + later
    assignments, stories = run(items)
    methods = {a.entry_id: a.method for a in assignments}
    # the same Chinese headline from another feed is the same story; everything else stands alone
    assert stories[items.index(later[4])] == stories[items.index(odd[4])]
    assert methods[15] == "title"
    assert all(methods[i] == "new" for i in (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 16))


def test_cjk_titles_match_on_character_bigrams() -> None:
    items = [
        item(1, 1, "中国提出成立世界人工智能合作组织"),
        item(2, 2, "李强：中国倡议成立世界人工智能合作组织", minutes=20),
    ]
    assignments, stories = run(items)
    assert assignments[1].method == "similar"
    assert stories[0] == stories[1]


def test_item_five_days_later_starts_a_new_story() -> None:
    title = "Volcano erupts on Iceland's Reykjanes peninsula"
    items = [
        item(1, 1, title),
        item(2, 2, title, minutes=60 * 24 * 5),
        item(3, 3, "Iceland volcano erupts on the Reykjanes peninsula again", minutes=60 * 24 * 5 + 10),
    ]
    assignments, stories = run(items)
    assert [a.method for a in assignments] == ["new", "new", "similar"]
    assert stories[1] != stories[0]
    assert stories[2] == stories[1]


def test_evict_drops_old_items() -> None:
    index = StoryIndex()
    items = [item(i, i, f"Headline number {i} about volcano {i}", minutes=60 * 24 * i) for i in range(5)]
    run(items, index)
    assert len(index) == 5
    index.evict(T0 + timedelta(days=3))
    assert len(index) == 2
    index.evict(T0 + timedelta(days=10))
    assert len(index) == 0
    # an evicted item's URL no longer matches
    assert index.assign(items[0]).method == "new"


def test_add_seeds_the_index() -> None:
    index = StoryIndex()
    seed = item(1, 1, "Volcano erupts on Iceland's Reykjanes peninsula")
    index.add(seed, 42)
    assignment = index.assign(item(2, 2, "Iceland volcano erupts on Reykjanes peninsula", minutes=5))
    assert (assignment.story_id, assignment.method) == (42, "similar")
    assert assignment.score >= dedup.DEFAULT_THRESHOLD


def test_ten_thousand_synthetic_items() -> None:
    rng = random.Random(1)
    vocab = [f"{a}{b}" for a in ("zor", "vel", "kan", "tri", "mos", "pel") for b in ("ax", "ion", "ur", "ette", "ogan")]
    vocab += ["market", "election", "storm", "court", "vaccine", "bank", "rates", "China", "police", "team"]
    items = [
        item(i, rng.randrange(200), " ".join(rng.choices(vocab, k=rng.randint(4, 10))), minutes=i * 0.4)
        for i in range(10_000)
    ]
    index = StoryIndex()
    assignments, stories = run(items, index)
    assert len(assignments) == 10_000
    assert len(index) == 10_000
    assert max(stories.count(s) for s in set(stories)) < 10_000


def test_stored_term_vectors_cluster_exactly_like_vectors_built_from_text() -> None:
    # the pass builds each vector beside parsing and the store keeps it; the index must not care which
    items = _by_time(WAIC_SAME + WAIC_OTHERS)
    with_vectors = [replace(i, terms=term_vector(i.title, i.summary_text, i.canonical_url)) for i in items]
    assert run(with_vectors) == run(items)


def test_a_vector_keeps_its_heaviest_terms_and_every_title_term() -> None:
    words = [f"{a}{b}" for a in ("zor", "vel", "quan", "mip", "trel") for b in ("ax", "ob", "ein", "ul", "ost", "ira")]
    vector = term_vector("Volcano erupts near Grindavik", " ".join(words), None)
    # 30 made-up summary words (unknown: the heaviest weight) and 7 title terms: the 32 heaviest are 30 + 2,
    # and the title terms among the lighter 5 stay too (they find the candidates)
    assert set(vector.keys) == {
        "volcano",
        "erupt",
        "near",
        "grindavik",
        "volcano_erupt",
        "erupt_near",
        "near_grindavik",
    }
    assert set(vector.terms) == set(vector.keys) | set(words)
    assert len(vector.weights) == len(vector.raw) == len(vector.terms) == 37
