"""OPML 2.0 subscription lists: read one into feed sources (pure, defused), write one from feed sources.

Reading is defensive because an OPML file comes from elsewhere (another reader's export, a web page): the
size is capped before parsing, a document that declares entities or a DTD is refused (billion laughs, XXE),
in whatever encoding it comes (it is decoded first, checked, and parsed as the UTF-8 that was checked), no
network is touched, and libxml2's default depth limit (256, `huge_tree=False`) stops a document nested
1,000 levels deep; outlines nested deeper than MAX_OUTLINE_DEPTH are refused too. Folders (outlines
without `xmlUrl`) become tags, as do the `category` attribute's entries; a feed listed twice is kept once
and the repeat reported.

Writing groups the feeds in one folder per first tag (in the config's order otherwise) and gives the same
bytes for the same feeds (no dates), so the output can be diffed and served with a stable ETag.
`opml_document` is the one OPML writer; the `opml` output format calls it too.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

from .errors import ConfigError
from .models import FeedSource
from .normalize import strip_invalid_xml
from .xmlsafe import safe_parser

__all__ = [
    "MAX_OPML_BYTES",
    "MAX_OUTLINE_DEPTH",
    "OPML_DOCS",
    "OpmlFeeds",
    "opml_document",
    "parse_opml",
    "read_opml",
]

# The largest OPML exports we know of (a few thousand feeds) are under 2 MB.
MAX_OPML_BYTES = 10 * 1024 * 1024
# Folders in real exports nest two or three deep; deeper is a broken or hostile file.
MAX_OUTLINE_DEPTH = 32
OPML_DOCS = "http://opml.org/spec2.opml"


@dataclass(frozen=True, slots=True)
class OpmlFeeds:
    """The feeds an OPML document lists, in document order, and the outlines skipped with the reason."""

    feeds: tuple[FeedSource, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def read_opml(path: str | Path) -> OpmlFeeds:
    """Read and parse an OPML file, refusing one larger than MAX_OPML_BYTES before parsing it."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_OPML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(data) > MAX_OPML_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_OPML_BYTES // (1024 * 1024)} MB; not read as OPML")
    return parse_opml(data, str(path))


