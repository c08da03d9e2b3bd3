"""Full-text search helpers: FTS5 query checks, errors in the user's words, highlighted snippets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import QueryError
from .results import Highlighted, SearchMatch
from .rows import parse_time

# Hits fetched per story asked for: the entries of one story often rank together.
HITS_PER_STORY = 5
MAX_HITS = 2000
# Tokens of summary around the hits; about two lines of a terminal.
SNIPPET_TOKENS = 24
MARK_START, MARK_END = "\x02", "\x03"
STORIES_BY_ID = "SELECT id, uid, title, url, published, feed_count FROM stories WHERE id IN ({marks})"
FTS_COLUMNS = ("title", "summary_text")
FTS_HELP = 'words, "exact phrase", prefix*, AND, OR, NOT, NEAR(word word, 10), (groups), title: word'
# Outside double quotes, NEAR is an operator only when a group follows: "Li NEAR" is a mistake, not a word.
_BARE_NEAR = re.compile(r"(?<![\w\"])NEAR(?!\s*\()(?![\w])")


def check_fts_query(query: str) -> None:
    if not query.strip():
        raise QueryError("the search query is empty")
    unquoted = re.sub(r'"[^"]*"', " ", query)
    if unquoted.count('"') % 2:
        raise QueryError(f"search query {query!r}: a double quote is not closed")
    if _BARE_NEAR.search(unquoted):
        raise QueryError(
            f"search query {query!r}: NEAR needs a group, as in NEAR(li qiang, 5); to search for the word, "
            'write "near" in lower case or in quotes'
        )


def query_error(message: str) -> QueryError | None:
    """The FTS5 complaint about a query as a user error, or None when the error is not about the query."""
    if message == "unterminated string":
        return QueryError("search query: a double quote is not closed")
    if message.startswith("fts5: syntax error near"):
        near = message.removeprefix("fts5: syntax error near").strip()
        where = "at the end" if near == '""' else f"near {near}"
        return QueryError(
            f"search query: syntax error {where}; put words with punctuation in double quotes "
            f'("U.S.", "AI-driven"). Syntax: {FTS_HELP}'
        )
    if message.startswith("no such column:"):
        name = message.removeprefix("no such column:").strip()
        return QueryError(
            f"search query: {name!r} is not a column to search (columns: {', '.join(FTS_COLUMNS)}); a '-' or "
            f"':' is query syntax, so put words that contain one in double quotes"
        )
    if message.startswith(("unknown special query", "fts5:")):
        return QueryError(f"search query is not valid ({message}). Syntax: {FTS_HELP}")
    return None


def highlighted(marked: str | None) -> Highlighted:
    if not marked:
        return Highlighted("")
    text: list[str] = []
    spans: list[tuple[int, int]] = []
    length, start = 0, None
    for part in re.split(f"([{MARK_START}{MARK_END}])", marked):
        if part == MARK_START:
            start = length
        elif part == MARK_END:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            text.append(part)
            length += len(part)
    return Highlighted("".join(text), tuple(spans))


def search_match(row: Sequence[Any], rank: float) -> SearchMatch:
    entry_id, feed_id, feed_title, feed_url, url, published, title, snippet = row
    return SearchMatch(
        entry_id=entry_id,
        feed_id=feed_id,
        feed_title=feed_title,
        feed_url=feed_url,
        title=highlighted(title),
        snippet=highlighted(snippet),
        url=url,
        published=parse_time(published),
        score=float(f"{-rank:.4g}"),
    )
