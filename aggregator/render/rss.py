"""Stories -> RSS 2.0 (https://www.rssboard.org/rss-specification).

Each item's `guid` is the story's `urn:uuid:` (isPermaLink="false"), so it never changes as outlets join.
RSS has one `<source url=...>` per item: it names the lead's feed; every outlet is listed in the description.
Authors are names, not the e-mail addresses RSS's `<author>` wants, so they go in `dc:creator`. Only the
first enclosure is written: RSS readers disagree on more than one per item.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import OutputMeta, Story
from ._common import (
    GENERATOR,
    feed_updated,
    plain_text,
    rfc822,
    safe_enclosures,
    safe_html,
    safe_url,
    sources_html,
)
from ._xml import Element, root, sub, to_bytes

__all__ = [
    "ATOM_NS",
    "CONTENT_NS",
    "DC_NS",
    "MEDIA_TYPE",
    "render_rss",
]

MEDIA_TYPE = "application/rss+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
DC_NS = "http://purl.org/dc/elements/1.1/"
_NSMAP: dict[str | None, str] = {"atom": ATOM_NS, "content": CONTENT_NS, "dc": DC_NS}
_SPEC = "https://www.rssboard.org/rss-specification"
# An enclosure must name its type and length; these say "unknown" in the way RSS readers accept.
_UNKNOWN_TYPE = "application/octet-stream"
_UNKNOWN_LENGTH = "0"


def render_rss(stories: Sequence[Story], meta: OutputMeta) -> bytes:
    """An RSS 2.0 feed: one item per story, in the given order."""
    rss = root("rss", nsmap=_NSMAP, version="2.0")
    channel = sub(rss, "channel")
    title = plain_text(meta.title)
    sub(channel, "title", title)
    # <link> is required: the site, else the feed itself, else the feed's id (a tag: URI)
    sub(channel, "link", safe_url(meta.site_url) or safe_url(meta.self_url) or meta.id)
    sub(channel, "description", plain_text(meta.description) or title)
    if safe_url(meta.self_url):
        sub(channel, f"{{{ATOM_NS}}}link", rel="self", type=MEDIA_TYPE, href=safe_url(meta.self_url))
    if safe_url(meta.hub_url):
        sub(channel, f"{{{ATOM_NS}}}link", rel="hub", href=safe_url(meta.hub_url))
    if stories:
        sub(channel, "pubDate", rfc822(max(story.published for story in stories)))
    sub(channel, "lastBuildDate", rfc822(feed_updated(stories, meta)))
    sub(channel, "generator", GENERATOR)
    sub(channel, "docs", _SPEC)
    for story in stories:
        _item(channel, story)
    return to_bytes(rss)


def _item(channel: Element, story: Story) -> None:
    item = sub(channel, "item")
    sub(item, "title", plain_text(story.title) or "(untitled)")
    url = safe_url(story.url)
    if url:
        sub(item, "link", url)
    summary = safe_html(story.summary or story.content, story.url)
    sub(item, "description", summary + sources_html(story))
    for name in filter(None, map(plain_text, story.authors)):
        sub(item, f"{{{DC_NS}}}creator", name)
    for term in filter(None, map(plain_text, story.categories)):
        sub(item, "category", term)
    for enclosure in safe_enclosures(story)[:1]:
        length = str(enclosure.length) if enclosure.length else _UNKNOWN_LENGTH
        sub(item, "enclosure", url=enclosure.url, length=length, type=enclosure.type or _UNKNOWN_TYPE)
    sub(item, "guid", story.uid, isPermaLink="false")
    sub(item, "pubDate", rfc822(story.published))
    if story.sources and safe_url(story.sources[0].feed_url):
        lead = story.sources[0]
        sub(item, "source", plain_text(lead.feed_title) or lead.feed_url, url=safe_url(lead.feed_url))
    if story.content:
        sub(item, f"{{{CONTENT_NS}}}encoded", safe_html(story.content, story.url) + sources_html(story))
