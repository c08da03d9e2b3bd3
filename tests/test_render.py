"""Outputs: Atom, RSS 2.0, JSON Feed 1.1, the HTML page and OPML, parsed back, validated, attacked and re-run."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import feedparser
import jsonschema
import lxml.html
import pytest
from conftest import FeedFiles, run_cli, update_json, write_config
from lxml import etree

import aggregator.render
from aggregator.errors import OutputError
from aggregator.models import Enclosure, FeedSource, OutputMeta, Story, StorySource
from aggregator.parse import parse_feed
from aggregator.render import render, rfc822, rfc3339, sources_html

SCHEMA = Path(aggregator.render.__file__).parent.parent / "schemas" / "atom.rng"
ATOM = "{http://www.w3.org/2005/Atom}"
T0 = datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
STORY_FORMATS = ("atom", "rss", "json", "html")
ALL_FORMATS = (*STORY_FORMATS, "opml")
ALTERNATES = (
    ("World desk", "application/atom+xml", "feed.atom"),
    ("World desk", "application/rss+xml", "feed.rss"),
    ("World desk", "application/feed+json", "feed.json"),
)


def meta(fmt: str, **changes: Any) -> OutputMeta:
    """The feed-level facts of a test output in `fmt`."""
    values: dict[str, Any] = {
        "title": "World desk",
        "format": fmt,
        "id": f"https://news.example.org/feed.{fmt}",
        "self_url": f"https://news.example.org/feed.{fmt}",
        "site_url": "https://news.example.org/",
        "hub_url": "https://hub.example.org/",
        "description": "Stories several outlets reported",
        "alternates": ALTERNATES,
    }
    values.update(changes)
    return OutputMeta(**values)


def source(n: int, story: int = 0, minutes: int = 0) -> StorySource:
    """Outlet `n`'s report of story `story`."""
    return StorySource(
        feed_title=f"Outlet {n}",
        feed_url=f"https://outlet{n}.example/feed.xml",
        site_url=f"https://outlet{n}.example/",
        title=f"Outlet {n} on story {story}",
        url=f"https://outlet{n}.example/news/{story}",
        published=T0 + timedelta(minutes=minutes),
    )


def story(n: int, outlets: int = 2, **changes: Any) -> Story:
    """Story `n` (published n hours before T0), reported by `outlets` outlets."""
    published = T0 - timedelta(hours=n)
    values: dict[str, Any] = {
        "id": n + 1,
        "uid": f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
        "title": f"Story number {n} & friends",
        "url": f"https://outlet0.example/news/{n}",
        "summary": f"<p>Summary of <b>story {n}</b>.</p>",
        "published": published,
        "updated": published + timedelta(minutes=30),
        "authors": ("Ann Reporter",),
        "categories": ("world", "politics"),
        "enclosures": (Enclosure(f"https://outlet0.example/audio/{n}.mp3", "audio/mpeg", 1234),),
        "sources": tuple(source(k, n, k) for k in range(outlets)),
        "content": None,
    }
    values.update(changes)
    return Story(**values)


STORIES = [story(0, outlets=3), story(1, outlets=1), story(2, outlets=2, content="<p>Full text of story 2</p>")]
FEEDS = (
    FeedSource("https://outlet0.example/feed.xml", "Outlet 0", ("world",)),
    FeedSource("https://outlet1.example/feed.xml", None, ("world", "business")),
    FeedSource("https://outlet2.example/feed.xml", "Outlet 2"),
)


def parsed_dt(struct: Any) -> datetime:
    """A feedparser time tuple as an aware datetime."""
    return datetime(*struct[:6], tzinfo=UTC)


# --- parse every format back --------------------------------------------------------------------------------


def test_public_names() -> None:
    assert {"render", "rfc3339", "sources_html", "render_atom", "render_rss", "render_json"} <= set(
        aggregator.render.__all__
    )
    for name in aggregator.render.__all__:
        assert hasattr(aggregator.render, name), name


