"""server.py: outputs over HTTP with validators and 304s, /health, the index page; and one real uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_config
from starlette.applications import Starlette

from aggregator import __version__
from aggregator.config import load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.server import HttpServer, create_app, feed_path, served_outputs
from aggregator.service import Service

OUTPUTS = [
    {"path": "public/news.atom", "format": "atom", "title": "News & more"},
    {"path": "public/news.json", "format": "json", "title": "News JSON"},
    {"path": "public/index.html", "format": "html", "title": "News page"},
]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    config = write_config(tmp_path, [], outputs=OUTPUTS)
    public = tmp_path / "public"
    public.mkdir()
    (public / "news.atom").write_bytes(b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'/>\n")
    (public / "news.json").write_bytes(b'{"version": "https://jsonfeed.org/version/1.1", "items": []}\n')
    os.utime(public / "news.atom", (1_700_000_000, 1_700_000_000))
    return config


class Client:
    """Requests straight into the ASGI app through httpx.ASGITransport (no socket), each under a timeout."""

    def __init__(self, app: Starlette, health: dict[str, Any]) -> None:
        self.app = app
        self.health = health

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                return await http.request(method, path, headers=headers)

        return asyncio.run(asyncio.wait_for(send(), 10))

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.request("GET", path, headers)

    def head(self, path: str) -> httpx.Response:
        return self.request("HEAD", path)

    def post(self, path: str) -> httpx.Response:
        return self.request("POST", path)


@pytest.fixture
def client(site: Path) -> Iterator[Client]:
    config = load_config(site)
    health: dict[str, Any] = {"status": "ok", "version": __version__, "feeds": {"total": 2, "ok": 2}}
    yield Client(create_app(lambda: config, lambda: health), health)


def test_output_is_served_with_type_and_validators(client: Client, site: Path) -> None:
    response = client.get("/feeds/news.atom")
    assert response.status_code == 200
    assert response.content == (site.parent / "public" / "news.atom").read_bytes()
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
    assert response.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert response.headers["cache-control"] == "public, no-cache"
    assert client.get("/feeds/news.json").headers["content-type"] == "application/feed+json; charset=utf-8"


def test_conditional_requests_get_304(client: Client) -> None:
    first = client.get("/feeds/news.atom")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"other", W/{etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
        {"If-Modified-Since": "Wed, 15 Nov 2023 00:00:00 GMT"},
    ):
        response = client.get("/feeds/news.atom", headers=headers)
        assert response.status_code == 304, headers
        assert response.content == b"" and response.headers["etag"] == etag
    for headers in (
        {"If-None-Match": '"other"'},
        {"If-None-Match": '"other"', "If-Modified-Since": modified},  # If-None-Match decides
        {"If-Modified-Since": "Tue, 14 Nov 2023 22:13:19 GMT"},
        {"If-Modified-Since": "yesterday"},
    ):
        assert client.get("/feeds/news.atom", headers=headers).status_code == 200, headers


def test_a_new_file_gets_new_validators(client: Client, site: Path) -> None:
    first = client.get("/feeds/news.atom")
    path = site.parent / "public" / "news.atom"
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>x</title></feed>")
    os.replace(temporary, path)  # as publish_outputs does
    second = client.get("/feeds/news.atom", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and b"<title>x</title>" in second.content
    assert second.headers["etag"] != first.headers["etag"]


def test_head_has_the_headers_and_no_body(client: Client) -> None:
    response = client.head("/feeds/news.atom")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(len(client.get("/feeds/news.atom").content))
    assert response.headers["etag"] == client.get("/feeds/news.atom").headers["etag"]


def test_unknown_and_unpublished_outputs_are_404(client: Client) -> None:
    assert client.get("/feeds/nope.atom").status_code == 404
    unpublished = client.get("/feeds/index.html")  # configured, not written yet
    assert unpublished.status_code == 404 and "not published yet" in unpublished.text
    assert client.get("/elsewhere").status_code == 404
    assert client.post("/feeds/news.atom").status_code == 405


def test_health_is_json_and_503_when_failing(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok", "version": __version__, "feeds": {"total": 2, "ok": 2}}
    client.health["status"] = "failing"
    assert client.get("/health").status_code == 503


def test_index_lists_outputs_with_autodiscovery_links(client: Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    links = re.findall(r'<link rel="alternate" type="([^"]+)" title="([^"]+)" href="([^"]+)">', page.text)
    assert links == [
        ("application/atom+xml", "News &amp; more (Atom)", "/feeds/news.atom"),
        ("application/feed+json", "News JSON (JSON Feed)", "/feeds/news.json"),
    ]
    assert '<a href="/feeds/index.html">News page</a>' in page.text


def test_served_names_must_be_unique(tmp_path: Path) -> None:
    outputs = [{"path": "a/feed.atom"}, {"path": "b/feed.atom"}]
    config = load_config(write_config(tmp_path, [], outputs=outputs))
    with pytest.raises(ConfigError, match=r"outputs\[1\]\.path: the file name 'feed.atom' is already served"):
        served_outputs(config)
    assert feed_path(config.outputs[0]) == "/feeds/feed.atom"


def test_real_uvicorn_answers_200_then_304_and_health(site: Path) -> None:
    async def scenario() -> None:
        service = Service(site, poll=False, serve=True, port=0, handle_signals=False)
        await service.start()
        try:
            address = service.address
            assert address is not None and address[0] == "127.0.0.1"
            base = f"http://127.0.0.1:{address[1]}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                first = await http.get("/feeds/news.atom")
                assert first.status_code == 200 and first.headers["content-type"].startswith("application/atom+xml")
                second = await http.get("/feeds/news.atom", headers={"If-None-Match": first.headers["etag"]})
                assert second.status_code == 304 and second.content == b""
                modified = parsedate_to_datetime(first.headers["last-modified"])
                third = await http.get(
                    "/feeds/news.atom", headers={"If-Modified-Since": format_datetime(modified, usegmt=True)}
                )
                assert third.status_code == 304
                head = await http.head("/feeds/news.atom")
                assert head.status_code == 200 and head.content == b""
                health = (await http.get("/health")).json()
                assert health["status"] == "ok" and health["version"] == __version__
                assert health["polling"] is False and health["feeds"]["total"] == 0
                assert "server" not in first.headers
        finally:
            await service.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_http_server_reports_a_taken_port(site: Path) -> None:
    async def scenario() -> None:
        config = load_config(site)
        app = create_app(lambda: config, lambda: {})
        first = HttpServer(app, "127.0.0.1", 0)
        await first.start()
        try:
            second = HttpServer(app, "127.0.0.1", first.address[1])
            with pytest.raises(AggregatorError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already in use"):
                await second.start()
        finally:
            await first.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_health_json_shape_from_a_service(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])

    async def scenario() -> dict[str, Any]:
        service = Service(config, poll=False, handle_signals=False)
        await service.open()
        try:
            return service.health()
        finally:
            await service.stop()

    health = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert json.loads(json.dumps(health)) == health
    assert set(health) >= {"status", "version", "last_pass", "feeds", "drift_seconds", "process", "state"}
    assert health["feeds"] == {"total": 0, "disabled": 0, "failing": 0, "new": 0, "ok": 0}
