"""Issue 13, the network side: no feed reaches inside, no client exhausts the server, no line floods the log.

Through the real parts: the real CLI and service, a real uvicorn on 127.0.0.1, loopback feed servers, real
SQLite files. Private addresses in these tests are loopback ones: a feed configured at 127.0.0.1 is one an
operator listed explicitly, so it is fetched; a redirect from it to another host must never reach loopback.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import resource
import select
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FeedFiles, query, run_cli, update_json, write_config
from test_service import Clock, ControlledServer, Reply, ServiceProcess, feed, fixed, make_service, rss

from aggregator.config import FetchSettings, address_problem, load_config
from aggregator.fetch import Fetcher
from aggregator.logs import RepeatFilter
from aggregator.models import FeedState, FetchResult
from aggregator.server import HttpServer, create_app

ONE_ITEM = rss("n", 1)


def fetch(url: str, *, allow_private_addresses: bool = True) -> FetchResult:
    """One real fetch, under an outer timeout so a bug cannot hang."""

    async def run() -> FetchResult:
        async with Fetcher(FetchSettings(), allow_private_addresses=allow_private_addresses) as fetcher:
            async with asyncio.timeout(30):
                return await fetcher.fetch(FeedState(feed_id=1, url=url))

    return asyncio.run(run())


def last_error(db: Path, url: str) -> str | None:
    rows = query(db, "SELECT last_error FROM feeds WHERE url = ?", (url,))
    assert rows, url
    return rows[0][0]


# --- item 2: allow_private_addresses in the service, redirects, proxies, import-opml --------------------------


def test_the_service_honours_allow_private_addresses_false(tmp_path: Path, server: ControlledServer) -> None:
    server.routes["/feed.xml"] = feed(ONE_ITEM)
    port = server.url("/").split(":")[2].split("/")[0]
    # `127.1` is 127.0.0.1 to the resolver, but not an IP literal to the config check (which reads no DNS):
    # only the check when dialling can stop it, as it stops a DNS name that answers 127.0.0.1
    url = f"http://127.1:{port}/feed.xml"
    config = write_config(tmp_path, [url], allow_private_addresses=False)

    async def scenario() -> None:
        service = make_service(config, Clock())
        await service.open()
        try:
            await service.poll()
        finally:
            await service.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert last_error(tmp_path / "aggregator.db", url) == (
        "refused: 127.1 resolves to a loopback address (127.0.0.1), and allow_private_addresses is false"
    )
    assert server.hits == {}


@pytest.fixture
def server() -> Iterator[ControlledServer]:
    srv = ControlledServer()
    yield srv
    srv.close()


@pytest.fixture
def elsewhere() -> Iterator[ControlledServer]:
    """A second server, on another loopback address: "another host of the local network"."""
    srv = ControlledServer("127.0.0.2")
    yield srv
    srv.close()


def test_a_redirect_never_leaves_the_feeds_own_host_for_a_private_address(
    tmp_path: Path, server: ControlledServer, elsewhere: ControlledServer
) -> None:
    port = server.url("/").split(":")[2].split("/")[0]
    targets = {
        "/to-localhost": f"http://localhost:{port}/secret",
        "/to-other-ip": elsewhere.url("/secret"),
        "/to-ipv6-loopback": f"http://[::1]:{port}/secret",
        "/to-6to4-loopback": f"http://[2002:7f00:1::]:{port}/secret",
        "/same-host": server.url("/moved.xml"),
    }
    for path, target in targets.items():
        server.routes[path] = fixed(Reply(302, {"Location": target}))
    server.routes["/moved.xml"] = feed(ONE_ITEM)
    server.routes["/secret"] = feed(rss("secret", 1))
    elsewhere.routes["/secret"] = feed(rss("secret", 1))
    urls = {path: server.url(path) for path in targets}
    config = write_config(tmp_path, list(urls.values()))  # allow_private_addresses: true, the default

    summary = update_json(config)  # the real CLI, one pass
    errors = {error["url"]: error["error"] for error in summary["errors"]}
    own = "only the feed's own host (127.0.0.1) may be on a private network"
    assert errors[urls["/to-localhost"]].startswith(f"refused: redirect to {targets['/to-localhost']}: localhost ")
    assert errors[urls["/to-localhost"]].endswith(own)
    assert errors[urls["/to-other-ip"]] == (
        f"refused: redirect to {targets['/to-other-ip']}: 127.0.0.2 is a loopback address (127.0.0.2); {own}"
    )
    assert errors[urls["/to-ipv6-loopback"]] == (
        f"refused: redirect to {targets['/to-ipv6-loopback']}: ::1 is a loopback address (::1); {own}"
    )
    assert errors[urls["/to-6to4-loopback"]] == (
        f"refused: redirect to {targets['/to-6to4-loopback']}: 2002:7f00:1:: is a loopback address "
        f"(127.0.0.1, inside the 6to4 address 2002:7f00:1::); {own}"
    )
    assert urls["/same-host"] not in errors  # the host the operator named: followed, stored
    assert summary["entries_new"] == 1
    assert server.hits["/secret"] == 0 and elsewhere.hits["/secret"] == 0
    db = tmp_path / "aggregator.db"
    assert query(db, "SELECT count(*) FROM entries WHERE title LIKE 'secret%'") == [(0,)]


def test_the_service_refuses_the_same_redirects(tmp_path: Path, server: ControlledServer) -> None:
    port = server.url("/").split(":")[2].split("/")[0]
    server.routes["/feed.xml"] = fixed(Reply(301, {"Location": f"http://localhost:{port}/secret"}))
    server.routes["/secret"] = feed(rss("secret", 1))
    config = write_config(tmp_path, [server.url("/feed.xml")])

    async def scenario() -> None:
        service = make_service(config, Clock())
        await service.open()
        try:
            await service.poll()
        finally:
            await service.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    error = last_error(tmp_path / "aggregator.db", server.url("/feed.xml"))
    assert error is not None and error.startswith(f"refused: redirect to http://localhost:{port}/secret: localhost")
    assert server.hits["/secret"] == 0


def test_add_follows_a_page_only_to_feeds_on_the_host_typed(config_file: Path, feeds: FeedFiles) -> None:
    port = feeds.server.port
    page = (
        "<!DOCTYPE html><html><head><title>A site</title>"
        f'<link rel="alternate" type="application/rss+xml" href="http://localhost:{port}/inside.xml">'
        "</head><body>Hello</body></html>"
    )
    url = feeds.serve("/page.html", page, "text/html")
    feeds.serve("/inside.xml", ONE_ITEM)
    result = run_cli("add", "--allow-private", url, config=config_file)
    assert result.exit_code == 1
    assert f"http://localhost:{port}/inside.xml: refused: localhost " in result.stderr
    assert "only the feed's own host (127.0.0.1) may be on a private network" in result.stderr
    assert "/inside.xml" not in feeds.requests


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path, [])


def test_add_with_allow_private_still_obeys_the_config(tmp_path: Path, feeds: FeedFiles) -> None:
    config = write_config(tmp_path, [], allow_private_addresses=False)
    url = feeds.serve("/feed.xml", ONE_ITEM)
    result = run_cli("add", "--allow-private", url, config=config)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {url}: cannot fetch: refused: 127.0.0.1 is a loopback address (127.0.0.1), and "
        "allow_private_addresses is false in feeds.yaml (--allow-private does not override it)\n"
    )
    assert feeds.requests == []


def test_a_proxy_in_the_environment_is_never_used_and_the_log_says_so(
    tmp_path: Path, server: ControlledServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = ControlledServer()  # would answer any proxied request with a feed
    proxy.routes = {}
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url(""))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        server.routes["/feed.xml"] = feed(ONE_ITEM)
        port = server.url("/").split(":")[2].split("/")[0]
        refused = f"http://127.1:{port}/feed.xml"
        config = write_config(tmp_path, [refused], allow_private_addresses=False)
        caplog.set_level("WARNING", logger="aggregator.fetch")
        summary = update_json(config)
        assert summary["errors"] == [
            {
                "url": refused,
                "error": "refused: 127.1 resolves to a loopback address (127.0.0.1), and "
                "allow_private_addresses is false",
            }
        ]
        assert proxy.hits == {} and server.hits == {}
        assert "ignoring ALL_PROXY, HTTP_PROXY, HTTPS_PROXY from the environment: feeds are fetched directly" in (
            caplog.text
        )
        # and with private addresses allowed, a feed the operator listed is fetched directly, not via the proxy
        write_config(tmp_path, [server.url("/feed.xml")])
        assert update_json(config)["ok"] == 1
        assert proxy.hits == {} and server.hits["/feed.xml"] == 1
    finally:
        proxy.close()


OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>Mixed</title></head><body>
<outline type="rss" text="Loopback" xmlUrl="http://127.0.0.1:8080/feed.xml"/>
<outline type="rss" text="IPv6 loopback" xmlUrl="http://[::1]/feed.xml"/>
<outline type="rss" text="Metadata" xmlUrl="http://169.254.169.254/latest/meta-data"/>
<outline type="rss" text="Localhost" xmlUrl="http://localhost/feed.xml"/>
<outline type="rss" text="6to4" xmlUrl="http://[2002:a9fe:a9fe::]/feed.xml"/>
<outline type="rss" text="Public" xmlUrl="https://news.example/rss.xml"/>
</body></opml>"""
PRIVATE = {
    "http://127.0.0.1:8080/feed.xml": "a loopback address (127.0.0.1)",
    "http://[::1]/feed.xml": "a loopback address (::1)",
    "http://169.254.169.254/latest/meta-data": "a link-local address (169.254.169.254)",
    "http://localhost/feed.xml": "a loopback host name (localhost)",
    "http://[2002:a9fe:a9fe::]/feed.xml": (
        "a link-local address (169.254.169.254, inside the 6to4 address 2002:a9fe:a9fe::)"
    ),
}


