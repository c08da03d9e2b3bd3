"""Search knows the forms and spellings of a word, and suggests one when a query finds nothing (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FeedFiles, query, run_cli, write_config

from aggregator.store import Store
from aggregator.store.search import spelling_variants, with_spelling_variants

ITEM = "<item><guid>{guid}</guid><title>{title}</title><link>https://{host}/{guid}</link><description>{summary}"
ITEM += "</description><pubDate>Mon, 02 Nov 2026 10:00:00 GMT</pubDate></item>"


def rss(host: str, items: list[tuple[str, str]]) -> str:
    body = "".join(
        ITEM.format(guid=f"{host}-{i}", title=title, summary=summary, host=host)
        for i, (title, summary) in enumerate(items)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{host}</title>{body}</channel></rss>'


AMERICAN = [
    ("Labor Department says hiring slowed", "The organization of workers analyzed the data at its center."),
    ("Government unveils budget", "The government will spend more on defense and on a new catalog of parts."),
]
BRITISH = [
    ("Labour unions strike over pay", "Organisations representing nurses travelled to the centre of London."),
    ("Colourful parade draws crowds", "Thousands watched the parade."),
]


@pytest.fixture
def config(tmp_path: Path, feeds: FeedFiles) -> Path:
    us = feeds.serve("/us.xml", rss("us.example", AMERICAN))
    uk = feeds.serve("/uk.xml", rss("uk.example", BRITISH))
    path = write_config(tmp_path, [us, uk])
    assert run_cli("update", config=path).exit_code == 0
    return path


def titles(config: Path, *args: str) -> list[str]:
    """The titles of the entries a search matched, story by story, in rank order."""
    result = run_cli("search", *args, "--json", config=config)
    assert result.exit_code == 0, result.stderr
    return [match["title"] for story in json.loads(result.stdout) for match in story["matches"]]


def highlights(config: Path, *args: str) -> list[str]:
    """The words a search highlighted, in titles and snippets."""
    result = run_cli("search", *args, "--json", config=config)
    words = []
    for story in json.loads(result.stdout):
        for match in story["matches"]:
            words += [match["title"][a:b] for a, b in match["title_highlights"]]
            words += [match["snippet"][a:b] for a, b in match["snippet_highlights"]]
    return words


def test_british_and_american_spellings_find_each_other(config: Path) -> None:
    assert (
        sorted(titles(config, "labour"))
        == sorted(titles(config, "labor"))
        == [
            "Labor Department says hiring slowed",
            "Labour unions strike over pay",
        ]
    )
    assert sorted(highlights(config, "labour")) == ["Labor", "Labour"]
    assert sorted(highlights(config, "organization")) == ["Organisations", "organization"]
    assert sorted(highlights(config, "centre")) == ["center", "centre"]
    assert highlights(config, "analysed") == ["analyzed"]
    assert highlights(config, "traveled") == ["travelled"]
    assert highlights(config, "catalogue") == ["catalog"]
    assert highlights(config, "defence") == ["defense"]
    assert highlights(config, "colorful") == ["Colourful"]


def test_stemming_joins_plurals_and_inflections(config: Path) -> None:
    assert highlights(config, "union") == ["unions"]
    assert highlights(config, "strikes") == ["strike"]
    assert highlights(config, "hire") == ["hiring"]
    assert highlights(config, "governments") == ["Government", "government"]


def test_the_query_syntax_still_works_with_variants(config: Path) -> None:
    assert titles(config, '"labour unions"') == ["Labour unions strike over pay"]
    assert sorted(titles(config, "title: labor")) == [
        "Labor Department says hiring slowed",
        "Labour unions strike over pay",
    ]
    assert titles(config, "labour NOT unions") == ["Labor Department says hiring slowed"]
    assert titles(config, "labour union") == ["Labour unions strike over pay"]
    assert titles(config, "NEAR(labour unions, 2)") == ["Labour unions strike over pay"]  # as typed inside NEAR
    assert titles(config, "labou*") == ["Labour unions strike over pay"]  # a prefix stays as typed
    assert titles(config, "colour OR parade") == ["Colourful parade draws crowds"]
    # an error is reported for the query as typed
    result = run_cli("search", "AI-driven colour", config=config)
    assert result.stderr == (
        "error: search query: 'driven' is not a column to search (columns: title, summary_text); a '-' or ':' "
        "is query syntax, so put words that contain one in double quotes\n"
    )


@pytest.mark.parametrize(
    ("word", "variants"),
    [
        ("labour", ("labor",)), ("Labor", ("labour",)), ("colours", ("colors",)), ("honoured", ("honored",)),
        ("organisation", ("organization",)), ("organizations", ("organisations",)), ("realise", ("realize",)),
        ("recognised", ("recognized",)), ("analyse", ("analyze",)), ("paralyzing", ("paralysing",)),
        ("centre", ("center",)), ("theaters", ("theatres",)), ("fibre", ("fiber",)), ("centred", ("centered",)),
        ("catalogue", ("catalog",)), ("dialogues", ("dialogs",)), ("travelled", ("traveled",)),
        ("modeling", ("modelling",)), ("defence", ("defense",)), ("programmes", ("programs",)),
        ("grey", ("gray",)), ("odour", ("odor",)),
        # short words are not spellings of one another: four is not for, hour not hor, rise not rize
        ("four", ()), ("hour", ()), ("your", ()), ("rise", ()), ("size", ()), ("dog", ()), ("our", ()), ("or", ()),
    ],
)  # fmt: skip
def test_spelling_variants(word: str, variants: tuple[str, ...]) -> None:
    assert spelling_variants(word) == variants


def test_queries_are_rewritten_only_where_fts5_allows_a_group() -> None:
    assert with_spelling_variants("labour party") == "(labour OR labor) AND party"
    assert with_spelling_variants("labour colour") == "(labour OR labor) AND (colour OR color)"
    assert with_spelling_variants("title: labour") == "title: (labour OR labor)"
    assert with_spelling_variants('"labour party" AND x') == '("labour party" OR "labor party") AND x'
    for unchanged in ("labour*", "^labour", "NEAR(labour party, 3)", "labour:x", "a + labour", "oil OR gas"):
        assert with_spelling_variants(unchanged) == unchanged


def test_a_query_that_finds_nothing_gets_a_did_you_mean_from_the_index(config: Path) -> None:
    result = run_cli("search", "goverment", config=config)
    assert (result.exit_code, result.stdout) == (0, "no stories match 'goverment'\ndid you mean 'government'?\n")
    both = run_cli("search", "Labour parde", config=config)
    assert both.stdout == "no stories match 'Labour parde'\n"  # parade is known, but not with labour
    fixed = run_cli("search", "Colorful parde", config=config)  # colorful is known in its British spelling
    assert fixed.stdout == "no stories match 'Colorful parde'\ndid you mean 'Colorful parade'?\n"
    as_json = run_cli("search", "goverment", "--json", config=config)
    assert (as_json.stdout, as_json.stderr) == ("[]\n", "did you mean 'government'?\n")
    nothing = run_cli("search", "zzyzx", config=config)
    assert nothing.stdout == "no stories match 'zzyzx'\n"


def test_an_older_store_is_reindexed_with_the_stemmer(config: Path) -> None:
    db = config.parent / "aggregator.db"
    # the store as m001 made it, before m009: words indexed as written
    query(db, "DROP TABLE entries_fts")
    old = "CREATE VIRTUAL TABLE entries_fts USING FTS5 (title, summary_text, tokenize='unicode61', content=entries)"
    query(db, old)
    query(db, "INSERT INTO entries_fts (entries_fts) VALUES ('rebuild')")
    query(db, "DELETE FROM _sqlite_migrations WHERE name = 'm009_search_stemming'")
    assert query(db, "SELECT count(*) FROM entries_fts WHERE entries_fts MATCH 'union'") == [(0,)]
    with Store.open(db):
        pass
    assert "porter" in query(db, "SELECT sql FROM sqlite_master WHERE name = 'entries_fts'")[0][0]
    assert highlights(config, "union") == ["unions"]
    assert query(db, "SELECT v FROM entries_fts_config WHERE k = 'rank'") == [("bm25(4.0, 1.0)",)]  # titles 4x