def test_atom_parses_back_with_ids_titles_links_dates_sources_and_order() -> None:
    parsed = feedparser.parse(render(STORIES, meta("atom")))
    assert parsed.bozo == 0 and parsed.version == "atom10"
    assert parsed.feed.id == "https://news.example.org/feed.atom"
    assert parsed.feed.title == "World desk"
    assert parsed.feed.updated == "2026-03-01T09:45:00Z"  # the newest story's, not the clock
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {
        "self": "https://news.example.org/feed.atom",
        "alternate": "https://news.example.org/",
        "hub": "https://hub.example.org/",
    }
    assert [e.id for e in parsed.entries] == [s.uid for s in STORIES]
    first = parsed.entries[0]
    assert first.title == "Story number 0 & friends"
    assert first.link == "https://outlet0.example/news/0"
    assert parsed_dt(first.published_parsed) == T0
    assert parsed_dt(first.updated_parsed) == T0 + timedelta(minutes=30)
    assert [a.name for a in first.authors] == ["Ann Reporter"]
    assert [t.term for t in first.tags] == ["world", "politics"]
    assert first.source.title == "Outlet 0" and first.source.id == "https://outlet0.example/feed.xml"
    related = [(link.href, link.title) for link in first.links if link.rel == "related"]
    assert related == [("https://outlet1.example/news/0", "Outlet 1"), ("https://outlet2.example/news/0", "Outlet 2")]
    assert [(e.href, e.type, e.length) for e in first.enclosures] == [
        ("https://outlet0.example/audio/0.mp3", "audio/mpeg", "1234")
    ]
    assert "<b>story 0</b>" in first.summary
    content = first.content[0].value
    assert "Reported by 3 outlets" in content
    for k in range(3):  # each outlet with its own headline, the lead first
        assert f'<li>Outlet {k}: <a href="https://outlet{k}.example/news/0">Outlet {k} on story 0</a></li>' in content
    assert parsed.entries[2].content[0].value.startswith("<p>Full text of story 2</p>")


def test_rss_parses_back_with_guids_titles_links_dates_sources_and_order() -> None:
    parsed = feedparser.parse(render(STORIES, meta("rss")))
    assert parsed.bozo == 0 and parsed.version == "rss20"
    assert parsed.feed.title == "World desk"
    assert parsed.feed.link == "https://news.example.org/"
    assert parsed.feed.subtitle == "Stories several outlets reported"
    self_links = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert self_links == ["https://news.example.org/feed.rss"]
    assert [e.id for e in parsed.entries] == [s.uid for s in STORIES]
    assert all(e.guidislink is False for e in parsed.entries)
    assert [e.title for e in parsed.entries] == [s.title for s in STORIES]
    assert [e.link for e in parsed.entries] == [s.url for s in STORIES]
    assert [parsed_dt(e.published_parsed) for e in parsed.entries] == [s.published for s in STORIES]
    first = parsed.entries[0]
    assert first.source == {"href": "https://outlet0.example/feed.xml", "title": "Outlet 0"}
    assert first.author == "Ann Reporter"
    assert [t.term for t in first.tags] == ["world", "politics"]
    assert "Reported by 3 outlets" in first.summary
    assert parsed.entries[2].content[0].value.startswith("<p>Full text of story 2</p>")


def test_json_feed_parses_back_with_ids_titles_links_dates_sources_and_order() -> None:
    body = render(STORIES, meta("json"))
    data = json.loads(body)
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert data["feed_url"] == "https://news.example.org/feed.json"
    assert data["hubs"] == [{"type": "WebSub", "url": "https://hub.example.org/"}]
    assert data["_aggregator"] == {"id": "https://news.example.org/feed.json", "updated": "2026-03-01T09:45:00Z"}
    items = data["items"]
    assert [i["id"] for i in items] == [s.uid for s in STORIES]
    assert items[0]["title"] == "Story number 0 & friends"
    assert items[0]["url"] == "https://outlet0.example/news/0"
    assert items[0]["date_published"] == "2026-03-01T09:15:00Z"
    assert items[0]["date_modified"] == "2026-03-01T09:45:00Z"
    assert items[0]["authors"] == [{"name": "Ann Reporter"}]
    assert items[0]["summary"] == "Summary of story 0."
    assert items[0]["attachments"] == [
        {"url": "https://outlet0.example/audio/0.mp3", "mime_type": "audio/mpeg", "size_in_bytes": 1234}
    ]
    extension = items[0]["_aggregator"]
    assert extension["source_count"] == 3
    assert extension["sources"][1] == {
        "feed_title": "Outlet 1",
        "feed_url": "https://outlet1.example/feed.xml",
        "site_url": "https://outlet1.example/",
        "title": "Outlet 1 on story 0",
        "url": "https://outlet1.example/news/0",
        "published": "2026-03-01T09:16:00Z",
    }
    # and as another aggregator would read it (feedparser 6 has no JSON Feed reader; ours does)
    parsed = parse_feed(body, {"content-type": "application/feed+json"})
    assert parsed.version == "json11"
    assert [(e.id, e.title, e.link, e.published) for e in parsed.entries] == [
        (s.uid, s.title, s.url, s.published) for s in STORIES
    ]
    assert parsed.entries[0].updated == T0 + timedelta(minutes=30)