@pytest.mark.parametrize("allowed_in_config", [True, False])
def test_import_opml_checks_addresses_like_add(tmp_path: Path, allowed_in_config: bool) -> None:
    opml = tmp_path / "mixed.opml"
    opml.write_text(OPML, encoding="utf-8")
    config = write_config(tmp_path, [], allow_private_addresses=allowed_in_config)
    result = run_cli("import-opml", str(opml), "--json", config=config)
    assert (result.exit_code, result.stderr) == (0, "")
    reason = "; use --allow-private to import it" if allowed_in_config else (
        ", and allow_private_addresses is false in feeds.yaml"
    )  # fmt: skip
    assert json.loads(result.stdout) == {
        "added": [{"url": "https://news.example/rss.xml", "title": "Public", "tags": []}],
        "skipped": [{"url": url, "reason": f"its host is {problem}{reason}"} for url, problem in PRIVATE.items()],
    }
    assert [feed.url for feed in load_config(config).feeds] == ["https://news.example/rss.xml"]

    # --allow-private imports them where feeds.yaml allows private addresses, and changes nothing where not
    write_config(tmp_path, [], allow_private_addresses=allowed_in_config)
    result = run_cli("import-opml", "--allow-private", str(opml), config=config)
    assert result.exit_code == 0, result.stderr
    assert "cannot add the feed" not in result.stdout + result.stderr
    imported = [feed.url for feed in load_config(config).feeds]
    assert (
        imported == [*PRIVATE, "https://news.example/rss.xml"]
        if allowed_in_config
        else imported == ["https://news.example/rss.xml"]
    )


