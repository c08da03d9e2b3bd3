"""Bytes and response headers -> ParsedFeed (RSS 0.9x/1.0/2.0, Atom 0.3/1.0, JSON Feed 1.0/1.1).

The only feedparser user: its dictionaries never leave this module. The parser gets bytes, never a URL, so
parsing cannot touch the network or the disk. A document that is not a feed raises ParseError saying what it
is instead; for an HTML page the message lists the feeds the page advertises.
"""

from __future__ import annotations

import calendar
import html
import io
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import feedparser

from .errors import ParseError
from .models import Enclosure, ParsedEntry, ParsedFeed

__all__ = ["advertised_feeds", "parse_feed"]

# feedparser flags these as bozo although the document parsed fine.
_HARMLESS_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json", "application/json")


def parse_feed(body: bytes, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse one feed document; raise ParseError when it is not a feed."""
    headers = {key.lower(): value for key, value in (headers or {}).items()}
    if not body.strip():
        raise ParseError("empty body: the server sent no document")
    if _looks_like_json(body, headers.get("content-type", "")):
        return _parse_json_feed(body)
    return _parse_xml_feed(body, headers)


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
        warning=warning,
    )


def _xml_entry(entry: Any) -> ParsedEntry:
    content = entry.get("content") or ()
    html_parts = [part.get("value", "") for part in content if part.get("value")]
    return ParsedEntry(
        id=_text(entry.get("id")),
        link=_text(entry.get("link")),
        title=entry.get("title"),
        summary=entry.get("summary"),
        content="\n".join(html_parts) or None,
        published=_struct_time(entry.get("published_parsed")),
        updated=_struct_time(entry.get("updated_parsed")),
        authors=_unique(a.get("name") or a.get("email") for a in entry.get("authors") or () if a),
        categories=_unique(t.get("term") or t.get("label") for t in entry.get("tags") or ()),
        enclosures=tuple(
            Enclosure(url=e["href"], type=e.get("type") or None, length=_int(e.get("length")))
            for e in entry.get("enclosures") or ()
            if e.get("href")
        ),
    )


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
    version = "json11" if str(data["version"]).rstrip("/").endswith("/1.1") else "json1"
    return ParsedFeed(
        title=_text(data.get("title")),
        link=_text(data.get("home_page_url")),
        entries=tuple(_json_item(item) for item in items if isinstance(item, dict)),
        version=version,
    )


def _json_item(item: dict[str, Any]) -> ParsedEntry:
    authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
    attachments = item.get("attachments") or ()
    return ParsedEntry(
        id=_text(item.get("id")),
        link=_text(item.get("url")) or _text(item.get("external_url")),
        title=_text(item.get("title")),
        summary=_text(item.get("summary")),
        content=_text(item.get("content_html")) or _escape_text(item.get("content_text")),
        published=_iso_date(item.get("date_published")),
        updated=_iso_date(item.get("date_modified")),
        authors=_unique(a.get("name") for a in authors if isinstance(a, dict)),
        categories=_unique(t for t in item.get("tags") or () if isinstance(t, str)),
        enclosures=tuple(
            Enclosure(url=a["url"], type=_text(a.get("mime_type")), length=_int(a.get("size_in_bytes")))
            for a in attachments
            if isinstance(a, dict) and isinstance(a.get("url"), str) and a["url"].strip()
        ),
    )


def _not_a_feed(body: bytes, base_url: str, result: Any) -> str:
    head = body[:2048].lower()
    if b"<html" in head or b"<!doctype html" in head:
        feeds = advertised_feeds(body.decode("utf-8", "replace"), base_url)
        if feeds:
            return f"not a feed but an HTML page; it advertises these feeds: {', '.join(feeds)}"
        return "not a feed but an HTML page (it advertises no feed)"
    problem = (
        _one_line(result.get("bozo_exception")) if result.get("bozo") else "no RSS, Atom or JSON Feed root"
    )
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
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed_time = feedparser._parse_date(value)
        return _struct_time(parsed_time)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _escape_text(value: Any) -> str | None:
    text = _text(value)
    return f"<p>{html.escape(text)}</p>" if text else None


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v and v.strip()))


def _one_line(error: object) -> str:
    text = re.sub(r"\s+", " ", str(error)).strip()
    return text or type(error).__name__