def test_html_page_shows_every_story_with_its_outlets_and_autodiscovery() -> None:
    page = lxml.html.document_fromstring(render(STORIES, meta("html")))
    assert page.findtext(".//title") == "World desk"
    alternates = [(e.get("type"), e.get("href"), e.get("title")) for e in page.iterfind(".//link[@rel='alternate']")]
    assert alternates == [
        ("application/atom+xml", "feed.atom", "World desk (Atom)"),
        ("application/rss+xml", "feed.rss", "World desk (RSS)"),
        ("application/feed+json", "feed.json", "World desk (JSON Feed)"),
    ]
    articles = page.findall(".//article")
    assert [a.findtext(".//h3/a") for a in articles] == [s.title for s in STORIES]
    assert [a.find(".//h3/a").get("href") for a in articles] == [s.url for s in STORIES]
    assert [a.find(".//time").get("datetime") for a in articles] == [rfc3339(s.published) for s in STORIES]
    outlets = [
        (li.findtext("span"), li.find("a").text, li.find("a").get("href")) for li in articles[0].iterfind(".//li")
    ]
    assert outlets == [(f"Outlet {k}", f"Outlet {k} on story 0", f"https://outlet{k}.example/news/0") for k in range(3)]
    single = articles[1].find(".//p[@class='outlets']/a[@class='outlet']")
    assert (single.text, single.get("href")) == ("Outlet 0", "https://outlet0.example/news/1")
    assert articles[0].find(".//div[@class='summary']/p/b").text == "story 0"
    assert [h.text for h in page.iterfind(".//h2")] == ["Sunday 1 March 2026"]
    assert not page.xpath("//script")
    csp = page.find(".//meta[@http-equiv='Content-Security-Policy']").get("content")
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_opml_lists_the_subscribed_feeds() -> None:
    document = etree.fromstring(render([], meta("opml"), FEEDS))
    assert document.get("version") == "2.0"
    assert document.findtext("head/title") == "World desk"
    # aggregator.opml's layout: consecutive feeds sharing a first tag in a folder of that name
    folder = document.find("body/outline")
    assert (folder.get("text"), folder.get("xmlUrl")) == ("world", None)
    assert [dict(o.attrib) for o in folder] == [
        {"type": "rss", "text": "Outlet 0", "title": "Outlet 0", "xmlUrl": "https://outlet0.example/feed.xml"},
        {
            "type": "rss",
            "text": "https://outlet1.example/feed.xml",
            "xmlUrl": "https://outlet1.example/feed.xml",
            "category": "world,business",
        },
    ]
    assert [dict(o.attrib) for o in document.iterfind("body/outline[@type='rss']")] == [
        {"type": "rss", "text": "Outlet 2", "title": "Outlet 2", "xmlUrl": "https://outlet2.example/feed.xml"}
    ]
    hostile = [FeedSource("javascript:alert(1)", "x"), FeedSource("https://ok.example/f", "<b>Bold</b> &lt;i&gt;")]
    outlines = etree.fromstring(render([], meta("opml"), hostile)).findall(".//outline")
    assert [(o.get("text"), o.get("xmlUrl")) for o in outlines] == [("Bold", "https://ok.example/f")]


def test_an_unknown_format_is_an_output_error() -> None:
    with pytest.raises(OutputError, match="'yaml' is not supported"):
        render(STORIES, meta("yaml"))