# --- item 11: address forms, redirect targets, OPML encodings, the page's images ------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("2002:7f00:1::", "a loopback address (127.0.0.1, inside the 6to4 address 2002:7f00:1::)"),
        ("2002:c0a8:101::1", "a private address (192.168.1.1, inside the 6to4 address 2002:c0a8:101::1)"),
        ("2002:a00:1::", "a private address (10.0.0.1, inside the 6to4 address 2002:a00:1::)"),
        ("64:ff9b::a9fe:a9fe", "a link-local address (169.254.169.254, inside the NAT64 address 64:ff9b::a9fe:a9fe)"),
        ("64:ff9b::7f00:1", "a loopback address (127.0.0.1, inside the NAT64 address 64:ff9b::7f00:1)"),
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1)"),
        ("::ffff:7f00:1", "a loopback address (127.0.0.1)"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "a private address (2001:0:4136:e378:8000:63bf:80ff:fffe)"),  # Teredo
        ("64:ff9b:1::a00:1", "a reserved address (64:ff9b:1::a00:1)"),  # local-use NAT64 (RFC 8215)
        ("2002:808:808::1", None),  # 6to4 of a public address
        ("64:ff9b::808:808", None),  # NAT64 of a public address (an IPv6-only network with DNS64)
    ],
)
def test_ipv6_forms_that_carry_ipv4_are_judged_by_it(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


def test_a_6to4_loopback_feed_is_a_config_error_when_private_addresses_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("allow_private_addresses: false\nfeeds:\n  - url: http://[2002:7f00:1::]/feed.xml\n")
    result = run_cli("check", config=config)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {config}: feeds[0].url: http://[2002:7f00:1::]/feed.xml: its host is a loopback address "
        "(127.0.0.1, inside the 6to4 address 2002:7f00:1::); set allow_private_addresses: true to allow it\n",
    )


