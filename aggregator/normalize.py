"""Parsed entries -> Entry: identity, canonical URLs, UTC dates, clean text and sanitized HTML. Pure.

Everything a stranger's feed says passes through here before it is stored: titles become plain text, HTML is
sanitized with nh3 (no scripts, styles, frames, event handlers, javascript: or data: URLs) with relative links
resolved against the entry's link, and characters XML 1.0 forbids are removed so every output stays valid.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from .models import Entry, ParsedEntry

__all__ = [
    "canonical_url",
    "clean_text",
    "entry_guid",
    "normalize_entry",
    "sanitize_html",
    "strip_invalid_xml",
]

# Bounds on what one entry may put in the store; a 5 MiB entry is cut, not refused.
MAX_TITLE_CHARS = 1_000
MAX_HTML_CHARS = 200_000
# Dates further ahead than this are a clock or feed bug: we use the time we first saw the entry instead.
MAX_FUTURE = timedelta(days=1)
# Dates before this are placeholders (the Unix epoch, year 1) rather than real publication times.
EARLIEST_PLAUSIBLE = datetime(1994, 1, 1, tzinfo=UTC)

_TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid", "_ga", "_gl", "ocid",
     "cmpid", "ncid", "cid", "smid", "sr_share", "taid", "utm", "at_medium", "at_campaign", "rss", "ref_src"}
)  # fmt: skip
_DEFAULT_PORTS = {"http": 80, "https": 443}
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_SPACE = re.compile(r"\s+")
_URL_SCHEMES = {"http", "https", "mailto"}


def normalize_entry(parsed: ParsedEntry, feed_url: str, now: datetime) -> Entry:
    """Turn one parsed entry into what we store; `now` stands in for missing or absurd dates."""
    url = _absolute_url(parsed.link, feed_url)
    title = clean_text(parsed.title or "")[:MAX_TITLE_CHARS]
    base = url or feed_url
    summary = sanitize_html(parsed.summary, base)
    content = sanitize_html(parsed.content, base)
    if summary and content and clean_text(summary) == clean_text(content):
        content = None
    summary_text = clean_text(summary or content or "")
    published = _plausible(parsed.published, now) or _plausible(parsed.updated, now) or now
    updated = max(_plausible(parsed.updated, now) or published, published)
    guid = entry_guid(parsed, url)
    fields = {
        "guid": guid,
        "url": url,
        "canonical_url": canonical_url(url) if url else None,
        "title": title,
        "summary": summary,
        "summary_text": summary_text,
        "content": content,
        "published": published,
        "updated": updated,
        "authors": tuple(strip_invalid_xml(a) for a in parsed.authors),
        "categories": tuple(strip_invalid_xml(c) for c in parsed.categories),
        "enclosures": parsed.enclosures,
    }
    return Entry(**fields, content_hash=_content_hash(fields))  # type: ignore[arg-type]


def entry_guid(parsed: ParsedEntry, url: str | None = None) -> str:
    """The entry's identity: the feed's own id exactly as published; else its link; else a hash."""
    if parsed.id:
        return parsed.id
    if url or parsed.link:
        return url or parsed.link or ""
    basis = f"{parsed.title or ''}\n{parsed.published.isoformat() if parsed.published else ''}"
    return "sha1:" + hashlib.sha1(basis.encode()).hexdigest()


def canonical_url(url: str) -> str:
    """The URL two outlets would agree on: lowercase scheme and host, no default port, fragment or trackers."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query), ""))


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key.startswith("utm_") or key in _TRACKING_PARAMS


def clean_text(markup: str) -> str:
    """Plain text of an HTML fragment or a title: tags and scripts dropped, entities decoded, spaces collapsed."""
    if "<" in markup:
        markup = nh3.clean(markup, tags=set(), clean_content_tags={"script", "style"})
    text = html.unescape(markup) if "&" in markup else markup
    return _SPACE.sub(" ", strip_invalid_xml(text)).strip()


def sanitize_html(markup: str | None, base_url: str) -> str | None:
    """Safe HTML: nh3's allow-list, http(s)/mailto links only, relative URLs resolved against `base_url`."""
    if not markup or not markup.strip():
        return None
    markup = strip_invalid_xml(markup[:MAX_HTML_CHARS])
    if "<" not in markup and "&" not in markup:
        return html.escape(markup, quote=False).strip() or None
    relative: object = (
        ("rewrite_with_base", base_url) if urlsplit(base_url).scheme in ("http", "https") else None
    )
    cleaned = nh3.clean(markup, url_schemes=_URL_SCHEMES, url_relative=relative).strip()  # type: ignore[arg-type]
    return cleaned or None


def strip_invalid_xml(text: str) -> str:
    """Remove characters XML 1.0 forbids (NUL, most C0 controls, lone surrogates, U+FFFE/U+FFFF)."""
    return _XML_INVALID.sub("", text)


def _absolute_url(link: str | None, feed_url: str) -> str | None:
    if not link:
        return None
    url = urljoin(feed_url, strip_invalid_xml(link).strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def _plausible(moment: datetime | None, now: datetime) -> datetime | None:
    if moment is None or moment > now + MAX_FUTURE or moment < EARLIEST_PLAUSIBLE:
        return None
    return moment


def _content_hash(fields: dict[str, object]) -> str:
    data = json.dumps(fields, default=_jsonable, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__slots__"):
        return [getattr(value, name) for name in value.__slots__]
    raise TypeError(type(value).__name__)