def test_dates_and_sources_html() -> None:
    moment = datetime(2026, 11, 3, 10, 15, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(moment) == "2026-11-03T09:15:00Z"
    assert rfc822(moment) == "Tue, 03 Nov 2026 09:15:00 GMT"
    assert sources_html(story(0, outlets=0)) == ""
    assert sources_html(story(0, outlets=1)) == (
        '<p>Reported by <a href="https://outlet0.example/news/0">Outlet 0</a></p>'
    )
    assert sources_html(story(0, outlets=2)) == (
        '<p>Reported by 2 outlets:</p><ul><li>Outlet 0: <a href="https://outlet0.example/news/0">Outlet 0 on '
        'story 0</a></li><li>Outlet 1: <a href="https://outlet1.example/news/0">Outlet 1 on story 0</a></li></ul>'
    )


# --- validity ----------------------------------------------------------------------------------------------


def edge_stories() -> list[Story]:
    """Stories with everything optional missing, odd characters and many outlets."""
    return [
        *STORIES,
        story(3, outlets=0, url=None, summary=None, authors=(), categories=(), enclosures=()),
        story(4, outlets=5, title="", summary="plain text, no markup", enclosures=(Enclosure("https://x.example/v"),)),
        story(5, title="Control\x00 chars\x0b and \ufffe gone", summary="<p>bad \x01 char</p>", authors=("\x02",)),
    ]


def test_atom_is_valid_against_the_rfc_4287_relax_ng_schema() -> None:
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    for stories in ([], edge_stories()):
        for changes in ({}, {"self_url": None, "site_url": None, "hub_url": None, "description": None}):
            document = etree.fromstring(render(stories, meta("atom", **changes)))
            assert schema.validate(document), schema.error_log
            # the RFC's Schematron rules, which RELAX NG cannot say
            for entry in document.iterfind(f"{ATOM}entry"):
                alternates = [
                    (link.get("type"), link.get("hreflang")) for link in entry.iterfind(f"{ATOM}link[@rel='alternate']")
                ]
                assert len(alternates) == len(set(alternates))
                assert entry.find(f"{ATOM}content") is not None or alternates
            assert document.find(f"{ATOM}author") is not None  # so no entry needs its own


def test_the_schema_rejects_what_rfc_4287_forbids() -> None:
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    good = render(STORIES, meta("atom"))
    assert schema.validate(etree.fromstring(good))
    broken = [
        good.replace(b"<updated>2026-03-01T09:45:00Z</updated>\n", b"", 1),  # feed without updated
        good.replace(b"<published>2026-03-01T09:15:00Z", b"<published>Sun, 01 Mar 2026 09:15:00 GMT", 1),
        good.replace(b'type="audio/mpeg"', b'type="mpeg"', 1),  # a media type has a slash
        good.replace(b"<id>urn:uuid:", b"<idx>urn:uuid:", 1).replace(
            b"</id>\n    <title>Story", b"</idx>\n    <title>Story", 1
        ),
    ]
    for document in broken:
        assert not schema.validate(etree.fromstring(document))


def test_rss_has_every_element_the_specification_requires() -> None:
    for stories in ([], edge_stories()):
        channel = etree.fromstring(render(stories, meta("rss"))).find("channel")
        assert etree.fromstring(render(stories, meta("rss"))).get("version") == "2.0"
        for name in ("title", "link", "description"):  # required channel elements
            assert (channel.findtext(name) or "").strip(), name
        parsedate_to_datetime(channel.findtext("lastBuildDate"))
        for item in channel.iterfind("item"):
            assert (item.findtext("title") or "").strip() or (item.findtext("description") or "").strip()
            assert item.find("guid").get("isPermaLink") == "false"
            assert parsedate_to_datetime(item.findtext("pubDate")).tzinfo is not None
            source_element = item.find("source")
            assert source_element is None or source_element.get("url", "").startswith("https://")
            enclosures = item.findall("enclosure")
            assert len(enclosures) <= 1
            for enclosure in enclosures:
                assert enclosure.get("url") and enclosure.get("type") and enclosure.get("length", "").isdigit()
        assert len(channel.findall("item")) == len(stories)


JSON_FEED_11 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "title", "items"],
    "properties": {
        "version": {"const": "https://jsonfeed.org/version/1.1"},
        "title": {"type": "string"},
        "home_page_url": {"type": "string", "pattern": "^https?://"},
        "feed_url": {"type": "string", "pattern": "^https?://"},
        "description": {"type": "string"},
        "authors": {"type": "array", "items": {"$ref": "#/$defs/author"}},
        "hubs": {
            "type": "array",
            "items": {"type": "object", "required": ["type", "url"], "properties": {"type": {"type": "string"}}},
        },
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
    },
    "$defs": {
        "author": {
            "type": "object",
            "minProperties": 1,
            "properties": {"name": {"type": "string"}, "url": {"type": "string"}, "avatar": {"type": "string"}},
        },
        "item": {
            "type": "object",
            "required": ["id"],
            "anyOf": [{"required": ["content_html"]}, {"required": ["content_text"]}],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "url": {"type": "string", "pattern": "^https?://"},
                "title": {"type": "string"},
                "content_html": {"type": "string"},
                "summary": {"type": "string"},
                "date_published": {"type": "string", "format": "date-time"},
                "date_modified": {"type": "string", "format": "date-time"},
                "authors": {"type": "array", "items": {"$ref": "#/$defs/author"}},
                "tags": {"type": "array", "items": {"type": "string"}},
                "attachments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["url", "mime_type"],
                        "properties": {"size_in_bytes": {"type": "integer"}},
                    },
                },
            },
            "patternProperties": {"^_": {"type": "object"}},
        },
    },
}


def test_json_feed_has_the_fields_json_feed_1_1_requires() -> None:
    validator = jsonschema.Draft202012Validator(JSON_FEED_11, format_checker=jsonschema.FormatChecker())
    for stories in ([], edge_stories()):
        data = json.loads(render(stories, meta("json")))
        validator.validate(data)
        for item in data["items"]:
            for key in ("date_published", "date_modified"):
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item[key])


def test_characters_xml_forbids_are_removed_everywhere() -> None:
    stories = edge_stories()
    for fmt in ALL_FORMATS:
        body = render(stories, meta(fmt), FEEDS)
        assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", body), fmt
        assert "\ufffe".encode() not in body
    titles = [e.title for e in feedparser.parse(render(stories, meta("atom"))).entries]
    assert titles[-1] == "Control chars and gone"
    assert titles[-2] == "(untitled)"


