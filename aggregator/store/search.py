"""Search: full-text queries over entries, grouped by story, with FTS5 query checks, errors in the user's words,
highlighted snippets and spelling variants.

The index stems words with FTS5's porter tokenizer (m009), so `labours`, `labouring` and `labour` meet. Porter
does not know British and American spellings apart (`labour` is not `labor`, `organisation` is not
`organization`), so a query's words are also searched in their other spelling (`spelling_variants`). A query
that finds nothing gets a "did you mean" from the index's own vocabulary (`did_you_mean`).
"""

from __future__ import annotations

import difflib
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ..errors import QueryError, StoreError
from .results import Highlighted, SearchMatch, SearchResult
from .rows import format_time, parse_time
from .stories import StoriesMixin

__all__ = [
    "FTS_COLUMNS",
    "FTS_HELP",
    "HITS_PER_STORY",
    "MARK_END",
    "MARK_START",
    "MAX_HITS",
    "SNIPPET_TOKENS",
    "SUGGEST_CUTOFF",
    "SearchMixin",
    "spelling_variants",
    "with_spelling_variants",
]

# Hits fetched per story asked for: the entries of one story often rank together.
HITS_PER_STORY = 5
MAX_HITS = 2000
# Tokens of summary around the hits; about two lines of a terminal.
SNIPPET_TOKENS = 24
MARK_START, MARK_END = "\x02", "\x03"
_STORIES_BY_ID = "SELECT id, uid, title, url, published, feed_count FROM stories WHERE id IN ({marks})"
FTS_COLUMNS = ("title", "summary_text")
FTS_HELP = 'words, "exact phrase", prefix*, AND, OR, NOT, NEAR(word word, 10), (groups), title: word'
# Outside double quotes, NEAR is an operator only when a group follows: "Li NEAR" is a mistake, not a word.
_BARE_NEAR = re.compile(r"(?<![\w\"])NEAR(?!\s*\()(?![\w])")


