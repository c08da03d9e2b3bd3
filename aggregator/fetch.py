"""Conditional GET of feeds over one shared httpx.AsyncClient -> FetchResult.

The only module that speaks HTTP. Every failure becomes a FetchResult with status FAILED and a one-line
message; nothing here raises for a bad feed. Every server is a stranger, so every resource is bounded:

- a total deadline per fetch (`fetch.deadline`), not only per-read timeouts, so a server that sends one byte
  a second (slowloris) or never answers is cut off;
- the body is streamed and capped (`fetch.max_feed_bytes`) after decompression, which we do ourselves in
  bounded steps, so a gzip or deflate bomb stops at the cap instead of inflating in memory;
- redirects are followed by hand, at most MAX_REDIRECTS, only to http(s) URLs, without reading the bodies of
  the redirect responses;
- host names are resolved by us before connecting (_GuardedBackend, under httpx through httpcore's public
  network-backend API: _GuardedTransport), so the address actually dialled can be checked, and a DNS
  failure reads as one. A feed may reach a loopback, private, link-local or reserved address only at the host
  feeds.yaml names for it, and only with `allow_private_addresses` true: every other connection (a redirect
  to another host, whatever its DNS answers) goes through a client that dials public addresses only, so a
  public feed can never lead us into the local network. Connections of the two never share a pool.
- proxies from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) are not used, and a warning says so: a
  proxy would dial addresses we cannot check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import select
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import getproxies

import httpcore
import httpx

from . import __version__
from .config import FetchSettings, address_problem
from .errors import FetchError
from .models import FeedState, FetchResult, FetchStatus

__all__ = ["MAX_REDIRECTS", "USER_AGENT", "Fetcher"]

log = logging.getLogger(__name__)

USER_AGENT = f"aggregator/{__version__} (news feed aggregator; +https://pypi.org/project/aggregator/)"
MAX_REDIRECTS = 5
# Response headers later stages use: charset detection (parse), caching hints and Retry-After (service).
_KEPT_HEADERS = frozenset(
    {"content-type", "content-location", "content-language", "etag", "last-modified", "cache-control",
     "expires", "retry-after", "date", "location"}
)  # fmt: skip
_PERMANENT = frozenset({301, 308})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# We decompress ourselves (see _Inflater), so we only offer what zlib reads.
_ACCEPT_ENCODING = "gzip, deflate"
# Most bytes one decompression step may produce: the cap is checked between steps, so a bomb never
# inflates more than this past it.
_INFLATE_STEP = 64 * 1024


class Fetcher:
    """Fetches feeds with bounded concurrency overall and per host; use as an async context manager.

    `allow_private_addresses` has no default, so no caller can forget it: the config's setting for the feeds
    of feeds.yaml, False for a URL someone typed (`aggregator add`) unless they said otherwise. `refusal_hint`
    ends the line of a fetch refused for that: what the user can do about it (`add` names --allow-private).
    """

    def __init__(
        self,
        settings: FetchSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        allow_private_addresses: bool,
        refusal_hint: str = "and allow_private_addresses is false",
    ) -> None:
        self.settings = settings
        self.allow_private_addresses = allow_private_addresses
        self.refusal_hint = refusal_hint
        if transport is None:
            _warn_about_proxies()
            self._public = self._client(_GuardedTransport(settings, private_ok=False))
            inside = _GuardedTransport(settings, private_ok=True) if allow_private_addresses else None
            self._inside = self._client(inside) if inside is not None else self._public
        else:  # a test's or an embedder's transport: the network is theirs, nothing here to guard
            self._public = self._inside = self._client(transport)
        self._overall = asyncio.Semaphore(settings.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._host_turns: dict[str, asyncio.Lock] = {}
        self._host_next_start: dict[str, float] = {}

    def _client(self, transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,  # followed by hand in _get: capped, checked, bodies unread
            event_hooks={"response": [_hold_location]},
            trust_env=False,  # no proxy from the environment (see _warn_about_proxies), no .netrc
            timeout=httpx.Timeout(self.settings.read_timeout, connect=self.settings.connect_timeout),
            headers={
                "User-Agent": self.settings.user_agent or USER_AGENT,
                "Accept": _ACCEPT,
                "Accept-Encoding": _ACCEPT_ENCODING,
            },
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._public.aclose()
        if self._inside is not self._public:
            await self._inside.aclose()

    async def fetch(self, state: FeedState, *, named_url: str | None = None) -> FetchResult:
        """GET one feed, conditionally on what `state` remembers; never raises for a bad feed.

        Only the host of `named_url` (default: the feed's own URL, as feeds.yaml names it) may be on a private
        network, and only when private addresses are allowed; `aggregator add` names the URL that was typed,
        so a page cannot advertise a feed on another host of the local network.
        """
        host = urlsplit(state.url).hostname or ""
        per_host = self._hosts.setdefault(host, asyncio.Semaphore(self.settings.per_host))
        async with per_host:
            await self._wait_for_turn(host)
            async with self._overall:
                return await self._fetch_now(state, _host_of(named_url or state.url))

    async def _wait_for_turn(self, host: str) -> None:
        """Keep `min_host_spacing` seconds between the starts of two requests to one host."""
        spacing = self.settings.min_host_spacing
        if spacing <= 0:
            return
        loop = asyncio.get_running_loop()
        async with self._host_turns.setdefault(host, asyncio.Lock()):
            wait = self._host_next_start.get(host, 0.0) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._host_next_start[host] = loop.time() + spacing

    async def _fetch_now(self, state: FeedState, own_host: str | None) -> FetchResult:
        started = time.perf_counter()
        progress = _Progress()
        try:
            async with asyncio.timeout(self.settings.deadline):
                result = await self._get(state, own_host, progress)
        except FetchError as e:
            result = FetchResult(state.url, FetchStatus.FAILED, http_status=e.http_status, error=str(e))
        except TimeoutError:
            result = FetchResult(
                state.url,
                FetchStatus.FAILED,
                http_status=progress.status,
                error=f"timed out: no complete answer within the {self.settings.deadline:g} s deadline "
                f"({progress.describe()})",
            )
        return replace(result, elapsed_ms=(time.perf_counter() - started) * 1000)

    async def _get(self, state: FeedState, own_host: str | None, progress: _Progress) -> FetchResult:
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        url = state.url
        chain: list[str] = [url]
        statuses: list[int] = []
        while True:
            redirected = len(chain) > 1
            # the feed's own host may be inside (if allowed); any other host is dialled by the public client
            client = self._inside if own_host is not None and _host_of(url) == own_host else self._public
            _check_host(url, redirected)
            try:
                request = client.build_request("GET", url, headers=headers)
                response = await client.send(request, stream=True)
            except _Refused as e:
                raise FetchError(self._refusal(e, url if redirected else None, own_host)) from None
            except httpx.HTTPError as e:
                raise FetchError(self._transport_message(e, progress)) from None
            except (httpx.InvalidURL, UnicodeError, ValueError) as e:  # idna rejects some hosts only when used
                where = "redirect to an invalid URL" if redirected else "invalid URL"
                raise FetchError(f"{where} {url[:200]!r}: {_reason(e)}") from None
            try:
                progress.status = response.status_code
                location = response.extensions.get(_LOCATION)
                if location is not None:
                    url = _redirect_target(url, location, chain)
                    chain.append(url)
                    statuses.append(response.status_code)
                    continue  # the redirect's body is never read; `finally` closes the response
                return await self._finish(state, response, statuses, progress)
            except httpx.HTTPError as e:
                raise FetchError(self._transport_message(e, progress), response.status_code) from None
            finally:
                await response.aclose()

    def _refusal(self, refused: _Refused, redirect: str | None, own_host: str | None) -> str:
        where = f"redirect to {redirect[:200]}: " if redirect else ""
        if not self.allow_private_addresses:
            return f"refused: {where}{refused.what}, {self.refusal_hint}"
        return f"refused: {where}{refused.what}; only the feed's own host ({own_host}) may be on a private network"

    async def _finish(
        self, state: FeedState, response: httpx.Response, redirects: list[int], progress: _Progress
    ) -> FetchResult:
        common: dict[str, Any] = {
            "http_status": response.status_code,
            "final_url": str(response.url),
            "headers": _kept_headers(response.headers),
            "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"),
            "permanent_redirect": bool(redirects) and all(code in _PERMANENT for code in redirects),
        }
        if response.status_code == 304:
            # a 304 may omit validators; keep the ones we sent
            common["etag"] = common["etag"] or state.etag
            common["last_modified"] = common["last_modified"] or state.last_modified
            # A 304 has no body, but until it is read httpcore cannot tell the message ended and closes the
            # connection: reading it keeps the connection alive for the next poll of the host.
            await response.aread()
            return FetchResult(state.url, FetchStatus.NOT_MODIFIED, **common)
        if response.status_code != 200:
            return FetchResult(state.url, FetchStatus.FAILED, error=_status_message(response), **common)
        body = await self._read_capped(response, progress)
        return FetchResult(state.url, FetchStatus.OK, body=body, **common)

    async def _read_capped(self, response: httpx.Response, progress: _Progress) -> bytes:
        cap = self.settings.max_feed_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(
                f"body too large: Content-Length is {int(declared):,} bytes, more than max_feed_bytes "
                f"({cap:,}); not read",
                200,
            )
        inflater = _Inflater(response.headers.get("content-encoding", ""))
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            progress.received += len(raw)
            for chunk in inflater.feed(raw):
                size += len(chunk)
                if size > cap:
                    raise FetchError(_too_large(cap, progress, inflater.coding), 200)
                chunks.append(chunk)
        for chunk in inflater.flush():
            size += len(chunk)
            if size > cap:
                raise FetchError(_too_large(cap, progress, inflater.coding), 200)
            chunks.append(chunk)
        return b"".join(chunks)

    def _transport_message(self, error: httpx.HTTPError, progress: _Progress) -> str:
        reason = _reason(error) if str(error) else _os_reason(error) or type(error).__name__
        if isinstance(error, httpx.ConnectTimeout):
            return f"connect timed out after {self.settings.connect_timeout:g} s"
        if isinstance(error, httpx.ReadTimeout):
            return f"read timed out: nothing received for {self.settings.read_timeout:g} s ({progress.describe()})"
        if isinstance(error, httpx.ConnectError):
            tls = _tls_error(error)
            if tls is not None:
                return f"TLS handshake failed: {_reason(tls)}"
            return f"cannot connect: {_os_reason(error) or reason}"
        if isinstance(error, httpx.RemoteProtocolError) and not reason.startswith(_DISCONNECTED):
            if "b'location:" in reason.lower():  # h11 refuses a whole response for a Location line it cannot read
                return f"redirect to an invalid URL: the server sent an {reason}"
            return f"invalid HTTP response ({progress.describe()}): {reason}"
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
            if progress.status is None:
                return f"connection lost before a response: {reason}"
            return f"connection lost while reading the body ({progress.describe()}): {reason}"
        if isinstance(error, httpx.UnsupportedProtocol):
            return f"unsupported URL: {reason}"
        return f"{type(error).__name__}: {reason}"


# How httpcore and h11 word a peer that hung up, as opposed to one that sent something invalid.
_DISCONNECTED = ("Server disconnected", "peer closed connection")


@dataclass(slots=True)
class _Progress:
    """How far one fetch got, for the message when it fails part-way."""

    status: int | None = None
    received: int = 0

    def describe(self) -> str:
        if self.status is None:
            return "no response yet"
        return f"HTTP {self.status}, {self.received:,} bytes of body received"


class _Inflater:
    """Content-Encoding decoding in bounded steps (gzip, deflate, identity); unknown codings are refused."""

    def __init__(self, header: str) -> None:
        codings = [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]
        if len(codings) > 1:
            raise FetchError(f"unsupported Content-Encoding {header!r}: more than one coding", 200)
        self.coding = codings[0] if codings else "identity"
        self._wbits: int | None
        if self.coding in ("gzip", "x-gzip"):
            self._wbits = 16 + zlib.MAX_WBITS
        elif self.coding == "deflate":
            self._wbits = zlib.MAX_WBITS  # zlib-wrapped as the standard says; raw deflate tried on failure
        elif self.coding == "identity":
            self._wbits = None
        else:
            raise FetchError(f"unsupported Content-Encoding {self.coding!r} (we asked for gzip or deflate)", 200)
        self._decompressor = zlib.decompressobj(self._wbits) if self._wbits is not None else None
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded bytes of one raw chunk, in pieces of at most _INFLATE_STEP bytes."""
        if self._decompressor is None:
            if data:
                yield data
            return
        while data or not self._started:
            try:
                out = self._decompressor.decompress(data, _INFLATE_STEP)
            except zlib.error as e:
                if self.coding == "deflate" and not self._started:
                    # some servers send raw deflate streams without the zlib header
                    self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._started = True
                    continue
                raise FetchError(f"cannot decompress the {self.coding} body: {e}", 200) from None
            self._started = True
            data = self._decompressor.unconsumed_tail
            if out:
                yield out
            if self._decompressor.eof:
                return  # bytes after the end of the compressed stream are ignored, as browsers do
            if not data and len(out) < _INFLATE_STEP:
                return

    def flush(self) -> Iterator[bytes]:
        """Whatever the decompressor still holds (at most its window) at the end of the body."""
        if self._decompressor is not None and not self._decompressor.eof:
            try:
                rest = self._decompressor.flush()
            except zlib.error as e:
                raise FetchError(f"cannot decompress the {self.coding} body: {e}", 200) from None
            if rest:
                yield rest


class _Refused(FetchError):
    """A connection that may dial public addresses only was about to dial another kind."""

    def __init__(self, host: str, address: str, problem: str) -> None:
        verb = "is" if host.strip("[]") == address else "resolves to"
        self.what = f"{host} {verb} {problem}"
        super().__init__(f"refused: {self.what}")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with our own name resolution in front of every connection.

    Resolving here lets us check the address we are about to dial (DNS names included, and every redirect)
    when only public addresses may be dialled (`private_ok` False), answer names under `.invalid` at once as
    RFC 6761 asks, and report a DNS failure as one. The address checked is the address dialled, so a DNS
    answer that changes between two lookups (rebinding) changes nothing. The TLS layer still verifies the
    certificate against the host name, not the address.
    """

    def __init__(self, private_ok: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._private_ok = private_ok

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port)
        if not self._private_ok:
            for address in addresses:
                problem = address_problem(address)
                if problem:
                    raise _Refused(host, address, problem)
        last: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
                return _QuickStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - we never dial unix sockets
        return await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _QuickStream(httpcore.AsyncNetworkStream):
    """A network stream that answers httpcore's question "is this idle connection readable?" from its socket.

    httpcore asks it of every pooled connection whenever it hands out one, and the AnyIO stream answers
    through a lookup that builds a dict of attributes each time: a third of a pass of 1,000 feeds answering
    304 went there. Everything else is the wrapped stream's.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _QuickStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket) -> bool:
    """Whether a read would not block (data, or the peer's close); a closed socket counts as readable."""
    fd = sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in resolver order, without duplicates; FetchError when it has none."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "invalid" or name.endswith(".invalid"):
        # RFC 6761 6.4: resolvers should answer names under .invalid negatively at once; glibc asks the
        # network anyway, so we answer here.
        raise FetchError(f"cannot resolve host {host}: names under .invalid never exist (RFC 6761)")
    try:
        ipaddress.ip_address(name.split("%")[0])
        return [name]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FetchError(f"cannot resolve host {host}: {e.strerror or e}") from None
    except UnicodeError:
        raise FetchError(f"cannot resolve host {host}: not a valid host name") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:  # pragma: no cover - getaddrinfo raises rather than answer nothing
        raise FetchError(f"cannot resolve host {host}: no addresses")
    return addresses


@cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CA bundle), made once: loading the bundle takes ~30 ms, and every
    Fetcher has two transports (public and inside)."""
    return httpx.create_ssl_context()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's transport over an httpcore connection pool whose connections _GuardedBackend makes.

    httpx's own AsyncHTTPTransport takes no network backend, so this is the same adapter on the public APIs of
    both (an httpx custom transport; httpcore's `network_backend`): requests go to the pool as httpcore
    requests, and httpcore's exceptions come back as httpx's, the most specific one that fits, while the
    response is read too.
    """

    def __init__(self, settings: FetchSettings, *, private_ok: bool) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=settings.concurrency,
            max_keepalive_connections=settings.concurrency,
            keepalive_expiry=5.0,  # httpx's default
            network_backend=_GuardedBackend(private_ok),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the pool; the response's body is streamed."""
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        with _httpx_errors():
            await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    """An httpcore response body read as an httpx stream, its errors as httpx's."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


# httpcore's exceptions and the httpx ones they become (as httpx's own transport maps them).
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """An httpcore exception inside becomes the most specific httpx exception for it; others pass unchanged."""
    try:
        yield
    except Exception as error:
        mapped: type[httpx.HTTPError] | None = None
        for core, ours in _HTTPX_ERRORS:
            if isinstance(error, core) and (mapped is None or issubclass(ours, mapped)):
                mapped = ours
        if mapped is None:
            raise
        raise mapped(str(error)) from error


def _warn_about_proxies() -> None:
    """Say so when the environment names a proxy: we never use one, since it would dial what we cannot check."""
    proxies = {scheme for scheme in ("http", "https", "all") if getproxies().get(scheme)}
    if proxies:
        names = ", ".join(f"{scheme.upper()}_PROXY" for scheme in sorted(proxies))
        log.warning(
            "ignoring %s from the environment: feeds are fetched directly, so that every address dialled can be "
            "checked (a proxy would resolve and dial names itself)",
            names,
        )


# Where _hold_location puts a redirect's Location header.
_LOCATION = "aggregator.location"


async def _hold_location(response: httpx.Response) -> None:
    """Take a redirect's Location away from httpx before it prepares the next request we never send.

    httpx parses the target of every redirect, even with follow_redirects off, and some hosts (`xn--a.com`)
    make it raise an IDNA error from inside `send`; _redirect_target checks the target instead.
    """
    if response.status_code in _REDIRECTS and "location" in response.headers:
        response.extensions[_LOCATION] = response.headers["location"]
        del response.headers["location"]


def _host_of(url: str) -> str | None:
    """A URL's host for comparison: lowercase, without a trailing dot; None when it has none."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


