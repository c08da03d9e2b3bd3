"""What every output format shares: dates, safe URLs, safe HTML, plain text and the outlets paragraph.

The store already holds sanitized HTML (normalize.py), but an output must not trust it blindly: a row edited
by hand, an older release's sanitizer or a title that decoded to ``<script>`` must not reach a subscriber.
So every HTML fragment goes through the nh3 sanitizer again here, every link must be http(s), and every
text field is reduced to plain text before the format escapes it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from urllib.parse import urlsplit

from ..models import Enclosure, OutputMeta, Story
from ..normalize import clean_text, sanitize_html

__all__ = [
    "EPOCH",
    "FEED_NAMES",
    "GENERATOR",
    "feed_updated",
    "plain_text",
    "rfc822",
    "rfc3339",
    "safe_enclosures",
    "safe_html",
    "safe_url",
    "sources_html",
    "story_html",
]

GENERATOR = "aggregator"
# What a subscriber calls each feed format, by media type: links to the outputs name it.
FEED_NAMES = {"application/atom+xml": "Atom", "application/rss+xml": "RSS", "application/feed+json": "JSON Feed"}
# The `updated` of an empty feed rendered without the time of a pass (OutputMeta.pass_time).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LINK_SCHEMES = ("http", "https")
# Characters a URL cannot hold unescaped (whitespace, quotes, angle brackets, controls, bidi overrides): a link
# carrying one (`https://x/?q=<script>`) is refused whole, never escaped into an output.
_NOT_IN_URL = re.compile('[\\s"<>\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]')
# Levels of entity escaping plain_text undoes before it gives up and drops every angle bracket.
_MAX_UNESCAPES = 4


def rfc3339(moment: datetime) -> str:
    """A date as RFC 3339 in UTC, the form Atom and JSON Feed require."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc822(moment: datetime) -> str:
    """A date as RFC 822 (with a four-digit year, as RSS 2.0 asks): `Tue, 03 Nov 2026 09:15:00 GMT`."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def feed_updated(stories: Sequence[Story], meta: OutputMeta) -> datetime:
    """The feed's `updated`: its newest story's, so an unchanged store gives the same bytes; without stories,
    the time of the pass that writes it (publish_outputs keeps an empty file as long as it stays empty)."""
    return max((story.updated for story in stories), default=meta.pass_time or EPOCH)


def safe_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL a browser reads as written, else None: no javascript:, data: or
    relative links leave us, nor one with raw spaces, quotes, `<`, `>` or control characters."""
    return _safe_url(url) if url else None


@lru_cache(maxsize=16_384)
def _safe_url(url: str) -> str | None:
    # cached: an output checks the same few hundred outlet and feed URLs many times
    url = url.strip()
    if _NOT_IN_URL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in _LINK_SCHEMES or not parts.netloc:
        return None
    return url


def safe_html(markup: str | None, base_url: str | None) -> str:
    """`markup` sanitized again with nh3 (scripts, styles, handlers, javascript:/data: links removed)."""
    return sanitize_html(markup, safe_url(base_url) or "") or ""


def plain_text(text: str | None) -> str:
    """A title or a name as plain text: any markup it carries is dropped, never passed on."""
    return _plain_text(text) if text else ""


@lru_cache(maxsize=16_384)
def _plain_text(text: str) -> str:
    # cached: outlet names repeat in every story they report
    # Cleaning decodes entities, so "&lt;script&gt;" comes out as a tag: clean until nothing changes, as an
    # RSS reader that renders titles as HTML would otherwise run it.
    for _ in range(_MAX_UNESCAPES):
        cleaned = clean_text(text)
        if cleaned == text:
            return text
        text = cleaned
    return text.replace("<", "").replace(">", "")


def safe_enclosures(story: Story) -> tuple[Enclosure, ...]:
    """The story's enclosures whose URL is http(s); feeds pass them through unsanitized."""
    found = []
    for enclosure in story.enclosures:
        url = safe_url(enclosure.url)
        if url is not None:
            media_type = plain_text(enclosure.type) or None
            if media_type is not None and "/" not in media_type:
                media_type = None
            length = enclosure.length if isinstance(enclosure.length, int) and enclosure.length > 0 else None
            found.append(Enclosure(url=url, type=media_type, length=length))
    return tuple(found)


def sources_html(story: Story) -> str:
    """Who reported the story: one outlet as a link; several as a list of each outlet's own headline, the
    lead first, so a reader sees how every outlet worded the event."""
    if not story.sources:
        return ""
    if len(story.sources) == 1:
        source = story.sources[0]
        name = html.escape(plain_text(source.feed_title) or source.feed_url)
        url = safe_url(source.url)
        return f'<p>Reported by <a href="{html.escape(url)}">{name}</a></p>' if url else f"<p>Reported by {name}</p>"
    items = []
    for source in story.sources:
        name = html.escape(plain_text(source.feed_title) or source.feed_url)
        headline = html.escape(plain_text(source.title) or name)
        url = safe_url(source.url)
        linked = f'<a href="{html.escape(url)}">{headline}</a>' if url else headline
        items.append(f"<li>{name}: {linked}</li>")
    return f"<p>Reported by {len(story.sources)} outlets:</p><ul>{''.join(items)}</ul>"


def story_html(story: Story) -> str:
    """The story's full text for a feed item: its content (or summary), sanitized, then the outlets."""
    return safe_html(story.content or story.summary, story.url) + sources_html(story)
