"""Conditional GET of feeds over one shared httpx.AsyncClient -> FetchResult.

The only module that speaks HTTP. Every failure becomes a FetchResult with status FAILED and a one-line
message; nothing here raises for a bad feed. Bodies are streamed and capped (after decompression, so a gzip
bomb stops at the cap), and every fetch has a total deadline, not only per-read timeouts.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from . import __version__
from .config import FetchSettings
from .errors import FetchError
from .models import FeedState, FetchResult, FetchStatus

__all__ = ["USER_AGENT", "Fetcher"]

USER_AGENT = f"aggregator/{__version__} (news feed aggregator; +https://pypi.org/project/aggregator/)"
MAX_REDIRECTS = 5
# Response headers later stages use: charset detection (parse), caching hints and Retry-After (service).
_KEPT_HEADERS = frozenset(
    {"content-type", "content-location", "content-language", "etag", "last-modified", "cache-control",
     "expires", "retry-after", "date", "location"}
)  # fmt: skip
_PERMANENT = frozenset({301, 308})


class Fetcher:
    """Fetches feeds with bounded concurrency overall and per host; use as an async context manager."""

    def __init__(self, settings: FetchSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(
                max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
            ),
            headers={"User-Agent": settings.user_agent or USER_AGENT, "Accept": _ACCEPT},
        )
        self._overall = asyncio.Semaphore(settings.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def fetch(self, state: FeedState) -> FetchResult:
        """GET one feed, conditionally on what `state` remembers; never raises for a bad feed."""
        host = urlsplit(state.url).hostname or ""
        per_host = self._hosts.setdefault(host, asyncio.Semaphore(self.settings.per_host))
        async with self._overall, per_host:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.settings.deadline):
                    result = await self._get(state)
            except FetchError as e:
                result = FetchResult(state.url, FetchStatus.FAILED, http_status=e.http_status, error=str(e))
            except TimeoutError:
                result = FetchResult(
                    state.url,
                    FetchStatus.FAILED,
                    error=f"timed out: no complete answer in {self.settings.deadline:g} s",
                )
            elapsed = (time.perf_counter() - started) * 1000
        return _with_elapsed(result, elapsed)

    async def _get(self, state: FeedState) -> FetchResult:
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        try:
            async with self._client.stream("GET", state.url, headers=headers) as response:
                kept = _kept_headers(response.headers)
                common = {
                    "http_status": response.status_code,
                    "final_url": str(response.url),
                    "headers": kept,
                    "etag": response.headers.get("etag"),
                    "last_modified": response.headers.get("last-modified"),
                    "permanent_redirect": bool(response.history)
                    and all(r.status_code in _PERMANENT for r in response.history),
                }
                if response.status_code == 304:
                    # a 304 may omit validators; keep the ones we sent
                    common["etag"] = common["etag"] or state.etag
                    common["last_modified"] = common["last_modified"] or state.last_modified
                    return FetchResult(state.url, FetchStatus.NOT_MODIFIED, **common)
                if response.status_code != 200:
                    return FetchResult(
                        state.url,
                        FetchStatus.FAILED,
                        error=_status_message(response),
                        **common,
                    )
                body = await self._read_capped(response)
                return FetchResult(state.url, FetchStatus.OK, body=body, **common)
        except httpx.TooManyRedirects:
            raise FetchError(f"more than {MAX_REDIRECTS} redirects (or a redirect loop)") from None
        except httpx.UnsupportedProtocol as e:
            raise FetchError(f"redirected to an unsupported URL scheme: {e}") from None
        except httpx.ConnectTimeout:
            raise FetchError(f"connect timed out after {self.settings.connect_timeout:g} s") from None
        except httpx.ReadTimeout:
            raise FetchError(f"read timed out after {self.settings.read_timeout:g} s") from None
        except httpx.ConnectError as e:
            raise FetchError(f"cannot connect: {_reason(e)}") from None
        except httpx.DecodingError as e:
            raise FetchError(f"cannot decode the response body: {_reason(e)}") from None
        except httpx.HTTPError as e:
            raise FetchError(f"{type(e).__name__}: {_reason(e)}") from None
        except ssl.SSLError as e:
            raise FetchError(f"TLS error: {_reason(e)}") from None

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.settings.max_feed_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(f"body of {int(declared)} bytes is larger than max_feed_bytes ({cap})", 200)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decompressed bytes
            size += len(chunk)
            if size > cap:
                raise FetchError(f"body larger than max_feed_bytes ({cap}); stopped reading", 200)
            chunks.append(chunk)
        return b"".join(chunks)


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
        message += f" (Retry-After: {retry_after})"
    if response.status_code == 410:
        message += ": the feed is gone for good"
    return message


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0]


def _with_elapsed(result: FetchResult, elapsed_ms: float) -> FetchResult:
    return replace(result, elapsed_ms=elapsed_ms)
