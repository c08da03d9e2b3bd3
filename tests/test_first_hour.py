"""What tripped up a new user in their first hour (issue 16), each through the real CLI, service or server."""

from __future__ import annotations

import gzip
import hashlib
import http.client as http_client
import json
import os
import pty
import select
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import lxml.html
from conftest import FeedFiles, query, run_cli, write_config
from lxml import etree
from test_service import ServiceProcess

from aggregator.config import load_config
from aggregator.publish import publish_outputs
from aggregator.render import rfc3339
from aggregator.store import Store, format_time

RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title><link>https://{host}/</link>
{items}</channel></rss>"""
ITEM = "<item><guid>{guid}</guid><title>{title}</title><link>https://{host}/{guid}</link>{extra}</item>"


def rss(host: str, *titles: str, date: str = "Mon, 02 Nov 2026 10:00:00 GMT") -> str:
    """A small RSS feed of `host` with one dated item per title."""
    items = "".join(
        ITEM.format(guid=f"{host}-{i}", title=title, host=host, extra=f"<pubDate>{date}</pubDate>")
        for i, title in enumerate(titles)
    )
    return RSS.format(title=host, host=host, items=items)


def on_terminal(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60.0) -> str:
    """Run the real CLI with a pseudo-terminal as stdout and stderr, as a person at a terminal would."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                raise AssertionError(f"no output for {timeout} s from {args}: {b''.join(chunks)!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=timeout) == 0, b"".join(chunks)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return b"".join(chunks).decode()


# --- item 9: logs and colours -------------------------------------------------------------------------------


def test_json_log_lines_carry_no_colour_codes(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], outputs=[])
    service = ServiceProcess(config, "--serve", "--port", "0", "--log-format", "json")
    try:
        service.wait_for_line("service started")
        service.signal(signal.SIGTERM)
        code, stderr = service.finish()
    finally:
        if service.process.poll() is None:
            service.kill()
    assert code == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines()]
    started = [r for r in records if r["logger"] == "uvicorn" and r["message"].startswith("Started server")]
    assert started, stderr  # uvicorn's line, which carries a `color_message` with ANSI codes
    assert all("color_message" not in record for record in records)
    assert "\x1b" not in stderr and "\\u001b" not in stderr


def test_no_color_leaves_no_bold_or_reverse_video_on_a_terminal(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/wire.xml", rss("wire.example", "Li Qiang calls for a world AI body"))
    config = write_config(tmp_path, [url])
    assert run_cli("update", config=config).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="120")
    args = ["--config", str(config), "search", "qiang"]
    styled = on_terminal(args, tmp_path, env)
    assert "\x1b[" in styled  # the control: a title in bold, the hit in reverse video
    plain = on_terminal(args, tmp_path, dict(env, NO_COLOR="1"))
    assert "\x1b" not in plain
    assert "1. Li Qiang calls for a world AI body  (1 outlet" in plain
    assert "   - wire.example: Li [Qiang] calls for a world AI body" in plain  # hits marked without styles


# --- item 5: the page's subscribe links -----------------------------------------------------------------------