# --- safety ------------------------------------------------------------------------------------------------

# Markup a hostile or compromised feed might send, each trying to run script in a reader or on our page.
XSS_CORPUS = (
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<img src="https://ok.example/i.png" onload="alert(1)">',
    "<body onload=alert(1)>",
    '<a href="javascript:alert(1)">plain javascript</a>',
    '<a href="JaVaScRiPt:alert(1)">mixed case</a>',
    '<a href=" jav&#x09;ascript:alert(1)">entity tab</a>',
    '<a href="&#106;avascript:alert(1)">entity j</a>',
    '<a href="vbscript:msgbox(1)">vbscript</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data link</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<svg><script>alert(1)</script></svg>",
    "<svg onload=alert(1)><circle r=1 /></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>svg link</text></a></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<div style="width: expression(alert(1))">css expression</div>',
    "<style>body{background:url(javascript:alert(1))}</style>",
    '<p style="background-image: url(&quot;javascript:alert(1)&quot;)">css url</p>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<object data="javascript:alert(1)"></object><embed src="https://evil.example/x.swf">',
    '<form action="javascript:alert(1)"><button formaction="javascript:alert(1)">go</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//"><link rel="stylesheet" href="https://evil.example/x.css">',
    "<<script>script>alert(1)<</script>/script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<!--<script>-->alert(1)<!--</script>-->",
    '<img src="x" alt=""" onerror="alert(1)">',
    '<p title="</p><script>alert(1)</script>">attribute break-out</p>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<textarea><script>alert(1)</script></textarea>",
    '<a href="https://ok.example/" onclick="alert(1)" onmouseover="alert(1)">handlers</a>',
    "<img src=x onerror=alert(1)//",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<x:script xmlns:x='http://www.w3.org/1999/xhtml'>alert(1)</x:script>",
    "<![CDATA[<script>alert(1)</script>]]>",
)
HOSTILE_TEXT = (
    "<script>alert(1)</script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    '"><img src=x onerror=alert(1)>',
    "&amp;lt;svg onload=alert(1)&amp;gt;",
)
BAD_URLS = ("javascript:alert(1)", "data:text/html,<script>alert(1)</script>", " javascript:alert(1)", "vbscript:x")
DANGEROUS_TAGS = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "form",
    "input", "button", "base", "meta", "link", "noscript", "template", "xml", "textarea",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "poster", "background", "cite", "srcset", "xlink:href"}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:")


def hostile_stories() -> list[Story]:
    """Stories built directly (past normalize.py) from the XSS corpus: summaries, content, titles, links."""
    stories = []
    for n, payload in enumerate(XSS_CORPUS):
        bad = BAD_URLS[n % len(BAD_URLS)]
        text = HOSTILE_TEXT[n % len(HOSTILE_TEXT)]
        hostile_source = StorySource(
            feed_title=text + "Outlet",
            feed_url="https://evil.example/feed",
            site_url=bad,
            title=text,
            url=bad,
            published=T0,
        )
        stories.append(
            story(
                n,
                title=f"Story {n} {text}",
                url=bad if n % 2 else f"https://evil.example/{n}",
                summary=payload,
                content=payload + payload if n % 3 == 0 else None,
                authors=(text,),
                categories=(text,),
                enclosures=(Enclosure(bad, text, 1), Enclosure(f"https://evil.example/{n}.mp3", "audio/mpeg", 2)),
                sources=(hostile_source, source(1, n)),
            )
        )
    return stories


def scheme_is_bad(value: str) -> bool:
    """Whether a URL would run script or embed a document (after the decoding a browser does)."""
    squeezed = re.sub(r"[\x00-\x20]", "", value).lower()
    return squeezed.startswith(BAD_SCHEMES)


def assert_inert_html(markup: str, where: str, page: bool = False) -> None:
    """An HTML fragment (or, with `page`, our whole page) holds nothing a browser would execute."""
    parse = lxml.html.document_fromstring if page else _fragment
    root = parse(markup)
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.lower().rpartition("}")[2].rpartition(":")[2]
        in_head = page and element.getparent() is not None and element.getparent().tag == "head"
        if not (in_head and tag in {"meta", "link", "style"}):
            assert tag not in DANGEROUS_TAGS, f"{where}: <{tag}> in {markup[:300]!r}"
        for name, value in element.attrib.items():
            name = name.lower()
            assert not name.startswith("on"), f"{where}: {name}= in {markup[:300]!r}"
            assert name != "style", f"{where}: style= in {markup[:300]!r}"
            if name in URL_ATTRIBUTES or name.endswith("href"):
                assert not scheme_is_bad(value), f"{where}: {name}={value!r}"
    if page:
        styles = root.xpath("//style")
        assert len(styles) == 1 and styles[0].getparent().tag == "head"
        assert "expression" not in styles[0].text and "url(" not in styles[0].text
    assert "<script" not in lxml.html.tostring(root, encoding="unicode").lower()


