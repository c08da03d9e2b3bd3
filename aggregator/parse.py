"""Bytes and response headers -> ParsedFeed (RSS 0.9x/1.0/2.0, Atom 0.3/1.0, JSON Feed 1.0/1.1).

feedparser is used here (and, for what it does not publish, through feedparser_internals.py): its dictionaries
never leave this module. The parser gets bytes, never a URL, so parsing cannot touch the network or the disk:
feedparser's SAX parser has external entities switched off, so `<!ENTITY x SYSTEM "file:///etc/passwd">` and
remote DTDs are never read. A document that is not a feed raises ParseError saying what it is instead; for an
HTML page the message lists the feeds the page advertises.

Parsing a stranger's bytes must stay bounded, and feedparser is pure Python, so before it runs we refuse
documents whose cost we can see coming (see _check_budget): XML entities that would expand past
MAX_ENTITY_EXPANSION (billion laughs, quadratic blowup), parameter entities, and more than MAX_TAGS tags. The
budgets count the document the parsers read: one in an encoding where `<` is not the byte `<` (UTF-16/32,
EBCDIC, UTF-7) is decoded first. Character references to characters XML cannot carry (`&#xD800;`,
`&#x110000;`) are removed before parsing, so one costs a character, not the document. After parsing, at most
MAX_ENTRIES entries (the newest) are kept, and strings are scrubbed of characters XML and SQLite cannot carry
(NUL, lone surrogates).
"""

from __future__ import annotations

import calendar
import codecs
import html
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import feedparser

from .errors import ParseError
from .fastparse import parse_fast
from .feedparser_internals import (
    content_type_charset,
    declared_encoding,
    decode_to_utf8,
    keep_ids_as_published,
    parse_date,
)
from .models import Enclosure, ParsedEntry, ParsedFeed

__all__ = ["MAX_ENTITY_EXPANSION", "MAX_ENTRIES", "MAX_TAGS", "advertised_feeds", "drop_bad_char_refs", "parse_feed"]

log = logging.getLogger(__name__)

# Characters custom XML entities may add to a document. Real feeds declare a few short entities (the
# feedparser corpus: `<!ENTITY id "tag:example.com,">`); 1 MB is far above that and far below the 10 GB a
# 100 KB quadratic-blowup document asks for (measured: feedparser took 43 s and 2.9 GB on one before this check).
MAX_ENTITY_EXPANSION = 1_000_000
# Markup tags (outside CDATA and comments) one document may have. feedparser spends about 18 µs and 130 bytes
# per tag (measured on 2.5 million `<a/>`: 48 s, 826 MB); a 50,000-entry feed with six elements per entry has
# 600,000 tags, so this admits every plausible feed and caps the worst case at about 18 s.
MAX_TAGS = 1_000_000
# Entries kept from one document: an aggregator needs the recent ones, and clustering costs grow with the count
# (50,000 entries took 15 s to cluster). Feeds with more are archives; we keep the newest MAX_ENTRIES.
MAX_ENTRIES = 5_000
# How much of an HTML page is searched for <link rel="alternate">: the links live in <head>.
_HTML_SCAN_BYTES = 1024 * 1024

# An id is a name, not a link: kept as published (see feedparser_internals).
keep_ids_as_published()

# feedparser flags these as bozo although the document parsed fine.
_HARMLESS_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json", "application/json")


def parse_feed(body: bytes, headers: Mapping[str, str] | None = None, *, max_entries: int = MAX_ENTRIES) -> ParsedFeed:
    """Parse one feed document; raise ParseError when it is not a feed or is too costly to read."""
    headers = {key.lower(): value for key, value in (headers or {}).items()}
    if not body.strip():
        raise ParseError("empty body: the server sent no document")
    try:
        if _looks_like_json(body, headers.get("content-type", "")):
            feed = _parse_json_feed(body)
        else:
            # the budgets count what the parsers will read: a UTF-16, UTF-32 or EBCDIC document is decoded first
            body, headers = _ascii_compatible(body, headers)
            _check_budget(body)
            body = drop_bad_char_refs(body)
            # plain RSS 2.0 / Atom 1.0 through lxml (fastparse.py); None: everything else, through feedparser
            feed = parse_fast(body, headers) or _parse_xml_feed(body, headers)
    except ParseError:
        raise
    except (RecursionError, MemoryError) as e:
        raise ParseError(f"refused: the document is too deeply nested or too large to parse ({_one_line(e)})") from e
    except Exception as e:
        # feedparser is pure Python reading hostile bytes; a bug of its must cost one feed, not the pass
        log.warning("the parser failed on a document", exc_info=True)
        raise ParseError(f"unreadable document: the parser failed ({type(e).__name__}: {_one_line(e)})") from e
    return _keep_newest(feed, max_entries)