def test_the_pages_subscribe_links_name_each_format(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/wire.xml", rss("wire.example", "A story"))
    outputs = [
        {"path": f"public/feed.{fmt}", "format": fmt, "title": "Aggregated news"} for fmt in ("atom", "rss", "json")
    ]
    outputs.append({"path": "public/world.atom", "format": "atom", "title": "World", "tags": ["world"]})
    outputs.append({"path": "public/index.html", "format": "html", "title": "Aggregated news"})
    config = write_config(tmp_path, [url], outputs=outputs, site_url="https://news.example.org/")
    assert run_cli("update", config=config).exit_code == 0
    page = lxml.html.document_fromstring((tmp_path / "public" / "index.html").read_bytes())
    nav = page.find(".//nav")
    assert nav is not None
    assert [(a.text, a.get("href")) for a in nav.iterfind("a")] == [
        ("Atom", "feed.atom"),
        ("RSS", "feed.rss"),
        ("JSON Feed", "feed.json"),
        ("World (Atom)", "world.atom"),
    ]
    assert [link.get("title") for link in page.iterfind(".//link[@rel='alternate']")] == [
        "Aggregated news (Atom)",
        "Aggregated news (RSS)",
        "Aggregated news (JSON Feed)",
        "World (Atom)",
    ]


# --- item 6: an empty output is dated by the pass that wrote it -----------------------------------------------

FORMATS = ("atom", "rss", "json", "html")


def feed_date(path: Path) -> datetime:
    """The date an output gives itself: Atom `updated`, RSS `lastBuildDate`, JSON `_aggregator.updated`, the
    HTML page's footer."""
    body = path.read_bytes()
    if path.suffix == ".atom":
        text = etree.fromstring(body).findtext("{http://www.w3.org/2005/Atom}updated")
    elif path.suffix == ".rss":
        return parsedate_to_datetime(etree.fromstring(body).findtext("channel/lastBuildDate"))
    elif path.suffix == ".json":
        text = json.loads(body)["_aggregator"]["updated"]
    else:
        text = lxml.html.document_fromstring(body).find(".//footer//time").get("datetime")
    return datetime.fromisoformat(text)


def test_an_empty_output_is_dated_by_the_pass_that_wrote_it_and_kept(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/wire.xml", rss("wire.example", "A story"))
    outputs = [
        {"path": f"public/empty.{fmt}", "format": fmt, "title": "Nothing yet", "tags": ["none"]} for fmt in FORMATS
    ]
    config = write_config(tmp_path, [url], outputs=outputs, site_url="https://news.example.org/")
    before = datetime.now(UTC).replace(microsecond=0)
    assert run_cli("update", config=config).exit_code == 0
    after = datetime.now(UTC)
    paths = [tmp_path / "public" / f"empty.{fmt}" for fmt in FORMATS]
    assert all(before <= feed_date(path) <= after for path in paths), [feed_date(path) for path in paths]
    written = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths}

    # later passes, while the outputs stay empty, leave them as they are: same bytes, same ETag
    result = run_cli("publish", config=config)
    assert result.stdout.splitlines() == [f"{path}: unchanged" for path in paths]
    with Store.open(tmp_path / "aggregator.db") as store:
        assert publish_outputs(load_config(config), store, after + timedelta(days=3)) == []
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths} == written

    # a file an older release dated 1970-01-01 is dated again
    atom = paths[0]
    atom.write_bytes(atom.read_bytes().replace(rfc3339(feed_date(atom)).encode(), b"1970-01-01T00:00:00Z"))
    assert run_cli("publish", config=config).stdout.splitlines()[0] == f"{atom}: written"
    assert feed_date(atom) >= before


# --- item 7: feed ids unique to the install ------------------------------------------------------------------


def feed_ids(directory: Path) -> tuple[str, str]:
    """The Atom feed id and the JSON Feed's `_aggregator.id` of an install's outputs."""
    atom = etree.parse(directory / "public" / "feed.atom").getroot().findtext("{http://www.w3.org/2005/Atom}id")
    data = json.loads((directory / "public" / "feed.json").read_bytes())
    return atom, data["_aggregator"]["id"]


