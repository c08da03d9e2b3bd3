"""What we use of feedparser beyond its public API (`parse`, `registerDateHandler`, its exceptions), in one place.

feedparser offers no public way to do any of these, and each one matters; so each is pinned: pyproject.toml
allows feedparser < 6.1 only, and tests/test_contracts.py fails loudly when an upgrade changes one of them.

- `parse_date`: feedparser's own date parser, so that the fast path (fastparse.py) and JSON Feed read every
  date as feedparser reads RSS and Atom dates. The public way, feedparser.parse() of a document holding the
  date, costs 35 times more per date (460 against 13 us) and made the fast path 8 times slower (27.6 against
  3.6 ms per real feed of rumca-dev), about as slow as feedparser itself (28.9 ms): benchmarks/README.md,
  "Library internals".
- `NAMESPACES`: the XML namespaces feedparser gives a meaning, with the prefixes it reads them under: an
  element of any other namespace is stored by feedparser under its own name, which we never read, so the fast
  path may skip it; one of these it must hand to feedparser.
- `keep_ids_as_published()`: feedparser resolves an entry's id against the document URL like a link
  (`<guid>123</guid>` becomes `https://host/feed/123`, `HTTP://x` becomes `http://x`); `parse()` has no
  option for it (`resolve_relative_uris` only covers HTML). An id is a name, not a link: kept as published it
  stays the same when the feed moves to another URL, where a resolved one would make every entry new again.
- `content_type_charset`, `declared_encoding`, `decode_to_utf8`: feedparser's rules for a document's encoding
  (Content-Type charset, XML declaration, byte order marks, its fallbacks), so that a UTF-16, UTF-32 or
  EBCDIC document is decoded before its size is counted exactly as feedparser would decode it to parse it.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, datetime

from feedparser import encodings, mixin
from feedparser.datetimes import _parse_date

__all__ = [
    "NAMESPACES",
    "content_type_charset",
    "declared_encoding",
    "decode_to_utf8",
    "keep_ids_as_published",
    "parse_date",
]

# namespace URI -> the prefix feedparser reads its elements under ("" for the feed formats' own)
NAMESPACES: Mapping[str, str] = dict(mixin._FeedParserMixin.namespaces)


def parse_date(text: str) -> datetime | None:
    """A date as feedparser reads one (RFC 822, W3DTF and a dozen other forms) in UTC; None when it reads none."""
    parsed = _parse_date(text)
    if not parsed:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def keep_ids_as_published() -> None:
    """Make feedparser keep entry ids as the feed wrote them instead of resolving them as URLs.

    It changes a class attribute of feedparser's parser: parse.py is the only feedparser user in the process,
    and calls this once, at import.
    """
    mixin._FeedParserMixin.can_be_relative_uri = frozenset(mixin._FeedParserMixin.can_be_relative_uri - {"id"})


def content_type_charset(content_type: str) -> str:
    """The charset a Content-Type header names, as feedparser reads it ("" for none)."""
    return str(encodings.parse_content_type(content_type)[1])


def declared_encoding(body: bytes) -> str:
    """The encoding a document's XML declaration names, as feedparser reads it ("" for none)."""
    declared = encodings.RE_XML_PI_ENCODING.match(body)
    return declared.group(1).decode("ascii", "replace") if declared else ""


def decode_to_utf8(headers: Mapping[str, str], body: bytes) -> bytes:
    """The document as feedparser decodes it before parsing, encoded as UTF-8."""
    return bytes(encodings.convert_to_utf8(dict(headers), body, {}))