def _looks_like_json(body: bytes, content_type: str) -> bool:
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return start == b"{" or ("json" in content_type and start != b"<")


def _parse_xml_feed(body: bytes, headers: dict[str, str]) -> ParsedFeed:
    result = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    version = result.get("version") or ""
    if not version and not result.entries:
        raise ParseError(_not_a_feed(body, headers.get("content-location", ""), result))
    feed = result.feed
    entries = tuple(_xml_entry(entry) for entry in result.entries)
    warning = None
    if result.get("bozo") and not isinstance(result.get("bozo_exception"), _HARMLESS_BOZO):
        warning = f"malformed feed, read what could be recovered: {_one_line(result.get('bozo_exception'))}"
    return ParsedFeed(
        title=_text(feed.get("title")),
        link=feed.get("link"),
        entries=entries,
        version=version or "unknown",
        ttl_minutes=_int(feed.get("ttl")),
        update_period=_text(feed.get("sy_updateperiod")),
        update_frequency=_int(feed.get("sy_updatefrequency")),
        warning=warning,
    )


def _xml_entry(entry: Any) -> ParsedEntry:
    content = entry.get("content") or ()
    html_parts = [_clean(part.get("value", "")) for part in content if part.get("value")]
    return ParsedEntry(
        id=_text(entry.get("id")),
        link=_alternate_link(entry),
        title=_scrub(entry.get("title")),
        summary=_scrub(entry.get("summary")),
        content="\n".join(html_parts) or None,
        published=_struct_time(entry.get("published_parsed")),
        updated=_struct_time(entry.get("updated_parsed")),
        authors=_unique(a.get("name") or a.get("email") for a in entry.get("authors") or () if a),
        categories=_unique(t.get("term") or t.get("label") for t in entry.get("tags") or ()),
        enclosures=tuple(
            Enclosure(url=_clean(e["href"]), type=_text(e.get("type")), length=_int(e.get("length")))
            for e in entry.get("enclosures") or ()
            if e.get("href")
        ),
    )


# Encodings in which every ASCII character is its own single byte and no other byte sequence means one: `<`
# and `&` can be counted in the raw bytes. Any other encoding (UTF-16/32, EBCDIC such as cp037, UTF-7, whose
# `+ADw-` is a `<`) is decoded before the budgets count anything. Names as codecs.lookup() gives them.
_ASCII_COMPATIBLE = frozenset(
    {
        "ascii", "utf-8", "utf-8-sig", "iso8859-1", "iso8859-2", "iso8859-3", "iso8859-4", "iso8859-5",
        "iso8859-6", "iso8859-7", "iso8859-8", "iso8859-9", "iso8859-10", "iso8859-11", "iso8859-13",
        "iso8859-14", "iso8859-15", "iso8859-16", "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255",
        "cp1256", "cp1257", "cp1258", "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "cp437", "cp850",
        "cp866", "cp874", "tis-620", "gb2312", "gbk", "gb18030", "big5", "big5hkscs", "shift_jis", "cp932",
        "euc_jp", "euc_kr", "cp949",
    }
)  # fmt: skip
# How a document that is not ASCII-compatible begins (byte order marks, then `<?` in UTF-16/32 and EBCDIC).
_WIDE_OR_EBCDIC_STARTS = (
    codecs.BOM_UTF32_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE,
    b"\x4c\x6f\xa7\x94", b"\x00\x3c\x00\x3f", b"\x3c\x00\x3f\x00", b"\x00\x00\x00\x3c", b"\x3c\x00\x00\x00",
)  # fmt: skip