def parse_opml(data: bytes, source: str = "OPML") -> OpmlFeeds:
    """The feeds of an OPML document (any version); ConfigError naming `source` when it is not OPML."""
    if not data.strip():
        raise ConfigError(f"{source}: empty file, not an OPML document")
    text = _decoded(data, source)
    # libxml2 expands internal entities in attribute values even with resolve_entities=False, and OPML
    # never needs them: a document that declares any is refused before parsing (billion laughs). The check
    # reads the decoded text, so UTF-16 or UTF-32 (`<\0!\0E\0...`) cannot hide a declaration from it.
    if "<!ENTITY" in text:
        raise ConfigError(f"{source}: declares XML entities, which OPML never needs; not read")
    try:
        root = etree.fromstring(_as_utf8(text), safe_parser())
    except etree.XMLSyntaxError as e:
        message = re.sub(r"\s*\(<string>, line \d+\)$", "", str(e))
        if "depth" in message.lower():
            raise ConfigError(f"{source}: elements nested too deeply; not read as OPML") from None
        raise ConfigError(f"{source}: not an OPML document (not well-formed XML: {message})") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise ConfigError(f"{source}: has an internal DTD, which OPML never needs; not read")
    if not isinstance(root.tag, str) or root.tag != "opml":
        name = root.tag if isinstance(root.tag, str) else "?"
        raise ConfigError(f"{source}: not an OPML document (the root element is <{name}>, not <opml>)")
    body = root.find("body")
    if body is None:
        raise ConfigError(f"{source}: not an OPML document (no <body>)")
    feeds: list[FeedSource] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for outline, folders in _outlines(body, source):
        attributes = {str(key).lower(): (value or "").strip() for key, value in outline.attrib.items()}
        url = attributes.get("xmlurl", "")
        if not url:
            continue
        if url in seen:
            skipped.append((url, "listed twice in the file"))
            continue
        seen.add(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            skipped.append((url, "not an http or https URL"))
            continue
        title = attributes.get("title") or attributes.get("text") or None
        categories = [c.strip().strip("/") for c in attributes.get("category", "").split(",")]
        tags = tuple(dict.fromkeys(tag for tag in (*folders, *categories) if tag))
        feeds.append(FeedSource(url=url, title=None if title == url else title, tags=tags))
    return OpmlFeeds(tuple(feeds), tuple(skipped))


# Byte order marks, longest first (UTF-32-LE's starts like UTF-16-LE's); the codecs named drop them.
_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF16_LE, "utf-16"),
)
# XML 1.0 appendix F: how a document without a BOM starts ("<?" in each encoding).
_STARTS = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),  # EBCDIC: the declaration read in cp037 names the exact code page
)
_DECLARED = re.compile(r"""\A<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")


def _decoded(data: bytes, source: str) -> str:
    """The document as text, decoded as an XML parser would: by its BOM, its first bytes, its declaration."""
    codec = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if codec is None:
        family = next((name for start, name in _STARTS if data.startswith(start)), None)
        declared = _DECLARED.match(data[:200].decode(family or "latin-1", "replace"))
        codec = family if family in ("utf-32-be", "utf-32-le", "utf-16-be", "utf-16-le") else None
        codec = codec or (declared.group(1) if declared else family or "utf-8")
    try:
        return data.decode(codec)
    except LookupError:
        raise ConfigError(f"{source}: not an OPML document (unknown encoding {codec!r})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not an OPML document (not valid {codec} at byte {e.start:,})") from None


def _as_utf8(text: str) -> bytes:
    """The decoded document as UTF-8 bytes, its declaration saying so, for lxml to parse exactly what we checked."""
    declared = _DECLARED.match(text)
    if declared is not None:
        text = text[: declared.start(1)] + "UTF-8" + text[declared.end(1) :]
    return text.encode("utf-8")


def _outlines(body: etree._Element, source: str) -> Iterator[tuple[etree._Element, tuple[str, ...]]]:
    """Every outline under `body` in document order, with the folder names above it (no recursion)."""
    stack: list[tuple[etree._Element, tuple[str, ...], int]] = [
        (child, (), 1) for child in reversed(body) if child.tag == "outline"
    ]
    while stack:
        outline, folders, depth = stack.pop()
        if depth > MAX_OUTLINE_DEPTH:
            raise ConfigError(f"{source}: outlines nested more than {MAX_OUTLINE_DEPTH} levels deep")
        yield outline, folders
        attributes = {str(key).lower(): value for key, value in outline.attrib.items()}
        name = (attributes.get("text") or attributes.get("title") or "").strip()
        inner = folders if attributes.get("xmlurl") or not name else (*folders, name)
        stack.extend((child, inner, depth + 1) for child in reversed(outline) if child.tag == "outline")


def opml_document(feeds: Sequence[FeedSource], title: str) -> bytes:
    """An OPML 2.0 subscription list: every feed in the folder named by its first tag, one folder per tag.

    A folder stands where its first feed is in the config and holds its feeds in config order; untagged feeds
    stay where they are, outside any folder.
    """
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = _clean(title)
    etree.SubElement(head, "docs").text = OPML_DOCS
    body = etree.SubElement(root, "body")
    folders: dict[str, etree._Element] = {}
    for feed in feeds:
        parent = body
        if feed.tags:
            name = _clean(feed.tags[0])
            if name not in folders:
                folders[name] = etree.SubElement(body, "outline", text=name, title=name)
            parent = folders[name]
        outline = etree.SubElement(parent, "outline", type="rss", text=_clean(feed.title or feed.url))
        if feed.title:
            outline.set("title", _clean(feed.title))
        outline.set("xmlUrl", _clean(feed.url))
        # The folder carries the first tag; `category` carries them all when there are more.
        if len(feed.tags) > 1:
            outline.set("category", ",".join(_clean(tag) for tag in feed.tags))
    body_bytes: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return body_bytes


def _clean(text: str) -> str:
    return strip_invalid_xml(text)
