"""Stories -> a "river of news" HTML page (Jinja2, templates/river.html.j2). No JavaScript, readable on a phone.

Every value reaches the page through Jinja2's autoescaping; the only markup inserted as is, the summaries,
is first sanitized with nh3 (`safe_html`). The page also sends a Content-Security-Policy that allows no
script at all, so even a sanitizer bug could not run one. It links the feed outputs for autodiscovery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from markupsafe import Markup

if TYPE_CHECKING:
    import jinja2

from ..models import OutputMeta, Story
from ._common import FEED_NAMES, feed_updated, plain_text, rfc3339, safe_enclosures, safe_html, safe_url

__all__ = ["INDEX_TEMPLATE", "MEDIA_TYPE", "TEMPLATE", "ServedOutput", "render_html", "render_index"]

MEDIA_TYPE = "text/html"
TEMPLATE = "river.html.j2"
# The server's `/` page (templates/index.html.j2): every output it serves, the feeds advertised for autodiscovery.
INDEX_TEMPLATE = "index.html.j2"
# English names, not the locale's: the same stories must give the same bytes on every machine.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Outlet:
    name: str
    url: str | None
    title: str


@dataclass(frozen=True, slots=True)
class _Item:
    anchor: str
    title: str
    url: str | None
    published: str
    published_label: str
    updated: str
    summary: Markup
    outlets: tuple[_Outlet, ...]
    categories: tuple[str, ...]
    enclosures: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Day:
    label: str
    items: tuple[_Item, ...]


def render_html(stories: Sequence[Story], meta: OutputMeta) -> bytes:
    """The HTML page: the stories grouped by the day (UTC) of their newest report, in the given order, each
    with every other outlet's own headline under the lead."""
    days: list[_Day] = []
    for story in stories:
        label = _day_label(story.latest or story.published)
        item = _item(story)
        if days and days[-1].label == label:
            days[-1] = _Day(label, (*days[-1].items, item))
        else:
            days.append(_Day(label, (item,)))
    alternates = [
        (plain_text(title), media_type, href, FEED_NAMES.get(media_type, media_type))
        for title, media_type, href in meta.alternates
        if _safe_href(href) and media_type != MEDIA_TYPE
    ]
    updated = feed_updated(stories, meta)
    page = (
        _environment()
        .get_template(TEMPLATE)
        .render(
            title=plain_text(meta.title),
            description=plain_text(meta.description),
            self_url=safe_url(meta.self_url),
            site_url=safe_url(meta.site_url),
            alternates=alternates,
            days=days,
            story_count=len(stories),
            updated=rfc3339(updated),
            updated_label=_moment_label(updated),
        )
    )
    return page.encode("utf-8")


@dataclass(frozen=True, slots=True)
class ServedOutput:
    """One output as the server's index page links it."""

    href: str
    title: str
    format: str
    media_type: str

    @property
    def feed_name(self) -> str | None:
        """`Atom`, `RSS` or `JSON Feed` for a feed a reader may subscribe to (autodiscovery); None otherwise."""
        return FEED_NAMES.get(self.media_type)


def render_index(outputs: Sequence[ServedOutput], version: str) -> str:
    """The server's index page: a link to every output, with `<link rel="alternate">` for the feeds."""
    return _environment().get_template(INDEX_TEMPLATE).render(outputs=outputs, version=version)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # Cached: compiling the template costs more than rendering 100 stories with it. Imported here: jinja2
    # is 9 MB that a configuration without an HTML output never needs.
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("aggregator", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _item(story: Story) -> _Item:
    outlets = tuple(
        _Outlet(
            name=plain_text(source.feed_title) or source.feed_url,
            url=safe_url(source.url),
            title=plain_text(source.title),
        )
        for source in story.sources
    )
    return _Item(
        anchor="story-" + story.uid.rsplit(":", 1)[-1],
        title=plain_text(story.title) or "(untitled)",
        url=safe_url(story.url),
        published=rfc3339(story.latest or story.published),
        published_label=(story.latest or story.published).astimezone(UTC).strftime("%H:%M UTC"),
        updated=rfc3339(story.updated),
        summary=Markup(safe_html(story.summary or story.content, story.url)),  # sanitized by nh3 just now
        outlets=outlets,
        categories=tuple(filter(None, map(plain_text, story.categories))),
        enclosures=tuple((e.url, e.type or "file") for e in safe_enclosures(story)),
    )


def _day_label(moment: datetime) -> str:
    day = moment.astimezone(UTC)
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _moment_label(moment: datetime) -> str:
    return f"{_day_label(moment)}, {moment.astimezone(UTC):%H:%M} UTC"


def _safe_href(href: str) -> bool:
    """A link to another output: relative, or absolute http(s)."""
    scheme = urlsplit(href.strip()).scheme
    return not scheme or safe_url(href) is not None
