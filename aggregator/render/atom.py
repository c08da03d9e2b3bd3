"""Stories -> Atom 1.0 (RFC 4287). Validates against aggregator/schemas/atom.rng.

Each story is one entry whose `id` is the story's `urn:uuid:`, fixed when the story starts, so a reader shows
it once however many outlets join later; only `updated` moves. The lead's origin is `atom:source`; every other
outlet is a `rel="related"` link, and all of them are listed in the content's "Reported by" paragraph.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import OutputMeta, Story
from ._common import GENERATOR, feed_updated, plain_text, rfc3339, safe_enclosures, safe_html, safe_url, sources_html
from ._xml import Element, root, sub, to_bytes

__all__ = ["ATOM_NS", "MEDIA_TYPE", "render_atom"]

ATOM_NS = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml"
_A = f"{{{ATOM_NS}}}"


def render_atom(stories: Sequence[Story], meta: OutputMeta) -> bytes:
    """An Atom 1.0 feed: one entry per story, in the given order."""
    feed = root(_A + "feed", nsmap={None: ATOM_NS})
    sub(feed, _A + "id", meta.id)
    sub(feed, _A + "title", plain_text(meta.title))
    if meta.description:
        sub(feed, _A + "subtitle", plain_text(meta.description))
    sub(feed, _A + "updated", rfc3339(feed_updated(stories, meta)))
    # a feed-level author makes every entry valid without one of its own (RFC 4287 section 4.1.1)
    sub(sub(feed, _A + "author"), _A + "name", plain_text(meta.title))
    sub(feed, _A + "generator", GENERATOR)
    if safe_url(meta.self_url):
        sub(feed, _A + "link", rel="self", type=MEDIA_TYPE, href=safe_url(meta.self_url))
    if safe_url(meta.site_url):
        sub(feed, _A + "link", rel="alternate", type="text/html", href=safe_url(meta.site_url))
    if safe_url(meta.hub_url):
        sub(feed, _A + "link", rel="hub", href=safe_url(meta.hub_url))
    for story in stories:
        _entry(feed, story)
    return to_bytes(feed)


def _entry(feed: Element, story: Story) -> None:
    entry = sub(feed, _A + "entry")
    sub(entry, _A + "id", story.uid)
    sub(entry, _A + "title", plain_text(story.title) or "(untitled)")
    url = safe_url(story.url)
    if url:
        sub(entry, _A + "link", rel="alternate", type="text/html", href=url)
    for source in story.sources[1:]:
        related = safe_url(source.url)
        if related and related != url:
            sub(entry, _A + "link", rel="related", type="text/html", href=related, title=plain_text(source.feed_title))
    for enclosure in safe_enclosures(story):
        length = str(enclosure.length) if enclosure.length else None
        sub(entry, _A + "link", rel="enclosure", href=enclosure.url, type=enclosure.type, length=length)
    sub(entry, _A + "published", rfc3339(story.published))
    sub(entry, _A + "updated", rfc3339(story.updated))
    for name in filter(None, map(plain_text, story.authors)):
        sub(sub(entry, _A + "author"), _A + "name", name)
    for term in filter(None, map(plain_text, story.categories)):
        sub(entry, _A + "category", term=term)
    summary = safe_html(story.summary, story.url)
    if summary:
        sub(entry, _A + "summary", summary, type="html")
    content = safe_html(story.content, story.url) if story.content else summary
    sub(entry, _A + "content", content + sources_html(story), type="html")
    if story.sources:
        lead = story.sources[0]
        source = sub(entry, _A + "source")
        sub(source, _A + "id", lead.feed_url)
        sub(source, _A + "title", plain_text(lead.feed_title) or lead.feed_url)
        if safe_url(lead.feed_url):
            sub(source, _A + "link", rel="self", href=safe_url(lead.feed_url))
        if safe_url(lead.site_url):
            sub(source, _A + "link", rel="alternate", type="text/html", href=safe_url(lead.site_url))
