"""The `aggregator` command line: thin click commands over the library, rich for progress and tables.

Every command loads the config, opens the store, calls one library function and prints the result. An
AggregatorError becomes one line on stderr and the error's exit code (2 for config, 3 for the database,
4 for outputs); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .config import DEFAULT_CONFIG, Config, load_config
from .errors import AggregatorError, QueryError
from .models import FeedOutcome, FetchStatus, PassSummary, Story
from .store import Store, format_time
from .update import publish_outputs, run_pass

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What the global options chose: a config path and an optional database override."""

    def __init__(self, config_path: str, database: str | None) -> None:
        self.config_path = config_path
        self.database = database

    def config(self) -> Config:
        """Load and validate the config (raises ConfigError)."""
        return load_config(self.config_path, self.database)

    @contextmanager
    def store(self, config: Config) -> Iterator[Store]:
        """Open the configured store for the length of a command."""
        store = Store.open(config.database_path)
        try:
            yield store
        finally:
            store.close()


def _reports_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AggregatorError as e:
            click.echo(f"error: {e}", err=True)
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
@click.option(
    "--db", "database", type=click.Path(dir_okay=False), help="SQLite database (overrides `database`)."
)
@click.option("-v", "--verbose", count=True, help="Log fetches (-v) or everything (-vv) to stderr.")
@click.pass_context
def cli(ctx: click.Context, config_path: str, database: str | None, verbose: int) -> None:
    """Poll news feeds, cluster the same story across outlets, publish one aggregated feed."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = Context(config_path, database)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
@_reports_errors
def update(obj: Context, as_json: bool) -> None:
    """Fetch every feed once, store new entries, cluster stories and write the outputs."""
    config = obj.config()
    with obj.store(config) as store, _progress(len(config.feeds), enabled=not as_json) as advance:
        summary = asyncio.run(run_pass(config, store, datetime.now(UTC), on_feed=advance))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(_summary_line(summary))


@cli.command()
@click.pass_obj
@_reports_errors
def publish(obj: Context) -> None:
    """Write the outputs from the store, without fetching."""
    config = obj.config()
    with obj.store(config) as store:
        written = publish_outputs(config, store, datetime.now(UTC))
    for output in config.outputs:
        path = config.resolve(output.path)
        click.echo(f"{path}: {'written' if path in written else 'unchanged'}")


@cli.command()
@click.pass_obj
@_reports_errors
def check(obj: Context) -> None:
    """Validate the config and print what it would poll and write."""
    config = obj.config()
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"config: {obj.config_path} (ok)")
    console.print(f"database: {config.database_path}")
    for output in config.outputs:
        console.print(f"output: {config.resolve(output.path)} ({output.format}, {output.limit} stories)")
    console.print(f"feeds: {len(config.feeds)}")
    for feed in config.feeds:
        tags = f" [{', '.join(feed.tags)}]" if feed.tags else ""
        console.print(f"  {feed.url}{' ' + repr(feed.title) if feed.title else ''}{tags}", markup=False)


@cli.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="How many stories.")
@click.option(
    "--min-sources", default=1, show_default=True, type=click.IntRange(1), help="Only stories with this many outlets."
)
@click.option("--json", "as_json", is_flag=True, help="Print the stories as JSON.")
@click.pass_obj
@_reports_errors
def stories(obj: Context, limit: int, min_sources: int, as_json: bool) -> None:
    """List the latest stories with their number of sources and their outlets."""
    config = obj.config()
    with obj.store(config) as store:
        found = store.latest_stories(limit, min_sources=min_sources)
    if as_json:
        click.echo(json.dumps([_story_json(story) for story in found], indent=2, ensure_ascii=False))
        return
    table = Table("id", "published", "sources", "title", "outlets", box=None, header_style="bold")
    for story in found:
        outlets = ", ".join(dict.fromkeys(source.feed_title for source in story.sources))
        table.add_row(str(story.id), _short_time(story.published), str(len(story.sources)), story.title, outlets)
    Console(soft_wrap=not sys.stdout.isatty()).print(table)


@cli.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the story as JSON.")
@click.pass_obj
@_reports_errors
def story(obj: Context, key: str, as_json: bool) -> None:
    """Show one story (by number or uid): its entries, outlets, and how each joined (method, score)."""
    config = obj.config()
    with obj.store(config) as store:
        found = store.story(key)
        if found is None:
            raise QueryError(f"no story {key!r}")
        members = store.story_entries(found.id)
    if as_json:
        click.echo(json.dumps(dict(_story_json(found), entries=members), indent=2, ensure_ascii=False))
        return
    console = Console(soft_wrap=not sys.stdout.isatty(), highlight=False)
    console.print(f"story {found.id}  {found.uid}", markup=False)
    console.print(f"{found.title}\n{found.url or ''}", markup=False)
    console.print(f"published {_short_time(found.published)}, updated {_short_time(found.updated)}")
    table = Table("entry", "published", "outlet", "method", "score", "title", box=None, header_style="bold")
    for member in members:
        score = "" if member["story_score"] is None else f"{member['story_score']:.2f}"
        table.add_row(
            str(member["id"]), member["published"], member["feed_title"], member["story_method"] or "", score,
            member["title"],
        )  # fmt: skip
    console.print(table)


def _story_json(story: Story) -> dict[str, Any]:
    return {
        "id": story.id,
        "uid": story.uid,
        "title": story.title,
        "url": story.url,
        "published": format_time(story.published),
        "updated": format_time(story.updated),
        "sources": [
            {"feed": s.feed_title, "feed_url": s.feed_url, "title": s.title, "url": s.url} for s in story.sources
        ],
    }


def _short_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[FeedOutcome], None]]:
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda outcome: None
        return
    columns = (TextColumn("updating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("feeds", total=total)
        yield lambda outcome: progress.advance(task)


def _summary_line(summary: PassSummary) -> str:
    failed = [o for o in summary.outcomes if o.status is FetchStatus.FAILED]
    line = (
        f"{len(summary.outcomes)} feeds: {summary.ok} ok, {summary.not_modified} not modified, "
        f"{summary.failed} failed; entries: {summary.new} new, {summary.updated} updated "
        f"({summary.seconds:.1f} s)"
    )
    details = [f"  failed: {o.url}: {o.error}" for o in failed]
    return "\n".join([line, *details])


def main() -> None:
    """Entry point of the `aggregator` script."""
    cli(prog_name="aggregator")
