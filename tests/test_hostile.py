"""Hostile servers and payloads, each against a loopback server: bounded resources, clear errors, nothing lost.

Fetch-level cases run the real Fetcher (httpx over loopback) under a short `deadline`; feed-level cases run
the real CLI (`aggregator update`) against pytest-httpserver and check what the database and the output hold.
Servers that misbehave below HTTP (slowloris, resets, silence, plain bytes on a TLS port) are raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from conftest import FeedFiles, query, update_json, write_config
from pytest_httpserver import HTTPServer
from werkzeug import Response

from aggregator.config import FetchSettings
from aggregator.errors import ParseError
from aggregator.fetch import MAX_REDIRECTS, Fetcher
from aggregator.models import FeedState, FetchResult, FetchStatus
from aggregator.normalize import MAX_HTML_CHARS, MAX_TITLE_CHARS, normalize_entry
from aggregator.parse import MAX_ENTRIES, parse_feed

KIB = 1024
MIB = 1024 * 1024
NOW = datetime(2026, 8, 19, 12, 0, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"


# --- helpers ---------------------------------------------------------------------------------------------


def fetch(url: str, **settings: Any) -> FetchResult:
    """One real fetch of `url` with the given FetchSettings, under an outer timeout so a bug cannot hang."""
    allow_private = settings.pop("allow_private_addresses", True)

    async def run() -> FetchResult:
        async with Fetcher(FetchSettings(**settings), allow_private_addresses=allow_private) as fetcher:
            async with asyncio.timeout(30):
                return await fetcher.fetch(FeedState(feed_id=1, url=url))

    return asyncio.run(run())


class RawServer:
    """A TCP server on 127.0.0.1 whose handler gets the accepted socket: for misbehaviour below HTTP.

    It counts the bytes its handlers managed to send (`sent`), so a test can show a body was not read whole.
    """

    def __init__(self, handler: Callable[[socket.socket, RawServer], None], read_request: bool = True) -> None:
        self.handler = handler
        self.read_request = read_request
        self.sent = 0
        self.connections = 0
        self.stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/feed", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.read_request:
                _read_request(conn)
            self.handler(conn, self)
        except OSError:
            pass  # the client hung up on us: what the cap and the deadline are for
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self._listener.close()
        self._thread.join(timeout=5)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, RawServer], None]], RawServer]]:
    """A factory of RawServers, all closed after the test."""
    servers: list[RawServer] = []

    def make(handler: Callable[[socket.socket, RawServer], None], read_request: bool = True) -> RawServer:
        server = RawServer(handler, read_request)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def rss(items: str, title: str = "Hostile") -> str:
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{title}</title>"
        f"<link>https://example.com/</link>{items}</channel></rss>"
    )


def item(guid: str, title: str, link: str | None = None, date: str = "Wed, 19 Aug 2026 08:00:00 +0000") -> str:
    link_tag = f"<link>{link}</link>" if link else ""
    return (
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{title}</title>{link_tag}<pubDate>{date}</pubDate></item>"
    )


def feed_row(db: Path, url: str) -> dict[str, Any]:
    rows = query(db, "SELECT last_status, last_error, error_count FROM feeds WHERE url = ?", (url,))
    assert rows, url
    status, error, count = rows[0]
    return {"status": status, "error": error, "error_count": count}


def stored(db: Path, url: str) -> list[tuple[Any, ...]]:
    return query(
        db,
        "SELECT e.guid, e.title, e.url, e.summary, e.content, e.published FROM entries e "
        "JOIN feeds f ON f.id = e.feed_id WHERE f.url = ? ORDER BY e.id",
        (url,),
    )


def output_entries(config: Path) -> list[ElementTree.Element]:
    """The entries of the Atom output, parsed with a strict XML parser (so the output must be well-formed)."""
    root = ElementTree.fromstring((config.parent / "public" / "feed.atom").read_bytes())
    return root.findall(f"{ATOM}entry")


# --- size caps ------------------------------------------------------------------------------------------


def test_a_declared_body_over_the_cap_is_refused_unread(raw_server: Any) -> None:
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 * MIB))
        for _ in range(64 * 16):
            server.send(conn, b"x" * (64 * KIB))

    server = raw_server(handler)
    result = fetch(server.url(), max_feed_bytes=MIB)
    assert result.status is FetchStatus.FAILED
    assert result.error == (
        "body too large: Content-Length is 67,108,864 bytes, more than max_feed_bytes (1,048,576); not read"
    )
    assert server.sent < 16 * MIB  # what the kernel buffers took before we hung up, not 64 MiB


def test_an_endless_body_without_content_length_stops_at_the_cap(raw_server: Any) -> None:
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n")
        while not server.stop.is_set():
            server.send(conn, b"<item>" * 10_000)

    server = raw_server(handler)
    result = fetch(server.url(), max_feed_bytes=MIB)
    assert result.status is FetchStatus.FAILED and result.http_status == 200
    assert result.error is not None
    assert result.error.startswith("body too large: more than max_feed_bytes (1,048,576); stopped after ")
    received = int(result.error.rsplit("after ", 1)[1].split(" ")[0].replace(",", ""))
    assert MIB < received <= MIB + 64 * KIB
    assert server.sent < 16 * MIB


def test_a_chunked_body_over_the_cap_stops_while_streaming(httpserver: HTTPServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(1_000):  # 60 MB if it were read whole
            yield b"<p>" + b"y" * 60_000 + b"</p>"

    httpserver.expect_request("/chunked").respond_with_response(Response(chunks(), mimetype="text/xml"))
    result = fetch(httpserver.url_for("/chunked"), max_feed_bytes=MIB)
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and result.error.startswith("body too large: more than max_feed_bytes")


def _bomb(size: int, wbits: int) -> bytes:
    """`size` zero bytes compressed (gzip: wbits 31, zlib: 15, raw deflate: -15), built in steps."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * MIB
    parts = [compressor.compress(block) for _ in range(size // MIB)]
    return b"".join([*parts, compressor.flush()])


@pytest.mark.parametrize(("coding", "wbits"), [("gzip", 31), ("deflate", 15), ("raw-deflate", -15)])
def test_a_compression_bomb_stops_at_the_cap_after_decompression(
    httpserver: HTTPServer, coding: str, wbits: int
) -> None:
    # 128 MiB of zeros in 128 KiB; benchmarks/hostile.py serves the full 1 MiB -> 1 GiB bomb
    body = _bomb(128 * MIB, wbits)
    assert len(body) < 150 * KIB
    header = "gzip" if coding == "gzip" else "deflate"
    httpserver.expect_request("/bomb").respond_with_data(
        body, content_type="application/rss+xml", headers={"Content-Encoding": header}
    )
    tracemalloc.start()
    try:
        result = fetch(httpserver.url_for("/bomb"), max_feed_bytes=2 * MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status is FetchStatus.FAILED
    assert result.error is not None
    assert result.error.startswith(f"body too large: more than max_feed_bytes (2,097,152) once {header}-decoded")
    # the cap plus bounded steps (and whatever the server thread allocates meanwhile, tracemalloc sees every
    # thread); inflating whole network reads, as httpx's own decoder does, would hold 64 MiB per 64 KiB read
    assert peak < 32 * MIB


def test_a_small_gzip_feed_is_decoded(httpserver: HTTPServer) -> None:
    body = rss(item("g1", "Compressed")).encode()
    httpserver.expect_request("/gz").respond_with_data(
        gzip.compress(body), content_type="application/rss+xml", headers={"Content-Encoding": "gzip"}
    )
    result = fetch(httpserver.url_for("/gz"))
    assert result.status is FetchStatus.OK and result.body == body


def test_an_unknown_content_encoding_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/br").respond_with_data(b"\x1b\x00", headers={"Content-Encoding": "br"})
    result = fetch(httpserver.url_for("/br"))
    assert result.error == "unsupported Content-Encoding 'br' (we asked for gzip or deflate)"


# --- time -----------------------------------------------------------------------------------------------


def test_slowloris_body_is_cut_by_the_total_deadline(raw_server: Any) -> None:
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not server.stop.is_set():
            server.send(conn, b"<")
            time.sleep(0.1)  # far quicker than read_timeout: only a total deadline stops this

    server = raw_server(handler)
    started = time.perf_counter()
    result = fetch(server.url(), deadline=1.0, read_timeout=5.0)
    assert time.perf_counter() - started < 3
    assert result.status is FetchStatus.FAILED and result.http_status == 200
    assert result.error is not None
    assert result.error.startswith("timed out: no complete answer within the 1 s deadline (HTTP 200, ")


def test_slowloris_headers_are_cut_by_the_total_deadline(raw_server: Any) -> None:
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\n")
        while not server.stop.is_set():
            server.send(conn, b"X-Slow: a\r\n")
            time.sleep(0.1)

    server = raw_server(handler)
    result = fetch(server.url(), deadline=1.0, read_timeout=5.0)
    assert result.error == "timed out: no complete answer within the 1 s deadline (no response yet)"


def test_a_server_that_never_answers_is_cut_by_the_deadline(raw_server: Any) -> None:
    server = raw_server(lambda conn, server: server.stop.wait(10))
    started = time.perf_counter()
    result = fetch(server.url(), deadline=1.0, read_timeout=10.0)
    assert time.perf_counter() - started < 3
    assert result.error == "timed out: no complete answer within the 1 s deadline (no response yet)"


def test_a_silent_server_trips_the_read_timeout_before_a_longer_deadline(raw_server: Any) -> None:
    server = raw_server(lambda conn, server: server.stop.wait(10))
    result = fetch(server.url(), deadline=10.0, read_timeout=0.5)
    assert result.error == "read timed out: nothing received for 0.5 s (no response yet)"


# --- redirects ------------------------------------------------------------------------------------------


def _redirects(server: HTTPServer, hops: int, final: str = "/feed.xml") -> str:
    for hop in range(hops):
        target = f"/hop{hop + 1}" if hop + 1 < hops else final
        server.expect_request(f"/hop{hop}").respond_with_data("", status=302, headers={"Location": target})
    server.expect_request(final).respond_with_data(rss(item("r1", "Redirected")), content_type="text/xml")
    return server.url_for("/hop0")


def test_a_chain_of_five_redirects_is_followed(httpserver: HTTPServer) -> None:
    result = fetch(_redirects(httpserver, MAX_REDIRECTS))
    assert result.status is FetchStatus.OK
    assert result.final_url == httpserver.url_for("/feed.xml")


def test_a_chain_of_six_redirects_is_refused(httpserver: HTTPServer) -> None:
    result = fetch(_redirects(httpserver, MAX_REDIRECTS + 1))
    assert result.status is FetchStatus.FAILED
    assert result.error == (
        f"more than 5 redirects (from {httpserver.url_for('/hop0')} to {httpserver.url_for('/hop5')}, and on)"
    )
    assert not any(request.path == "/feed.xml" for request, _ in httpserver.log)


def test_a_redirect_loop_is_named(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_data("", status=301, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=307, headers={"Location": "/a"})
    result = fetch(httpserver.url_for("/a"))
    a, b = httpserver.url_for("/a"), httpserver.url_for("/b")
    assert result.error == f"redirect loop: {a} -> {b} -> {a}"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml", "gopher://x/"])
def test_a_redirect_to_a_non_http_scheme_is_refused(httpserver: HTTPServer, location: str) -> None:
    httpserver.expect_request("/moved").respond_with_data("", status=302, headers={"Location": location})
    result = fetch(httpserver.url_for("/moved"))
    assert result.error == f"redirect to {location!r} refused: not an http or https URL"


def test_a_redirect_to_an_unparsable_url_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/moved").respond_with_data("", status=302, headers={"Location": "javascript:x"})
    result = fetch(httpserver.url_for("/moved"))
    assert result.error == "redirect to 'javascript:x' refused: not an http or https URL"


def test_the_body_of_a_redirect_is_never_read(raw_server: Any) -> None:
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.send(conn, b"HTTP/1.1 302 Found\r\nLocation: ftp://x/\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
        while not server.stop.is_set():
            server.send(conn, b"z" * (64 * KIB))

    server = raw_server(handler)
    result = fetch(server.url(), deadline=5)
    assert result.error == "redirect to 'ftp://x/' refused: not an http or https URL"
    assert server.sent < 16 * MIB


# --- statuses and broken connections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "message"),
    [
        (404, {}, "HTTP 404 NOT FOUND"),
        (410, {}, "HTTP 410 GONE: the feed is gone for good"),
        (500, {}, "HTTP 500 INTERNAL SERVER ERROR"),
        (429, {"Retry-After": "120"}, "HTTP 429 TOO MANY REQUESTS (Retry-After: 120)"),
        (
            503,
            {"Retry-After": "Wed, 19 Aug 2026 13:00:00 GMT"},
            "HTTP 503 SERVICE UNAVAILABLE (Retry-After: Wed, 19 Aug 2026 13:00:00 GMT)",
        ),
    ],
)
def test_error_statuses_are_failures_with_their_retry_after(
    httpserver: HTTPServer, status: int, headers: dict[str, str], message: str
) -> None:
    httpserver.expect_request("/status").respond_with_data("<html>no</html>", status=status, headers=headers)
    result = fetch(httpserver.url_for("/status"))
    assert result.status is FetchStatus.FAILED and result.http_status == status
    assert result.error == message
    assert result.header("retry-after") == headers.get("Retry-After")


def test_a_connection_reset_mid_body(raw_server: Any) -> None:
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"<rss>" * 200)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST

    server = raw_server(handler)
    result = fetch(server.url())
    assert result.status is FetchStatus.FAILED and result.http_status == 200
    assert result.error in (
        "connection lost while reading the body (HTTP 200, 1,000 bytes of body received): Connection reset by peer",
        "connection lost while reading the body (HTTP 200, 1,000 bytes of body received): peer closed "
        "connection without sending complete message body: received 1000 bytes, expected 100000",
    )


def test_a_connection_closed_before_any_response(raw_server: Any) -> None:
    server = raw_server(lambda conn, server: None)
    result = fetch(server.url())
    assert result.error == "connection lost before a response: Server disconnected without sending a response."


def test_tls_to_a_plain_http_port_fails_the_handshake(raw_server: Any) -> None:
    # a plain HTTP server answers the TLS ClientHello with plain text
    server = raw_server(lambda conn, server: server.send(conn, b"HTTP/1.1 400 Bad Request\r\n\r\n"), False)
    result = fetch(server.url(scheme="https"))
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and result.error.startswith("TLS handshake failed: [SSL")


def test_connection_refused(raw_server: Any) -> None:
    server = raw_server(lambda conn, server: None)
    url = server.url()
    server.close()
    assert fetch(url).error == "cannot connect: Connection refused"


def test_an_invalid_host_name_fails_without_asking_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("getaddrinfo was called for a .invalid name")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    result = fetch("http://feeds.example.invalid/rss.xml")
    assert result.error == "cannot resolve host feeds.example.invalid: names under .invalid never exist (RFC 6761)"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a private network namespace")
def test_a_real_dns_failure_in_an_empty_network_namespace() -> None:
    # a new network namespace has no interfaces up, so the resolver fails locally and nothing leaves the machine
    script = (
        "import asyncio\n"
        "from aggregator.config import FetchSettings\n"
        "from aggregator.fetch import Fetcher\n"
        "from aggregator.models import FeedState\n"
        "async def main():\n"
        "    async with Fetcher(FetchSettings(deadline=10), allow_private_addresses=False) as f:\n"
        "        print((await f.fetch(FeedState(1, 'http://news.example.test/feed.xml'))).error)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"cannot create a network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in (
        "cannot resolve host news.example.test: Temporary failure in name resolution",
        "cannot resolve host news.example.test: Name or service not known",
    )


def test_private_addresses_are_refused_when_not_allowed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed.xml").respond_with_data(rss(item("p", "Private")), content_type="text/xml")
    port = httpserver.port
    direct = fetch(f"http://127.0.0.1:{port}/feed.xml", allow_private_addresses=False)
    assert direct.error == (
        "refused: 127.0.0.1 is a loopback address (127.0.0.1), and allow_private_addresses is false"
    )
    by_name = fetch(f"http://localhost:{port}/feed.xml", allow_private_addresses=False)
    assert by_name.error is not None
    assert by_name.error.startswith("refused: localhost resolves to a loopback address")
    assert not httpserver.log
    assert fetch(f"http://127.0.0.1:{port}/feed.xml").status is FetchStatus.OK  # the default allows them


# --- documents ------------------------------------------------------------------------------------------


def test_an_html_page_names_the_feeds_it_advertises(feeds: FeedFiles, tmp_path: Path) -> None:
    page = (
        "<!doctype html><html><head><title>News</title>"
        "<link rel='alternate' type='application/rss+xml' href='/rss.xml'>"
        "<link rel='alternate' type='application/atom+xml' href='https://cdn.example.com/atom.xml'>"
        "</head><body>Hello</body></html>"
    )
    url = feeds.serve("/", page, "text/html")
    config = write_config(tmp_path, [url])
    summary = update_json(config)
    expected = (
        "not a feed but an HTML page; it advertises these feeds: "
        f"{feeds.server.url_for('/rss.xml')}, https://cdn.example.com/atom.xml"
    )
    assert summary["errors"] == [{"url": url, "error": expected}]
    assert feed_row(tmp_path / "aggregator.db", url) == {"status": 200, "error": expected, "error_count": 1}


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY lol "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{(f"&lol{i - 1};" if i > 1 else "&lol;") * 10}">\n' for i in range(1, 10))
    + ']>\n<rss version="2.0"><channel><title>&lol9;</title><item><guid>1</guid><title>&lol9;</title>'
    "</item></channel></rss>"
)
# the one-line form slips past feedparser's own DOCTYPE filter and reaches expat as written
BILLION_LAUGHS_ONE_LINE = BILLION_LAUGHS.replace("\n", "")
QUADRATIC_BLOWUP = (
    f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{"a" * 50_000}">]><rss version="2.0"><channel>'
    f"<title>t</title><item><guid>1</guid><title>x</title><description>{'&a;' * 20_000}</description>"
    "</item></channel></rss>"
)
PARAMETER_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % p "<!ENTITY a \'aaaa\'>"> %p;]>'
    '<rss version="2.0"><channel><title>&a;</title></channel></rss>'
)
SELF_REFERENCE = (
    '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "x&b;"><!ENTITY b "y&a;">]>'
    '<rss version="2.0"><channel><title>&a;</title></channel></rss>'
)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BILLION_LAUGHS, "the document's XML entities expand to more than 1,000,000 characters"),
        (BILLION_LAUGHS_ONE_LINE, "the document's XML entities expand to more than 1,000,000 characters"),
        (QUADRATIC_BLOWUP, "the document's XML entities expand to more than 1,000,000 characters"),
        (PARAMETER_ENTITY, "the document declares XML parameter entities"),
        (SELF_REFERENCE, "the XML entity"),
    ],
    ids=["billion-laughs", "billion-laughs-one-line", "quadratic-blowup", "parameter-entity", "self-reference"],
)
def test_entity_expansion_is_refused_quickly_in_bounded_memory(document: str, message: str) -> None:
    # before the check, the 110 KB quadratic blowup took feedparser 43 s and 2.9 GB
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(ParseError) as error:
            parse_feed(document.encode())
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(error.value).startswith(f"refused: {message}")
    assert seconds < 1
    assert peak < 5 * MIB


