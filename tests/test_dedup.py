"""Story clustering: known hard cases (false merges, missed merges) with exact outcomes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

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


def test_default_window() -> None:
    assert dedup.DEFAULTS.window.total_seconds() == 72 * 3600


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


WAIC_MORE = [
    item(
        9,
        9,
        "Hands-on with the humanoid robots of WAIC 2025",
        "We met dozens of humanoid robots at the World Artificial Intelligence Conference in Shanghai, from "
        "boxing bots to robot waiters.",
        minutes=400,
    ),
    item(
        10,
        10,
        "China urges world to join new AI cooperation body",
        "China called on countries to join a global AI cooperation organisation it proposed at the World "
        "Artificial Intelligence Conference, Premier Li Qiang said.",
        minutes=420,
    ),
]
_BACKGROUND = Path(__file__).parent / "data" / "background_headlines.txt"


def background() -> list[DedupItem]:
    """400 real headlines of other news spread over the same hours: a window as a real store holds one, so
    the window's rarity weighs the WAIC words as rare, which they are among real news."""
    lines = [line for line in _BACKGROUND.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return [item(1000 + k, 100 + k % 50, title, minutes=(k * 37) % 2000 - 1000) for k, title in enumerate(lines)]


def _by_time(items: Sequence[DedupItem]) -> list[DedupItem]:
    return sorted(items, key=lambda i: (i.published, i.entry_id))


def run_in_window(items: Sequence[DedupItem]) -> dict[int, tuple[int, str]]:
    """Cluster `items` among the background, as a pass over a real store does (its words counted first);
    return each of `items`' story and method."""
    everything = _by_time([*items, *background()])
    index = StoryIndex()
    index.observe(everything)
    assignments, stories = run(everything, index)
    wanted = {i.entry_id for i in items}
    return {a.entry_id: (s, a.method) for a, s in zip(assignments, stories, strict=True) if a.entry_id in wanted}


def together(result: dict[int, tuple[int, str]]) -> set[frozenset[int]]:
    """The stories of `run_in_window`'s result as entry-id sets."""
    by_story: dict[int, set[int]] = {}
    for entry_id, (story, _) in result.items():
        by_story.setdefault(story, set()).add(entry_id)
    return {frozenset(members) for members in by_story.values()}


def test_waic_reports_of_the_proposal_are_one_story_and_the_robots_stay_apart() -> None:
    result = together(run_in_window(WAIC_SAME + WAIC_OTHERS + WAIC_MORE))
    proposal = next(group for group in result if 1 in group)
    assert proposal == {1, 3, 7, 10}
    # Known misses, kept visible: "At WAIC, Beijing floats a multilateral body to govern AI" (5) and "Beijing
    # pitches global body to coordinate artificial intelligence rules" (8) word the proposal with almost no
    # word of the others (rarity-weighted cosines 0.18-0.43, while "WAIC" ties 5 to the robots piece at
    # 0.48); static word vectors tell them apart (0.71-0.86 against 0.25-0.44) but were not adopted
    # (benchmarks/DEDUP.md). Never with the robots stories, whatever else.
    assert {5} in result and {8} in result
    assert not any({2, 9} & group and proposal & group for group in result)
    assert {4} in result and {6} in result  # chip exports, the US action plan


def test_waic_titles_only_known_limits() -> None:
    # Headlines alone meet by the centroid with the low title_only_threshold (chosen on uci-dev.csv, where
    # recall needs it), and two short headlines share little: "China" + "AI" + "new" put the chip-export
    # story (4) with the Reuters wording (1), and "Shanghai" + "World AI Conference" put Li Qiang (3) and the
    # WAIC wording (5) with the robots story (2). With summaries (the test above) none of these happen.
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
    assert assignment.score >= dedup.DEFAULTS.title_only_threshold


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


# Topics that swallowed events on real feeds (issue 12), with summaries, among the background window.
QUAKES = [
    item(21, 21, "Afghanistan earthquake has killed more than 1,000, Taliban says",
         "A magnitude 6.3 earthquake and strong aftershocks in western Afghanistan's Herat province killed more "
         "than 1,000 people, a Taliban spokesman said.", minutes=0),
    item(22, 22, "Afghanistan quakes claim more than 2000 lives",
         "The death toll from earthquakes that struck Herat province in western Afghanistan has risen to more "
         "than 2,000, the Taliban government said.", minutes=300),
    item(23, 23, "Magnitude 5.9 earthquake shakes southern Mexico, no deaths reported",
         "A magnitude 5.9 earthquake shook the southern Mexican state of Oaxaca on Saturday, the national "
         "seismological service said; there were no reports of deaths.", minutes=90),
    item(24, 24, "Mexico quake rattles Oaxaca and Mexico City",
         "Buildings swayed in Mexico City after a strong earthquake centred in Oaxaca, Mexico's seismological "
         "service said.", minutes=120),
]  # fmt: skip
DATED_FEATURES = [
    item(31, 31, "Wordle today: answer and hints for October 7",
         "Here are hints and the answer for today's Wordle, puzzle 841, for Saturday, October 7.", minutes=0),
    item(32, 32, "NYT Connections hints and answers for October 7",
         "Stuck on today's Connections? Here are some hints and the answers for the puzzle of Saturday, "
         "October 7.", minutes=30),
    item(33, 33, "Crossword: October 7, 2023", "Today's cryptic crossword, set for Saturday October 7.",
         minutes=60),
    item(34, 34, "College football schedule for Saturday, October 7",
         "All the games, kickoff times and TV channels for Saturday, October 7.", minutes=90),
]  # fmt: skip
RUGBY = [
    item(41, 41, "England 18-17 Samoa: England sneak narrow win in final pool game",
         "England survived a scare as a late try secured an 18-17 win over Samoa in their final Rugby World Cup "
         "pool match in Lille.", minutes=0),
    item(42, 42, "England scrape past Samoa at Rugby World Cup",
         "England held on to beat Samoa 18-17 in Lille, a late try from Danny Care rescuing the result in their "
         "last pool game.", minutes=45),
    item(43, 43, "Wales beat Georgia 43-19 to top Rugby World Cup pool",
         "Wales beat Georgia 43-19 in Nantes to finish top of Pool C at the Rugby World Cup.", minutes=60),
    item(44, 44, "Ireland beat Scotland 36-14 to reach Rugby World Cup quarter-finals",
         "Ireland thrashed Scotland 36-14 in Paris to top Pool B and set up a quarter-final against New Zealand "
         "at the Rugby World Cup.", minutes=180),
]  # fmt: skip
BIDEN = [
    item(51, 51, "Biden administration to resume deportation flights to Venezuela",
         "The Biden administration said it would resume direct deportation flights to Venezuela to curb "
         "migration at the southern border.", minutes=0),
    item(52, 52, "Biden's dog Commander removed from White House after biting incidents",
         "President Joe Biden's German shepherd Commander has been removed from the White House after a string "
         "of biting incidents involving Secret Service agents.", minutes=60),
    item(53, 53, "Hunter Biden pleads not guilty to gun charges",
         "Hunter Biden, the president's son, pleaded not guilty to federal gun charges in a Delaware court.",
         minutes=120),
    item(54, 54, "Biden to meet Xi in San Francisco next month, officials say",
         "President Joe Biden will meet Chinese leader Xi Jinping on the sidelines of the APEC summit in San "
         "Francisco, officials said.", minutes=180),
    item(55, 55, "US to restart deportation flights to Venezuela, Biden officials say",
         "The United States will restart deportation flights to Venezuela, Biden administration officials said, "
         "as border crossings rise.", minutes=240),
]  # fmt: skip


def test_the_same_kind_of_happening_elsewhere_is_another_story() -> None:
    # One earthquake in Mexico, another in Afghanistan: never one story. Known miss: the two Afghanistan
    # reports share "Afghanistan", "Herat", "Taliban" but word the toll apart ("earthquake has killed" /
    # "quakes claim ... lives"): their score, 0.27, is under the threshold.
    result = together(run_in_window(QUAKES))
    assert not any({21, 22} & group and {23, 24} & group for group in result)
    assert result == {frozenset({21}), frozenset({22}), frozenset({23}), frozenset({24})}


def test_a_date_shared_by_puzzles_and_schedules_glues_nothing() -> None:
    assert together(run_in_window(DATED_FEATURES)) == {frozenset({i}) for i in (31, 32, 33, 34)}


def test_each_match_of_a_tournament_is_its_own_story() -> None:
    assert together(run_in_window(RUGBY)) == {frozenset({41, 42}), frozenset({43}), frozenset({44})}


def test_one_person_in_different_news_is_different_stories() -> None:
    assert together(run_in_window(BIDEN)) == {
        frozenset({51, 55}),
        frozenset({52}),
        frozenset({53}),
        frozenset({54}),
    }


def test_an_item_that_reports_two_events_never_glues_them() -> None:
    # an evening briefing that leads with both: it may join one story, and stories never merge
    briefing = item(
        60, 60, "Evening briefing: Biden to resume Venezuela deportation flights; England edge Samoa 18-17",
        "Deportation flights to Venezuela will resume, the Biden administration said. England beat Samoa "
        "18-17 at the Rugby World Cup.", minutes=300,
    )  # fmt: skip
    result = together(run_in_window([*BIDEN, *RUGBY, briefing]))
    assert not any({51, 55} & group and {41, 42} & group for group in result)


def test_a_feed_repeating_one_item_under_new_ids_makes_one_story() -> None:
    url = "https://feed7.example/news/volcano-erupts-in-iceland"
    repeats = [
        item(70 + n, 7, "Volcano erupts in Iceland's Reykjanes peninsula", "Lava flows near Grindavik.", url,
             minutes=n * 30)
        for n in range(5)
    ]  # fmt: skip
    result = run_in_window(repeats)
    assert len({story for story, _ in result.values()}) == 1
    assert [result[70 + n][1] for n in range(5)] == ["new", "url", "url", "url", "url"]


def test_summaries_that_are_empty_or_only_markup_count_as_headlines() -> None:
    # an HTML-only summary reaches dedup as empty text (normalize strips the markup)
    items = [
        item(81, 81, "Volcano erupts on Iceland's Reykjanes peninsula", ""),
        item(82, 82, "Iceland volcano erupts on the Reykjanes peninsula", "   ", minutes=10),
    ]
    result = run_in_window(items)
    assert result[82] == (result[81][0], "similar")


def test_the_representative_member_leads_priority_feeds_first() -> None:
    # the story of the Biden deportation flights, reported by three feeds; the member most like the others
    # leads, unless a feed of higher priority reported it
    index = StoryIndex()
    members = [
        BIDEN[0],
        BIDEN[4],
        item(56, 56, "Venezuela deportation flights to resume, US says",
             "The Biden administration will resume deportation flights to Venezuela.", minutes=250),
        item(57, 57, "Podcast: what the border means for 2024", "A podcast on deportation flights and the border.",
             minutes=260),
    ]  # fmt: skip
    index.observe(members)
    for member in members:
        index.add(member, 7)
    assert index.representative(7) == 51
    assert index.representative(7, priority=lambda feed_id: 1 if feed_id in (56, 57) else 0) == 56
    assert index.representative(8) is None


def test_a_later_copy_with_the_same_text_never_takes_the_lead() -> None:
    # a feed that backdates a copy of the lead's text: equal likeness, and the one that joined first leads
    index = StoryIndex()
    copy = replace(BIDEN[0], entry_id=58, feed_id=58, published=BIDEN[0].published - timedelta(hours=2))
    for member in (BIDEN[0], BIDEN[4], copy):
        index.add(member, 7)
    assert index.representative(7) == 51