BAD_TARGETS = [
    ("http://xn--a.com/", "redirect to an invalid URL 'http://xn--a.com/': Codepoint U+0080 at position 1 of "),
    ("http://ex ample.com/", "redirect to an invalid URL 'http://ex ample.com/': not a valid host name"),
    ("http://a..b/feed", "redirect to an invalid URL 'http://a..b/feed': not a valid host name"),
    ("http://a\u202eb.com/", "redirect to an invalid URL 'http://a\\u202eb.com/': Invalid IDNA hostname"),
    ("http://ex\x00ample.com/", "redirect to an invalid URL: the server sent an illegal header line: "),
]


def test_a_redirect_to_an_invalid_host_is_named_and_costs_only_its_feed(
    tmp_path: Path, server: ControlledServer
) -> None:
    urls = []
    for index, (target, _) in enumerate(BAD_TARGETS):
        location = target.encode("utf-8").decode("latin-1")  # http.server sends header values as latin-1
        server.routes[f"/bad{index}"] = fixed(Reply(302, {"Location": location}))
        urls.append(server.url(f"/bad{index}"))
    server.routes["/good.xml"] = feed(ONE_ITEM)
    good = server.url("/good.xml")
    summary = update_json(write_config(tmp_path, [*urls, good]))
    errors = {error["url"]: error["error"] for error in summary["errors"]}
    for url, (_, message) in zip(urls, BAD_TARGETS, strict=True):
        assert errors[url].startswith(message), (url, errors[url])
    assert good not in errors and summary["entries_new"] == 1


def _utf(text: str, codec: str) -> bytes:
    return text.replace('encoding="UTF-8"', f'encoding="{codec}"').encode(codec)


