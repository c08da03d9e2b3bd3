"""The `aggregator` command line: thin click commands over the library, rich for progress and tables.

Every command loads the config, opens the store, calls one library function and prints the result. An
AggregatorError becomes one line on stderr and the error's exit code (2 for config, 3 for the database,
4 for outputs); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .errors import AggregatorError, QueryError

# Everything else is imported by the command that needs it: `aggregator --help` or a command that fails on
# its config must not pay for httpx, SQLite's layer and rich (about 0.5 s on a quiet machine).
if TYPE_CHECKING:
    from rich import console as rich_console
    from rich.text import Text

    from .config import Config
    from .models import FeedOutcome, PassSummary, Story
    from .store import FeedHealth, Highlighted, SearchResult, Store

__all__ = ["DEFAULT_CONFIG", "cli", "main"]

# The config read when neither --config nor AGGREGATOR_CONFIG names one.
DEFAULT_CONFIG = "feeds.yaml"

_F = TypeVar("_F", bound=Callable[..., Any])

# What must never reach a terminal from a feed: C0 controls and DEL (ESC starts `ESC]0;title BEL`, `ESC[2J`),
# C1 controls (U+009B is a one-character CSI), and bidi embeddings, overrides and isolates, which reorder what
# follows (U+202E shows "exe.gnp" as "png.exe").
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile("[\t\n\r\x0b\x0c\x85]+")
# JSON escapes C0 controls itself; these it would print raw with ensure_ascii=False.
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(value: object) -> str:
    """`value` as one line safe to print: line breaks and tabs become spaces, other control characters go.

    Every value that reaches stdout or stderr (titles, URLs, errors a feed's server wrote) passes through here.
    """
    return _UNPRINTABLE.sub("", _SPACES.sub(" ", str(value)))


def _cell(value: object) -> Text:
    """A table cell or a line for rich: printable, and never read as rich markup (`[/x]` in a title)."""
    from rich.text import Text

    return Text(_printable(value))


def _json(data: object) -> str:
    """JSON for --json: non-ASCII kept as is, but C1 controls and bidi overrides escaped as `\\uXXXX`."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _console(**options: Any) -> rich_console.Console:
    """rich's Console, with no style at all under NO_COLOR (https://no-color.org).

    rich itself drops only the colours there and keeps bold and reverse video; without a colour system it
    writes no escape codes.
    """
    from rich import console as rich_console

    return rich_console.Console(color_system=None if os.environ.get("NO_COLOR") else "auto", **options)


class _Context:
    """What the global options chose: a config path and an optional database override."""

    def __init__(self, config_path: str, database: str | None) -> None:
        self.config_path = config_path
        self.database = database

    def config(self) -> Config:
        """Load and validate the config (raises ConfigError)."""
        from .config import load_config

        return load_config(self.config_path, self.database)

    @contextmanager
    def store(self, config: Config) -> Iterator[Store]:
        """Open the configured store for the length of a command."""
        from .store import Store

        store = Store.open(config.database_path)
        try:
            yield store
        finally:
            store.close()


def _reports_errors(command: _F) -> _F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AggregatorError as e:
            click.echo(f"error: {_printable(e)}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(__version__, prog_name="aggregator")
@click.option(
    "--config",
    "config_path",
    envvar="AGGREGATOR_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The feeds.yaml to use (env AGGREGATOR_CONFIG).",
)
@click.option("--db", "database", type=click.Path(dir_okay=False), help="SQLite database (overrides `database`).")
@click.option("-v", "--verbose", count=True, help="Log fetches (-v) or everything (-vv) to stderr.")
@click.pass_context
def cli(ctx: click.Context, config_path: str, database: str | None, verbose: int) -> None:
    """Poll news feeds, cluster the same story across outlets, publish one aggregated feed."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = _Context(config_path, database)


@cli.command("update")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
@_reports_errors
def _update_command(obj: _Context, as_json: bool) -> None:
    """Fetch every feed once, store new entries, cluster stories and write the outputs."""
    import asyncio

    from .update import run_pass

    config = obj.config()
    with obj.store(config) as store, _progress(len(config.feeds), enabled=not as_json) as advance:
        summary = asyncio.run(run_pass(config, store, datetime.now(UTC), on_feed=advance))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(_summary_line(summary))


@cli.command("publish")
@click.pass_obj
@_reports_errors
def _publish_command(obj: _Context) -> None:
    """Write the outputs from the store, without fetching."""
    from .publish import publish_outputs

    config = obj.config()
    with obj.store(config) as store:
        written = publish_outputs(config, store, datetime.now(UTC))
    for output in config.outputs:
        path = config.resolve(output.path)
        click.echo(f"{_printable(path)}: {'written' if path in written else 'unchanged'}")


@cli.command("check")
@click.pass_obj
@_reports_errors
def _check_command(obj: _Context) -> None:
    """Validate the config and print what it would poll and write."""
    config = obj.config()
    console = _console(highlight=False, soft_wrap=True)
    console.print(_cell(f"config: {obj.config_path} (ok)"))
    console.print(_cell(f"database: {config.database_path}"))
    for output in config.outputs:
        console.print(_cell(f"output: {config.resolve(output.path)} ({output.format}, {output.limit} stories)"))
    console.print(f"feeds: {len(config.feeds)}")
    for feed in config.feeds:
        tags = f" [{', '.join(feed.tags)}]" if feed.tags else ""
        console.print(_cell(f"  {feed.url}{' ' + repr(feed.title) if feed.title else ''}{tags}"))


@cli.command("stories")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="How many stories.")
@click.option(
    "--min-sources", default=1, show_default=True, type=click.IntRange(1), help="Only stories with this many outlets."
)
@click.option("--json", "as_json", is_flag=True, help="Print the stories as JSON.")
@click.pass_obj
@_reports_errors
def _stories_command(obj: _Context, limit: int, min_sources: int, as_json: bool) -> None:
    """List the latest stories with their number of sources and their outlets."""
    config = obj.config()
    with obj.store(config) as store:
        found = store.latest_stories(limit, min_sources=min_sources)
    if as_json:
        click.echo(_json([_story_json(story) for story in found]))
        return
    header = ("id", "newest report", "sources", "title", "outlets")
    rows = [
        (str(story.id), _short_time(story.latest or story.published), str(len(story.sources)), story.title,
         ", ".join(dict.fromkeys(source.feed_title for source in story.sources)))
        for story in found
    ]  # fmt: skip
    _print_rows(header, rows, _console(highlight=False))


@cli.command("story")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the story as JSON.")
@click.pass_obj
@_reports_errors
def _story_command(obj: _Context, key: str, as_json: bool) -> None:
    """Show one story (by number or uid): its entries, outlets, and how each joined (method, score)."""
    config = obj.config()
    with obj.store(config) as store:
        found = store.story(key)
        if found is None:
            raise QueryError(f"no story {key!r}")
        members = store.story_entries(found.id)
    if as_json:
        click.echo(_json(dict(_story_json(found), entries=members)))
        return
    console = _console(highlight=False)
    for line in (
        f"story {found.id}  {found.uid}",
        found.title,
        found.url or "",
        f"first report {_short_time(found.published)}, newest report {_short_time(found.latest or found.published)}",
    ):
        click.echo(_printable(line))
    header = ("entry", "published", "outlet", "method", "score", "title")
    rows = [
        (str(member["id"]), member["published"], member["feed_title"], member["story_method"] or "",
         "" if member["story_score"] is None else f"{member['story_score']:.2f}", member["title"])
        for member in members
    ]  # fmt: skip
    _print_rows(header, rows, console)


def _print_rows(header: Sequence[str], rows: Sequence[Sequence[object]], console: rich_console.Console) -> None:
    """A table on a terminal; for pipes and logs, plain tab-separated lines, nothing cut or wrapped."""
    from rich.table import Table
    from rich.text import Text

    cells = [tuple(_printable(cell) for cell in row) for row in rows]
    if not console.is_terminal:
        for line in (header, *cells):
            click.echo("\t".join(line))
        return
    table = Table(*header, box=None, header_style="bold")
    for line in cells:
        table.add_row(*(Text(cell) for cell in line))
    console.print(table)


def _story_json(story: Story) -> dict[str, Any]:
    return {
        "id": story.id,
        "uid": story.uid,
        "title": story.title,
        "url": story.url,
        "published": _stamp(story.published),
        "latest": _stamp(story.latest or story.published),
        "updated": _stamp(story.updated),
        "sources": [
            {"feed": s.feed_title, "feed_url": s.feed_url, "title": s.title, "url": s.url} for s in story.sources
        ],
    }


def _stamp(moment: datetime) -> str:
    """A time as the store writes it (ISO 8601, UTC)."""
    from .store import format_time

    return format_time(moment)


def _short_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[FeedOutcome], None]]:
    """A progress bar on stderr when it is a terminal, advanced once per feed; else a no-op (rich, 0.1 s to
    import, is then never loaded: cron and --json passes do not pay for it)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda outcome: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _console(stderr=True)
    columns = (TextColumn("updating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Redrawn as each feed finishes, not by rich's refresh thread: a pass forks its worker processes only
    # while it has a single thread, so the bar's thread would have cost an interactive pass both of them.
    with Progress(*columns, console=console, transient=True, auto_refresh=False) as progress:
        task = progress.add_task("feeds", total=total)

        def advance(outcome: FeedOutcome) -> None:
            progress.advance(task)
            progress.refresh()

        yield advance


def _summary_line(summary: PassSummary) -> str:
    from .models import FetchStatus

    failed = [o for o in summary.outcomes if o.status is FetchStatus.FAILED]
    line = (
        f"{len(summary.outcomes)} feeds: {summary.ok} ok, {summary.not_modified} not modified, "
        f"{summary.failed} failed; entries: {summary.new} new, {summary.updated} updated "
        f"({summary.seconds:.1f} s)"
    )
    details = [f"  failed: {_printable(o.url)}: {_printable(o.error)}" for o in failed]
    return "\n".join([line, *details])


_LOG_LEVEL = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Least important log lines shown (stderr).",
)
_LOG_FORMAT = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or one JSON object per line for log shippers.",
)
_HOST = click.option("--host", help="Address to listen on [default: service.host in feeds.yaml, 127.0.0.1].")
_PORT = click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on [default: service.port, 8080].")


@cli.command("run")
@click.option("--serve", is_flag=True, help="Also serve the outputs, /health and / over HTTP.")
@_HOST
@_PORT
@_LOG_LEVEL
@_LOG_FORMAT
@click.pass_obj
@_reports_errors
def _run_command(
    obj: _Context, serve: bool, host: str | None, port: int | None, log_level: str, log_format: str
) -> None:
    """Poll each feed on its schedule until SIGTERM/SIGINT; SIGHUP (or editing feeds.yaml) reloads the config."""
    import asyncio

    from .logs import configure_logging
    from .service import Service  # the service's libraries load only for this command

    obj.config()  # a bad config is one line on stderr and exit code 2, before logging is set up
    configure_logging(log_level, log_format)
    service = Service(obj.config_path, database=obj.database, poll=True, serve=serve, host=host, port=port)
    asyncio.run(service.run())


@cli.command("serve")
@_HOST
@_PORT
@_LOG_LEVEL
@_LOG_FORMAT
@click.pass_obj
@_reports_errors
def _serve_command(obj: _Context, host: str | None, port: int | None, log_level: str, log_format: str) -> None:
    """Serve the published outputs, /health and / over HTTP, without polling (another process updates)."""
    import asyncio

    from .logs import configure_logging
    from .service import Service

    obj.config()
    configure_logging(log_level, log_format)
    service = Service(obj.config_path, database=obj.database, poll=False, serve=True, host=host, port=port)
    asyncio.run(service.run())


# --- querying the store and managing subscriptions (issue 7) ----------------------------------------------


@cli.command("feeds")
@click.option("--failing", is_flag=True, help="Only feeds that are failing or disabled.")
@click.option("--all", "include_removed", is_flag=True, help="Also feeds removed from the config (still stored).")
@click.option("--json", "as_json", is_flag=True, help="Print the feeds as JSON.")
@click.pass_obj
@_reports_errors
def _feeds_command(obj: _Context, failing: bool, include_removed: bool, as_json: bool) -> None:
    """Show every feed: status, last and next fetch, entries stored, last new entry."""
    from rich.table import Table
    from rich.text import Text

    config = obj.config()
    with obj.store(config) as store:
        rows = store.feed_table(config.sources(), include_removed=include_removed)
    if failing:
        rows = [row for row in rows if row.status in ("failing", "disabled")]
    if as_json:
        click.echo(_json([_feed_json(row) for row in rows]))
        return
    console = _console(highlight=False)
    header = ("status", "title", "url", "tags", "last fetch", "next fetch", "entries", "last new entry", "problem")
    cells = [tuple(_printable(cell) for cell in _feed_cells(row)) for row in rows]
    if not console.is_terminal:  # plain tab-separated lines for pipes and logs
        for line in (header, *cells):
            click.echo("\t".join(line))
        return
    # On a terminal: times to the minute, URLs and problems folded rather than cut, titles shortened.
    table = Table(header_style="bold", box=None)
    for name in header:
        table.add_column(
            name,
            no_wrap=name in ("status", "last fetch", "next fetch", "last new entry", "entries"),
            overflow="fold" if name in ("url", "problem") else "ellipsis",
            justify="right" if name == "entries" else "left",
        )
    for row, line in zip(rows, cells, strict=True):
        shown = [_minute(cell) if name in ("last fetch", "next fetch", "last new entry") else cell
                 for name, cell in zip(header, line, strict=True)]  # fmt: skip
        if row.status == "failing":
            shown[0] = f"failing since {_minute(_time(row.failing_since))}"
        table.add_row(*(Text(cell) for cell in shown), style=_STATUS_STYLES.get(row.status, ""))
    console.print(table)


_STATUS_STYLES = {"failing": "red", "disabled": "red", "new": "yellow", "removed": "dim"}


def _feed_cells(row: FeedHealth) -> tuple[str, ...]:
    status = f"failing since {_time(row.failing_since)}" if row.status == "failing" else row.status
    return (
        status,
        row.title,
        row.url,
        ",".join(row.tags),
        _time(row.last_fetched_at),
        _time(row.next_fetch_at),
        str(row.entries),
        _time(row.last_new_entry_at),
        row.disabled_reason or (row.last_error if row.status == "failing" else None) or "",
    )


def _feed_json(row: FeedHealth) -> dict[str, Any]:
    from .store import FeedHealth

    times = ("failing_since", "last_fetched_at", "next_fetch_at", "last_new_entry_at")
    data = {name: getattr(row, name) for name in FeedHealth.__slots__}
    data.update({name: _time(getattr(row, name)) or None for name in times}, tags=list(row.tags))
    return data


def _time(moment: datetime | None) -> str:
    return _stamp(moment) if moment is not None else ""


def _minute(stamp: str) -> str:
    """`2026-11-26T03:12:01Z` -> `2026-11-26 03:12` for a terminal table."""
    return stamp[:16].replace("T", " ")


_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A date, a time or an age (`30m`, `24h`, `7d`, `2w`) -> an aware UTC datetime."""
    if value is None:
        return None
    text = value.strip()
    age = re.fullmatch(r"(\d+)\s*([mhdw])", text)
    if age:
        return datetime.now(UTC) - timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-07-26), a time (2026-07-26T09:00Z) or an age (24h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@cli.command("search")
@click.argument("query")
@click.option(
    "--since", metavar="WHEN", callback=_since, help="Only entries published since a date, a time or an age (24h, 7d)."
)
@click.option("--feed", "feed_urls", multiple=True, help="Only entries of this feed (its URL); repeatable.")
@click.option("--tag", "tags", multiple=True, help="Only entries of feeds with this tag; repeatable.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many stories.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
@_reports_errors
def _search_command(
    obj: _Context,
    query: str,
    since: datetime | None,
    feed_urls: tuple[str, ...],
    tags: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """Full-text search of titles and summaries (FTS5 syntax), best first, grouped by story."""
    from rich.text import Text

    config = obj.config()
    with obj.store(config) as store:
        feed_ids = None
        if feed_urls:
            for url in feed_urls:
                if not store.feed_ids_with_urls([url]):
                    raise QueryError(f"--feed {url}: no such feed in the store")
            feed_ids = store.feed_ids_with_urls(feed_urls)
        if tags:
            tagged = store.feed_ids_with_tags(tags)
            if not tagged:
                raise QueryError(f"--tag: no feed has the tag {', '.join(tags)}")
            feed_ids = tagged if feed_ids is None else feed_ids & tagged
        results = store.search(query, limit=limit, since=since, feed_ids=feed_ids)
        suggestion = store.did_you_mean(query) if not results else None
        if suggestion and not store.search(suggestion, limit=1, since=since, feed_ids=feed_ids):
            suggestion = None  # its words are known, but not together or not in these feeds
    if as_json:
        click.echo(_json([_result_json(result) for result in results]))
        if suggestion:
            click.echo(_printable(f"did you mean {suggestion!r}?"), err=True)
        return
    console = _console(highlight=False, soft_wrap=True)
    if not results:
        console.print(_cell(f"no stories match {query!r}"))
        if suggestion:
            console.print(_cell(f"did you mean {suggestion!r}?"))
        return
    terminal = console.is_terminal and console.color_system is not None  # NO_COLOR: [brackets] mark hits
    for number, result in enumerate(results, 1):
        outlets = f"{result.feed_count} outlet{'s' * (result.feed_count != 1)}"
        console.print(Text(_printable(f"{number}. {result.title}  ({outlets}, {_time(result.published)})"), "bold"))
        if result.url:
            console.print(_cell(f"   {result.url}"))
        for match in result.matches:
            console.print(_cell(f"   - {match.feed_title}: ") + _marked(match.title, terminal))
            if match.snippet.text:
                console.print(Text("     ") + _marked(match.snippet, terminal))
        matched = {match.feed_url for match in result.matches}
        others = list(dict.fromkeys(s.feed_title for s in result.sources if s.feed_url not in matched))
        if others:
            console.print(_cell(f"   also reported by: {', '.join(others)}"))


def _marked(text: Highlighted, terminal: bool) -> Text:
    """Highlighted text: reverse video on a terminal, [brackets] in plain output; each piece made printable."""
    from rich.text import Text

    marked, last = Text(), 0
    for start, end in text.spans:
        marked.append(_printable(text.text[last:start]))
        if terminal:
            marked.append(_printable(text.text[start:end]), style="bold reverse")
        else:
            marked.append(f"[{_printable(text.text[start:end])}]")
        last = end
    marked.append(_printable(text.text[last:]))
    return marked


def _result_json(result: SearchResult) -> dict[str, Any]:
    return {
        "story_id": result.story_id,
        "story_uid": result.story_uid,
        "title": result.title,
        "url": result.url,
        "published": _stamp(result.published),
        "feed_count": result.feed_count,
        "score": result.score,
        "matches": [
            {
                "entry_id": m.entry_id,
                "feed_title": m.feed_title,
                "feed_url": m.feed_url,
                "title": m.title.text,
                "title_highlights": [list(span) for span in m.title.spans],
                "snippet": m.snippet.text,
                "snippet_highlights": [list(span) for span in m.snippet.spans],
                "url": m.url,
                "published": _stamp(m.published),
                "score": m.score,
            }
            for m in result.matches
        ],
        "sources": [
            {"feed_title": s.feed_title, "feed_url": s.feed_url, "title": s.title, "url": s.url} for s in result.sources
        ],
    }


@cli.command("add")
@click.argument("url")
@click.option("--title", help="Display name (default: the feed's own title).")
@click.option("--tag", "tags", multiple=True, help="A tag for the feed; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print what was added as JSON.")
@click.option("--allow-private", is_flag=True, help="Allow a feed on a loopback or private network address.")
@click.pass_obj
@_reports_errors
def _add_command(
    obj: _Context, url: str, title: str | None, tags: tuple[str, ...], as_json: bool, allow_private: bool
) -> None:
    """Subscribe to a feed, or to the feed a web page advertises; the feed must parse before it is added.

    Without a feeds.yaml, one is started (one Atom output) once the feed is found.
    """
    import asyncio

    from .models import FeedSource
    from .subscriptions import add_feeds, discover_feed, load_or_start  # ruamel.yaml, the parsers: these commands

    created = not Path(obj.config_path).exists()
    config = load_or_start(obj.config_path)
    if url in {feed.url for feed in config.feeds}:
        raise QueryError(f"{url} is already in {obj.config_path}")

    found = asyncio.run(
        discover_feed(
            url, config.fetch, allow_private=allow_private, allow_private_addresses=config.allow_private_addresses
        )
    )
    source = FeedSource(url=found.url, title=title or None, tags=tuple(dict.fromkeys(tags)))
    add_feeds(obj.config_path, [source])
    if as_json:
        data = {"url": found.url, "title": source.title, "feed_title": found.title, "tags": list(source.tags)}
        click.echo(_json(dict(data, entries=found.entries, found=found.how)))
        return
    name = source.title or found.title or "untitled"
    if created:
        click.echo(
            _printable(f"created {obj.config_path}: database aggregator.db, output public/feed.atom (see README)")
        )
    click.echo(_printable(f"added {found.url} ({name}; {found.entries} entries; {found.how}) to {obj.config_path}"))


@cli.command("remove")
@click.argument("url")
@click.pass_obj
@_reports_errors
def _remove_command(obj: _Context, url: str) -> None:
    """Unsubscribe: remove the feed from feeds.yaml (its stored entries stay until pruned)."""
    from .subscriptions import remove_feed

    removed = remove_feed(obj.config_path, url)
    click.echo(_printable(f"removed {removed.url} from {obj.config_path}"))


@cli.command("enable")
@click.argument("url")
@click.pass_obj
@_reports_errors
def _enable_command(obj: _Context, url: str) -> None:
    """Poll a feed the service disabled (410 Gone) again, from the next pass on."""
    config = obj.config()
    with obj.store(config) as store:
        enabled = store.enable_feed(url, datetime.now(UTC))
    if enabled is None:
        raise QueryError(f"{url}: no such feed in the store")
    if enabled:
        click.echo(_printable(f"enabled {url}: the next pass fetches it"))
    else:
        click.echo(_printable(f"{url} is not disabled: nothing to do"))


@cli.command("import-opml")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print what was added and skipped as JSON.")
@click.option("--allow-private", is_flag=True, help="Import feeds on loopback or private network addresses too.")
@click.pass_obj
@_reports_errors
def _import_opml_command(obj: _Context, file: str, as_json: bool, allow_private: bool) -> None:
    """Add the feeds of an OPML file (folders become tags); feeds already subscribed are skipped."""
    from .subscriptions import import_opml

    created = not Path(obj.config_path).exists()
    result = import_opml(obj.config_path, file, allow_private=allow_private)
    if as_json:
        added = [{"url": f.url, "title": f.title, "tags": list(f.tags)} for f in result.added]
        skipped = [{"url": url, "reason": reason} for url, reason in result.skipped]
        click.echo(_json({"added": added, "skipped": skipped}))
        return
    if created and Path(obj.config_path).exists():
        click.echo(
            _printable(f"created {obj.config_path}: database aggregator.db, output public/feed.atom (see README)")
        )
    click.echo(_printable(f"added {len(result.added)} feed{'s' * (len(result.added) != 1)} to {obj.config_path}"))
    for feed in result.added:
        click.echo(_printable(f"  + {feed.url}" + (f" [{', '.join(feed.tags)}]" if feed.tags else "")))
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)}:")
        for url, reason in result.skipped:
            click.echo(_printable(f"  - {url}: {reason}"))


@cli.command("export-opml")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--title", default="aggregator subscriptions", show_default=True, help="The list's title.")
@click.pass_obj
@_reports_errors
def _export_opml_command(obj: _Context, output: str | None, title: str) -> None:
    """Write the subscriptions as OPML 2.0 (the first tag of a feed becomes its folder); a feed without a title
    in feeds.yaml is named by the title its own document gave, once a pass has fetched it."""
    from dataclasses import replace

    from .opml import opml_document
    from .publish import write_atomically

    config = obj.config()
    sources = config.sources()
    if config.database_path.is_file():  # never create a database just to export
        with obj.store(config) as store:
            fetched = {row["url"]: row["title"] for row in store.feeds() if row["title"]}
        sources = tuple(replace(s, title=s.title or fetched.get(s.url)) for s in sources)
    document = opml_document(sources, title)
    if output is None:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
    else:
        write_atomically(Path(output), document)


@cli.command("prune")
@click.option("--keep-days", type=click.IntRange(1), help="Override retention.keep_days of feeds.yaml.")
@click.option("--dry-run", is_flag=True, help="Count what would be pruned; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_obj
@_reports_errors
def _prune_command(obj: _Context, keep_days: int | None, dry_run: bool, as_json: bool) -> None:
    """Delete stories older than retention.keep_days (never one an output shows), leaving tombstones."""
    from .retention import prune_store

    config = obj.config()
    with obj.store(config) as store:
        result = prune_store(config, store, datetime.now(UTC), keep_days=keep_days, dry_run=dry_run)
    if result is None:
        if as_json:
            click.echo(json.dumps({"pruned": False, "reason": "retention.keep_days is not set"}))
        else:
            click.echo("retention.keep_days is not set in the config: entries are kept forever; nothing pruned")
        return
    if as_json:
        data = {"pruned": not dry_run, "cutoff": _stamp(result.cutoff), "entries": result.entries}
        data.update(stories=result.stories, kept_stories=result.kept_stories, tombstones=result.tombstones)
        click.echo(json.dumps(data))
        return
    verb = "would prune" if dry_run else "pruned"
    forgot = "would forget" if dry_run else "forgot"
    tombstones = f"; {forgot} {result.tombstones} tombstones of entries their feeds no longer list" * bool(
        result.tombstones
    )
    click.echo(
        f"{verb} {result.entries} entries in {result.stories} stories with no entry newer than "
        f"{_stamp(result.cutoff)}; kept {result.kept_stories} older stories that outputs still show{tombstones}"
    )


def main() -> None:
    """Entry point of the `aggregator` script."""
    cli(prog_name="aggregator")
