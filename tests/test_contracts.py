"""The library internals we still use, each pinned by an upper bound in pyproject.toml: these tests fail loudly
when an upgrade changes one, instead of the aggregator going quietly wrong (benchmarks/README.md, "Library
internals", says what each one is worth).

- feedparser < 6.1 (aggregator/feedparser_internals.py): its date parser, its namespace map, entry ids kept as
  published, its encoding rules;
- httpcore < 1.1 (fetch.py, _QuickStream): the pool asks every idle connection "is_readable" through
  get_extra_info, which we answer from the socket;
- uvicorn < 0.56 (server.py, _LimitedH11): the h11 protocol's `connections`, `cycle`, `transport` and `loop`;
  tests/test_hostile_network.py checks what the connection cap and the request deadline do with them.
"""

from __future__ import annotations

import asyncio
import calendar
import codecs
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import feedparser
import httpcore
import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from aggregator import fetch, parse  # noqa: F401 - parse applies keep_ids_as_published at import
from aggregator.config import FetchSettings
from aggregator.feedparser_internals import (
    NAMESPACES,
    content_type_charset,
    declared_encoding,
    decode_to_utf8,
    parse_date,
)
from aggregator.fetch import Fetcher
from aggregator.models import FeedState

# --- feedparser ------------------------------------------------------------------------------------------------

DATES = [
    format_datetime(datetime(2026, 3, 1, 9, 30, tzinfo=UTC)),
    "Sun, 01 Mar 2026 09:30:00 +0200",
    "Sun, 1 Mar 26 09:30 EST",
    "2026-03-01T09:30:00Z",
    "2026-03-01T09:30:00.123+05:30",
    "2026-03-01",
    "Sunday, March 1, 2026",
    "not a date",
    "",
]


@pytest.mark.parametrize("text", DATES)
def test_parse_date_reads_a_date_as_feedparser_reads_a_pubdate(text: str) -> None:
    document = f"<rss version='2.0'><channel><item><pubDate>{text}</pubDate></item></channel></rss>"
    read = feedparser.parse(document).entries[0].get("published_parsed")
    expected = datetime.fromtimestamp(calendar.timegm(read), UTC) if read else None
    assert parse_date(text) == expected


def test_the_namespace_map_is_the_one_feedparser_reads_elements_by() -> None:
    assert NAMESPACES["http://purl.org/dc/elements/1.1/"] == "dc"
    assert NAMESPACES["http://purl.org/rss/1.0/modules/syndication/"] == "sy"
    assert NAMESPACES["http://www.w3.org/2005/Atom"] == ""
    document = (
        "<rss version='2.0' xmlns:x='http://purl.org/dc/elements/1.1/' xmlns:w='https://wire.example/ns'>"
        "<channel><item><x:creator>Ann</x:creator><w:canonicalUrl>u</w:canonicalUrl></item></channel></rss>"
    )
    entry = feedparser.parse(document).entries[0]
    assert entry["author"] == "Ann"  # a known namespace, read under feedparser's prefix whatever the document's
    assert entry["w_canonicalurl"] == "u"  # any other: stored under its own name, which we never read


def test_entry_ids_stay_as_published() -> None:
    document = (
        b"<rss version='2.0'><channel><item><guid>123</guid><guid>HTTP://X.example/a</guid></item></channel></rss>"
    )
    parsed = feedparser.parse(document, response_headers={"content-location": "https://host.example/feed/"})
    assert parsed.entries[0].id == "HTTP://X.example/a"
    parsed = feedparser.parse(
        b"<rss version='2.0'><channel><item><guid>123</guid></item></channel></rss>",
        response_headers={"content-location": "https://host.example/feed/"},
    )
    assert parsed.entries[0].id == "123"  # not https://host.example/feed/123


def test_the_encoding_rules_are_feedparsers() -> None:
    assert content_type_charset("application/rss+xml; charset=UTF-16") == "UTF-16"
    assert content_type_charset("application/rss+xml") == ""
    assert declared_encoding(b'<?xml version="1.0" encoding="cp037"?><rss/>') == "cp037"
    assert declared_encoding(b"<rss/>") == ""
    text = '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel><title>Zürich</title></channel></rss>'
    decoded = decode_to_utf8({}, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert b"<title>Z\xc3\xbcrich</title>" in decoded


# --- httpcore ------------------------------------------------------------------------------------------------


class _KeepAlive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection open between requests, so the pool reuses it

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"<rss/>")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_pool_asks_idle_connections_is_readable_and_we_answer_from_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    real = fetch._QuickStream.get_extra_info

    def spy(self: Any, info: str) -> Any:
        asked.append(info)
        return real(self, info)

    monkeypatch.setattr(fetch._QuickStream, "get_extra_info", spy)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/feed"

    async def two_fetches() -> None:
        async with Fetcher(FetchSettings(), allow_private_addresses=True) as fetcher:
            for _ in range(2):
                assert (await fetcher.fetch(FeedState(1, url))).http_status == 200

    try:
        asyncio.run(two_fetches())
    finally:
        server.shutdown()
        server.server_close()
    assert "is_readable" in asked  # the second fetch reused the connection after asking


def test_readable_agrees_with_httpcore() -> None:
    from httpcore._utils import is_socket_readable

    ours, theirs = socket.socketpair()
    try:
        assert fetch._readable(ours) is is_socket_readable(ours) is False  # idle
        theirs.close()
        assert fetch._readable(ours) is is_socket_readable(ours) is True  # the peer hung up
    finally:
        ours.close()
    assert httpcore.AsyncNetworkStream.get_extra_info  # the interface _QuickStream implements


# --- uvicorn ---------------------------------------------------------------------------------------------------


def test_the_h11_protocol_has_what_the_connection_cap_uses() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    config = uvicorn.Config(app, log_config=None)
    config.load()

    async def made() -> H11Protocol:
        return H11Protocol(config=config, server_state=ServerState(), app_state={})

    protocol = asyncio.run(made())
    assert isinstance(protocol.connections, set)
    assert protocol.cycle is None and isinstance(protocol.loop, asyncio.AbstractEventLoop)
    assert callable(protocol.on_response_complete) and callable(protocol.connection_made)
    assert "transport" in H11Protocol.connection_made.__code__.co_names


# --- httpx -----------------------------------------------------------------------------------------------------


def test_httpx_loads_without_its_command_line_client() -> None:
    """aggregator/__init__.py marks httpx._main absent (0.12 s of start-up: rich's syntax, pygments): httpx
    must still import, with its stub `main`, and must not pull the client's modules in by another way."""
    code = (
        "import sys, aggregator, httpx\n"
        "print(callable(httpx.main), sys.modules.get('httpx._main') is not None, 'pygments' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False", "False"]
