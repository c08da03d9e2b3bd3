"""OPML import and export through the CLI: folders as tags, the round trip, and hostile files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli, write_config
from lxml import etree

from aggregator.config import load_config
from aggregator.models import FeedSource
from aggregator.opml import MAX_OPML_BYTES, opml_document, parse_opml

SOURCES = [
    {"url": "https://feeds.example/world.xml", "title": "World & Co", "tags": ["world"]},
    {"url": "https://feeds.example/markets.xml", "tags": ["business", "world"]},
    {"url": "https://feeds.example/misc.xml"},
    {"url": "https://feeds.example/asia.xml", "title": "亚洲新闻", "tags": ["world", "asia"]},
    {"url": "https://feeds.example/tech.xml", "title": "Tech", "tags": ["technology"]},
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, SOURCES)  # type: ignore[arg-type]


def export(config: Path) -> bytes:
    result = run_cli("export-opml", config=config)
    assert (result.exit_code, result.stderr) == (0, "")
    return result.stdout_bytes


# The feeds as the export lists them: in one folder per first tag, which stands where its first feed is.
GROUPED = [SOURCES[0], SOURCES[3], SOURCES[1], SOURCES[2], SOURCES[4]]


def test_export_writes_valid_opml_2_one_folder_per_first_tag(config: Path) -> None:
    document = export(config)
    root = etree.fromstring(document)
    assert (root.tag, root.get("version")) == ("opml", "2.0")
    assert root.findtext("head/title") == "aggregator subscriptions"
    feeds = root.findall(".//outline[@xmlUrl]")
    assert [o.get("xmlUrl") for o in feeds] == [source["url"] for source in GROUPED]
    folders = [(o.get("text"), [f.get("xmlUrl") for f in o]) for o in root.find("body") if o.get("xmlUrl") is None]
    assert folders == [
        ("world", ["https://feeds.example/world.xml", "https://feeds.example/asia.xml"]),
        ("business", ["https://feeds.example/markets.xml"]),
        ("technology", ["https://feeds.example/tech.xml"]),
    ]
    assert all(o.get("type") == "rss" and o.get("text") for o in root.iter("outline") if o.get("xmlUrl"))
    assert all(o.get("text") for o in root.iter("outline"))  # OPML 2.0: every outline has text
    assert document == opml_document(load_config(config).sources(), "aggregator subscriptions")


def test_export_then_import_into_an_empty_config_gives_the_same_feeds(config: Path, tmp_path: Path) -> None:
    opml = tmp_path / "subscriptions.opml"
    opml.write_bytes(export(config))
    other = tmp_path / "other"
    other.mkdir()
    empty = write_config(other, [])
    result = run_cli("import-opml", str(opml), config=empty)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"added 5 feeds to {empty}",
        "  + https://feeds.example/world.xml [world]",
        "  + https://feeds.example/asia.xml [world, asia]",
        "  + https://feeds.example/markets.xml [business, world]",
        "  + https://feeds.example/misc.xml",
        "  + https://feeds.example/tech.xml [technology]",
    ]
    assert set(load_config(empty).sources()) == set(load_config(config).sources())
    assert export(empty) == export(config)


def test_export_then_import_into_the_same_config_changes_nothing(config: Path, tmp_path: Path) -> None:
    opml = tmp_path / "subscriptions.opml"
    assert run_cli("export-opml", "-o", str(opml), "--title", "Mine", config=config).exit_code == 0
    before = config.read_bytes()
    result = run_cli("import-opml", str(opml), "--json", config=config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        '{\n  "added": [],\n  "skipped": [\n'
        + ",\n".join(
            f'    {{\n      "url": "{source["url"]}",\n      "reason": "already subscribed"\n    }}'
            for source in GROUPED
        )
        + "\n  ]\n}\n"
    )
    assert config.read_bytes() == before


NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>From another reader</title></head>
  <body>
    <outline text="News">
      <outline text="World">
        <outline type="rss" text="Wire" xmlUrl="https://wire.example/rss" htmlUrl="https://wire.example/"/>
        <outline type="rss" text="Desk" title="The Desk" xmlUrl="https://desk.example/atom"/>
      </outline>
      <outline type="rss" text="https://plain.example/feed" xmlUrl="https://plain.example/feed"/>
    </outline>
    <outline type="rss" text="Wire again" xmlUrl="https://wire.example/rss"/>
    <outline type="rss" text="Tagged" xmlUrl="https://tagged.example/rss" category="/sport,/Boston/Weather"/>
    <outline type="rss" text="Old" xmlUrl="feed://old.example/rss"/>
    <outline type="rss" text="Known" xmlUrl="https://feeds.example/misc.xml"/>
    <outline text="An empty folder"/>
  </body>
</opml>
"""


def test_import_turns_folders_into_tags_and_reports_what_it_skips(config: Path, tmp_path: Path) -> None:
    opml = tmp_path / "reader.opml"
    opml.write_bytes(NESTED)
    before = config.read_text(encoding="utf-8")
    result = run_cli("import-opml", str(opml), config=config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"added 4 feeds to {config}",
        "  + https://wire.example/rss [News, World]",
        "  + https://desk.example/atom [News, World]",
        "  + https://plain.example/feed [News]",
        "  + https://tagged.example/rss [sport, Boston/Weather]",
        "skipped 3:",
        "  - https://wire.example/rss: listed twice in the file",
        "  - feed://old.example/rss: not an http or https URL",
        "  - https://feeds.example/misc.xml: already subscribed",
    ]
    assert config.read_text(encoding="utf-8") == before + (
        "- url: https://wire.example/rss\n  title: Wire\n  tags: [News, World]\n"
        "- url: https://desk.example/atom\n  title: The Desk\n  tags: [News, World]\n"
        "- url: https://plain.example/feed\n  tags: [News]\n"
        "- url: https://tagged.example/rss\n  title: Tagged\n  tags: [sport, Boston/Weather]\n"
    )


