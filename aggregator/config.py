"""feeds.yaml -> validated settings.

The file's keys are a public contract, so every mistake is reported in one line that names the file, the key
path (`feeds[3].url`) and the problem. Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .models import FeedSource

__all__ = [
    "DEFAULT_CONFIG",
    "Config",
    "DedupSettings",
    "FeedConfig",
    "FetchSettings",
    "OutputConfig",
    "load_config",
]

DEFAULT_CONFIG = "feeds.yaml"

OutputFormat = Literal["atom", "rss", "json", "html", "opml"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http or https URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    return url


class FeedConfig(_Strict):
    """One entry of `feeds:`."""

    url: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    priority: int = 0

    _url = field_validator("url")(_check_http_url)

    def source(self) -> FeedSource:
        """The feed as the pipeline sees it."""
        return FeedSource(url=self.url, title=self.title, tags=self.tags, priority=self.priority)


class OutputConfig(_Strict):
    """One entry of `outputs:`: a file the publisher writes."""

    path: str
    format: OutputFormat = "atom"
    title: str = "Aggregated news"
    description: str | None = None
    limit: int = Field(default=100, ge=1, le=100_000)
    url: str | None = None
    tags: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    min_sources: int = Field(default=1, ge=1)
    max_age_hours: float | None = Field(default=None, gt=0)
    hub: str | None = None

    @field_validator("url", "hub")
    @classmethod
    def _optional_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)


class FetchSettings(_Strict):
    """How politely and how hard we fetch."""

    concurrency: int = Field(default=16, ge=1, le=512)
    per_host: int = Field(default=2, ge=1, le=64)
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=20.0, gt=0)
    deadline: float = Field(default=60.0, gt=0)
    max_feed_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    user_agent: str | None = None


class DedupSettings(_Strict):
    """Story clustering settings; the defaults are measured, see dedup.py."""

    window_hours: float = Field(default=72.0, gt=0)
    threshold: float | None = Field(default=None, gt=0, le=1)


class Config(_Strict):
    """The whole of feeds.yaml."""

    database: str = "aggregator.db"
    site_url: str | None = None
    outputs: tuple[OutputConfig, ...] = ()
    feeds: tuple[FeedConfig, ...] = ()
    fetch: FetchSettings = FetchSettings()
    dedup: DedupSettings = DedupSettings()
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: dict[str, int] = {}
        for index, feed in enumerate(self.feeds):
            if feed.url in seen:
                raise ValueError(f"feeds[{index}].url: duplicate of feeds[{seen[feed.url]}] ({feed.url})")
            seen[feed.url] = index
        paths: dict[str, int] = {}
        for index, output in enumerate(self.outputs):
            if output.path in paths:
                raise ValueError(f"outputs[{index}].path: duplicate of outputs[{paths[output.path]}]")
            paths[output.path] = index
        return self

    def resolve(self, path: str) -> Path:
        """A path from the file, made absolute against the config file's folder."""
        return self.base_dir / os.path.expanduser(path)

    @property
    def database_path(self) -> Path:
        """Where the SQLite store lives."""
        return self.resolve(self.database)

    def sources(self) -> tuple[FeedSource, ...]:
        """Every configured feed, in file order."""
        return tuple(feed.source() for feed in self.feeds)


def load_config(path: str | os.PathLike[str], database: str | None = None) -> Config:
    """Read and validate a feeds.yaml; `database` overrides its `database` key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error: {where}{problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    if "base_dir" in data:
        raise ConfigError(f"{path}: base_dir: unknown key")
    return parse_config(data, path, database)


def parse_config(data: dict[str, Any], path: Path, database: str | None = None) -> Config:
    """Validate already-loaded YAML data as if it came from `path`."""
    data = dict(data, base_dir=path.resolve().parent)
    if database is not None:
        data["database"] = str(Path(database).resolve())
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_first_problem(e)}") from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"]).lstrip(
        "."
    )
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "extra_forbidden":
        message = "unknown key"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"{where}: {message}{suffix}" if where else f"{message}{suffix}"
