"""Stories -> JSON Feed 1.1 (https://jsonfeed.org/version/1.1). Plain json, keys in the spec's order.

Each item's `id` is the story's `urn:uuid:`. JSON Feed has no feed-level id or updated, and no place for the
other outlets, so those go in `_aggregator` extension objects (the spec's way to extend: a key starting with
an underscore): on the feed its `id` and `updated`, on each item the outlets, lead first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..models import OutputMeta, Story, StorySource
from ._common import feed_updated, plain_text, rfc3339, safe_enclosures, safe_url, story_html

__all__ = ["EXTENSION", "MEDIA_TYPE", "VERSION", "render_json"]

VERSION = "https://jsonfeed.org/version/1.1"
MEDIA_TYPE = "application/feed+json"
EXTENSION = "_aggregator"
_UNKNOWN_TYPE = "application/octet-stream"


def render_json(stories: Sequence[Story], meta: OutputMeta) -> bytes:
    """A JSON Feed 1.1 document: one item per story, in the given order."""
    feed: dict[str, Any] = {"version": VERSION, "title": plain_text(meta.title)}
    _put(feed, "home_page_url", safe_url(meta.site_url))
    _put(feed, "feed_url", safe_url(meta.self_url))
    _put(feed, "description", plain_text(meta.description) or None)
    if safe_url(meta.hub_url):
        feed["hubs"] = [{"type": "WebSub", "url": safe_url(meta.hub_url)}]
    feed[EXTENSION] = {"id": meta.id, "updated": rfc3339(feed_updated(stories, meta))}
    feed["items"] = [_item(story) for story in stories]
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _item(story: Story) -> dict[str, Any]:
    item: dict[str, Any] = {"id": story.uid}
    _put(item, "url", safe_url(story.url))
    item["title"] = plain_text(story.title) or "(untitled)"
    item["content_html"] = story_html(story)
    _put(item, "summary", plain_text(story.summary) or None)
    item["date_published"] = rfc3339(story.published)
    item["date_modified"] = rfc3339(story.updated)
    authors = [{"name": name} for name in filter(None, map(plain_text, story.authors))]
    _put(item, "authors", authors or None)
    _put(item, "tags", list(filter(None, map(plain_text, story.categories))) or None)
    attachments = []
    for enclosure in safe_enclosures(story):
        attachment: dict[str, Any] = {"url": enclosure.url, "mime_type": enclosure.type or _UNKNOWN_TYPE}
        _put(attachment, "size_in_bytes", enclosure.length)
        attachments.append(attachment)
    _put(item, "attachments", attachments or None)
    item[EXTENSION] = {"source_count": len(story.sources), "sources": [_source(s) for s in story.sources]}
    return item


def _source(source: StorySource) -> dict[str, Any]:
    data: dict[str, Any] = {"feed_title": plain_text(source.feed_title), "feed_url": safe_url(source.feed_url)}
    _put(data, "site_url", safe_url(source.site_url))
    data["title"] = plain_text(source.title)
    _put(data, "url", safe_url(source.url))
    data["published"] = rfc3339(source.published)
    return data


def _put(data: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        data[key] = value
