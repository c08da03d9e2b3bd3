"""A fast path for parse.parse_feed: plain RSS 2.0 and Atom 1.0 read with lxml, else None (use feedparser).

feedparser is the reference, and pure Python: it reads about 1,200 entries a second here, where libxml2 reads a
feed of 50 entries in about a millisecond. This module handles the documents whose meaning both agree on and
hands everything else back (`parse_fast` returns None, and parse.py runs feedparser), so a stored field never
depends on which parser read the feed. tests/test_fastparse.py checks that agreement field by field, after
normalize_entry, on the real feeds of shared/data and feedparser's own well-formed corpus.

Handed back to feedparser (the cases where the two could disagree, or where feedparser's repairs matter):
a document that is not well-formed XML, not UTF-8, declares a DOCTYPE (so no entity is ever expanded and no
DTD is ever fetched here: libxml2 runs with entities, DTDs and the network off and its size limits on), uses
`xml:base`, has a relative URL anywhere in a link or in HTML (feedparser resolves those against the document
URL; normalize would resolve them against the entry's link), or has an element in an entry that this module
does not map (`media:title`, RSS `<author>`, Atom `type="xhtml"`...). The fast path raises nothing: any
surprise is a hand-back.

Why lxml directly and not the `fastfeedparser` package: fastfeedparser builds its trees with `huge_tree=True`
(libxml2's limits off), synthesizes RSS descriptions into content and collapses whitespace, so its fields
differ from feedparser's in ways that cannot be undone; the lxml calls it makes are the fast part, and those
are here with our own parser options.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from lxml import etree

from .feedparser_internals import NAMESPACES, parse_date
from .models import Enclosure, ParsedEntry, ParsedFeed
from .xmlsafe import safe_parser

__all__ = ["parse_fast"]

_ATOM = "{http://www.w3.org/2005/Atom}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
_DC = "{http://purl.org/dc/elements/1.1/}"

# libxml2 as a parser of strangers' bytes (xmlsafe.py); no recovery: a document it would have to repair is
# feedparser's job.
_PARSER = safe_parser()

# Item children mapped below, or that feedparser stores nowhere we read. Any other child (media:title sets the
# entry title in feedparser, dc:date the dates, itunes:keywords the tags...) hands the document back.
_RSS_ITEM_TAGS = frozenset(
    {
        "title", "link", "description", "guid", "pubDate", "category", "enclosure", "comments",
        f"{_CONTENT}encoded", f"{_DC}creator",
        "{http://wellformedweb.org/CommentAPI/}commentRss", "{http://purl.org/rss/1.0/modules/slash/}comments",
    }
)  # fmt: skip
_ATOM_ENTRY_TAGS = frozenset(
    f"{_ATOM}{name}"
    for name in ("id", "title", "link", "summary", "content", "published", "updated", "author", "category", "rights")
)
# Feed-level children: the ones feedparser reads for the feed (title, link, ttl) are read here too; the rest it
# keeps to itself, and anything else (a channel's dc:title, an <item> in an Atom feed) hands back.
_RSS_CHANNEL_TAGS = frozenset(
    {
        "title", "link", "description", "language", "copyright", "managingEditor", "webMaster", "pubDate",
        "lastBuildDate", "category", "generator", "docs", "cloud", "ttl", "image", "rating", "textInput",
        "skipHours", "skipDays", "item",
    }
)  # fmt: skip
_ATOM_FEED_TAGS = frozenset(
    f"{_ATOM}{name}"
    for name in (
        "title", "subtitle", "link", "id", "updated", "author", "contributor", "category", "generator", "icon",
        "logo", "rights", "entry",
    )
)  # fmt: skip
_ATOM_AUTHOR_TAGS = frozenset({f"{_ATOM}name", f"{_ATOM}email", f"{_ATOM}uri"})
# Namespaces (and prefixes) feedparser gives a meaning; an element of any other namespace is stored by feedparser
# under its own name, which we never read (`wire:canonicalUrl` in shared/data/feeds), so it can be skipped.
_FEEDPARSER_NAMESPACES = frozenset(NAMESPACES)
_FEEDPARSER_PREFIXES = frozenset(NAMESPACES.values())
# A URL with a scheme: anything else is relative and would be resolved by feedparser against the document URL.
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# Attributes whose relative URLs feedparser's HTML pass resolves against the document URL (its relative_uris).
_URL_ATTRIBUTES = frozenset(
    {"href", "src", "cite", "action", "background", "longdesc", "usemap", "poster", "codebase", "data", "profile",
     "classid"}
)  # fmt: skip
# The attribute name just before an "=", and a value that starts with a scheme.
_NAME_BEFORE = re.compile(r"""\s([^\s=<>"'/]+)\s*\Z""")
_ABSOLUTE_VALUE = re.compile(r"""\s*["']?\s*[A-Za-z][A-Za-z0-9+.\-]*:""")
# An end tag of a void element: feedparser's HTML pass drops `</hr>`, an HTML5 parser (nh3) reads `</br>` as
# another `<br>`.
_VOID_END_TAG = re.compile(
    r"</\s*(?:area|base|br|col|command|embed|hr|img|input|keygen|link|meta|param|source|track|wbr)\b", re.IGNORECASE
)
# Attribute names feedparser's SGML pass keeps as they are (it drops other characters: Blogger's `i$="true"`).
_SGML_NAME = re.compile(r"[a-zA-Z_][-:.a-zA-Z_0-9]*")
_ENCODING_DECL = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([^\s;\"']+)", re.IGNORECASE)


class _HandBack(Exception):
    """This document is feedparser's to read."""


def parse_fast(body: bytes, headers: Mapping[str, str] | None = None) -> ParsedFeed | None:
    """The feed as feedparser would read it, for plain RSS 2.0 and Atom 1.0; None for any other document."""
    try:
        root = _root(body, {key.lower(): value for key, value in (headers or {}).items()})
        if root.tag == "rss" and root.get("version") == "2.0":
            return _rss(root)
        if root.tag == f"{_ATOM}feed":
            return _atom(root)
    except (_HandBack, etree.LxmlError, ValueError, TypeError, OverflowError):
        return None
    return None


def _root(body: bytes, headers: dict[str, str]) -> Any:
    """The document's root element, when it is well-formed UTF-8 XML without a DOCTYPE or xml:base."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body or b"xml:base" in body:
        raise _HandBack
    declared = _ENCODING_DECL.match(body.removeprefix(b"\xef\xbb\xbf"))
    if declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise _HandBack
    content_type = headers.get("content-type", "")
    charset = _CHARSET.search(content_type)
    if charset is not None and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise _HandBack
    if charset is None and content_type.lower().startswith("text/") and not body.isascii():
        raise _HandBack  # RFC 3023: text/* without a charset is US-ASCII; feedparser goes its own way
    body.decode("utf-8")  # a UnicodeDecodeError (a ValueError) hands back
    return etree.fromstring(body, _PARSER)


def _rss(root: Any) -> ParsedFeed:
    channel = root.find("channel")
    if channel is None:
        raise _HandBack
    for child in channel:
        if child.tag == f"{_ATOM}link" and child.get("rel", "alternate") != "alternate":
            continue  # rel="self", "hub": feedparser lists them; the feed's link stays the RSS one
        if child.tag not in _RSS_CHANNEL_TAGS:
            _skip_foreign(child)
    return ParsedFeed(
        title=_text(_plain(channel.find("title"))),
        link=_url(_plain(channel.find("link"))),
        entries=tuple(_rss_item(item) for item in channel.iterfind("item")),
        version="rss20",
        ttl_minutes=_int(_plain(channel.find("ttl"))),
    )


def _rss_item(item: Any) -> ParsedEntry:
    fields: dict[str, Any] = {"authors": [], "categories": [], "enclosures": []}
    for child in item:
        tag = child.tag
        if tag not in _RSS_ITEM_TAGS:
            _skip_foreign(child)
            continue
        if tag in fields and tag not in ("category", f"{_DC}creator"):
            raise _HandBack  # repeated where feedparser keeps one of several
        fields[tag] = child
        if tag == "category":
            fields["categories"].append(_plain(child))
        elif tag == f"{_DC}creator":
            fields["authors"].append(_plain(child))
        elif tag == "enclosure":
            fields["enclosures"].append(_enclosure(child.get("url"), child.get("type"), child.get("length")))
    link = fields.get("link")
    if link is None:
        raise _HandBack  # feedparser then takes the guid as the link when it is a permalink
    guid = fields.get("guid")
    description, encoded = _html(fields.get("description")), _html(fields.get(f"{_CONTENT}encoded"))
    published = _date(fields.get("pubDate"))
    return ParsedEntry(
        id=_text(_plain(guid)) if guid is not None else None,
        link=_url(_plain(link)),
        title=_plain(fields["title"]) if "title" in fields else None,
        summary=description if description is not None else encoded,  # feedparser copies content to summary
        content=encoded or None,
        published=published,
        updated=published,  # feedparser's updated_parsed falls back to published_parsed
        authors=_unique(fields["authors"]),
        categories=_unique(fields["categories"]),
        enclosures=tuple(fields["enclosures"]),
    )


def _atom(root: Any) -> ParsedFeed:
    for child in root:
        if child.tag not in _ATOM_FEED_TAGS:
            _skip_foreign(child)
    title = root.find(f"{_ATOM}title")
    link = _alternate(root)
    if link is None and root.find(f"{_ATOM}id") is not None:
        raise _HandBack  # feedparser then takes the id as the link
    return ParsedFeed(
        title=_text(_atom_text(title, html=False)) if title is not None else None,
        link=link,
        entries=tuple(_atom_entry(entry) for entry in root.iterfind(f"{_ATOM}entry")),
        version="atom10",
    )


def _atom_entry(entry: Any) -> ParsedEntry:
    seen: set[str] = set()
    authors: list[str | None] = []
    categories: list[str | None] = []
    enclosures: list[Enclosure] = []
    for child in entry:
        tag = child.tag
        if tag not in _ATOM_ENTRY_TAGS:
            _skip_foreign(child)
            continue
        if tag in seen and tag not in (f"{_ATOM}link", f"{_ATOM}author", f"{_ATOM}category"):
            raise _HandBack
        seen.add(tag)
        if tag == f"{_ATOM}author":
            parts = {part.tag: _plain(part) for part in child}
            if not parts.keys() <= _ATOM_AUTHOR_TAGS:
                raise _HandBack
            authors.append(parts.get(f"{_ATOM}name") or parts.get(f"{_ATOM}email"))
        elif tag == f"{_ATOM}category":
            categories.append(child.get("term") or child.get("label"))
        elif tag == f"{_ATOM}link" and child.get("rel") == "enclosure":
            enclosures.append(_enclosure(child.get("href"), child.get("type"), child.get("length")))
    title = entry.find(f"{_ATOM}title")
    summary = entry.find(f"{_ATOM}summary")
    content = entry.find(f"{_ATOM}content")
    id_ = entry.find(f"{_ATOM}id")
    published = _date(entry.find(f"{_ATOM}published"))
    updated = _date(entry.find(f"{_ATOM}updated"))
    link = _alternate(entry)
    if link is None and id_ is not None:
        raise _HandBack  # feedparser then takes the id as the link
    content_text = _atom_text(content, html=True) if content is not None else None
    summary_text = _atom_text(summary, html=True) if summary is not None else content_text
    return ParsedEntry(
        id=_text(_plain(id_)) if id_ is not None else None,
        link=link,
        title=_atom_text(title, html=False) if title is not None else None,
        summary=summary_text,  # feedparser copies content to a missing summary
        content=content_text or None,
        published=published,
        updated=updated or published,
        authors=_unique(authors),
        categories=_unique(categories),
        enclosures=tuple(enclosures),
    )


def _skip_foreign(element: Any) -> None:
    """Let an element feedparser stores nowhere we read pass; hand back any other.

    It must be of a namespace feedparser does not know, under a prefix it does not know either (feedparser
    dispatches on the prefix: `dc:` of another namespace would still be read as Dublin Core), and hold no
    elements (feedparser would read a `<title>` inside it as the entry's).
    """
    qname = etree.QName(element)
    if (
        not isinstance(element.tag, str)
        or not qname.namespace
        or qname.namespace in _FEEDPARSER_NAMESPACES
        or element.prefix in _FEEDPARSER_PREFIXES
        or len(element)
    ):
        raise _HandBack


def _alternate(element: Any) -> str | None:
    """The href of the first rel="alternate" (or rel-less) link among an Atom element's children."""
    for link in element.iterfind(f"{_ATOM}link"):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return _url(link.get("href"))
    return None


def _atom_text(element: Any, *, html: bool) -> str:
    """An Atom text construct's value: text as is, escaped HTML unescaped; XHTML and `src` hand back."""
    kind = element.get("type", "text")
    if kind not in ("text", "html") or element.get("src") is not None or len(element):
        raise _HandBack
    text = (element.text or "").strip()
    if kind == "html" and not html:
        raise _HandBack  # an HTML title: feedparser's handling of markup in titles is its own
    if kind == "html":
        _check_html(text)
    return text


def _plain(element: Any) -> str:
    """The text of an element that must hold text only."""
    if element is None:
        return ""
    if len(element):
        raise _HandBack  # child elements: feedparser would serialize them into the value
    return str(element.text or "").strip()  # feedparser strips every value


def _html(element: Any) -> str | None:
    if element is None:
        return None
    text = _plain(element)
    _check_html(text)
    return text


def _check_html(text: str) -> None:
    """Hand back HTML where feedparser's HTML pass changes more than nh3 undoes: relative URLs (feedparser
    resolves them against the document URL), end tags of void elements, attribute names it would rewrite."""
    # one look at each "=" (a regex over the whole text for attribute names costs ten times more)
    equals = text.find("=")
    while equals >= 0:
        in_tag = text.rfind("<", 0, equals) > text.rfind(">", 0, equals)  # not "($1 = 0.85 euros)" in text
        before = _NAME_BEFORE.search(text, max(0, equals - 64), equals) if in_tag else None
        if before is not None:
            name = before.group(1)
            if not _SGML_NAME.fullmatch(name):
                raise _HandBack
            if name.lower() in _URL_ATTRIBUTES and not _ABSOLUTE_VALUE.match(text, equals + 1):
                raise _HandBack
        equals = text.find("=", equals + 1)
    if "</" in text and _VOID_END_TAG.search(text):
        raise _HandBack


def _url(value: str | None) -> str | None:
    text = _text(value)
    if text is not None and not _ABSOLUTE.match(text):
        raise _HandBack
    return text


def _enclosure(url: str | None, kind: str | None, length: str | None) -> Enclosure:
    href = _url(url)
    if href is None:
        raise _HandBack
    return Enclosure(url=href, type=_text(kind), length=_int(length))


def _date(element: Any) -> datetime | None:
    """feedparser's own date parser, so every format it accepts (and rejects) reads the same here."""
    text = _plain(element) if element is not None else ""
    if not text.strip():
        return None
    return parse_date(text)


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None


def _int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip()[:20])
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**53 else None


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v and v.strip()))
