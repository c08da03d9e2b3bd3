"""Serves the published outputs over HTTP: starlette routes, run by uvicorn in the caller's event loop.

A thin face: the files publish_outputs wrote are served as they are on disk (so a reader always gets a whole
old or a whole new file, never a partial one), each at `/feeds/<file name>` with its media type, a strong
ETag (a digest of the bytes) and Last-Modified (the file's mtime), and a 304 for a conditional request that
matches; gzipped, with the ETag of the gzipped bytes, for a client that accepts it. `/health` is JSON for
monitors; `/` is a small page (templates/index.html.j2) that links every output and advertises the feeds for
autodiscovery. uvicorn's
own signal handling is switched off: the service owns the signals.

Every client is a stranger too. uvicorn alone keeps an idle connection open for ever until its first request
and caps none, so 1,100 idle sockets once took every file descriptor of the process: /health failed and the
publisher could not open the database. Here at most `service.max_connections` are open (a new one closes the
longest idle one, so a flood of idle sockets cannot lock out a real request), each must send a complete
request within `service.request_timeout_seconds` of connecting or of its previous response, the soft limit on
file descriptors is raised to the hard one, and the cap is lowered, with a warning, when the descriptors left
could not hold it beside what the rest of the process needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import os
import resource
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import __version__
from .config import Config, OutputConfig
from .errors import AggregatorError, ConfigError
from .render import MEDIA_TYPES, ServedOutput, render_index

__all__ = [
    "CACHE_CONTROL",
    "LISTEN_BACKLOG",
    "Health",
    "HttpServer",
    "accepts_gzip",
    "create_app",
    "feed_path",
    "served_outputs",
]

log = logging.getLogger(__name__)

# Connections the kernel queues before we accept them; asyncio accepts up to this many at once, so it counts
# against the file descriptors too (see _fitting_connections).
LISTEN_BACKLOG = 512
# File descriptors a server needs beside its connections and the caller's reserve (the listening socket,
# logging, Python itself).
_BASE_DESCRIPTORS = 32

# Subscribers revalidate on every poll (a cheap 304 thanks to the ETag) instead of caching a stale story list.
CACHE_CONTROL = "public, no-cache"

Health = Callable[[], Mapping[str, Any]]


def feed_path(output: OutputConfig) -> str:
    """The URL path an output is served at: `/feeds/` and the output file's name."""
    return "/feeds/" + Path(output.path).name


def served_outputs(config: Config) -> dict[str, OutputConfig]:
    """Each output by the file name it is served under; two outputs with one file name are a config error."""
    served: dict[str, OutputConfig] = {}
    for index, output in enumerate(config.outputs):
        name = Path(output.path).name
        if name in served:
            raise ConfigError(f"outputs[{index}].path: the file name {name!r} is already served for another output")
        served[name] = output
    return served


def create_app(get_config: Callable[[], Config], health: Health) -> Starlette:
    """The HTTP app; `get_config` is asked on every request, so a reloaded config is served at once."""
    files = _FileCache()

    async def index(request: Request) -> Response:
        return HTMLResponse(_index_page(get_config()))

    async def feed(request: Request) -> Response:
        config = get_config()
        output = served_outputs(config).get(request.path_params["name"])
        if output is None:
            return PlainTextResponse("no such feed\n", status_code=404)
        published = files.get(config.resolve(output.path))
        if published is None:
            return PlainTextResponse("not published yet: the first update pass has not finished\n", 404)
        body, etag = published.body, published.etag
        headers = {"Last-Modified": published.last_modified, "Cache-Control": CACHE_CONTROL}
        if published.gzipped is not None:  # two representations: caches must key them by Accept-Encoding
            headers["Vary"] = "Accept-Encoding"
            if accepts_gzip(request.headers.get("accept-encoding", "")):
                body, etag = published.gzipped, published.gzipped_etag
        headers["ETag"] = etag
        if _not_modified(request, etag, published.mtime):
            return Response(status_code=304, headers=headers)
        if body is published.gzipped:
            headers["Content-Encoding"] = "gzip"
        media_type = MEDIA_TYPES[output.format] + "; charset=utf-8"  # every output format is UTF-8 text
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=media_type)
        return Response(body, headers=headers, media_type=media_type)

    async def health_check(request: Request) -> Response:
        data = dict(health())
        status = 503 if data.get("status") == "failing" else 200
        return Response(
            json.dumps(data, indent=2) + "\n",
            status_code=status,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return Starlette(
        routes=[
            Route("/", index, methods=["GET", "HEAD"]),
            Route("/feeds/{name}", feed, methods=["GET", "HEAD"]),
            Route("/health", health_check, methods=["GET", "HEAD"]),
        ]
    )


@dataclass(frozen=True, slots=True)
class _Published:
    body: bytes
    etag: str
    last_modified: str
    mtime: float
    # the body gzipped, with its own strong ETag (RFC 9110 8.8.3: another representation); None when
    # compressing does not make it smaller
    gzipped: bytes | None = None
    gzipped_etag: str = ""


class _FileCache:
    """Output files with their validators, re-read only when the file changed (publish renames a new one in).

    Each file is gzipped once when it is read, not on every request: the Atom output of 100 stories shrinks
    from 284 KB to about a fifth. Starlette's GZipMiddleware would compress every response again, and keep
    the identity body's ETag on the compressed one, so a cache could not tell the two apart.
    """

    def __init__(self) -> None:
        self._files: dict[Path, tuple[tuple[int, int, int], _Published]] = {}

    def get(self, path: Path) -> _Published | None:
        try:
            info = path.stat()
        except OSError:
            return None
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        cached = self._files.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            body = path.read_bytes()
        except OSError:
            return None
        gzipped: bytes | None = gzip.compress(body, mtime=0)  # mtime 0: the same bytes give the same gzip
        if gzipped is not None and len(gzipped) >= len(body):
            gzipped = None
        published = _Published(
            body=body,
            etag=_etag(body),
            last_modified=formatdate(info.st_mtime, usegmt=True),
            mtime=float(int(info.st_mtime)),
            gzipped=gzipped,
            gzipped_etag=_etag(gzipped) if gzipped is not None else "",
        )
        self._files[path] = (key, published)
        return published


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (RFC 9110 12.5.3): `gzip` (or `x-gzip`, else `*`) with a
    q-value above 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *parameters = item.split(";")
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights.setdefault(coding.strip().lower(), weight)
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present (weak comparison); else If-Modified-Since.

    By hand because Starlette has no such check for a response built in memory: StaticFiles compares its own
    ETags (of mtime and size, one per file, not per encoding) and GZipMiddleware keeps the identity body's ETag
    on the gzipped one; each output here has two representations, each with its own strong ETag.
    """
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        moment = parsedate_to_datetime(since)
    except (TypeError, ValueError, IndexError):
        return False
    return moment is not None and mtime <= moment.timestamp()


def _index_page(config: Config) -> str:
    outputs = [
        ServedOutput(
            href=f"/feeds/{name}", title=output.title, format=output.format, media_type=MEDIA_TYPES[output.format]
        )
        for name, output in served_outputs(config).items()
    ]
    return render_index(outputs, __version__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: SIGTERM, SIGINT and SIGHUP belong to the service."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _LimitedH11(H11Protocol):
    """uvicorn's h11 protocol with a cap on open connections and a deadline for every request to arrive.

    The cap closes the connection that has been idle longest (no request in progress) when one more arrives
    over it, so idle sockets cannot lock out a client that asks for something; only when every connection is
    busy is the new one closed. The deadline runs from the connection (or the end of the previous response)
    until a complete request head: silence, or a request trickled a byte at a time, is closed at the deadline.
    """

    max_connections = 256
    request_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection, start its deadline, and make room if it is one too many."""
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._deadline = self.loop.call_later(self.request_timeout, self._request_overdue)
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        self._deadline.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """A response went out: the next request gets a new deadline."""
        super().on_response_complete()
        self._idle_since = self.loop.time()
        self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._request_overdue)

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _request_overdue(self) -> None:
        if not self._busy() and not self.transport.is_closing():
            self.transport.close()

    def _make_room(self) -> None:
        idle = [c for c in self.connections if isinstance(c, _LimitedH11) and not c._busy()]
        oldest = min(idle, key=lambda connection: connection._idle_since, default=self)
        log.warning(
            "%d connections open, the most allowed (service.max_connections): closing the longest idle one",
            self.max_connections,
        )
        oldest.connections.discard(oldest)  # no longer counted (by uvicorn's 503 limit too) while it closes
        oldest.transport.close()