class SearchMixin(StoriesMixin):
    """Full-text search over the entries_fts index; results come grouped by story, with the story's outlets."""

    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        since: datetime | None = None,
        feed_ids: Iterable[int] | None = None,
    ) -> list[SearchResult]:
        """Full-text search (FTS5 syntax) over entry titles and summaries, best first, grouped by story.

        Each word is also searched in its other spelling (`labour` finds `labor`, see spelling_variants).
        """
        _check_fts_query(query)
        typed, query = query, with_spelling_variants(query)
        where: list[str] = ["entries_fts MATCH ?"]
        params: list[Any] = [query]
        if since is not None:
            where.append("e.published >= ?")
            params.append(format_time(since))
        if feed_ids is not None:
            ids = sorted(set(feed_ids)) or [-1]
            where.append(f"e.feed_id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        # Rank first, highlight after: snippet() for every match of a common word would cost more than the
        # ranking itself. Several entries of one story may rank high, so take more hits than stories.
        hit_limit = min(limit * HITS_PER_STORY, MAX_HITS)
        ranked = f"""SELECT e.id, e.story_id, entries_fts.rank AS rank FROM entries_fts
                     JOIN entries e ON e.id = entries_fts.rowid
                     WHERE {" AND ".join(where)} ORDER BY entries_fts.rank LIMIT ?"""
        try:
            hits = self._fts_rows(ranked, [*params, hit_limit])
        except QueryError:
            self._fts_rows(ranked, [typed, *params[1:], hit_limit])  # the error in the query as typed
            raise
        groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
        for entry_id, story_id, rank in hits:
            key = ("story", story_id) if story_id is not None else ("entry", entry_id)
            if key in groups or len(groups) < limit:
                groups.setdefault(key, []).append((entry_id, rank))
        if not groups:
            return []
        wanted = [entry_id for members in groups.values() for entry_id, _ in members]
        marks = ",".join("?" * len(wanted))
        details = {
            row[0]: row
            for row in self._fts_rows(
                f"""SELECT e.id, e.feed_id, COALESCE(f.configured_title, f.title, f.url), f.url, e.url,
                           e.published, highlight(entries_fts, 0, char(2), char(3)),
                           snippet(entries_fts, 1, char(2), char(3), '…', {SNIPPET_TOKENS})
                    FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid JOIN feeds f ON f.id = e.feed_id
                    WHERE entries_fts MATCH ? AND entries_fts.rowid IN ({marks})""",
                [query, *wanted],
            )
        }
        story_ids = [key[1] for key in groups if key[0] == "story"]
        marks = ",".join("?" * len(story_ids))
        stories = {row["id"]: row for row in self._rows(_STORIES_BY_ID.format(marks=marks), story_ids)}
        sources = self._sources(story_ids)
        results = []
        for (kind, key_id), members in groups.items():
            matches = tuple(_search_match(details[entry_id], rank) for entry_id, rank in members)
            story = stories.get(key_id) if kind == "story" else None
            lead = matches[0]
            results.append(
                SearchResult(
                    story_id=story["id"] if story else None,
                    story_uid=story["uid"] if story else None,
                    title=story["title"] if story else lead.title.text,
                    url=story["url"] if story else lead.url,
                    published=parse_time(story["published"]) if story else lead.published,
                    feed_count=story["feed_count"] if story else 1,
                    score=lead.score,
                    matches=matches,
                    sources=sources.get(key_id, ()) if story else (),
                )
            )
        return results

    def did_you_mean(self, query: str) -> str | None:
        """For a query that found nothing: the same query with each word the index does not know replaced by
        the closest one it does (`goverment` -> `government`), or None."""
        try:
            return _did_you_mean(self.db.conn, query)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _fts_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._query(sql, params)
        except StoreError as e:  # an FTS5 syntax error is the user's query, not the database
            raise _query_error(str(e.__cause__)) or e from e.__cause__


def _check_fts_query(query: str) -> None:
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


def _query_error(message: str) -> QueryError | None:
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


def _highlighted(marked: str | None) -> Highlighted:
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


def _search_match(row: Sequence[Any], rank: float) -> SearchMatch:
    entry_id, feed_id, feed_title, feed_url, url, published, title, snippet = row
    return SearchMatch(
        entry_id=entry_id,
        feed_id=feed_id,
        feed_title=feed_title,
        feed_url=feed_url,
        title=_highlighted(title),
        snippet=_highlighted(snippet),
        url=url,
        published=parse_time(published),
        score=float(f"{-rank:.4g}"),
    )


# --- spelling variants ------------------------------------------------------------------------------------

# British and American endings, each pair read both ways: organise/organize, analyse/analyze, labour/labor,
# centre/center, fibre/fiber, catalogue/catalog, travelled/traveled. Porter's stems already cover plurals and
# most inflections of each side; these bridge the two spellings.
_ENDINGS = (
    ("isation", "ization"), ("isations", "izations"),
    ("ise", "ize"), ("ised", "ized"), ("ises", "izes"), ("ising", "izing"), ("iser", "izer"), ("isers", "izers"),
    ("yse", "yze"), ("ysed", "yzed"), ("yses", "yzes"), ("ysing", "yzing"),
    ("our", "or"), ("ours", "ors"), ("oured", "ored"), ("ouring", "oring"), ("ourer", "orer"),
    ("ourers", "orers"), ("ourite", "orite"), ("ourites", "orites"), ("ourable", "orable"), ("ourful", "orful"),
    ("tre", "ter"), ("tres", "ters"), ("tred", "tered"), ("bre", "ber"), ("bres", "bers"),
    ("ogue", "og"), ("ogues", "ogs"),
    ("elled", "eled"), ("elling", "eling"), ("eller", "eler"), ("ellers", "elers"),
)  # fmt: skip
# A variant needs this many letters before the ending: `four`, `hour`, `tour`, `rise` and `size` are no
# spellings of `for`, `hor`, `tor`, `rize` or `sise`. A variant that is no word at all costs nothing.
_MIN_STEM = 2
# Spellings no ending rule finds (a plural `s` is handled too).
_WORDS = (
    ("defence", "defense"), ("offence", "offense"), ("licence", "license"), ("pretence", "pretense"),
    ("programme", "program"), ("tyre", "tire"), ("grey", "gray"), ("aluminium", "aluminum"),
    ("sceptic", "skeptic"), ("sceptical", "skeptical"), ("scepticism", "skepticism"), ("mould", "mold"),
    ("plough", "plow"), ("manoeuvre", "maneuver"), ("foetus", "fetus"), ("paediatric", "pediatric"),
    ("anaemia", "anemia"), ("oestrogen", "estrogen"), ("jewellery", "jewelry"), ("pyjamas", "pajamas"),
    ("ageing", "aging"), ("judgement", "judgment"), ("artefact", "artifact"), ("kerb", "curb"),
)  # fmt: skip
_OTHER_WORD = {a: b for a, b in _WORDS} | {b: a for a, b in _WORDS}
_OPERATORS = frozenset({"AND", "OR", "NOT"})
# The parts of an FTS5 query: a NEAR group (its phrases take no OR, so it is left as typed), a quoted phrase,
# a {column set}, a bare word, or one other character.
_QUERY_PARTS = re.compile(
    r'(?P<near>NEAR\s*\((?:"(?:[^"]|"")*"|[^")])*\))|(?P<phrase>"(?:[^"]|"")*")|(?P<columns>\{[^}]*\})|'
    r"(?P<word>\w+)|(?P<other>.)",
    re.DOTALL,
)


def spelling_variants(word: str) -> tuple[str, ...]:
    """The other spellings of a word, British <-> American (`labour` -> `labor`), in lower case; () if none."""
    lower = word.lower()
    found: dict[str, None] = {}
    if lower in _OTHER_WORD:
        found[_OTHER_WORD[lower]] = None
    if lower.endswith("s") and lower[:-1] in _OTHER_WORD:
        found[_OTHER_WORD[lower[:-1]] + "s"] = None
    for one, other in _ENDINGS:
        for ending, swapped in ((one, other), (other, one)):
            if lower.endswith(ending) and len(lower) - len(ending) >= _MIN_STEM:
                found[lower[: -len(ending)] + swapped] = None
    found.pop(lower, None)
    return tuple(found)


def with_spelling_variants(query: str) -> str:
    """An FTS5 query that also finds the other spelling of each word: `labour party` -> `(labour OR labor) AND
    party`.

    Words and quoted phrases are rewritten; prefixes (`labour*`), column names (`title:`), NEAR groups and
    phrases joined by `+` or anchored by `^` stay as typed. FTS5 joins a bracketed group to its neighbour only
    with an explicit AND (`a (b OR c)` is a syntax error), so one is written where the words were side by side.
    """
    parts = list(_QUERY_PARTS.finditer(query))
    out: list[str] = []
    last: tuple[str, bool] | None = None  # the last part written that is not white space, and if it is a group
    for index, part in enumerate(parts):
        text = part.group()
        grouped = _with_variants(part, _neighbour(parts, index, -1), _neighbour(parts, index, 1))
        if text.isspace():
            out.append(text)
            continue
        if last is not None and (grouped or last[1]) and _ends_term(last[0]) and _starts_term(grouped or text):
            out.append("AND ")
        out.append(grouped or text)
        last = (grouped or text, grouped is not None)
    return "".join(out)


def _with_variants(part: re.Match[str], before: str, after: str) -> str | None:
    """A word or phrase with its other spellings as an OR group, or None when it stays as typed."""
    text = part.group()
    if before in ("^", "+") or after in ("*", ":", "+"):
        return None
    if part.lastgroup == "word" and text not in _OPERATORS:
        variants = spelling_variants(text)
        return f"({' OR '.join((text, *variants))})" if variants else None
    if part.lastgroup == "phrase":
        swapped = re.sub(r"\w+", lambda word: (spelling_variants(word.group()) or (word.group(),))[0], text)
        return f"({text} OR {swapped})" if swapped != text else None
    return None


def _ends_term(text: str) -> bool:
    return text not in _OPERATORS and (text[-1].isalnum() or text[-1] in '_")*')


def _starts_term(text: str) -> bool:
    return text not in _OPERATORS and (text[0].isalnum() or text[0] in '_"(^{-')


def _neighbour(parts: Sequence[re.Match[str]], index: int, step: int) -> str:
    """The nearest part before (step -1) or after (step 1) `index` that is not white space."""
    index += step
    while 0 <= index < len(parts):
        text = parts[index].group()
        if not text.isspace():
            return text
        index += step
    return ""


# --- did you mean ------------------------------------------------------------------------------------------

# Close enough to suggest (difflib's ratio, between stems): one letter wrong, missing or extra in six.
SUGGEST_CUTOFF = 0.75
_VOCABULARY = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.entries_fts_vocab USING fts5vocab(main, entries_fts, row)"
_STEMMER = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.stemmer USING fts5(word, tokenize='porter unicode61')"
_STEMS = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.stemmer_vocab USING fts5vocab(temp, stemmer, row)"


def _did_you_mean(conn: sqlite3.Connection, query: str) -> str | None:
    """The query with each word the index does not know replaced by the closest word it does; None when every
    word is known or one has no close match. Words are compared as the index stores them (porter stems), and
    the suggestion is a word as some entry spells it."""
    for statement in (_VOCABULARY, _STEMMER, _STEMS):
        conn.execute(statement)
    replaced: dict[str, str] = {}
    for word in dict.fromkeys(_query_words(query)):
        if _matches(conn, word):
            continue
        closest = _closest_term(conn, _stem(conn, word))
        if closest is None:
            return None
        spelled = _spelled(conn, closest)
        replaced[word] = spelled[:1].upper() + spelled[1:] if word[:1].isupper() else spelled
    if not replaced:
        return None
    return re.sub(r"\w+", lambda found: replaced.get(found.group(), found.group()), query)


def _query_words(query: str) -> Iterator[str]:
    """The words a query searches for: not operators, column names, prefixes or NEAR's distances."""
    parts = list(_QUERY_PARTS.finditer(query))
    for index, part in enumerate(parts):
        if part.lastgroup == "word" and part.group() not in _OPERATORS and not part.group().isdigit():
            if _neighbour(parts, index, 1) not in ("*", ":"):
                yield part.group()
        elif part.lastgroup in ("phrase", "near"):
            yield from (w for w in re.findall(r"\w+", part.group()) if w != "NEAR" and not w.isdigit())


def _matches(conn: sqlite3.Connection, word: str) -> bool:
    """Whether any entry has the word, in any of its forms and spellings."""
    phrase = with_spelling_variants('"' + word.replace('"', '""') + '"')
    return conn.execute("SELECT 1 FROM entries_fts WHERE entries_fts MATCH ? LIMIT 1", (phrase,)).fetchone() is not None


def _stem(conn: sqlite3.Connection, word: str) -> str:
    """The word as the index stores it: the porter stem its tokenizer makes."""
    conn.execute("DELETE FROM temp.stemmer")
    conn.execute("INSERT INTO temp.stemmer (word) VALUES (?)", (word,))
    row = conn.execute("SELECT term FROM temp.stemmer_vocab LIMIT 1").fetchone()
    return str(row[0]) if row else word.lower()


def _closest_term(conn: sqlite3.Connection, stem: str) -> str | None:
    """The index term closest to `stem`, among those with its first letter (a typo rarely changes that one),
    the more common one when two are as close."""
    first = stem[:1]
    rows = conn.execute(
        "SELECT term, doc FROM temp.entries_fts_vocab WHERE term >= ? AND term < ?", (first, first + "\U0010ffff")
    ).fetchall()
    documents = {term: doc for term, doc in rows if abs(len(term) - len(stem)) <= 3}
    close = difflib.get_close_matches(stem, documents, n=5, cutoff=SUGGEST_CUTOFF)
    if not close:
        return None
    return str(
        max(close, key=lambda term: (round(difflib.SequenceMatcher(None, stem, term).ratio(), 2), documents[term]))
    )


# Entries read to find how the index's term is usually written.
_SPELLING_SAMPLE = 50


def _spelled(conn: sqlite3.Connection, term: str) -> str:
    """The word entries most often write for the index's term `term` (`government` for `govern`), in lower case."""
    phrase = '"' + term.replace('"', '""') + '"'
    rows = conn.execute(
        """SELECT highlight(entries_fts, 0, char(2), char(3)) || ' ' || highlight(entries_fts, 1, char(2), char(3))
           FROM entries_fts WHERE entries_fts MATCH ? LIMIT ?""",
        (phrase, _SPELLING_SAMPLE),
    ).fetchall()
    marked = re.compile(f"{MARK_START}([^{MARK_END}]+){MARK_END}")
    words = Counter(found.lower() for (text,) in rows for found in marked.findall(text))
    return words.most_common(1)[0][0] if words else term