def _ascii_compatible(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The document in an ASCII-compatible encoding, and the headers to parse it with.

    A document whose BOM, first bytes, Content-Type charset or XML declaration (read with feedparser's own
    rules) names an encoding outside _ASCII_COMPATIBLE is decoded here as feedparser decodes it (its
    convert_to_utf8), and
    handed on as UTF-8: the size budgets then count the markup that is parsed (a cp037 tag flood took 60 s
    and 792 MB before), and both parsers read the same bytes. Every other document passes untouched.
    """
    names = (
        content_type_charset(headers.get("content-type", "")),
        declared_encoding(body.removeprefix(codecs.BOM_UTF8)),
    )
    if not body.startswith(_WIDE_OR_EBCDIC_STARTS) and all(_is_ascii_compatible(name) for name in names):
        return body, headers
    return decode_to_utf8(headers, body), {**headers, "content-type": "application/xml; charset=utf-8"}


def _is_ascii_compatible(name: str) -> bool:
    if not name:
        return True
    try:
        return codecs.lookup(name.strip().lower()).name in _ASCII_COMPATIBLE
    except LookupError:
        return True  # a name no codec knows: feedparser falls back to UTF-8 or windows-1252


# A numeric character reference, as feedparser's loose parser reads one.
_CHAR_REF = re.compile(rb"&#([0-9]+|[xX][0-9a-fA-F]+);")
_SURROGATE_PAIR_REF = re.compile(rb"&#[xX]([dD][89abAB][0-9a-fA-F]{2});&#[xX]([dD][c-fC-F][0-9a-fA-F]{2});")


def drop_bad_char_refs(body: bytes) -> bytes:
    """Remove character references to characters XML cannot carry (`&#xD800;`, `&#0;`, `&#x110000;`,
    `&#99999999999;`); a UTF-16 surrogate pair written as two references becomes one reference to its character.

    One such reference made the whole document unreadable (libxml2 and expat refuse it, and feedparser's
    loose parser raised on it): now it costs that character only. Works on any ASCII-compatible encoding.
    """
    if b"&#" not in body:
        return body
    body = _SURROGATE_PAIR_REF.sub(_joined_pair, body)
    return _CHAR_REF.sub(_valid_ref_or_nothing, body)


def _joined_pair(pair: re.Match[bytes]) -> bytes:
    high, low = int(pair.group(1), 16), int(pair.group(2), 16)
    return b"&#x%X;" % (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def _valid_ref_or_nothing(ref: re.Match[bytes]) -> bytes:
    digits = ref.group(1)
    hexadecimal = digits[:1] in b"xX"
    digits = (digits[1:] if hexadecimal else digits).lstrip(b"0") or b"0"
    if len(digits) > 7:  # past U+10FFFF in either base (and never a 4,300-digit int for Python to refuse)
        return b""
    code = int(digits, 16 if hexadecimal else 10)
    valid = code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF
    return ref.group() if valid else b""


_SUBSET_TOKEN = re.compile(rb"[\"'\]]|<!--")
_ENTITY_DECL = re.compile(rb"<!ENTITY\s+(%\s+)?([^\s\"'>]+)\s+(?:\"([^\"]*)\"|'([^']*)'|(SYSTEM|PUBLIC)\b)", re.S)
_ENTITY_REF = re.compile(rb"&([A-Za-z_:][-\w.:]*);")


def _check_budget(view: bytes) -> None:
    """Refuse a document whose entities or markup would make feedparser's work unbounded.

    Every scan here is linear in the document (finds that only move forward), so the check itself cannot
    be made slow by unterminated comments, quotes or CDATA sections.
    """
    doctype = _prolog_doctype(view)
    if doctype >= 0:
        _check_entities(view, doctype)
    tags = _count_tags(view)
    if tags > MAX_TAGS:
        raise ParseError(f"refused: the document has {tags:,} tags, more than we parse ({MAX_TAGS:,})")


def _prolog_doctype(view: bytes) -> int:
    """Where the DOCTYPE starts, if there is one before the root element; else -1."""
    pos = 0
    while True:
        lt = view.find(b"<", pos)
        if lt < 0:
            return -1
        if view.startswith(b"<!DOCTYPE", lt):
            return lt
        for opener, closer in ((b"<!--", b"-->"), (b"<?", b"?>")):
            if view.startswith(opener, lt):
                stop = view.find(closer, lt + len(opener))
                if stop < 0:
                    return -1
                pos = stop + len(closer)
                break
        else:
            return -1  # the root element (or text that is not XML) comes first


def _count_tags(view: bytes) -> int:
    """Markup tags in the document, not counting `<` inside CDATA sections and comments."""
    tags, pos = 0, 0
    next_cdata, next_comment = view.find(b"<![CDATA["), view.find(b"<!--")
    while next_cdata >= 0 or next_comment >= 0:
        if next_comment < 0 or 0 <= next_cdata < next_comment:
            start, closer = next_cdata, b"]]>"
        else:
            start, closer = next_comment, b"-->"
        tags += view.count(b"<", pos, start) + 1
        stop = view.find(closer, start + 4)
        if stop < 0:
            return tags
        pos = stop + len(closer)
        if 0 <= next_cdata < pos:
            next_cdata = view.find(b"<![CDATA[", pos)
        if 0 <= next_comment < pos:
            next_comment = view.find(b"<!--", pos)
    return tags + view.count(b"<", pos)


def _subset_end(view: bytes, pos: int) -> int:
    """Where the internal subset that starts at `pos` ends (its `]`), skipping quoted strings and comments."""
    while True:
        token = _SUBSET_TOKEN.search(view, pos)
        if token is None:
            return len(view)
        kind = token.group()
        if kind == b"]":
            return token.start()
        closer = b"-->" if kind == b"<!--" else kind
        stop = view.find(closer, token.end())
        if stop < 0:
            return len(view)
        pos = stop + len(closer)


def _check_entities(view: bytes, doctype: int) -> None:
    opening = view.find(b"[", doctype)
    closing = view.find(b">", doctype)
    if opening < 0 or (0 <= closing < opening):
        return  # no internal subset: nothing is declared here, and external DTDs are never read
    end = _subset_end(view, opening + 1)
    subset = view[opening + 1 : end]
    values: dict[bytes, bytes] = {}
    for declared in _ENTITY_DECL.finditer(subset):
        parameter, name, external = declared.group(1), declared.group(2), declared.group(5)
        value = declared.group(3) if declared.group(3) is not None else declared.group(4)
        if parameter and value is not None:
            raise ParseError(
                "refused: the document declares XML parameter entities, a way to hide entity-expansion attacks"
            )
        if not parameter and external is None and value is not None:
            values.setdefault(name, value)  # XML: the first declaration of an entity binds
    if not values:
        return
    sizes: dict[bytes, int] = {}

    def expanded(name: bytes, stack: tuple[bytes, ...]) -> int:
        if name in sizes:
            return sizes[name]
        if name in stack:
            raise ParseError(f"refused: the XML entity {name.decode('ascii', 'replace')!r} refers to itself")
        size = len(values[name])
        for ref in _ENTITY_REF.finditer(values[name]):
            if ref.group(1) in values:
                size += expanded(ref.group(1), (*stack, name)) - len(ref.group())
            if size > MAX_ENTITY_EXPANSION:
                break
        sizes[name] = size
        return size

    total = 0
    for ref in _ENTITY_REF.finditer(view, end):
        if ref.group(1) in values:
            total += expanded(ref.group(1), ()) - len(ref.group())
            if total > MAX_ENTITY_EXPANSION:
                raise ParseError(
                    "refused: the document's XML entities expand to more than "
                    f"{MAX_ENTITY_EXPANSION:,} characters (an entity-expansion attack such as billion laughs)"
                )


def _keep_newest(feed: ParsedFeed, limit: int) -> ParsedFeed:
    if len(feed.entries) <= limit:
        return feed
    far_future = datetime.max.replace(tzinfo=UTC)
    ranked = sorted(
        range(len(feed.entries)),
        key=lambda i: feed.entries[i].published or feed.entries[i].updated or far_future,
        reverse=True,
    )
    kept = tuple(feed.entries[i] for i in sorted(ranked[:limit]))
    note = f"the feed has {len(feed.entries):,} entries; kept the newest {limit:,}"
    return replace(feed, entries=kept, warning=f"{feed.warning}; {note}" if feed.warning else note)


def _alternate_link(entry: Any) -> str | None:
    # an entry's link is its rel="alternate" link; feedparser's `link` can be an enclosure that came later
    for link in entry.get("links") or ():
        if isinstance(link, dict) and link.get("rel", "alternate") == "alternate" and link.get("href"):
            return _text(link["href"])
    return _text(entry.get("link"))


def _parse_json_feed(body: bytes) -> ParsedFeed:
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParseError(f"not a feed: invalid JSON ({_one_line(e)})") from None
    if not isinstance(data, dict) or "jsonfeed.org/version" not in str(data.get("version", "")):
        raise ParseError("not a feed: a JSON document that is not a JSON Feed (no jsonfeed.org version)")
    items = data.get("items")
    if not isinstance(items, list):
        raise ParseError("not a feed: JSON Feed without an items list")
    if len(items) > MAX_TAGS // 4:
        raise ParseError(f"refused: the JSON Feed has {len(items):,} items, more than we read ({MAX_TAGS // 4:,})")
    version = "json11" if str(data["version"]).rstrip("/").endswith("/1.1") else "json1"
    return ParsedFeed(
        title=_text(data.get("title")),
        link=_text(data.get("home_page_url")),
        entries=tuple(_json_item(item) for item in items if isinstance(item, dict)),
        version=version,
    )


def _json_item(item: dict[str, Any]) -> ParsedEntry:
    authors = _list(item.get("authors")) or ([item["author"]] if isinstance(item.get("author"), dict) else [])
    attachments = _list(item.get("attachments"))
    return ParsedEntry(
        id=_text(item.get("id")),
        link=_text(item.get("url")) or _text(item.get("external_url")),
        title=_text(item.get("title")),
        summary=_text(item.get("summary")),
        content=_text(item.get("content_html")) or _escape_text(item.get("content_text")),
        published=_iso_date(item.get("date_published")),
        updated=_iso_date(item.get("date_modified")),
        authors=_unique(a.get("name") for a in authors if isinstance(a, dict)),
        categories=_unique(t for t in _list(item.get("tags")) if isinstance(t, str)),
        enclosures=tuple(
            Enclosure(url=_clean(a["url"]), type=_text(a.get("mime_type")), length=_int(a.get("size_in_bytes")))
            for a in attachments
            if isinstance(a, dict) and isinstance(a.get("url"), str) and a["url"].strip()
        ),
    )


def _not_a_feed(body: bytes, base_url: str, result: Any) -> str:
    head = body[:2048].lower()
    if b"<html" in head or b"<!doctype html" in head:
        feeds = advertised_feeds(body[:_HTML_SCAN_BYTES].decode("utf-8", "replace"), base_url)
        if feeds:
            return f"not a feed but an HTML page; it advertises these feeds: {', '.join(feeds)}"
        return "not a feed but an HTML page (it advertises no feed)"
    problem = _one_line(result.get("bozo_exception")) if result.get("bozo") else "no RSS, Atom or JSON Feed root"
    return f"not a feed: {problem}"


class _AlternateLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        rel = attributes.get("rel", "").lower().split()
        kind = attributes.get("type", "").lower().split(";")[0].strip()
        if tag == "link" and "alternate" in rel and kind in _FEED_TYPES and attributes.get("href"):
            self.hrefs.append(attributes["href"])


def advertised_feeds(html: str, base_url: str = "") -> tuple[str, ...]:
    """The feed URLs an HTML page advertises with <link rel="alternate">, made absolute."""
    finder = _AlternateLinks()
    finder.feed(html)
    return _unique(urljoin(base_url, href) for href in finder.hrefs)


def _struct_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _iso_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 100:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return parse_date(value)  # not RFC 3339: read as feedparser reads dates (RFC 822 and others)
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 or 9999 shifted out of range by its offset
        return None


# Characters neither XML 1.0 nor SQLite's UTF-8 can carry: NUL and other C0 controls, lone surrogates (which a
# JSON "\ud800" escape or a loose character reference produces), U+FFFE and U+FFFF.
_UNCARRIABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(value: Any) -> str:
    return _UNCARRIABLE.sub("", value if isinstance(value, str) else str(value))


def _scrub(value: Any) -> str | None:
    return None if value is None else _clean(value)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = (_scrub(value) or "").strip()
    return text or None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _escape_text(value: Any) -> str | None:
    text = _text(value)
    return f"<p>{html.escape(text)}</p>" if text else None


def _int(value: Any) -> int | None:
    try:
        number = int(str(value).strip()[:20])
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**53 else None  # SQLite and JSON carry it exactly


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v and v.strip()))


def _one_line(error: object) -> str:
    text = re.sub(r"\s+", " ", str(error)).strip()
    return text or type(error).__name__