class HttpServer:
    """One uvicorn server for `app` in the running event loop; `start()` binds or raises, `stop()` ends it.

    `reserved_descriptors` is what the rest of the process may hold open at once (fetches, the database,
    workers): the connection cap is lowered, if need be, so that both fit in the file descriptor limit.
    """

    def __init__(
        self,
        app: Starlette,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        max_connections: int = 256,
        request_timeout: float = 10.0,
        reserved_descriptors: int = 0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.reserved_descriptors = reserved_descriptors
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The host and port actually listened on (port 0 asks the system for a free one)."""
        if self._socket is None:
            raise RuntimeError("the server is not started")
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    async def start(self, timeout: float = 10.0) -> None:
        """Listen on host:port and serve in the background; an address in use is an AggregatorError."""
        self._socket = _bind(self.host, self.port)
        backlog = min(LISTEN_BACKLOG, self.max_connections)
        cap = _fitting_connections(self.max_connections, self.reserved_descriptors + backlog)
        protocol = type("_Limited", (_LimitedH11,), {"max_connections": cap, "request_timeout": self.request_timeout})
        config = uvicorn.Config(
            self.app,
            http=protocol,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=3,
            timeout_keep_alive=5,  # idle between two requests of one connection (the request deadline bounds it too)
            # uvicorn answers 503 once its count reaches the limit, the asking connection included; our cap
            # has closed an idle one before, so this only sheds requests beyond one per connection
            limit_concurrency=cap + 1,
            backlog=backlog,
        )
        self._server = _Uvicorn(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="http-server")
        async with asyncio.timeout(timeout):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise AggregatorError(f"cannot serve on {self.host}:{self.port}: the server stopped at once")
                await asyncio.sleep(0.01)
        host, port = self.address
        log.info(
            "serving on http://%s:%d/ (at most %d connections)", host if ":" not in host else f"[{host}]", port, cap
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let open requests finish for up to `timeout` seconds, then close."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = None


def _fitting_connections(wanted: int, reserved: int) -> int:
    """The connection cap that fits in the file descriptors left beside `reserved` (at least 1).

    The soft limit is raised to the hard one first (systemd's LimitNOFILE sets both; a shell's `ulimit -n`
    often leaves the soft one at 1,024).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    room = soft - _open_descriptors() - reserved - _BASE_DESCRIPTORS
    cap = max(1, min(wanted, room))
    if cap < wanted:
        log.warning(
            "only %d file descriptors (ulimit -n): serving at most %d connections at once instead of %d "
            "(service.max_connections), so that fetching and the database keep theirs; raise LimitNOFILE",
            soft, cap, wanted,
        )  # fmt: skip
    return cap


def _open_descriptors() -> int:
    """File descriptors this process holds now (0 where /proc or /dev/fd cannot tell)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A bound socket, so a taken port is reported here in one line (uvicorn would exit the process)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as e:
        raise AggregatorError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise AggregatorError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