def _fragment(markup: str) -> Any:
    return lxml.html.fragment_fromstring(markup, create_parent="div")


def assert_inert_output(fmt: str, body: bytes) -> None:
    """Every field of an output that a reader might render as HTML is inert, and every link is safe."""
    if fmt == "html":
        assert_inert_html(body.decode("utf-8"), "page", page=True)
        return
    if fmt == "json":
        for path, value in _json_strings(json.loads(body)):
            assert_inert_html(value, path)
            if path.rsplit(".", 1)[-1] in {"url", "feed_url", "site_url", "home_page_url", "external_url"}:
                assert value.startswith(("https://", "http://")), f"{path}={value!r}"
        return
    document = etree.fromstring(body)
    for element in document.iter():
        where = f"{fmt} {etree.QName(element).localname}"
        if element.text and element.text.strip():
            assert_inert_html(element.text, where)  # strict: even plain-text fields are read as HTML
        for name, value in element.attrib.items():
            if name in {"href", "url", "xmlUrl", "htmlUrl", "src"}:
                assert value.startswith(("https://", "http://")), f"{where} {name}={value!r}"
            assert_inert_html(value, f"{where} @{name}")


def _json_strings(value: object, path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item, path)


def test_the_checker_catches_what_it_must() -> None:
    for markup in ("<script>x</script>", "<img src=x onerror=y>", '<a href=" javascript:x">', "<svg></svg>"):
        with pytest.raises(AssertionError):
            assert_inert_html(markup, "test")
    with pytest.raises(AssertionError):
        assert_inert_output("rss", b"<rss><channel><title>&lt;script&gt;x&lt;/script&gt;</title></channel></rss>")


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_hostile_stories_produce_no_executable_content(fmt: str) -> None:
    hostile_feeds = (FeedSource("https://evil.example/feed", HOSTILE_TEXT[0], (HOSTILE_TEXT[2],)),)
    body = render(hostile_stories(), meta(fmt), (*hostile_feeds, FeedSource("javascript:alert(1)", "x")))
    assert_inert_output(fmt, body)
    if fmt == "atom":
        assert etree.RelaxNG(etree.parse(str(SCHEMA))).validate(etree.fromstring(body))


def test_hostile_markup_keeps_its_harmless_text() -> None:
    stories = hostile_stories()
    data = json.loads(render(stories, meta("json")))
    by_payload = dict(zip(XSS_CORPUS, data["items"], strict=True))
    assert by_payload['<a href="javascript:alert(1)">plain javascript</a>']["content_html"].startswith(
        '<a rel="noopener noreferrer">plain javascript</a>'
    )
    assert by_payload['<a href="https://ok.example/" onclick="alert(1)" onmouseover="alert(1)">handlers</a>'][
        "content_html"
    ].startswith('<a href="https://ok.example/" rel="noopener noreferrer">handlers</a>')
    assert "url" not in data["items"][1]  # a javascript: story link is dropped, not escaped
    assert [a["url"] for a in data["items"][0]["attachments"]] == ["https://evil.example/0.mp3"]


# --- determinism -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_the_same_stories_give_the_same_bytes(fmt: str) -> None:
    first = render(edge_stories(), meta(fmt), FEEDS)
    assert render(list(edge_stories()), meta(fmt), FEEDS) == first
    assert render([], meta(fmt), FEEDS) == render([], meta(fmt), FEEDS)


def test_a_story_gaining_outlets_keeps_its_id_and_only_moves_updated() -> None:
    before = story(0, outlets=1)
    after = story(0, outlets=4, updated=before.updated + timedelta(hours=2))
    for fmt, ids in (
        ("atom", lambda b: [e.id for e in feedparser.parse(b).entries]),
        ("rss", lambda b: [e.id for e in feedparser.parse(b).entries]),
        ("json", lambda b: [i["id"] for i in json.loads(b)["items"]]),
        ("html", lambda b: [a.get("id") for a in lxml.html.document_fromstring(b).iterfind(".//article")]),
    ):
        assert ids(render([before], meta(fmt))) == ids(render([after], meta(fmt))), fmt
    old, new = (feedparser.parse(render([s], meta("atom"))).entries[0] for s in (before, after))
    assert (old.published, old.title, old.link) == (new.published, new.title, new.link)
    assert new.updated_parsed > old.updated_parsed


# --- the real pipeline through the CLI ---------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


