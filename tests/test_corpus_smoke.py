"""Smoke tests of benchmarks/corpus.py: deterministic feeds that parse, and a server that validates and gzips."""

from __future__ import annotations

import gzip
import http.client
import importlib.util
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import pytest
import yaml

CORPUS_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "corpus.py"


def _load_corpus() -> Any:
    spec = importlib.util.spec_from_file_location("bench_corpus", CORPUS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


corpus: Any = _load_corpus()  # the module, typed loosely as importlib gives it

N_FEEDS, N_ENTRIES = 6, 8


@pytest.fixture(scope="module")
def small() -> dict[str, bytes]:
    return corpus.build_corpus(N_FEEDS, N_ENTRIES, seed=3)


@pytest.fixture
def server(small: dict[str, bytes]) -> Iterator[Any]:
    with corpus.CorpusServer(small) as running:
        yield running


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        conn.request("GET", parts.path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_same_seed_same_bytes(small: dict[str, bytes]) -> None:
    assert corpus.build_corpus(N_FEEDS, N_ENTRIES, seed=3) == small
    assert corpus.build_corpus(N_FEEDS, N_ENTRIES, seed=4) != small


def test_paths_and_formats(small: dict[str, bytes]) -> None:
    assert sorted(small) == [f"/feeds/{i:04d}.xml" for i in range(N_FEEDS)]
    for index, path in enumerate(sorted(small)):
        expected = "rss20" if index % 2 == 0 else "atom10"
        assert feedparser.parse(small[path]).version == expected


def test_every_feed_parses_with_unique_guids(small: dict[str, bytes]) -> None:
    ids: list[str] = []
    for path, body in small.items():
        parsed = feedparser.parse(body)
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert len(parsed.entries) == N_ENTRIES
        for entry in parsed.entries:
            assert entry.title and entry.link.startswith("https://news") and entry.author
            assert entry.published_parsed and entry.tags and "<p>" in entry.summary
            ids.append(entry.id)
    assert len(ids) == len(set(ids))


def test_size_and_shared_headlines() -> None:
    big = corpus.build_corpus(20, 20)
    per_entry = sum(map(len, big.values())) / (20 * 20)
    assert 1800 < per_entry < 2800  # about 2.2 KB, like the BBC and Guardian feeds
    titles = Counter(entry.title for body in big.values() for entry in feedparser.parse(body).entries)
    assert any(count > 1 for count in titles.values()), "some stories must be told by several feeds"


def test_change_corpus_adds_entries_at_the_top(small: dict[str, bytes]) -> None:
    changed = corpus.change_corpus(small, 0.5, 3, seed=1)
    assert corpus.change_corpus(small, 0.5, 3, seed=1) == changed
    moved = [path for path in small if changed[path] != small[path]]
    assert len(moved) == N_FEEDS // 2
    for path in moved:
        before = [e.id for e in feedparser.parse(small[path]).entries]
        after = feedparser.parse(changed[path]).entries
        assert len(after) == N_ENTRIES
        assert [e.id for e in after[3:]] == before[:-3]
        assert not {e.id for e in after[:3]} & set(before)
        assert after[0].published_parsed > feedparser.parse(small[path]).entries[0].published_parsed


def test_server_200_then_304(server: Any, small: dict[str, bytes]) -> None:
    url = server.url("/feeds/0001.xml")
    status, headers, body = _get(url)
    assert status == 200 and body == small["/feeds/0001.xml"]
    assert headers["content-type"].startswith("application/atom+xml")
    assert _get(url, {"If-None-Match": headers["etag"]})[0] == 304
    assert _get(url, {"If-Modified-Since": headers["last-modified"]})[0] == 304
    assert _get(url, {"If-None-Match": '"other"'})[0] == 200
    assert _get(server.url("/nope.xml"))[0] == 404
    assert server.statuses == Counter({200: 2, 304: 2, 404: 1})


def test_server_gzip_when_asked(server: Any, small: dict[str, bytes]) -> None:
    url = server.url("/feeds/0000.xml")
    status, headers, body = _get(url, {"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == small["/feeds/0000.xml"]
    assert "content-encoding" not in _get(url)[1]


def test_set_corpus_changes_validators(server: Any, small: dict[str, bytes]) -> None:
    url = server.url("/feeds/0002.xml")
    _, first, _ = _get(url)
    server.set_corpus(corpus.change_corpus(small, 1.0, 2, seed=0))
    status, second, _ = _get(url, {"If-None-Match": first["etag"], "If-Modified-Since": first["last-modified"]})
    assert status == 200 and second["etag"] != first["etag"]
    assert _get(url, {"If-Modified-Since": first["last-modified"]})[0] == 200


def test_server_survives_many_parallel_requests(server: Any) -> None:
    urls = [server.url(f"/feeds/{i % N_FEEDS:04d}.xml") for i in range(200)]
    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(lambda u: _get(u)[0], urls))
    assert statuses == [200] * len(urls)


def test_write_config(tmp_path: Path) -> None:
    path = corpus.write_config(tmp_path, ["http://127.0.0.1:1/feeds/0000.xml"], fetch={"per_host": 8})
    data = yaml.safe_load(path.read_text())
    assert path == tmp_path / "feeds.yaml"
    assert data["database"] == "aggregator.db"
    assert data["outputs"] == [{"path": "public/feed.atom", "format": "atom", "title": "Aggregated news", "limit": 100}]
    assert data["feeds"] == [{"url": "http://127.0.0.1:1/feeds/0000.xml"}]
    assert data["fetch"] == {"per_host": 8}


def test_peak_rss_of_a_child() -> None:
    seconds, peak_mb = corpus.peak_rss_of([sys.executable, "-c", "b = bytearray(60 * 1024 * 1024)"])
    assert 0 < seconds < 10
    assert peak_mb > 55
