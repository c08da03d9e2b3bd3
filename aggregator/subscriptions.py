"""Manage the subscriptions in feeds.yaml: add (with feed discovery), remove, import from OPML.

feeds.yaml is the user's file, so an edit changes only the lines of the feeds it adds or removes: comments,
blank lines, key order and quoting stay byte for byte. ruamel.yaml (round-trip mode) finds where each feed
item starts and formats new items; the edit itself is a splice of lines. Before anything is written the new
text is validated as a config (config.parse_config_text) and checked to hold exactly the intended feeds;
then it replaces the file atomically (temporary file and rename), so a service watching the file never
reads half of it. When a line splice cannot express the edit (flow-style `feeds: [...]`, say), the file is
re-emitted by ruamel.yaml, which keeps comments in all but unusual places.

Discovery for `add` goes through fetch.Fetcher like every request: the URL itself if it is a feed, else the
feeds an HTML page advertises (`<link rel="alternate">`), else the common paths (/feed, /rss, ...) of its
site; the first candidate that parses as a feed wins.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from .atomic import replace_file
from .config import Config, FetchSettings, load_config, parse_config_text, url_host_problem
from .errors import ConfigError, FeedError, FetchError, ParseError, QueryError
from .fetch import Fetcher
from .models import FeedSource, FeedState, FetchResult, FetchStatus, ParsedFeed
from .opml import read_opml
from .parse import advertised_feeds, parse_feed

__all__ = [
    "COMMON_FEED_PATHS",
    "STARTER_CONFIG",
    "Discovery",
    "OpmlImport",
    "add_feeds",
    "discover_feed",
    "import_opml",
    "load_or_start",
    "remove_feed",
]

# Where sites without autodiscovery links usually serve their feed (WordPress, Hugo, Jekyll, Ghost...).
COMMON_FEED_PATHS = ("/feed", "/rss", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml")


@dataclass(frozen=True, slots=True)
class Discovery:
    """The feed found for a URL given to `add`, and how it was found."""

    url: str
    title: str | None
    entries: int
    # "the URL is a feed", "advertised by the page" or "found at a common path"
    how: str


@dataclass(frozen=True, slots=True)
class OpmlImport:
    """What `import-opml` added to feeds.yaml and what it skipped, with the reason."""

    added: tuple[FeedSource, ...]
    skipped: tuple[tuple[str, str], ...]


# --- discovery -----------------------------------------------------------------------------------------


async def discover_feed(
    url: str,
    settings: FetchSettings,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    allow_private: bool = False,
    allow_private_addresses: bool = True,
) -> Discovery:
    """Find the feed behind `url` (a feed or a web page) and check it parses; FeedError when there is none.

    Private and loopback addresses are refused unless `allow_private` (the user's --allow-private): a URL
    typed at the terminal should not make the aggregator probe the local network; feeds.yaml's
    `allow_private_addresses: false` refuses them even then. Allowed, they are still reached only at the host
    of `url`: a page cannot send us to a feed on another host of the local network. A refusal names the fix.
    """
    _check_url(url)
    allowed = allow_private and allow_private_addresses
    if allow_private_addresses:
        hint = f"which `aggregator add` reaches only when asked: aggregator add --allow-private {url}"
    else:
        hint = "and allow_private_addresses is false in feeds.yaml (--allow-private does not override it)"
    async with Fetcher(settings, transport, allow_private_addresses=allowed, refusal_hint=hint) as fetcher:
        page = await fetcher.fetch(FeedState(feed_id=0, url=url))
        if page.status is not FetchStatus.OK or page.body is None:
            raise FetchError(f"{url}: cannot fetch: {page.error or 'no body'}", page.http_status)
        parsed, problem = _try_parse(page)
        if parsed is not None:
            return Discovery(url, parsed.title, len(parsed.entries), "the URL is a feed")
        if not _is_html(page):
            raise ParseError(f"{url}: {problem}")
        base = page.final_url or url
        advertised = advertised_feeds(page.body.decode(_charset(page), "replace"), base)
        candidates: dict[str, str] = {}
        for link in advertised:
            candidates.setdefault(link, "advertised by the page")
        for path in COMMON_FEED_PATHS:
            candidates.setdefault(urljoin(base, path), "found at a common path")
        tried: list[str] = []
        for candidate, how in candidates.items():
            if candidate in (url, base):
                continue
            result = await fetcher.fetch(FeedState(feed_id=0, url=candidate), named_url=url)
            if result.status is not FetchStatus.OK:
                tried.append(f"{candidate}: {result.error}")
                continue
            parsed, problem = _try_parse(result)
            if parsed is not None:
                return Discovery(candidate, parsed.title, len(parsed.entries), how)
            tried.append(f"{candidate}: {problem}")
    paths = ", ".join(COMMON_FEED_PATHS)
    if advertised:
        problems = "; ".join(tried[: len(advertised)]) or "it advertises itself"
        raise FeedError(f"{url}: the page advertises {', '.join(advertised)}, but none is a usable feed: {problems}")
    raise FeedError(f"{url}: an HTML page with no feed: it advertises none, and none of {paths} is a feed")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueryError(f"{url!r} is not an http or https URL")


def _try_parse(result: FetchResult) -> tuple[ParsedFeed | None, str]:
    assert result.body is not None
    headers = dict(result.headers, **{"content-location": result.final_url or result.url})
    try:
        return parse_feed(result.body, headers), ""
    except ParseError as e:
        return None, str(e)


def _is_html(result: FetchResult) -> bool:
    head = (result.body or b"")[:2048].lower()
    return "html" in (result.header("content-type") or "") or b"<html" in head or b"<!doctype html" in head


def _charset(result: FetchResult) -> str:
    found = re.search(r"charset=([\w-]+)", result.header("content-type") or "", re.IGNORECASE)
    if found:
        try:
            "".encode(found.group(1))
            return found.group(1)
        except LookupError:
            pass
    return "utf-8"


# --- editing feeds.yaml ------------------------------------------------------------------------------------


def add_feeds(config_path: str | Path, feeds: Sequence[FeedSource]) -> Config:
    """Append `feeds` to the `feeds:` of a feeds.yaml, keeping everything else byte for byte."""
    path = Path(config_path)
    text, old = _read(path)
    known = {feed.url for feed in old.feeds}
    for feed in feeds:
        if feed.url in known:
            raise QueryError(f"{feed.url} is already in {path}")
        known.add(feed.url)
    if not feeds:
        return old
    expected = (*old.sources(), *feeds)
    return _save(
        path, text, old, expected, _splice_add(text, feeds), lambda seq: seq.extend(_item(f) for f in feeds), "add"
    )


def remove_feed(config_path: str | Path, url: str) -> FeedSource:
    """Remove the feed with this URL from a feeds.yaml, keeping every other line (comments included)."""
    path = Path(config_path)
    text, old = _read(path)
    sources = old.sources()
    index = next((i for i, source in enumerate(sources) if source.url == url), None)
    if index is None:
        near = [s.url for s in sources if s.url.rstrip("/").lower() == url.rstrip("/").lower()]
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise QueryError(f"{url} is not in {path}{hint}")
    expected = sources[:index] + sources[index + 1 :]
    _save(path, text, old, expected, _splice_remove(text, index), lambda seq: seq.pop(index), "remove")
    return sources[index]


def import_opml(config_path: str | Path, opml_path: str | Path, *, allow_private: bool = False) -> OpmlImport:
    """Add the feeds of an OPML file that feeds.yaml does not have yet; report the others as skipped.

    An OPML file comes from elsewhere, so as with `add`, a feed whose host is a loopback, private or link-local
    address (127.0.0.1, [::1], 169.254.169.254, localhost) is skipped unless `allow_private`; feeds.yaml's
    `allow_private_addresses: false` refuses them even then. Names are checked when dialled, not here.
    """
    listed = read_opml(opml_path)
    path = Path(config_path)
    _, old = _read(path)
    known = {feed.url for feed in old.feeds}
    added: list[FeedSource] = []
    skipped = list(listed.skipped)
    for feed in listed.feeds:
        problem = None if allow_private and old.allow_private_addresses else url_host_problem(feed.url)
        if feed.url in known:
            skipped.append((feed.url, "already subscribed"))
        elif problem is not None:
            skipped.append((feed.url, _private_reason(problem, old)))
        else:
            added.append(feed)
    add_feeds(path, added)
    return OpmlImport(added=tuple(added), skipped=tuple(skipped))


def _private_reason(problem: str, config: Config) -> str:
    if not config.allow_private_addresses:
        return f"its host is {problem}, and allow_private_addresses is false in feeds.yaml"
    return f"its host is {problem}; use --allow-private to import it"


# The feeds.yaml `add` and `import-opml` start when there is none: a newcomer's first command is often `add`.
STARTER_CONFIG = """\
# Made by `aggregator add`. Every key is described in README.md (Configuration).
database: aggregator.db        # relative to this file

outputs:
  - path: public/feed.atom     # written after every pass
    format: atom               # atom, rss, json, html, opml
    title: Aggregated news

feeds: []
"""


def load_or_start(config_path: str | Path) -> Config:
    """The config at `config_path`, or, when there is no file, the one `add` would start (not written yet)."""
    return _read(Path(config_path))[1]


def _read(path: Path) -> tuple[str, Config]:
    if not path.exists() and not path.is_symlink():
        return STARTER_CONFIG, parse_config_text(STARTER_CONFIG, path)
    config = load_config(path)  # the file must be valid before we touch it
    with path.open(encoding="utf-8", newline="") as file:
        return file.read(), config


def _save(
    path: Path,
    text: str,
    old: Config,
    expected: Sequence[FeedSource],
    spliced: str | None,
    edit: Callable[[CommentedSeq], object],
    verb: str,
) -> Config:
    """Write the spliced text, or else the re-emitted document, whichever holds exactly `expected`."""
    edited = spliced
    config = _checked(edited, path, old, expected) if edited is not None else None
    if config is None:
        edited = _reemit(text, path, edit)
        config = _checked(edited, path, old, expected)
    if config is None or edited is None:
        raise ConfigError(f"{path}: cannot {verb} the feed without changing other settings; edit the file by hand")
    _write_atomically(path, edited)
    return config


def _checked(text: str, path: Path, old: Config, expected: Sequence[FeedSource]) -> Config | None:
    """The edited config when it holds exactly `expected` feeds and nothing else changed, else None."""
    try:
        new = parse_config_text(text, path)
    except ConfigError:
        return None
    same_rest = msgspec.structs.replace(new, feeds=()) == msgspec.structs.replace(old, feeds=())
    return new if same_rest and new.sources() == tuple(expected) else None


# Block-style items of `feeds:`: where each starts and where its content ends, and their indentation.
@dataclass(frozen=True, slots=True)
class _Layout:
    lines: list[str]
    starts: list[int]
    ends: list[int]
    dash_col: int
    key_col: int
    key_line: int
    newline: str


def _layout(text: str) -> _Layout | None:
    try:
        doc = _yaml().load(text)
    except YAMLError:
        return None
    if not isinstance(doc, CommentedMap) or "feeds" not in doc:
        return None
    seq = doc["feeds"]
    if not isinstance(seq, CommentedSeq) or not seq or seq.fa.flow_style():
        return None
    if not all(isinstance(item, CommentedMap) and not item.fa.flow_style() for item in seq):
        return None
    lines = text.splitlines(keepends=True)
    starts = []
    for index in range(len(seq)):
        line, col = seq.lc.item(index)
        if not lines[line][:col].strip().startswith("-"):  # "-" alone on its own line: unusual, re-emit
            return None
        starts.append(line)
    keys = list(doc)
    following = keys[keys.index("feeds") + 1 :]
    limit = doc.lc.key(following[0])[0] if following else len(lines)
    ends = []
    for start, stop in zip(starts, [*starts[1:], limit], strict=True):
        end = stop
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1  # comments and blank lines after an item belong to what follows it
        ends.append(end)
    first_line = lines[starts[0]]
    newline = "\r\n" if first_line.endswith("\r\n") else "\n"
    dash_col = first_line.index("-")
    return _Layout(lines, starts, ends, dash_col, seq.lc.item(0)[1], doc.lc.key("feeds")[0], newline)


def _splice_add(text: str, feeds: Sequence[FeedSource]) -> str | None:
    layout = _layout(text)
    if layout is None:
        return None
    lines = list(layout.lines)
    at = layout.ends[-1]
    if not lines[at - 1].endswith(("\n", "\r")):
        lines[at - 1] += layout.newline
    new = [line + layout.newline for feed in feeds for line in _item_lines(feed, layout.dash_col, layout.key_col)]
    return "".join(lines[:at] + new + lines[at:])


def _splice_remove(text: str, index: int) -> str | None:
    layout = _layout(text)
    if layout is None:
        return None
    lines = list(layout.lines)
    del lines[layout.starts[index] : layout.ends[index]]
    if len(layout.starts) == 1:  # the last feed: `feeds:` would be null, which is not a list
        key = lines[layout.key_line]
        lines[layout.key_line] = re.sub(r"^(\s*feeds\s*:)", r"\1 []", key, count=1)
    return "".join(lines)


def _item_lines(feed: FeedSource, dash_col: int, key_col: int) -> list[str]:
    indent = " " * key_col
    lines = [" " * dash_col + "-" + " " * max(1, key_col - dash_col - 1) + "url: " + _scalar(feed.url)]
    if feed.title:
        lines.append(f"{indent}title: {_scalar(feed.title)}")
    if feed.tags:
        lines.append(f"{indent}tags: [{', '.join(_scalar(tag, flow=True) for tag in feed.tags)}]")
    if feed.priority:
        lines.append(f"{indent}priority: {feed.priority}")
    return lines


# A plain scalar that YAML 1.1 (PyYAML, which reads the config) and 1.2 both read back as the same string.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9 _./:?=&%~+@,()'!*;-]*")
_PLAIN_FLOW = re.compile(r"[A-Za-z][A-Za-z0-9 _./:?=&%~+@()'!*;-]*")
_YAML11_WORDS = frozenset({"y", "yes", "n", "no", "on", "off", "true", "false", "null"})


def _scalar(value: str, *, flow: bool = False) -> str:
    plain = (_PLAIN_FLOW if flow else _PLAIN).fullmatch(value)
    if plain and ": " not in value and not value.endswith((" ", ":")) and value.lower() not in _YAML11_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _item(feed: FeedSource) -> CommentedMap:
    item = CommentedMap(url=_quoted(feed.url))
    if feed.title:
        item["title"] = _quoted(feed.title)
    if feed.tags:
        tags = CommentedSeq(_quoted(tag, flow=True) for tag in feed.tags)
        tags.fa.set_flow_style()
        item["tags"] = tags
    if feed.priority:
        item["priority"] = feed.priority
    return item


def _quoted(value: str, *, flow: bool = False) -> str:
    """The value, double-quoted when ruamel.yaml's plain form could read differently to PyYAML."""
    return value if _scalar(value, flow=flow) == value else DoubleQuotedScalarString(value)


def _reemit(text: str, path: Path, edit: Callable[[CommentedSeq], object]) -> str:
    """Apply `edit` to the `feeds:` list through ruamel.yaml and dump the whole document again."""
    yaml = _yaml()
    indent, offset = _guess_indent(text)
    yaml.indent(mapping=indent, sequence=indent + offset, offset=offset)
    try:
        doc = yaml.load(text)
    except YAMLError as e:
        raise ConfigError(f"{path}: cannot edit: {e}") from None
    preamble = ""
    if doc is None:  # empty, or only comments: keep them above the new document
        doc, preamble = CommentedMap(), text if text.endswith("\n") or not text else text + "\n"
    if not isinstance(doc.get("feeds"), list):
        doc["feeds"] = CommentedSeq()
    seq = doc["feeds"]
    seq.fa.set_block_style()
    edit(seq)
    out = io.StringIO()
    yaml.dump(doc, out)
    return preamble + out.getvalue()


def _guess_indent(text: str) -> tuple[int, int]:
    found = re.search(r"^feeds:[^\n]*\n(?:\s*#[^\n]*\n|\s*\n)*( *)- +", text, re.MULTILINE)
    if found is None:
        return 2, 2
    offset = len(found.group(1))
    return 2, offset


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    return yaml


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file (the target of a symlink) via a temporary file in its folder and a rename."""
    target = path.resolve()
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
        replace_file(target, text.encode("utf-8"), mode=mode)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write: {e.strerror or e}") from e