LAUGHS = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<opml version="2.0"><body><outline text="&b;" xmlUrl="https://laughs.example/rss"/></body></opml>"""
PLAIN = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><body><outline text="Laughs" xmlUrl="https://laughs.example/rss"/></body></opml>"""


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "cp037"])
def test_opml_entity_declarations_are_refused_in_any_encoding(tmp_path: Path, codec: str) -> None:
    config = write_config(tmp_path, [])
    before = config.read_bytes()
    opml = tmp_path / "laughs.opml"
    opml.write_bytes(_utf(LAUGHS, codec))
    result = run_cli("import-opml", str(opml), config=config)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {opml}: declares XML entities, which OPML never needs; not read\n",
    )
    assert config.read_bytes() == before
    # the same list without the entities is read in that encoding
    opml.write_bytes(_utf(PLAIN, codec))
    result = run_cli("import-opml", str(opml), config=config)
    assert result.exit_code == 0, result.stderr
    assert [(f.url, f.title) for f in load_config(config).feeds] == [("https://laughs.example/rss", "Laughs")]


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver); .ci/run installs it",
)
def test_the_page_never_loads_a_feeds_http_image_from_the_local_network(
    tmp_path: Path, feeds: FeedFiles, elsewhere: ControlledServer
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as Driver
    from selenium.webdriver.support.ui import WebDriverWait
    from test_render_browser import FLAGS, PAGE_TIMEOUT_SECONDS

    elsewhere.routes["/pixel.gif"] = fixed(Reply(200, {"Content-Type": "image/gif"}, b"GIF89a"))
    pixel = elsewhere.url("/pixel.gif")
    item = (
        "<item><guid>img</guid><title>An image</title><link>https://example.org/img</link>"
        f"<description><![CDATA[<p>Look <img src='{pixel}' alt='x'></p>]]></description></item>"
    )
    url = feeds.serve("/feed.xml", f"<rss version='2.0'><channel><title>T</title>{item}</channel></rss>")
    outputs = [{"path": "public/index.html", "format": "html", "title": "Page"}]
    update_json(write_config(tmp_path, [url], outputs=outputs))
    page = (tmp_path / "public" / "index.html").read_text(encoding="utf-8")
    assert f'src="{pixel}"' in page  # the sanitiser keeps the image: only the policy stops it
    feeds.serve("/index.html", page, "text/html; charset=utf-8")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Driver(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        browser.set_page_load_timeout(PAGE_TIMEOUT_SECONDS)
        browser.get(feeds.server.url_for("/index.html"))
        WebDriverWait(browser, PAGE_TIMEOUT_SECONDS).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        # the image element is there, and finished (refused) without a byte
        assert browser.execute_script("return [...document.images].map(i => i.complete && i.naturalWidth)") == [0]
    finally:
        browser.quit()
    assert elsewhere.hits == {}


# --- item 5: connection exhaustion ------------------------------------------------------------------------------


def _site(tmp_path: Path, **service: Any) -> Path:
    config = write_config(tmp_path, [], service=service)
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "feed.atom").write_bytes(b"<feed xmlns='http://www.w3.org/2005/Atom'/>\n")
    return config


def _closed_by_peer(sock: socket.socket, timeout: float = 20.0) -> bool:
    """Wait (bounded) until the server closes `sock`: True when it did, False when the wait ran out."""
    poller = select.poll()  # not select(): this process may hold descriptors past 1,024
    poller.register(sock, select.POLLIN)
    if not poller.poll(timeout * 1000):
        return False
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_the_longest_idle_connection_makes_room_for_a_request(tmp_path: Path) -> None:
    config = load_config(_site(tmp_path))

    async def scenario() -> None:
        server = HttpServer(create_app(lambda: config, lambda: {"status": "ok"}), port=0, max_connections=3)
        await server.start()
        idle = [socket.create_connection(server.address) for _ in range(3)]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.address[1]}", timeout=10) as http:
                assert (await http.get("/health")).status_code == 200  # a fourth connection, over the cap
                assert await asyncio.to_thread(_closed_by_peer, idle[0])  # the oldest idle one made room
        finally:
            for sock in idle:
                sock.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_request_that_never_completes_is_closed_at_the_request_timeout(tmp_path: Path) -> None:
    config = load_config(_site(tmp_path))

    async def scenario() -> None:
        server = HttpServer(create_app(lambda: config, lambda: {}), port=0, request_timeout=0.5)
        await server.start()
        silent = socket.create_connection(server.address)
        trickling = socket.create_connection(server.address)
        stop = threading.Event()

        def trickle() -> None:  # one byte at a time, never a whole request head (slowloris)
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
                if stop.wait(0.05):
                    return
                try:
                    trickling.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            assert await asyncio.to_thread(_closed_by_peer, silent)
            assert await asyncio.to_thread(_closed_by_peer, trickling)
        finally:
            stop.set()
            silent.close()
            trickling.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))