def test_import_reads_the_flat_opml_output_format() -> None:
    flat = b"""<?xml version='1.0' encoding='UTF-8'?>
<opml version="2.0"><head><title>Sources</title></head><body>
<outline type="rss" text="https://a.example/rss" title="https://a.example/rss" xmlUrl="https://a.example/rss"
 category="/world,/business"/>
<outline type="rss" text="B" title="B" xmlUrl="https://b.example/rss"/>
</body></opml>"""
    assert parse_opml(flat).feeds == (
        FeedSource("https://a.example/rss", None, ("world", "business")),
        FeedSource("https://b.example/rss", "B"),
    )


def nested(levels: int) -> bytes:
    inner = b'<outline type="rss" text="deep" xmlUrl="https://deep.example/rss"/>'
    return (
        b'<opml version="2.0"><body>'
        + b'<outline text="x">' * levels
        + inner
        + b"</outline>" * levels
        + b"</body></opml>"
    )


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>
<opml version="2.0"><body><outline text="&c;" xmlUrl="https://laughs.example/&c;"/></body></opml>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body><outline text="&x;" xmlUrl="https://xxe.example/rss"/></body></opml>"""
DTD = b"""<?xml version="1.0"?><!DOCTYPE opml [<!ELEMENT opml ANY>]>
<opml version="2.0"><body><outline text="a" xmlUrl="https://dtd.example/rss"/></body></opml>"""


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>',
         "not an OPML document (the root element is <rss>, not <opml>)"),
        (b"Name,URL\nWire,https://wire.example/rss\n",
         "not an OPML document (not well-formed XML: Start tag expected, '<' not found, line 1, column 1)"),
        (b'<opml version="2.0"><head/></opml>', "not an OPML document (no <body>)"),
        (b"", "empty file, not an OPML document"),
        (nested(1000), "elements nested too deeply; not read as OPML"),
        (nested(40), "outlines nested more than 32 levels deep"),
        (LAUGHS, "declares XML entities, which OPML never needs; not read"),
        (XXE, "declares XML entities, which OPML never needs; not read"),
        (DTD, "has an internal DTD, which OPML never needs; not read"),
    ],
    ids=["rss", "csv", "no-body", "empty", "1000-levels", "40-levels", "billion-laughs", "xxe", "dtd"],
)  # fmt: skip
def test_a_file_that_is_not_usable_opml_is_one_error_and_feeds_yaml_is_untouched(
    config: Path, tmp_path: Path, content: bytes, problem: str
) -> None:
    opml = tmp_path / "bad.opml"
    opml.write_bytes(content)
    before = config.read_bytes()
    result = run_cli("import-opml", str(opml), config=config)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {opml}: {problem}\n")
    assert config.read_bytes() == before


def test_a_huge_file_is_refused_before_parsing(config: Path, tmp_path: Path) -> None:
    opml = tmp_path / "huge.opml"
    with opml.open("wb") as file:
        file.write(b'<opml version="2.0"><body>')
        file.write(b'<outline text="x" xmlUrl="https://x.example/rss"/>' * (MAX_OPML_BYTES // 50 + 1))
        file.write(b"</body></opml>")
    before = config.read_bytes()
    result = run_cli("import-opml", str(opml), config=config)
    assert (result.exit_code, result.stderr) == (2, f"error: {opml}: larger than 10 MB; not read as OPML\n")
    assert config.read_bytes() == before


def test_a_missing_file_is_one_error(config: Path, tmp_path: Path) -> None:
    result = run_cli("import-opml", str(tmp_path / "nope.opml"), config=config)
    assert (result.exit_code, result.stderr) == (2, f"error: {tmp_path / 'nope.opml'}: file not found\n")


def test_opml_document_is_deterministic_and_exact() -> None:
    feeds = [
        FeedSource("https://a.example/rss", "A <&> B", ("world",)),
        FeedSource("https://b.example/rss", None, ("world", "business")),
        FeedSource("https://c.example/rss"),
    ]
    assert opml_document(feeds, "Mine") == (
        b"<?xml version='1.0' encoding='UTF-8'?>\n"
        b'<opml version="2.0">\n'
        b"  <head>\n"
        b"    <title>Mine</title>\n"
        b"    <docs>http://opml.org/spec2.opml</docs>\n"
        b"  </head>\n"
        b"  <body>\n"
        b'    <outline text="world" title="world">\n'
        b'      <outline type="rss" text="A &lt;&amp;&gt; B" title="A &lt;&amp;&gt; B" xmlUrl="https://a.example/rss"/>\n'
        b'      <outline type="rss" text="https://b.example/rss" xmlUrl="https://b.example/rss" '
        b'category="world,business"/>\n'
        b"    </outline>\n"
        b'    <outline type="rss" text="https://c.example/rss" xmlUrl="https://c.example/rss"/>\n'
        b"  </body>\n"
        b"</opml>\n"
    )
    assert parse_opml(opml_document(feeds, "Mine")).feeds == tuple(feeds)