def test_the_same_entity_attacks_in_utf16_are_refused() -> None:
    with pytest.raises(ParseError, match="entities expand"):
        parse_feed(QUADRATIC_BLOWUP.replace('"1.0"?>', '"1.0" encoding="utf-16"?>', 1).encode("utf-16"))


def test_short_declared_entities_still_work() -> None:
    document = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY id "tag:example.com,">\n]>\n'
        '<rss version="2.0"><channel><title>t</title><item><guid>&id;1</guid><title>x</title></item></channel></rss>'
    )
    assert parse_feed(document.encode()).entries[0].id == "tag:example.com,1"


def test_a_flood_of_tags_is_refused_before_parsing() -> None:
    document = rss(f"<item><guid>1</guid><description>{'<a/>' * 1_100_000}</description></item>")
    started = time.perf_counter()
    with pytest.raises(ParseError) as error:
        parse_feed(document.encode())
    assert str(error.value).startswith("refused: the document has 1,100,01")
    assert str(error.value).endswith(" tags, more than we parse (1,000,000)")
    assert time.perf_counter() - started < 2  # feedparser would have needed about 20 s


def test_unterminated_markup_cannot_make_the_checks_slow() -> None:
    for document in ("<!DOCTYPE x [" + "<!--" * 500_000, "<rss>" + "<![CDATA[" * 500_000, '<!DOCTYPE x ["' * 300_000):
        started = time.perf_counter()
        with contextlib.suppress(ParseError):
            parse_feed(document.encode())
        assert time.perf_counter() - started < 5, document[:20]