IDLE_SOCKETS = 600  # beyond both the cap and the service's file descriptor limit below, modest for CI
FD_LIMIT = 400


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_idle_sockets_cannot_starve_health_publishing_or_the_log(tmp_path: Path, server: ControlledServer) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE_SOCKETS + 100:
        pytest.skip(f"this test opens {IDLE_SOCKETS} sockets; ulimit -n is {soft}")
    news = threading.Event()  # the feed answers once the sockets are open: the publish comes after them
    server.routes["/feed.xml"] = fixed(Reply(200, {"Content-Type": "application/rss+xml"}, ONE_ITEM, gate=news))
    config = write_config(
        tmp_path,
        [server.url("/feed.xml")],
        fetch={"concurrency": 4},
        service={"max_connections": 40, "request_timeout_seconds": 2, "publish_debounce_seconds": 0},
    )
    service = ServiceProcess(config, "--serve", "--port", "0", preexec_fn=_limit_descriptors)
    sockets: list[socket.socket] = []
    try:
        line = service.wait_for_line("serving on http://127.0.0.1:")
        assert line.rstrip().endswith("(at most 40 connections)")
        port = int(line.split("serving on http://127.0.0.1:")[1].split("/")[0])
        for _ in range(IDLE_SOCKETS):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        news.set()
        service.wait_for_line("published: ")
        with httpx.Client(timeout=10) as http:
            health = http.get(f"http://127.0.0.1:{port}/health")
        assert health.status_code == 200, health.text
        assert health.json()["last_pass"]["entries_new"] == 1
        held = len(os.listdir(f"/proc/{service.process.pid}/fd"))
        assert held < FD_LIMIT - 100, held  # 40 connections at most, not 600
        # every idle socket is closed: over the cap at once, the last 40 at the request timeout
        assert all(_closed_by_peer(sock) for sock in sockets)
    finally:
        news.set()
        for sock in sockets:
            sock.close()
        service.signal(signal.SIGTERM)
        code, stderr = service.finish()
    assert code == 0, stderr
    assert "cannot open the database" not in stderr and "publishing failed" not in stderr
    assert "Too many open files" not in stderr
    assert stderr.count("connections open, the most allowed (service.max_connections)") == 1  # collapsed
    assert len(stderr) < 20_000, len(stderr)
    assert (tmp_path / "public" / "feed.atom").read_bytes().count(b"<entry>") == 1


def test_identical_log_lines_are_collapsed_with_a_count() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RepeatFilter(handler.handle, period=60))

    def line(message: str, at: float, level: int = logging.WARNING) -> None:
        record = logging.LogRecord("aggregator.server", level, __file__, 1, message, (), None)
        record.created = at
        handler.handle(record)

    for i in range(10_000):
        line("connection limit reached", 1000 + i * 0.005)  # 10,000 in 50 s
        if i % 1000 == 0:
            line(f"fetched feed {i}", 1000 + i * 0.005, logging.INFO)  # distinct lines all go through
    line("connection limit reached", 1061)  # a minute after the first: the count, then the line again
    assert stream.getvalue().splitlines() == [
        "WARNING connection limit reached",
        *(f"INFO fetched feed {i}" for i in range(0, 10_000, 1000)),
        "WARNING connection limit reached [9999 more like this in the last 60 s]",
        "WARNING connection limit reached",
    ]
