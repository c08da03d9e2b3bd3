"""Publishing: every output rendered from the store and written atomically, untouched when its bytes would not
change.

An output's stories are what its filters select (`stories_for_output`), its feed-level facts come from the
config (`output_meta`, `output_id`), render/ turns both into bytes, and `write_atomically` replaces the file
by rename, so a reader (or a crash) only ever sees a whole old or a whole new file. No output contains the
time it was written: the same store gives the same bytes, and an unchanged file keeps its ETag.
"""

from __future__ import annotations

import itertools
import re
import stat
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from .atomic import replace_file
from .config import Config, OutputConfig
from .errors import OutputError
from .models import OutputMeta, Story
from .render import MEDIA_TYPES, render
from .store import Store

__all__ = ["output_id", "output_meta", "publish_outputs", "stories_for_output", "write_atomically"]


def output_meta(config: Config, output: OutputConfig, install_id: str, now: datetime | None = None) -> OutputMeta:
    """Feed-level facts of one output, from the config, the store's install id and the time of the pass."""
    alternates = tuple(
        (other.title, MEDIA_TYPES[other.format], other.url or Path(other.path).name)
        for other in config.outputs
        if other.format in ("atom", "rss", "json")
    )
    return OutputMeta(
        title=output.title,
        format=output.format,
        id=output_id(config, output, install_id),
        self_url=output.url,
        site_url=config.site_url,
        hub_url=output.hub,
        description=output.description,
        alternates=alternates,
        pass_time=now,
    )


def output_id(config: Config, output: OutputConfig, install_id: str) -> str:
    """The output's feed id (Atom `id`, JSON Feed `_aggregator.id`): the same on every pass, and never another
    install's, since readers may take two feeds with one id for one feed.

    Its `url` when set; else a tag URI of `site_url` and the file name; else a UUID of the store's random
    install id (Store.install_id) and the file name.
    """
    name = Path(output.path).name
    if output.url:
        return output.url
    site = urlsplit(config.site_url or "")
    if site.hostname:
        folder = site.path if site.path.endswith("/") else site.path + "/"
        return f"tag:{site.hostname},2026:{folder}{name}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'urn:aggregator:{install_id}:{name}')}"


def stories_for_output(store: Store, output: OutputConfig, now: datetime) -> list[Story]:
    """The stories one output shows now: its feed, tag, source-count and age filters, newest first."""
    feed_ids = store.feed_ids_with_tags(output.tags) if output.tags else None
    if output.feeds:
        by_url = store.feed_ids_with_urls(output.feeds)
        feed_ids = by_url if feed_ids is None else feed_ids & by_url
    since = now - timedelta(hours=output.max_age_hours) if output.max_age_hours else None
    return store.latest_stories(output.limit, feed_ids=feed_ids, min_sources=output.min_sources, since=since)


def publish_outputs(config: Config, store: Store, now: datetime) -> list[Path]:
    """Write every output file from the store; a file whose bytes would not change is left untouched.

    An output with no story is dated by the pass that first wrote it so (`now`), and kept with that date by
    the passes after it while it stays empty: the same store gives the same bytes.
    """
    written = []
    install_id = store.install_id()
    for output in config.outputs:
        stories = stories_for_output(store, output, now)
        meta = output_meta(config, output, install_id, now)
        path = config.resolve(output.path)
        if not stories and _still_empty(path, meta, config):
            continue
        if write_atomically(path, render(stories, meta, feeds=config.sources())):
            written.append(path)
    return written


# Dates an output writes for itself: RFC 3339 (Atom, JSON Feed, HTML) and RFC 822 (RSS).
_OUTPUT_DATES = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"
)
# Dates before this are not a pass's: an older release dated every empty output 1970-01-01.
_FIRST_PASS = datetime(1994, 1, 1, tzinfo=UTC)


def _still_empty(path: Path, meta: OutputMeta, config: Config) -> bool:
    """Whether `path` holds this output without stories as an earlier pass wrote it: rendered at one of the
    dates the file shows, it gives the file's bytes. Then it keeps that pass's date and is not rewritten.

    Only a regular file about the size of this output without stories is read: never a FIFO (which would
    block) or the 256 MiB file someone left at the path.
    """
    empty = render((), meta, config.sources())
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > 2 * len(empty):
            return False
        old = path.read_bytes()
    except OSError:
        return False
    # An output without stories shows one date; a file with stories shows many, and is not it: three will do.
    dates = dict.fromkeys(found.group() for found in _OUTPUT_DATES.finditer(old))
    for found in itertools.islice(dates, 3):
        text = found.decode("ascii")
        try:
            moment = datetime.fromisoformat(text) if text[0].isdigit() else parsedate_to_datetime(text)
        except ValueError:
            continue
        if moment >= _FIRST_PASS and render((), replace(meta, pass_time=moment), config.sources()) == old:
            return True
    return False


def write_atomically(path: Path, body: bytes) -> bool:
    """Replace `path` with `body` via a temporary file and rename; False when the file already holds it.

    Only a regular file of exactly this size is read to compare: never a FIFO (which would block) or a 3 GiB
    file someone left there.
    """
    try:
        try:
            existing = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            existing = None
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            raise OutputError(f"{path}: cannot write the output: something other than a regular file is there")
        if existing is not None and existing.st_size == len(body) and path.read_bytes() == body:
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
            raise OutputError(
                f"{path}: cannot write the output: {blocker or path.parent} is a file, not a folder"
            ) from None
        replace_file(path, body)
    except OSError as e:
        raise OutputError(f"{path}: cannot write the output: {e.strerror or e}") from e
    return True