def test_feed_ids_differ_between_installs_and_stay_across_runs(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/wire.xml", rss("wire.example", "A story"))
    outputs = [{"path": f"public/feed.{fmt}", "format": fmt, "title": "News"} for fmt in ("atom", "json")]
    installs = [tmp_path / "one", tmp_path / "two"]
    ids = []
    for directory in installs:
        directory.mkdir()
        config = write_config(directory, [url], outputs=outputs)
        assert run_cli("update", config=config).exit_code == 0
        ids.append(feed_ids(directory))
        feeds.serve("/wire.xml", rss("wire.example", "A story", "Another story"))  # the next run changes the feed
        assert run_cli("update", config=config).exit_code == 0
        assert run_cli("publish", config=config).exit_code == 0
        assert feed_ids(directory) == ids[-1]  # stable: the install id is stored in the database
        (install_id,) = query(directory / "aggregator.db", "SELECT value FROM meta WHERE key = 'install_id'")[0]
        assert uuid.UUID(install_id).version == 4
    (one_atom, one_json), (two_atom, two_json) = ids
    assert all(feed_id.startswith("urn:uuid:") for feed_id in (one_atom, one_json, two_atom, two_json))
    assert len({one_atom, one_json, two_atom, two_json}) == 4  # per install, and per output of an install


def test_feed_ids_come_from_site_url_or_url_when_set(tmp_path: Path, feeds: FeedFiles) -> None:
    url = feeds.serve("/wire.xml", rss("wire.example", "A story"))
    outputs = [
        {"path": "public/feed.atom", "format": "atom", "title": "News"},
        {"path": "public/feed.json", "format": "json", "title": "News", "url": "https://cdn.example.net/n.json"},
    ]
    config = write_config(tmp_path, [url], outputs=outputs, site_url="https://news.example.org/world")
    assert run_cli("update", config=config).exit_code == 0
    assert feed_ids(tmp_path) == ("tag:news.example.org,2026:/world/feed.atom", "https://cdn.example.net/n.json")


# --- item 8: outputs served gzipped ---------------------------------------------------------------------------


def http(port: int, method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """One request to the service on 127.0.0.1, read as it comes off the wire (no decoding)."""
    connection = http_client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"Accept-Encoding": "identity", **headers})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_outputs_are_gzipped_for_clients_that_accept_it_with_their_own_etag(tmp_path: Path, feeds: FeedFiles) -> None:
    titles = [f"Story number {i} about the economy, the weather and the world" for i in range(40)]
    url = feeds.serve("/wire.xml", rss("wire.example", *titles))
    config = write_config(tmp_path, [url])
    assert run_cli("update", config=config).exit_code == 0
    plain = (tmp_path / "public" / "feed.atom").read_bytes()
    service = ServiceProcess(config, "--serve", "--port", "0")
    try:
        port = int(service.wait_for_line("serving on http://127.0.0.1:").split(":")[-1].split("/")[0])
        path = "/feeds/feed.atom"
        status, identity, body = http(port, "GET", path)
        assert (status, body, identity.get("content-encoding")) == (200, plain, None)
        assert identity["vary"] == "Accept-Encoding"

        status, zipped, body = http(port, "GET", path, **{"Accept-Encoding": "gzip, deflate, br"})
        assert (status, zipped["content-encoding"], zipped["vary"]) == (200, "gzip", "Accept-Encoding")
        assert gzip.decompress(body) == plain and len(body) < len(plain) / 3
        assert zipped["etag"] == '"' + hashlib.sha256(body).hexdigest()[:32] + '"' != identity["etag"]
        assert http(port, "GET", path, **{"Accept-Encoding": "gzip;q=0, identity"})[2] == plain
        assert http(port, "GET", path, **{"Accept-Encoding": "*"})[1]["content-encoding"] == "gzip"

        # 304 for the representation the client has; the other one's ETag does not match
        status, headers, body = http(port, "GET", path, **{"Accept-Encoding": "gzip", "If-None-Match": zipped["etag"]})
        assert (status, body, headers["etag"], headers["vary"]) == (304, b"", zipped["etag"], "Accept-Encoding")
        assert http(port, "GET", path, **{"If-None-Match": identity["etag"]})[0] == 304
        status, headers, body = http(
            port, "GET", path, **{"Accept-Encoding": "gzip", "If-None-Match": identity["etag"]}
        )
        assert (status, headers["etag"], gzip.decompress(body)) == (200, zipped["etag"], plain)

        status, headers, body = http(port, "HEAD", path, **{"Accept-Encoding": "gzip"})
        assert (status, body, headers["content-encoding"]) == (200, b"", "gzip")
        assert (headers["content-length"], headers["etag"]) == (zipped["content-length"], zipped["etag"])
        service.signal(signal.SIGTERM)
        code, stderr = service.finish()
        assert code == 0, stderr
    finally:
        if service.process.poll() is None:
            service.kill()


# --- item 12: tombstones expire, /health counts drift ---------------------------------------------------------


def dated_rss(items: list[tuple[str, datetime]]) -> str:
    """An RSS feed of (guid, published) items, each titled after its guid."""
    body = "".join(
        f"<item><guid>{guid}</guid><title>Report {guid}</title><link>https://local.example/{guid}</link>"
        f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate></item>"
        for guid, published in items
    )
    return RSS.format(title="Local", host="local.example", items=body)


def test_a_tombstone_is_forgotten_once_its_feed_no_longer_lists_the_entry(tmp_path: Path, feeds: FeedFiles) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old, recent, fresh = ("old", now - timedelta(days=200)), ("recent", now - timedelta(hours=1)), ("fresh", now)
    url = feeds.serve("/local.xml", dated_rss([recent, old]))
    output = {"path": "public/feed.atom", "format": "atom", "title": "Local", "limit": 1}  # shows `recent` only
    config = write_config(tmp_path, [url], outputs=[output], retention={"keep_days": 30})
    db = tmp_path / "aggregator.db"
    assert run_cli("update", config=config).exit_code == 0
    assert run_cli("prune", config=config).exit_code == 0
    assert query(db, "SELECT guid, listed FROM tombstones") == [("old", 1)]

    def prune() -> dict[str, object]:
        result = run_cli("prune", "--json", config=config)
        assert result.exit_code == 0, result.stderr
        return dict(json.loads(result.stdout))

    # the feed still lists it: the tombstone stays, however old, and keeps the entry out
    feeds.serve("/local.xml", dated_rss([fresh, recent, old]))
    assert run_cli("update", config=config).exit_code == 0
    query(db, "UPDATE tombstones SET pruned_at = '2026-01-01T00:00:00Z'")
    assert prune()["tombstones"] == 0
    assert query(db, "SELECT guid, listed FROM tombstones") == [("old", 1)]
    assert query(db, "SELECT count(*) FROM entries WHERE guid = 'old'") == [(0,)]

    # its feed dropped it: the tombstone goes, but not before the dedup window is over
    feeds.serve("/local.xml", dated_rss([fresh, recent]))
    assert run_cli("update", config=config).exit_code == 0
    assert query(db, "SELECT guid, listed FROM tombstones") == [("old", 0)]
    query(db, "UPDATE tombstones SET pruned_at = ?", (format_time(now - timedelta(hours=71)),))
    assert prune()["tombstones"] == 0
    query(db, "UPDATE tombstones SET pruned_at = ?", (format_time(now - timedelta(hours=73)),))
    dry = run_cli("prune", "--dry-run", config=config)
    assert dry.stdout.endswith("; would forget 1 tombstones of entries their feeds no longer list\n")
    assert prune()["tombstones"] == 1
    assert query(db, "SELECT count(*) FROM tombstones") == [(0,)]