def rss_document(title: str, items: Sequence[dict[str, str]], link: str = "https://outlet.example/") -> str:
    """An RSS 2.0 feed; each item's values are inserted as they are (so they may carry markup)."""
    body = "".join(
        "<item>" + "".join(f"<{key}>{value}</{key}>" for key, value in item.items()) + "</item>" for item in items
    )
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{title}</title>"
        f"<link>{link}</link><description>test</description>{body}</channel></rss>"
    )


def all_outputs(**extra: Any) -> list[dict[str, Any]]:
    """One output per format, with public URLs and the given extra keys."""
    names = {"atom": "feed.atom", "rss": "feed.rss", "json": "feed.json", "html": "index.html", "opml": "feeds.opml"}
    return [
        {"path": f"public/{name}", "format": fmt, "title": f"Test {fmt}", "url": f"https://news.example.org/{name}"}
        | extra
        for fmt, name in names.items()
    ]


def read_outputs(directory: Path) -> dict[str, bytes]:
    """The bytes of each output file, by format."""
    names = {"atom": "feed.atom", "rss": "feed.rss", "json": "feed.json", "html": "index.html", "opml": "feeds.opml"}
    return {fmt: (directory / "public" / name).read_bytes() for fmt, name in names.items()}


def rfc822_ago(hours: float) -> str:
    """An RSS date `hours` before the test's start."""
    return rfc822(NOW - timedelta(hours=hours))


def test_a_hostile_feed_through_the_cli_produces_no_executable_content(feeds: FeedFiles, tmp_path: Path) -> None:
    items = [
        {
            "guid": f"evil-{n}",
            "title": escape(HOSTILE_TEXT[n % len(HOSTILE_TEXT)]) + f" story {n}",
            "link": escape(BAD_URLS[n % len(BAD_URLS)] if n % 2 else f"https://evil.example/{n}"),
            "description": escape(payload),
            "pubDate": rfc822_ago(n + 1),
            "author": escape(HOSTILE_TEXT[0]),
            "category": escape(HOSTILE_TEXT[1]),
        }
        for n, payload in enumerate(XSS_CORPUS)
    ]
    items[0]["enclosure"] = ""
    body = rss_document("&lt;script&gt;alert(1)&lt;/script&gt;Evil", items, link="javascript:alert(1)")
    body = body.replace("<enclosure></enclosure>", '<enclosure url="javascript:alert(1)" type="x" length="1"/>')
    url = feeds.serve("/evil.xml", body)
    config = write_config(tmp_path, [{"url": url, "title": None}], outputs=all_outputs(limit=100))
    summary = update_json(config)
    assert (summary["ok"], summary["entries_new"]) == (1, len(XSS_CORPUS))
    outputs = read_outputs(tmp_path)
    for fmt, output in outputs.items():
        assert_inert_output(fmt, output)
    assert len(json.loads(outputs["json"])["items"]) == len(XSS_CORPUS)
    assert etree.RelaxNG(etree.parse(str(SCHEMA))).validate(etree.fromstring(outputs["atom"]))


def test_a_story_growing_from_one_to_five_outlets_keeps_its_id_in_every_format(
    feeds: FeedFiles, tmp_path: Path
) -> None:
    sources = []
    seen: list[dict[str, Any]] = []
    for k in range(5):
        item = {
            "guid": f"outlet{k}-story",
            "title": f"Volcano erupts near Reykjavik, outlet {k} reports",
            # the same article, shared with each outlet's own tracking parameters: one canonical URL
            "link": f"https://wire.example/2026/volcano?utm_source=outlet{k}&amp;utm_medium=rss",
            "description": f"&lt;p&gt;Outlet {k}'s report.&lt;/p&gt;",
            "pubDate": rfc822_ago(10 - k),
        }
        url = feeds.serve(f"/outlet{k}.xml", rss_document(f"Outlet {k}", [item], f"https://outlet{k}.example/"))
        sources.append({"url": url, "title": f"Outlet {k}", "tags": ["world"]})
        config = write_config(tmp_path, sources, outputs=all_outputs())
        assert update_json(config)["failed"] == 0
        outputs = read_outputs(tmp_path)
        atom_entries = feedparser.parse(outputs["atom"]).entries
        rss_items = feedparser.parse(outputs["rss"]).entries
        json_items = json.loads(outputs["json"])["items"]
        articles = lxml.html.document_fromstring(outputs["html"]).findall(".//article")
        assert len(atom_entries) == len(rss_items) == len(json_items) == len(articles) == 1
        seen.append(
            {
                "ids": (atom_entries[0].id, rss_items[0].id, json_items[0]["id"], articles[0].get("id")),
                "published": (atom_entries[0].published, json_items[0]["date_published"]),
                "updated": atom_entries[0].updated,
                "link": (atom_entries[0].link, rss_items[0].link, json_items[0]["url"]),
                "sources": json_items[0]["_aggregator"]["source_count"],
                "outlets": [span.text for span in articles[0].iterfind(".//span[@class='outlet']")]
                or [a.text for a in articles[0].iterfind(".//a[@class='outlet']")],
                "opml": len(etree.fromstring(outputs["opml"]).findall(".//outline[@xmlUrl]")),
            }
        )
        assert_inert_output("atom", outputs["atom"])
    assert len({s["ids"] for s in seen}) == 1
    assert seen[0]["ids"][0].startswith("urn:uuid:")
    assert seen[0]["ids"][3] == "story-" + seen[0]["ids"][0].rsplit(":", 1)[1]
    assert len({s["published"] for s in seen}) == 1
    assert len({s["link"] for s in seen}) == 1
    assert [s["sources"] for s in seen] == [1, 2, 3, 4, 5]
    assert seen[-1]["outlets"] == [f"Outlet {k}" for k in range(5)]
    assert [s["opml"] for s in seen] == [1, 2, 3, 4, 5]
    updated = [s["updated"] for s in seen]
    assert updated == sorted(updated)


