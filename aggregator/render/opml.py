"""Subscribed feeds -> OPML 2.0, so others can copy the source list: the `opml` output format.

The document itself is written by `aggregator.opml.opml_document`, the project's one OPML writer (one folder
per first tag, the config's order, no dates, so the same feeds give the same bytes). This module only makes the
feeds safe to hand out first: names reduced to plain text and only http(s) feed URLs.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import FeedSource, OutputMeta
from ..opml import opml_document
from ._common import plain_text, safe_url

__all__ = ["MEDIA_TYPE", "render_opml"]

MEDIA_TYPE = "text/x-opml"


def render_opml(feeds: Sequence[FeedSource], meta: OutputMeta) -> bytes:
    """An OPML 2.0 subscription list of `feeds`."""
    safe = []
    for feed in feeds:
        url = safe_url(feed.url)
        if url is not None:
            tags = tuple(filter(None, map(plain_text, feed.tags)))
            safe.append(FeedSource(url=url, title=plain_text(feed.title) or None, tags=tags, priority=feed.priority))
    return opml_document(safe, plain_text(meta.title))
