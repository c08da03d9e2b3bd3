"""Stories -> output documents: Atom 1.0, RSS 2.0, JSON Feed 1.1, an HTML page, and OPML of the feeds. Pure.

Also the server's index page (`render_index`), since the HTML templates live here.

One module per format; `render` picks by the output's `format`. Nothing here reads the clock or the disk:
the same stories always give the same bytes (a feed's `updated` is its newest story's), so an unchanged
store leaves each file and its ETag untouched and subscribers are not woken for nothing.

Nothing from a feed is trusted: HTML is sanitized again with nh3, links must be http(s), titles and names
are reduced to plain text, and each format escapes what it writes (see `_common`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import OutputError
from ..models import FeedSource, OutputMeta, Story
from ._common import FEED_NAMES, plain_text, rfc822, rfc3339, safe_html, safe_url, sources_html
from .atom import render_atom
from .html import ServedOutput, render_html, render_index
from .jsonfeed import render_json
from .opml import render_opml
from .rss import render_rss

__all__ = [
    "FEED_NAMES",
    "FORMATS",
    "MEDIA_TYPES",
    "ServedOutput",
    "plain_text",
    "render",
    "render_atom",
    "render_html",
    "render_index",
    "render_json",
    "render_opml",
    "render_rss",
    "rfc822",
    "rfc3339",
    "safe_html",
    "safe_url",
    "sources_html",
]

_STORY_FORMATS: dict[str, Callable[[Sequence[Story], OutputMeta], bytes]] = {
    "atom": render_atom,
    "rss": render_rss,
    "json": render_json,
    "html": render_html,
}
FORMATS = (*_STORY_FORMATS, "opml")
MEDIA_TYPES = {
    "atom": "application/atom+xml",
    "rss": "application/rss+xml",
    "json": "application/feed+json",
    "html": "text/html",
    "opml": "text/x-opml",
}


def render(stories: Sequence[Story], meta: OutputMeta, feeds: Sequence[FeedSource] = ()) -> bytes:
    """Render one output in `meta.format`: `stories` (already in output order), or `feeds` for OPML."""
    if meta.format == "opml":
        return render_opml(feeds, meta)
    renderer = _STORY_FORMATS.get(meta.format)
    if renderer is None:
        raise OutputError(f"output format {meta.format!r} is not supported (use one of {', '.join(FORMATS)})")
    return renderer(stories, meta)
