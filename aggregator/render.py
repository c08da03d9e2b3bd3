"""Stories -> feed documents (Atom 1.0). Pure: bytes in memory, no clock, no disk.

The same stories always give the same bytes: the feed's `updated` is the newest story's, never the time of
writing, so an unchanged store leaves the file (and its ETag) untouched and subscribers are not woken.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

from lxml import etree

from .errors import OutputError
from .models import OutputMeta, Story
from .normalize import strip_invalid_xml

__all__ = ["render", "render_atom", "rfc3339", "sources_html"]

ATOM_NS = "http://www.w3.org/2005/Atom"
GENERATOR = "aggregator"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_A = f"{{{ATOM_NS}}}"


def render(stories: Sequence[Story], meta: OutputMeta) -> bytes:
    """Render `stories` (already in output order) in the output's format."""
    if meta.format == "atom":
        return render_atom(stories, meta)
    raise OutputError(f"output format {meta.format!r} is not supported")


def render_atom(stories: Sequence[Story], meta: OutputMeta) -> bytes:
    """An Atom 1.0 feed (RFC 4287): one entry per story, the lead's origin in atom:source."""
    feed = etree.Element(_A + "feed", nsmap={None: ATOM_NS})
    _text(feed, "id", meta.id)
    _text(feed, "title", meta.title)
    if meta.description:
        _text(feed, "subtitle", meta.description)
    _text(feed, "updated", rfc3339(max((s.updated for s in stories), default=_EPOCH)))
    author = etree.SubElement(feed, _A + "author")
    _text(author, "name", meta.title)
    etree.SubElement(feed, _A + "generator").text = GENERATOR
    if meta.self_url:
        _link(feed, meta.self_url, rel="self", type="application/atom+xml")
    if meta.site_url:
        _link(feed, meta.site_url, rel="alternate", type="text/html")
    if meta.hub_url:
        _link(feed, meta.hub_url, rel="hub")
    for story in stories:
        feed.append(_atom_entry(story))
    return bytes(etree.tostring(feed, xml_declaration=True, encoding="utf-8", pretty_print=True))


def _atom_entry(story: Story) -> etree._Element:
    entry = etree.Element(_A + "entry")
    _text(entry, "id", story.uid)
    _text(entry, "title", story.title or "(untitled)")
    if story.url:
        _link(entry, story.url, rel="alternate", type="text/html")
    _text(entry, "published", rfc3339(story.published))
    _text(entry, "updated", rfc3339(story.updated))
    for name in story.authors:
        _text(etree.SubElement(entry, _A + "author"), "name", name)
    for term in story.categories:
        etree.SubElement(entry, _A + "category", term=strip_invalid_xml(term))
    for enclosure in story.enclosures:
        attributes = {"type": enclosure.type} if enclosure.type else {}
        if enclosure.length:
            attributes["length"] = str(enclosure.length)
        _link(entry, enclosure.url, rel="enclosure", **attributes)
    if story.summary:
        _text(entry, "summary", story.summary, type="html")
    _text(entry, "content", (story.content or story.summary or "") + sources_html(story), type="html")
    if story.sources:
        lead = story.sources[0]
        source = etree.SubElement(entry, _A + "source")
        _text(source, "id", lead.feed_url)
        _text(source, "title", lead.feed_title)
        _link(source, lead.feed_url, rel="self")
        if lead.site_url:
            _link(source, lead.site_url, rel="alternate", type="text/html")
    return entry


def sources_html(story: Story) -> str:
    """The "Reported by" paragraph: every outlet of the story with its link, lead first."""
    if not story.sources:
        return ""
    links = []
    for source in story.sources:
        name = _escape(source.feed_title)
        links.append(f'<a href="{_escape(source.url)}">{name}</a>' if source.url else name)
    label = "Reported by" if len(links) == 1 else f"Reported by {len(links)} outlets"
    return f"<p>{label}: {', '.join(links)}</p>"


def rfc3339(moment: datetime) -> str:
    """A date as RFC 3339 in UTC, the form Atom and JSON Feed require."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(parent: etree._Element, name: str, value: str, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, _A + name, **attributes)
    element.text = strip_invalid_xml(value)
    return element


def _link(parent: etree._Element, href: str, **attributes: str) -> None:
    etree.SubElement(parent, _A + "link", href=strip_invalid_xml(href), **attributes)


def _escape(text: str) -> str:
    return html.escape(strip_invalid_xml(text))