def test_xxe_files_and_remote_dtds_are_never_read(feeds: FeedFiles, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE", encoding="utf-8")
    dtd = feeds.serve("/evil.dtd", f'<!ENTITY stolen SYSTEM "file://{secret}">', "application/xml-dtd")
    documents = {
        "/xxe-file.xml": f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY x SYSTEM "file://{secret}">\n]>\n'
        '<rss version="2.0"><channel><title>a &x; b</title><item><guid>x1</guid><title>T &x;</title>'
        "<description>D &x;</description></item></channel></rss>",
        "/xxe-one-line.xml": f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<rss version="2.0"><channel><title>t</title><item><guid>x2</guid><title>T &x;</title>'
        "<description>&x;</description></item></channel></rss>",
        "/xxe-passwd.xml": '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<rss version="2.0"><channel><title>t</title><item><guid>x3</guid><title>T &x;</title>'
        "<description>&x;</description></item></channel></rss>",
        "/remote-dtd.xml": f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{dtd}">'
        '<rss version="2.0"><channel><title>t</title><item><guid>x4</guid><title>T &stolen;</title>'
        "</item></channel></rss>",
        "/remote-pe.xml": f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % remote SYSTEM "{dtd}"> %remote;]>'
        '<rss version="2.0"><channel><title>t</title><item><guid>x5</guid><title>T &stolen;</title>'
        "</item></channel></rss>",
    }
    urls = [feeds.serve(path, body) for path, body in documents.items()]
    config = write_config(tmp_path, urls)
    update_json(config)
    assert "/evil.dtd" not in feeds.requests
    db = tmp_path / "aggregator.db"
    everything = "\n".join(str(row) for row in query(db, "SELECT * FROM entries"))
    everything += "\n".join(str(row) for row in query(db, "SELECT * FROM feeds"))
    everything += (tmp_path / "public" / "feed.atom").read_text(encoding="utf-8")
    assert "TOP-SECRET-VALUE" not in everything
    assert "root:" not in everything
    assert len(query(db, "SELECT id FROM entries")) == 5  # each document still yields its entry


