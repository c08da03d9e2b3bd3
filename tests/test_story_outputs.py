"""What subscribers see of stories, through the real CLI: order by latest activity, the lead, each outlet's
headline (issue 12)."""

from __future__ import annotations

from pathlib import Path

import feedparser
from conftest import FeedFiles, query, run_cli, update_json, write_config


def rss(title: str, items: list[tuple[str, str, str, str, str]]) -> str:
    """An RSS 2.0 document from (guid, title, link, pubDate, description) tuples."""
    body = "".join(
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{t}</title><link>{link}</link>"
        f"<pubDate>{date}</pubDate><description>{text}</description></item>"
        for guid, t, link, date, text in items
    )
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{title}</title>"
        f"<link>https://{title.lower()}.example.com/</link>{body}</channel></rss>"
    )


FLIGHTS = (
    "Biden administration to resume deportation flights to Venezuela",
    "The Biden administration said it would resume direct deportation flights to Venezuela to curb migration "
    "at the southern border.",
)
FLIGHTS_2 = (
    "US to restart deportation flights to Venezuela, Biden officials say",
    "The United States will restart deportation flights to Venezuela, Biden administration officials said, as "
    "border crossings rise.",
)
FLIGHTS_3 = (
    "Venezuela deportation flights to resume, US officials say",
    "Deportation flights to Venezuela will resume, the Biden administration said on Thursday.",
)
COHEN = (
    "Trump drops $500 million lawsuit against former lawyer Michael Cohen",
    "Donald Trump dropped his $500 million lawsuit against his former lawyer and fixer Michael Cohen.",
)
COHEN_2 = (
    "Trump drops his $500m suit against Michael Cohen, his former fixer",
    "Former President Donald Trump has dropped a $500m lawsuit against Michael Cohen, court papers show.",
)


def item(guid: str, text: tuple[str, str], outlet: str, hour: int) -> tuple[str, str, str, str, str]:
    return (guid, text[0], f"https://{outlet}.example.com/{guid}", f"Thu, 05 Oct 2023 {hour:02d}:00:00 +0000", text[1])


def test_a_story_another_outlet_reports_moves_up_and_keeps_its_id(tmp_path: Path, feeds: FeedFiles) -> None:
    alpha = feeds.serve("/a.xml", rss("Alpha", [item("a1", FLIGHTS, "alpha", 8), item("a2", COHEN, "alpha", 10)]))
    bravo = feeds.serve("/b.xml", rss("Bravo", [item("b1", FLIGHTS_2, "bravo", 9), item("b2", COHEN_2, "bravo", 11)]))
    charlie = feeds.serve("/c.xml", rss("Charlie", []))
    config = write_config(tmp_path, [alpha, bravo, charlie])
    update_json(config)
    first = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes()).entries
    assert [e.title for e in first] == [COHEN[0], FLIGHTS[0]]  # the newest report first

    # an hour later a third outlet reports the flights: that story's newest report is now the newest of all
    feeds.serve("/c.xml", rss("Charlie", [item("c1", FLIGHTS_3, "charlie", 12)]))
    update_json(config)
    second = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes()).entries
    assert [e.id for e in second] == [first[1].id, first[0].id]
    assert "Reported by 3 outlets" in second[0].content[0].value
    for text in (FLIGHTS, FLIGHTS_2, FLIGHTS_3):  # every outlet's own headline under the lead
        assert text[0] in second[0].content[0].value
    assert query(tmp_path / "aggregator.db", "SELECT latest FROM stories ORDER BY latest DESC LIMIT 1") == [
        ("2023-10-05T12:00:00Z",)
    ]


def test_a_later_backdated_copy_never_takes_the_lead(tmp_path: Path, feeds: FeedFiles) -> None:
    alpha = feeds.serve("/a.xml", rss("Alpha", [item("a1", FLIGHTS, "alpha", 8)]))
    bravo = feeds.serve("/b.xml", rss("Bravo", [item("b1", FLIGHTS_2, "bravo", 9)]))
    copier = feeds.serve("/c.xml", rss("Copier", []))
    config = write_config(tmp_path, [alpha, bravo, copier])
    update_json(config)
    lead = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes()).entries[0]

    # a feed copies the lead word for word and dates its copy two hours before the original
    feeds.serve("/c.xml", rss("Copier", [item("c1", FLIGHTS, "copier", 6)]))
    update_json(config)
    after = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes()).entries
    assert len(after) == 1
    assert (after[0].id, after[0].link, after[0].title) == (lead.id, lead.link, lead.title)
    assert "Reported by 3 outlets" in after[0].content[0].value


def test_stories_and_story_print_plain_lines_when_piped(tmp_path: Path, feeds: FeedFiles) -> None:
    long_title = (
        "US to restart deportation flights to Venezuela, Biden officials say, as the number of border crossings "
        "keeps rising and the administration faces pressure from Democratic mayors"
    )
    alpha = feeds.serve("/a.xml", rss("Alpha", [item("a1", FLIGHTS, "alpha", 8)]))
    bravo = feeds.serve("/b.xml", rss("Bravo", [item("b1", (long_title, FLIGHTS_2[1]), "bravo", 9)]))
    config = write_config(tmp_path, [alpha, bravo])
    update_json(config)

    listed = run_cli("stories", config=config)
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.output.splitlines()]
    assert lines[0] == ["id", "newest report", "sources", "title", "outlets"]
    story_id, newest, sources, title, outlets = lines[1]
    assert (newest, sources, set(outlets.split(", "))) == ("2023-10-05 09:00", "2", {"Alpha", "Bravo"})
    assert title in (FLIGHTS[0], long_title)  # whole, never cut

    shown = run_cli("story", story_id, config=config)
    assert shown.exit_code == 0, shown.output
    text = shown.output.splitlines()
    assert text[0].startswith(f"story {story_id}  urn:uuid:")
    assert text[3] == "first report 2023-10-05 08:00, newest report 2023-10-05 09:00"
    assert text[4].split("\t") == ["entry", "published", "outlet", "method", "score", "title"]
    rows = [line.split("\t") for line in text[5:]]
    assert [(row[2], row[3], row[5]) for row in rows] == [
        ("Alpha", "new", FLIGHTS[0]),
        ("Bravo", "similar", long_title),
    ]