# One label of a host name as resolvers accept it (underscores occur in real names; IDNA is already encoded).
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


def _check_host(url: str, redirected: bool) -> None:
    """Refuse a URL whose host no resolver could answer (a space, an empty label, bad IDNA) before any lookup."""
    try:
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018 - httpx decodes IDNA labels only when asked, and raises for bad ones (xn--a.com)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError) as e:
        problem: str | None = _reason(e)
    else:
        labels = host.removesuffix(".").split(".")
        valid = ":" in host or (len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels))
        problem = None if valid else "not a valid host name"  # IPv6 literals (":") httpx has checked
    if problem is not None:
        where = "redirect to an invalid URL" if redirected else "invalid URL"
        raise FetchError(f"{where} {url[:200]!r}: {problem}")


def _redirect_target(current: str, location: str, chain: list[str]) -> str:
    try:
        target = urljoin(current, location.strip())
        parts = urlsplit(target)
    except ValueError:
        raise FetchError(f"redirect to an invalid URL {location[:200]!r}") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"redirect to {target[:200]!r} refused: not an http or https URL")
    if not parts.hostname:
        raise FetchError(f"redirect to {target[:200]!r} refused: no host")
    if target in chain:
        raise FetchError(f"redirect loop: {' -> '.join([*chain[chain.index(target) :], target])}"[:500])
    if len(chain) > MAX_REDIRECTS:
        raise FetchError(f"more than {MAX_REDIRECTS} redirects (from {chain[0]} to {chain[-1]}, and on)")
    return target