WORDS = (
    "volcano", "parliament", "harvest", "satellite", "glacier", "tariff", "orchestra", "vaccine", "marathon",
    "earthquake", "museum", "refinery", "election", "cyclone", "telescope", "railway", "drought", "chess",
)  # fmt: skip


def test_two_publishes_of_the_same_store_give_identical_bytes(feeds: FeedFiles, tmp_path: Path) -> None:
    urls = []
    for k in range(3):
        items = [
            {
                "guid": f"f{k}-{n}",
                "title": WORDS[k * 6 + n].title(),
                "link": f"https://f{k}.example/{n}",
                "description": f"&lt;p&gt;{WORDS[k * 6 + n]} &lt;img src='/pic{n}.jpg'&gt;&lt;/p&gt;",
                "pubDate": rfc822_ago(n + k / 10),
                "category": "world",
            }
            for n in range(6)
        ]
        urls.append(feeds.serve(f"/f{k}.xml", rss_document(f"Feed {k}", items)))
    config = write_config(tmp_path, urls, outputs=all_outputs(limit=10), site_url="https://news.example.org/")
    assert update_json(config)["entries_new"] == 18
    first = read_outputs(tmp_path)
    result = run_cli("publish", config=config)
    assert result.exit_code == 0
    assert result.stdout.count(": unchanged") == 5
    for output in (tmp_path / "public").iterdir():
        output.unlink()
    assert run_cli("publish", config=config).stdout.count(": written") == 5
    assert read_outputs(tmp_path) == first
    items = json.loads(first["json"])["items"]
    # newest first: each feed's n-th entry is n + k/10 hours old
    assert [i["title"] for i in items] == [WORDS[k * 6 + n].title() for n in range(4) for k in range(3)][:10]
    # the relative image link was made absolute on the way in and survives the re-sanitizing
    assert re.search(r'<img src="http://127\.0\.0\.1:\d+/pic0\.jpg">', items[0]["content_html"])


def test_relative_links_left_in_the_store_are_resolved_against_the_story_link() -> None:
    relative = story(0, summary='<p><a href="/more">more</a> <img src="pic.jpg"></p>')
    content = json.loads(render([relative], meta("json")))["items"][0]["content_html"]
    assert content.startswith(
        '<p><a href="https://outlet0.example/more" rel="noopener noreferrer">more</a> '
        '<img src="https://outlet0.example/news/pic.jpg"></p>'
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://outlet0.example/zq?q=<script>alert(1)</script>",
        'https://outlet0.example/zq"onmouseover="x',
        "https://outlet0.example/zq b",
        "https://outlet0.example/zq\x00b",
        "https://outlet0.example/zq\x9bb",
        "https://outlet0.example/zq\u202egnp.exe",
    ],
)
def test_a_link_a_url_cannot_hold_unescaped_is_refused_not_escaped(url: str) -> None:
    hostile = story(0, outlets=1, url=url, sources=(replace(source(0), url=url),))
    rss = etree.fromstring(render([hostile], meta("rss")))
    assert rss.find("channel/item/link") is None
    item = json.loads(render([hostile], meta("json")))["items"][0]
    assert "url" not in item
    assert "url" not in item["_aggregator"]["sources"][0]
    atom = etree.fromstring(render([hostile], meta("atom")))
    entry = atom.find(f"{ATOM}entry")
    assert [link.get("rel") for link in entry.findall(f"{ATOM}link")] == ["enclosure"]  # no alternate, related
    for fmt in STORY_FORMATS:
        assert b"/zq" not in render([hostile], meta(fmt))