def test_health_counts_the_drift_of_first_fetches_too(tmp_path: Path, feeds: FeedFiles) -> None:
    urls = [feeds.serve(f"/{name}.xml", rss(f"{name}.example", "A story")) for name in ("one", "two", "three")]
    config = write_config(tmp_path, urls)
    service = ServiceProcess(config, "--serve", "--port", "0")
    try:
        port = int(service.wait_for_line("serving on http://127.0.0.1:").split(":")[-1].split("/")[0])
        service.wait_for_line("pass: 3 feeds")
        status, _, body = http(port, "GET", "/health")
        health = json.loads(body)
        assert (status, health["fetches"]) == (200, 3)
        drift = health["drift_seconds"]
        assert drift["samples"] == 3, health
        assert 0 <= drift["median"] <= drift["p99"]
        service.signal(signal.SIGTERM)
        assert service.finish()[0] == 0
    finally:
        if service.process.poll() is None:
            service.kill()


# --- item 13: tests of real-world data say whether they ran ---------------------------------------------------


def test_the_summary_says_which_tests_of_real_world_data_ran_and_ci_requires_them(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_parse.py", "-k", "real_capture"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env["AGGREGATOR_SHARED_DATA"] = str(tmp_path / "absent")
    skipped = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 0, skipped.stdout
    assert "0 ran, 1 did not (no data)" in skipped.stdout
    assert "SKIPPED tests/test_parse.py::test_every_real_capture_parses: no data" in skipped.stdout

    env["AGGREGATOR_REQUIRE_SHARED_DATA"] = "1"
    required = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert required.returncode == 1, required.stdout
    assert "FAILED (AGGREGATOR_REQUIRE_SHARED_DATA=1) tests/test_parse.py::test_every_real_capture_parses" in (
        required.stdout
    )
    assert "export AGGREGATOR_REQUIRE_SHARED_DATA=1\n" in (repo / ".ci" / "run").read_text()


# --- one step beyond: a newcomer's first command is `add`, in an empty folder ---------------------------------


def test_add_in_an_empty_folder_starts_a_feeds_yaml_once_the_feed_is_found(tmp_path: Path, feeds: FeedFiles) -> None:
    config = tmp_path / "feeds.yaml"
    missing = run_cli("add", "--allow-private", feeds.server.url_for("/nothing.xml"), config=config)
    assert missing.exit_code == 1 and not config.exists()  # no feed, no file
    url = feeds.serve("/wire.xml", rss("wire.example", "A story"))
    result = run_cli("add", "--allow-private", url, "--tag", "world", config=config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"created {config}: database aggregator.db, output public/feed.atom (see README)",
        f"added {url} (wire.example; 1 entries; the URL is a feed) to {config}",
    ]
    assert load_config(config).sources()[0].tags == ("world",)
    assert run_cli("update", config=config).exit_code == 0
    assert b"A story" in (tmp_path / "public" / "feed.atom").read_bytes()
    again = run_cli("add", "--allow-private", feeds.serve("/two.xml", rss("two.example", "B")), config=config)
    assert again.stdout.startswith("added ")  # the file exists now: nothing is created again


def test_import_opml_in_an_empty_folder_starts_a_feeds_yaml(tmp_path: Path) -> None:
    opml = tmp_path / "list.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline text="world"><outline type="rss" text="A" '
        'xmlUrl="https://a.example/rss"/></outline></body></opml>',
        encoding="utf-8",
    )
    config = tmp_path / "feeds.yaml"
    result = run_cli("import-opml", str(opml), config=config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        f"created {config}: database aggregator.db, output public/feed.atom (see README)",
        f"added 1 feed to {config}",
    ]
    (source,) = load_config(config).sources()
    assert (source.url, source.title, source.tags) == ("https://a.example/rss", "A", ("world",))
