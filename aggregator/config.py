"""feeds.yaml -> validated settings.

The file's keys are a public contract, so every mistake is reported in one line that names the file, the key
path (`feeds[3].url`) and the problem. Relative paths are resolved against the config file's folder.

The settings are msgspec Structs: frozen, unknown keys refused, bounds checked as the YAML is converted, and
the checks that span keys in `__post_init__`. (pydantic did the same and cost 0.25 s of start-up, a quarter of
a warm `aggregator update`; msgspec costs 0.04 s.)
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from .errors import ConfigError
from .models import FeedSource

__all__ = [
    "Config",
    "DedupSettings",
    "FeedConfig",
    "FetchSettings",
    "OutputConfig",
    "OutputFormat",
    "RetentionSettings",
    "ServiceSettings",
    "address_problem",
    "load_config",
    "parse_config",
    "parse_config_text",
    "url_host_problem",
]

# libyaml's loader when PyYAML was built with it: four times faster on a feeds.yaml of 10,000 feeds.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

OutputFormat = Literal["atom", "rss", "json", "html", "opml"]


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A section of feeds.yaml: immutable, unknown keys refused."""


def _check_http_url(url: str, key: str) -> None:
    """Refuse (naming the `key`) a URL that is not http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{key}: {url!r} is not an http or https URL")
    if not parts.hostname:
        raise ValueError(f"{key}: {url!r} has no host")


def address_problem(address: str) -> str | None:
    """Why an IP address is not a public internet address ("a loopback address", ...), or None if it is.

    An IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`)
    is judged by the IPv4 address it leads to: `2002:7f00:1::` is loopback. Teredo (`2001::/32`) and the other
    special ranges are never public.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return None
    where = ""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        where = f", inside the {embedded[1]} address {ip}" if embedded[1] else ""
        ip = embedded[0]
    for kind, flag in (
        ("a loopback address", ip.is_loopback),
        ("an unspecified address", ip.is_unspecified),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved or not ip.is_global),
    ):
        if flag:
            return f"{kind} ({ip}{where})"
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: the last 32 bits are IPv4


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address leads to, and the kind of embedding ("" for IPv4-mapped); else None."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, ""
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    return None


def url_host_problem(url: str) -> str | None:
    """Why a URL's host is not on the public internet, judged without DNS (IP literals and localhost names)."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"a loopback host name ({host})"
    return address_problem(host)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _to_seconds(value: Any) -> float:
    """A duration from feeds.yaml in seconds: a bare number is minutes; a string may say `90s`, `30m`, `2h`, `1d`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30 (minutes), '90s', '30m' or '2h'")
    if isinstance(value, int | float):
        seconds = float(value) * 60
    else:
        found = _DURATION_RE.match(str(value))
        if not found:
            raise ValueError(f"{value!r} is not a duration such as 30 (minutes), '90s', '30m' or '2h'")
        seconds = float(found.group(1)) * _DURATION_UNITS[(found.group(2) or "m").lower()]
    if seconds <= 0:
        raise ValueError("a duration must be more than zero")
    return seconds


# The keys that hold durations: in the file a number of minutes or a string with a unit, in the settings
# seconds (parse_config converts them before the rest is checked).
_DURATION_KEYS = ("interval", "min_interval")


def _with_seconds(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with every duration of feeds.yaml in seconds; a ConfigError-ready `_Problem` names a bad one."""
    data = dict(data)
    for key in _DURATION_KEYS:
        if key in data:
            data[key] = _seconds_at(key, data[key])
    feeds = data.get("feeds")
    if isinstance(feeds, list):
        data["feeds"] = [
            dict(feed, interval=_seconds_at(f"feeds[{index}].interval", feed["interval"]))
            if isinstance(feed, dict) and feed.get("interval") is not None
            else feed
            for index, feed in enumerate(feeds)
        ]
    return data


def _seconds_at(where: str, value: Any) -> float:
    try:
        return _to_seconds(value)
    except ValueError as e:
        raise _Problem(f"{where}: {e}") from None


class FeedConfig(_Strict, frozen=True):
    """One entry of `feeds:`."""

    url: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    priority: int = 0
    # polling of this feed (service): override the top-level `interval` and `adaptive`
    interval: float | None = None  # seconds
    adaptive: bool | None = None

    def __post_init__(self) -> None:
        _check_http_url(self.url, "url")

    def source(self) -> FeedSource:
        """The feed as the pipeline sees it."""
        return FeedSource(url=self.url, title=self.title, tags=self.tags, priority=self.priority)


class OutputConfig(_Strict, frozen=True):
    """One entry of `outputs:`: a file the publisher writes."""

    path: str
    format: OutputFormat = "atom"
    title: str = "Aggregated news"
    description: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    url: str | None = None
    tags: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    min_sources: Annotated[int, msgspec.Meta(ge=1)] = 1
    max_age_hours: Annotated[float, msgspec.Meta(gt=0)] | None = None
    hub: str | None = None

    def __post_init__(self) -> None:
        for name, url in (("url", self.url), ("hub", self.hub)):
            if url is not None:
                _check_http_url(url, name)


class FetchSettings(_Strict, frozen=True):
    """How politely and how hard we fetch."""

    concurrency: Annotated[int, msgspec.Meta(ge=1, le=512)] = 16
    per_host: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    connect_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    read_timeout: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    deadline: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    max_feed_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 10 * 1024 * 1024
    user_agent: str | None = None
    # seconds between the starts of two requests to one host; 0 sends them as soon as `per_host` allows
    min_host_spacing: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0


class DedupSettings(_Strict, frozen=True):
    """Story clustering settings; the defaults are measured, see dedup.py."""

    window_hours: Annotated[float, msgspec.Meta(gt=0)] = 72.0
    threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    title_only_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    decay_hours: Annotated[float, msgspec.Meta(gt=0)] | None = None


class RetentionSettings(_Strict, frozen=True):
    """How long entries stay in the store; `keep_days` None keeps them forever."""

    # Stories that an output still shows are kept whatever their age (see retention.py).
    keep_days: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ServiceSettings(_Strict, frozen=True):
    """`aggregator run` and `aggregator serve`: where to listen and how to stop."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    # seconds in-flight fetches get to finish after SIGTERM/SIGINT before they are cancelled
    grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    # seconds between checks of feeds.yaml for changes (reloaded like SIGHUP); 0 turns the check off
    reload_check_seconds: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    # new entries are clustered and the outputs rewritten at most this often (and at most this late)
    publish_debounce_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    # HTTP connections open at once (over it, the longest idle one is closed), and how long a connection may
    # take to send a complete request, from connecting or from its previous response
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    request_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0


class Config(_Strict, frozen=True):
    """The whole of feeds.yaml."""

    database: str = "aggregator.db"
    site_url: str | None = None
    outputs: tuple[OutputConfig, ...] = ()
    feeds: tuple[FeedConfig, ...] = ()
    fetch: FetchSettings = msgspec.field(default_factory=FetchSettings)
    dedup: DedupSettings = msgspec.field(default_factory=DedupSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    # polling (service): seconds after validation; see schedule.py for how they combine
    interval: float = 30 * 60.0  # seconds
    min_interval: float = 5 * 60.0
    adaptive: bool = False
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    service: ServiceSettings = msgspec.field(default_factory=ServiceSettings)
    # feeds on loopback, private or link-local addresses (checked on every connection, redirects included);
    # true allows them only at the host feeds.yaml names for a feed, never after a redirect to another host;
    # `aggregator add` and `import-opml` check new feeds as if this were false
    allow_private_addresses: bool = True
    # outputs whose path leads outside the folder of feeds.yaml (`../`, absolute paths)
    allow_outputs_outside: bool = False
    base_dir: Path = Path(".")

    def __post_init__(self) -> None:
        self._unique()
        self._floor()
        self._where()

    def _unique(self) -> None:
        seen: dict[str, int] = {}
        for index, feed in enumerate(self.feeds):
            if feed.url in seen:
                raise _Problem(f"feeds[{index}].url: duplicate of feeds[{seen[feed.url]}] ({feed.url})")
            seen[feed.url] = index
        paths: dict[str, int] = {}
        for index, output in enumerate(self.outputs):
            if output.path in paths:
                raise _Problem(f"outputs[{index}].path: duplicate of outputs[{paths[output.path]}]")
            paths[output.path] = index

    def _floor(self) -> None:
        # polling faster than min_interval must be asked for explicitly, by lowering min_interval itself
        interval, floor = self.interval, self.min_interval
        if interval < floor:
            raise _Problem(
                f"interval: {interval:g} s is below min_interval ({floor:g} s); lower min_interval to allow it"
            )
        for index, feed in enumerate(self.feeds):
            if feed.interval is not None and feed.interval < floor:
                raise _Problem(
                    f"feeds[{index}].interval: {feed.interval:g} s is below min_interval ({floor:g} s); "
                    "lower min_interval to allow it"
                )

    def _where(self) -> None:
        if not self.allow_private_addresses:
            for index, feed in enumerate(self.feeds):
                problem = url_host_problem(feed.url)
                if problem:
                    raise _Problem(
                        f"feeds[{index}].url: {feed.url}: its host is {problem}; "
                        "set allow_private_addresses: true to allow it"
                    )
        if not self.allow_outputs_outside:
            root = self.base_dir.resolve()
            for index, output in enumerate(self.outputs):
                # symlinks followed: `public -> /etc` leads outside, whatever the path says
                target = (root / os.path.expanduser(output.path)).resolve()
                if not target.is_relative_to(root):
                    raise _Problem(
                        f"outputs[{index}].path: {output.path} is outside the folder of the config file "
                        f"({root}); set allow_outputs_outside: true to allow it"
                    )

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
        # a newcomer's first `aggregator update` in an empty folder: say how to start one
        raise ConfigError(f"{path}: file not found (`aggregator add URL` starts one; --config names another)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    return parse_config_text(text, path, database)


def parse_config_text(text: str, path: Path, database: str | None = None) -> Config:
    """Validate the text of a feeds.yaml as if it were the content of `path` (used before writing one)."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)
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
        config = msgspec.convert(_with_seconds(data), Config, strict=False, dec_hook=_decode_path)
    except _Problem as e:
        raise ConfigError(f"{path}: {e}") from None
    except msgspec.ValidationError as e:
        raise ConfigError(f"{path}: {_located(e)}") from None
    _check_output_targets(config, path)
    return config


# Files beside a SQLite database in WAL mode (and in rollback mode), which an output must not replace either.
_DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _check_output_targets(config: Config, path: Path) -> None:
    """Refuse an output that would replace the database (or its -wal/-shm), this config file or another
    output, or that is already something other than a regular file (a FIFO would hang publishing).

    Paths are compared with symlinks followed, so a link cannot lead an output onto one of them.
    """
    database = config.database_path.resolve()
    protected = {Path(f"{database}{suffix}"): f"the database ({config.database_path})" for suffix in _DATABASE_SUFFIXES}
    protected[path.resolve()] = "the config file itself"
    for index, output in enumerate(config.outputs):
        target = config.resolve(output.path).resolve()
        problem = protected.get(target) or _not_a_file(target)
        if problem:
            raise ConfigError(f"{path}: outputs[{index}].path: {output.path} is {problem}; choose another path")
        protected[target] = f"outputs[{index}].path too"


def _not_a_file(target: Path) -> str | None:
    """What is at `target` when it exists and is not a regular file."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return None  # nothing there yet (or nothing we can see): publishing creates it
    if stat.S_ISREG(mode):
        return None
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
    return f"{kind}, not a regular file"


class _Problem(ValueError):
    """A problem that spans keys, raised by Config's `__post_init__` with its key path in the message (msgspec
    reports it at the top level, where our key path is the whole of it)."""


def _decode_path(kind: type, value: Any) -> Any:
    """msgspec's hook for the one type it does not convert itself: `base_dir`, a Path."""
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise NotImplementedError


# msgspec's messages end in " - at `$.feeds[0].url`"; ours start with the key path.
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<where>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_OWN_KEY = re.compile(r"^(?P<key>[a-z_]+): (?P<rest>.*)$", re.S)
# msgspec names types as JSON does; a feeds.yaml writer knows them as YAML shows them
_TYPE_NAMES = {
    "int": "an integer", "float": "a number", "bool": "true or false", "str": "text", "array": "a list",
    "object": "a mapping of keys", "null": "nothing",
}  # fmt: skip
_TYPE = re.compile(r"(?P<verb>Expected|got) `(?P<name>[a-z]+)`")


def _located(error: msgspec.ValidationError) -> str:
    """`key.path: problem` from msgspec's "problem - at `$.key.path`"."""
    found = _AT.match(str(error))
    assert found is not None
    message, where = found.group("message"), (found.group("where") or "").lstrip(".")
    unknown = _UNKNOWN.match(message)
    if unknown:
        where, message = f"{where}.{unknown.group('key')}".lstrip("."), "unknown key"
    message = _TYPE.sub(lambda m: f"{m['verb'].lower()} {_TYPE_NAMES.get(m['name'], m['name'])}", message)
    own = _OWN_KEY.match(message)
    if own:  # a check of ours inside a section named its key: `feeds[3]` + `url: ...`
        where, message = f"{where}.{own.group('key')}".lstrip("."), own.group("rest")
    return f"{where}: {message}" if where else message
