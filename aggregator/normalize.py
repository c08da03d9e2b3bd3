"""Parsed entries -> Entry: identity, canonical URLs, UTC dates, clean text and sanitized HTML. Pure.

Everything a stranger's feed says passes through here before it is stored: titles become plain text, HTML is
sanitized with nh3 (no scripts, styles, frames, event handlers, javascript: or data: URLs) with relative links
resolved against the entry's link, and characters XML 1.0 forbids are removed so every output stays valid.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from .models import Enclosure, Entry, ParsedEntry

__all__ = [
    "EARLIEST_PLAUSIBLE",
    "MAX_FUTURE",
    "MAX_HTML_CHARS",
    "MAX_ID_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_NAME_CHARS",
    "MAX_TITLE_CHARS",
    "MAX_URL_CHARS",
    "NORMALIZE_VERSION",
    "canonical_url",
    "clean_text",
    "entry_guid",
    "identify",
    "normalize_entry",
    "sanitize_html",
    "source_hash",
    "strip_invalid_xml",
]

# Part of every entry's source_hash: raise it when normalizing changes what it makes of the same input, so
# stored entries are normalized again the next time their feed changes.
NORMALIZE_VERSION = 2
# Bounds on what one entry may put in the store; a 5 MiB entry is cut, not refused.
MAX_TITLE_CHARS = 1_000
MAX_HTML_CHARS = 200_000
# Longer links are not links we want to publish (browsers and servers stop near 8 KB; real ones are < 500).
MAX_URL_CHARS = 4_000
# An id longer than this is stored as its digest ("sha256:..."): still stable, no longer a 5 MiB key.
MAX_ID_CHARS = 1_000
# Authors, categories and enclosures of one entry, and the characters of one author or category.
MAX_LIST_ITEMS = 50
MAX_NAME_CHARS = 200
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
# A host name as the IDNA codec writes it: letters, digits, "-" and "_" in dot-separated labels.
_ASCII_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_URL_SCHEMES = {"http", "https", "mailto"}


def normalize_entry(parsed: ParsedEntry, feed_url: str, now: datetime) -> Entry:
    """Turn one parsed entry into what we store; `now` stands in for missing or absurd dates."""
    url = _absolute_url(parsed.link, feed_url)
    # cut before cleaning too, so a 5 MiB title costs no more than a long one
    title = clean_text((parsed.title or "")[: MAX_TITLE_CHARS * 20])[:MAX_TITLE_CHARS]
    base = url or feed_url
    summary = sanitize_html(parsed.summary, base)
    content = sanitize_html(parsed.content, base)
    if summary and content and clean_text(summary) == clean_text(content):
        content = None
    summary_text = clean_text(summary or content or "")
    dated = _plausible(parsed.published, now) or _plausible(parsed.updated, now)
    published = dated or now
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
        "authors": _names(parsed.authors),
        "categories": _names(parsed.categories),
        "enclosures": _enclosures(parsed.enclosures, base),
    }
    # an undated entry's stand-in dates are not its content: it must not change with every fetch
    hashed = fields if dated else {**fields, "published": None, "updated": None}
    return Entry(
        **fields,  # type: ignore[arg-type]
        content_hash=_content_hash(hashed),
        source_hash=source_hash(parsed, feed_url),
        dated=dated is not None,
    )


def identify(parsed: ParsedEntry, feed_url: str) -> tuple[str, str]:
    """The guid normalize_entry would give the entry, and its source_hash: cheap, without normalizing it."""
    return entry_guid(parsed, _absolute_url(parsed.link, feed_url)), source_hash(parsed, feed_url)


def source_hash(parsed: ParsedEntry, feed_url: str) -> str:
    """A digest of the entry as the feed sent it, and of what normalizing it depends on (its feed's URL and
    NORMALIZE_VERSION), so an entry whose digest is unchanged need not be normalized again."""
    basis = f"{NORMALIZE_VERSION}\n{feed_url}\n{parsed!r}"
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def entry_guid(parsed: ParsedEntry, url: str | None = None) -> str:
    """The entry's identity: the feed's own id exactly as published; else its link; else a hash."""
    if parsed.id:
        return _bounded_id(parsed.id)
    if url or parsed.link:
        return _bounded_id(url or parsed.link or "")
    basis = f"{parsed.title or ''}\n{parsed.published.isoformat() if parsed.published else ''}"
    if not parsed.title and not parsed.published:
        # nothing else tells such entries apart: without their text they would all collapse into one
        basis += f"\n{parsed.summary or ''}\n{parsed.content or ''}"
    return "sha1:" + hashlib.sha1(basis.encode("utf-8", "surrogatepass")).hexdigest()


def _bounded_id(value: str) -> str:
    if len(value) <= MAX_ID_CHARS:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


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
    relative: object = ("rewrite_with_base", base_url) if urlsplit(base_url).scheme in ("http", "https") else None
    try:
        cleaned = nh3.clean(markup, url_schemes=_URL_SCHEMES, url_relative=relative)  # type: ignore[arg-type]
    except ValueError:
        # nh3 refuses a base it cannot parse (`http://xn--a.com/`, a port out of range) for the whole call:
        # relative links then have nothing to resolve against and are dropped, the rest is kept
        cleaned = nh3.clean(markup, url_schemes=_URL_SCHEMES, url_relative="deny")
    return cleaned.strip() or None


def strip_invalid_xml(text: str) -> str:
    """Remove characters XML 1.0 forbids (NUL, most C0 controls, lone surrogates, U+FFFE/U+FFFF)."""
    return _XML_INVALID.sub("", text)


def _absolute_url(link: str | None, base_url: str) -> str | None:
    """`link` made absolute against `base_url`; None unless it is a plausible http(s) URL."""
    if not link or len(link) > MAX_URL_CHARS:
        return None
    try:
        url = urljoin(base_url, strip_invalid_xml(link).strip())
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:  # "http://[bad" and other URLs urllib cannot split
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_CHARS:
        return None
    return url if _plausible_host(parts.hostname) else None


def _plausible_host(host: str) -> bool:
    """Whether `host` can be a real host: an IP address, or a name IDNA can encode and decode again.

    Refuses what a browser or nh3 would refuse (`ex ample.com`, `xn--a.com`, `999.1.1.1`, a U+202E that
    reverses how the host reads), so no such link is stored or published.
    """
    if ":" in host:  # an IPv6 literal
        return _is_ip_address(host)
    if host.isascii() and "xn--" not in host.lower():  # nearly every host: no IDNA to check
        name = host.lower()
    else:
        try:
            encoded = host.encode("idna")
            encoded.decode("idna")  # an `xn--` label must be valid punycode
        except UnicodeError:
            return False
        name = encoded.decode("ascii").lower()
    if _NUMERIC_LABEL.fullmatch(name.rstrip(".").rsplit(".")[-1]):
        return _is_ip_address(name)  # a browser reads `a.123` or `999.1.1.1` as an IPv4 address: a bad one
    return _ASCII_HOST.fullmatch(name) is not None


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(strip_invalid_xml(value[:MAX_NAME_CHARS]) for value in values[:MAX_LIST_ITEMS])


def _enclosures(enclosures: tuple[Enclosure, ...], base_url: str) -> tuple[Enclosure, ...]:
    kept = []
    for enclosure in enclosures[:MAX_LIST_ITEMS]:
        url = _absolute_url(enclosure.url, base_url)
        if url is not None:  # javascript:, data: and file: enclosures never reach an output
            kind = strip_invalid_xml(enclosure.type[:MAX_NAME_CHARS]) if enclosure.type else None
            kept.append(Enclosure(url=url, type=kind or None, length=enclosure.length))
    return tuple(kept)


def _plausible(moment: datetime | None, now: datetime) -> datetime | None:
    if moment is None or moment > now + MAX_FUTURE or moment < EARLIEST_PLAUSIBLE:
        return None
    return moment


def _content_hash(fields: Mapping[str, object]) -> str:
    data = json.dumps(fields, default=_jsonable, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__slots__"):
        return [getattr(value, name) for name in value.__slots__]
    raise TypeError(type(value).__name__)