ENCODINGS: dict[str, tuple[bytes, str, str]] = {
    # name: (body, content type, the title we must store)
    "header-charset-wrong": (
        rss(item("c1", "Caf\u00e9 au lait")).replace("utf-8", "windows-1252").encode("windows-1252"),
        "application/rss+xml; charset=utf-8",
        "Caf\u00e9 au lait",
    ),
    "no-charset-latin1-declared": (
        rss(item("c2", "Stra\u00dfe")).replace("utf-8", "iso-8859-1").encode("iso-8859-1"),
        "application/rss+xml",
        "Stra\u00dfe",
    ),
    "utf8-bom": (b"\xef\xbb\xbf" + rss(item("c3", "Gr\u00fc\u00dfe")).encode(), "text/xml", "Gr\u00fc\u00dfe"),
    "utf16-bom": (
        rss(item("c4", "\u65e5\u672c")).replace("utf-8", "utf-16").encode("utf-16"),
        "text/xml",
        "\u65e5\u672c",
    ),
    "mixed-encodings": (
        rss(item("c5", "na\u00efve")).encode().replace(b"</title><link>", b" \xe9t\xe9</title><link>"),
        "text/xml",
        "",
    ),
    "invalid-utf8": (rss(item("c6", "bad")).encode().replace(b"bad", b"b\xff\xfed"), "text/xml", ""),
    "nul-and-controls": (
        rss(item("c7", "x")).encode().replace(b"<title>x</title>", b"<title>a\x00b\x01c\x1fd\x7fe</title>"),
        "text/xml",
        "",
    ),
    "control-char-references": (
        rss(item("c8", "a&#1;b&#x0;c")).encode(),
        "text/xml",
        "",
    ),
}