_ACCEPT = (
    "application/atom+xml, application/rss+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


def _kept_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((key.lower(), value) for key, value in headers.items() if key.lower() in _KEPT_HEADERS)


def _status_message(response: httpx.Response) -> str:
    message = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    retry_after = response.headers.get("retry-after")
    if retry_after:
        message += f" (Retry-After: {retry_after.strip()[:100]})"
    if response.status_code == 410:
        message += ": the feed is gone for good"
    return message


def _too_large(cap: int, progress: _Progress, coding: str) -> str:
    if coding == "identity":
        return f"body too large: more than max_feed_bytes ({cap:,}); stopped after {progress.received:,} bytes"
    return (
        f"body too large: more than max_feed_bytes ({cap:,}) once {coding}-decoded; stopped after "
        f"{progress.received:,} compressed bytes"
    )


def _tls_error(error: BaseException) -> BaseException | None:
    """The ssl.SSLError under a connect error (or the error itself if it speaks of TLS), else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error if "SSL" in str(error) or "TLS" in str(error) else None


def _os_reason(error: BaseException) -> str | None:
    """The operating system's words ("Connection refused") under a wrapped connect error, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and not isinstance(seen, ssl.SSLError) and (seen.errno or seen.strerror):
            return os.strerror(seen.errno) if seen.errno else seen.strerror
        nested = getattr(seen, "exceptions", None)  # anyio gathers one error per address tried
        if nested:
            return _os_reason(nested[0])
        seen = seen.__cause__ or seen.__context__
    return None


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]