def test_charsets_boms_bad_bytes_and_control_characters(feeds: FeedFiles, tmp_path: Path) -> None:
    urls = {name: feeds.serve(f"/{name}.xml", body, kind) for name, (body, kind, _) in ENCODINGS.items()}
    config = write_config(tmp_path, list(urls.values()))
    summary = update_json(config)
    assert summary["failed"] == 0, summary["errors"]
    db = tmp_path / "aggregator.db"
    for name, url in urls.items():
        rows = stored(db, url)
        assert len(rows) == 1, name
        title = rows[0][1]
        if ENCODINGS[name][2]:
            assert title == ENCODINGS[name][2], name
        assert not any(ord(c) < 32 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in title), (name, title)
    assert len(output_entries(config)) == len(urls)  # and the output parses as strict XML


def test_a_json_feed_with_lone_surrogates_and_wrong_types_is_stored(feeds: FeedFiles, tmp_path: Path) -> None:
    body = (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "J\\u0000son", "items": ['
        '{"id": "\\ud800one", "title": "Lone \\udfff surrogate", "url": "http://[bad", "attachments": 5,'
        ' "tags": 7, "authors": "x", "date_published": "9999-12-31T23:59:59-23:59"},'
        '{"id": 2, "title": {"nested": true}, "content_text": "text \\u0001 here"}]}'
    )
    url = feeds.serve("/feed.json", body, "application/feed+json")
    config = write_config(tmp_path, [url])
    assert update_json(config)["failed"] == 0
    rows = stored(tmp_path / "aggregator.db", url)
    assert [(guid, title, link) for guid, title, link, *_ in rows] == [("one", "Lone surrogate", None), ("2", "", None)]


def test_entries_without_id_link_or_title_are_stored_once(feeds: FeedFiles, tmp_path: Path) -> None:
    items = (
        "<item><description>First body</description></item>"
        "<item><description>Second body</description></item>"
        "<item><title>Only a title</title></item>"
        "<item><link>https://example.com/only-link</link></item>"
        "<item></item>"
    )
    url = feeds.serve("/anonymous.xml", rss(items))
    config = write_config(tmp_path, [url])
    update_json(config)
    feeds.serve("/anonymous.xml", rss(items) + " ")  # a new body with the same entries: no duplicates
    update_json(config)
    rows = stored(tmp_path / "aggregator.db", url)
    assert len(rows) == 5
    assert rows[3][0] == "https://example.com/only-link"
    assert all(row[0].startswith("sha1:") for i, row in enumerate(rows) if i != 3)


def test_far_future_and_1970_dates_become_the_time_first_seen(feeds: FeedFiles, tmp_path: Path) -> None:
    items = (
        item("future", "From the future", date="Fri, 01 Jan 2100 00:00:00 +0000")
        + item("epoch", "From 1970", date="Thu, 01 Jan 1970 00:00:00 +0000")
        + item("garbage", "Garbage date", date="yesterday-ish")
    )
    url = feeds.serve("/dates.xml", rss(items))
    config = write_config(tmp_path, [url])
    before = datetime.now(UTC).replace(microsecond=0)
    update_json(config)
    after = datetime.now(UTC) + timedelta(seconds=1)
    for guid, _, _, _, _, published in stored(tmp_path / "aggregator.db", url):
        moment = datetime.strptime(published, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert before <= moment <= after, (guid, published)


def test_fifty_thousand_entries_keep_the_newest_and_say_so(feeds: FeedFiles, tmp_path: Path) -> None:
    items = "".join(f"<item><guid isPermaLink='false'>e{i}</guid></item>" for i in range(50_000))
    url = feeds.serve("/huge.xml", rss(items))
    config = write_config(tmp_path, [url])
    summary = update_json(config)
    warning = f"the feed has 50,000 entries; kept the newest {MAX_ENTRIES:,}"
    assert summary["entries_new"] == MAX_ENTRIES and summary["failed"] == 0
    assert summary["errors"] == [{"url": url, "error": warning}]
    db = tmp_path / "aggregator.db"
    assert feed_row(db, url)["error"] == warning
    assert [row[0] for row in stored(db, url)][:2] == ["e0", "e1"]  # undated: document order, first ones


def test_newest_entries_are_kept_whatever_the_document_order() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    items = "".join(
        item(f"e{i}", f"Entry {i}", date=(base + timedelta(hours=i)).strftime("%a, %d %b %Y %H:%M:%S +0000"))
        for i in range(30)
    )
    feed = parse_feed(rss(items).encode(), max_entries=10)
    assert [e.id for e in feed.entries] == [f"e{i}" for i in range(20, 30)]


def test_one_entry_of_five_mebibytes_is_cut_to_the_caps(feeds: FeedFiles, tmp_path: Path) -> None:
    paragraph = "<p>" + "word " * 200 + "</p>"
    huge = paragraph * (4 * MIB // len(paragraph))
    items = (
        f"<item><guid isPermaLink='false'>big</guid><title>{'T' * MIB}</title><link>https://example.com/big</link>"
        f"<description><![CDATA[{huge}]]></description></item>"
        + item("small", "Small neighbour", "https://example.com/small")
    )
    url = feeds.serve("/big.xml", rss(items))
    config = write_config(tmp_path, [url])
    assert update_json(config)["entries_new"] == 2
    rows = {row[0]: row for row in stored(tmp_path / "aggregator.db", url)}
    assert len(rows["big"][1]) == MAX_TITLE_CHARS
    assert len(rows["big"][3]) <= MAX_HTML_CHARS + 100
    assert rows["small"][1] == "Small neighbour"


def test_duplicate_ids_inside_one_feed_keep_the_first(feeds: FeedFiles, tmp_path: Path) -> None:
    items = item("dup", "First copy", "https://example.com/1") + item("dup", "Second copy", "https://example.com/2")
    url = feeds.serve("/dups.xml", rss(items))
    config = write_config(tmp_path, [url])
    assert update_json(config)["entries_new"] == 1
    assert [row[:3] for row in stored(tmp_path / "aggregator.db", url)] == [
        ("dup", "First copy", "https://example.com/1")
    ]


def test_an_id_that_changes_every_fetch_stays_one_story(feeds: FeedFiles, tmp_path: Path) -> None:
    url = feeds.serve("/shifty.xml", rss(item("id-1", "Same article", "https://example.com/same")))
    config = write_config(tmp_path, [url])
    update_json(config)
    feeds.serve("/shifty.xml", rss(item("id-2", "Same article", "https://example.com/same")))
    update_json(config)
    db = tmp_path / "aggregator.db"
    # a new id is a new entry (we cannot know it is not), but the same URL joins the same story
    assert [row[0] for row in stored(db, url)] == ["id-1", "id-2"]
    assert query(db, "SELECT count(*) FROM stories") == [(1,)]
    assert len(output_entries(config)) == 1


def test_hostile_feeds_never_hurt_a_good_one(feeds: FeedFiles, tmp_path: Path, raw_server: Any) -> None:
    good = feeds.serve("/good.xml", rss(item("g1", "Good news", "https://example.com/good")))
    laughs = feeds.serve("/laughs.xml", BILLION_LAUGHS)
    page = feeds.serve("/page.html", "<html><head></head><body>hi</body></html>", "text/html")
    silent = raw_server(lambda conn, server: server.stop.wait(10)).url()
    config = write_config(tmp_path, [laughs, good, page, silent], fetch={"deadline": 1.0})
    summary = update_json(config)
    assert summary["ok"] == 1 and summary["failed"] == 3
    errors = {e["url"]: e["error"] for e in summary["errors"]}
    assert errors[laughs].startswith("refused: the document's XML entities expand")
    assert errors[page] == "not a feed but an HTML page (it advertises no feed)"
    assert errors[silent] == "timed out: no complete answer within the 1 s deadline (no response yet)"
    assert [row[1] for row in stored(tmp_path / "aggregator.db", good)] == ["Good news"]


def test_normalize_never_raises_on_hostile_fields() -> None:
    from aggregator.models import Enclosure, ParsedEntry

    links = ["http://[bad", "http://x:99999/", "javascript:alert(1)", "x" * 10_000, "\x00http://a/", "//", ""]
    for link in links:
        entry = normalize_entry(
            ParsedEntry(
                id="i" * 5_000,
                link=link,
                title="<script>alert(1)</script>" * 1_000,
                authors=("a" * 10_000,) * 500,
                categories=("c",) * 500,
                enclosures=(Enclosure(url=link), Enclosure(url="javascript:alert(1)"), Enclosure(url="/a.mp3")),
            ),
            "https://example.com/feed.xml",
            NOW,
        )
        assert entry.guid.startswith("sha256:")
        assert entry.url is None or entry.url.startswith("http")
        assert "script" not in entry.title
        assert len(entry.authors) == 50 and all(len(a) <= 200 for a in entry.authors)
        assert all(e.url.startswith(("https://", "http://")) for e in entry.enclosures)
        assert any(e.url.endswith("/a.mp3") for e in entry.enclosures)
