"""Hostile-feeds benchmark: every hostile case at once plus 50 good feeds, in one `aggregator update`.

    python benchmarks/hostile.py            # prints one row per case, then the totals and the targets
    python benchmarks/hostile.py --keep     # keep the work folder (feeds.yaml, database, output)

A threaded loopback server (127.0.0.1 only) hosts each case at its own path and counts the bytes it managed to
send. One `python -m aggregator -v update --json` runs in a subprocess; its log gives each feed's fetch time and
body size, its JSON summary and the database give the outcome, and the child's peak RSS is read from
getrusage(RUSAGE_CHILDREN).

Settings: the defaults, except `fetch.deadline: 10` (so the slowloris and silent cases cost 10 s, not the
default 60 s) and `fetch.per_host: 16` (every feed here is on one host, 127.0.0.1; the default of 2 would
serialise the pass behind the slow cases).

Targets (issue 6): the pass under 30 s, peak memory under 300 MB, 50 of 50 good feeds stored completely, every
case that should fail recorded as an error with its expected message, and the cases that should be stored
(odd charsets, missing ids, absurd dates, 50,000 entries, a 5 MiB entry) stored safely. Exit status 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from corpus import child_pids, running

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
GOOD_FEEDS = 50
GOOD_ENTRIES = 20
DEADLINE = 10.0
SECRET = "HOSTILE-BENCH-SECRET-7f3a"

Respond = Callable[["Handler"], None]


@dataclass(frozen=True)
class Case:
    """One hostile case: how the server behaves, and what the pass must record."""

    name: str
    respond: Respond
    expect: str  # "error": the feed fails with a message starting with `message`; "stored": entries stored
    message: str = ""
    scheme: str = "http"
    url: str | None = None


# --- payloads ---------------------------------------------------------------------------------------------


def rss(items: str, title: str = "Feed") -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>{title}</title><link>https://example.com/</link>{items}</channel></rss>"
    ).encode()


def item(guid: str, title: str, link: str = "", date: str = "Wed, 19 Aug 2026 08:00:00 +0000", extra: str = "") -> str:
    link_tag = f"<link>{link}</link>" if link else ""
    return (
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{title}</title>{link_tag}"
        f"<pubDate>{date}</pubDate>{extra}</item>"
    )


def good_feed(n: int) -> bytes:
    items = "".join(
        item(f"good{n}-{i}", f"Outlet {n} reports story {i} on topic {(n * 31 + i) % 97}",
             f"https://outlet{n}.example.com/{i}", f"Wed, 19 Aug 2026 {i % 24:02d}:{n % 60:02d}:00 +0000",
             f"<description>Paragraph {i} of outlet {n}.</description>")
        for i in range(GOOD_ENTRIES)
    )  # fmt: skip
    return rss(items, f"Outlet {n}")


def bomb(size: int, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * MIB
    return b"".join([*(compressor.compress(block) for _ in range(size // MIB)), compressor.flush()])


LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY lol "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{(f"&lol{i - 1};" if i > 1 else "&lol;") * 10}">\n' for i in range(1, 10))
    + ']>\n<rss version="2.0"><channel><title>&lol9;</title><item><title>&lol9;</title></item></channel></rss>'
).encode()
QUADRATIC = (
    f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{"a" * 100_000}">]><rss version="2.0"><channel>'
    f"<title>t</title><item><title>x</title><description>{'&a;' * 50_000}</description></item></channel></rss>"
).encode()


# --- the server -----------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Dispatches each path to its case; counts what it sent per path."""

    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.requests[path] += 1
        respond = self.server.routes.get(path)
        if respond is None:
            self.send_bytes(404, b"no such case")
            return
        # the client hanging up is the cap or the deadline doing its job
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            respond(self)

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.server.sent[self.path.split("?")[0]] += len(data)

    def send_bytes(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/rss+xml", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[str, Respond] = {}
        self.sent: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.stop = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # TLS handshakes and resets arrive as garbage; not our concern here


def body(payload: bytes, content_type: str = "application/rss+xml", **headers: str) -> Respond:
    return lambda h: h.send_bytes(200, payload, {"Content-Type": content_type, **headers})


def status(code: int, **headers: str) -> Respond:
    return lambda h: h.send_bytes(code, b"<html><body>no</body></html>", {"Content-Type": "text/html", **headers})


def redirect(location: str, code: int = 302) -> Respond:
    return lambda h: h.send_bytes(code, b"", {"Location": location})


def endless(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml")
    h.send_header("Connection", "close")
    h.end_headers()
    chunk = b"<item><title>more</title></item>" * 2048
    while not h.server.stop.is_set():
        h.write(chunk)


def declared_huge(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(64 * MIB))
    h.end_headers()
    chunk = b"x" * (64 * 1024)
    for _ in range(1024):
        h.write(chunk)


def slowloris(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    while not h.server.stop.is_set():
        h.write(b"<")
        h.wfile.flush()
        h.server.stop.wait(1.0)


def silent(h: Handler) -> None:
    h.server.stop.wait(DEADLINE * 3)


def reset(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.write(b"<rss version='2.0'><channel>" + b"<item>" * 200)
    h.wfile.flush()
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    h.connection.close()


def cases(base: str, secret_file: Path) -> list[Case]:
    html = (
        b"<!doctype html><html><head><link rel='alternate' type='application/rss+xml' href='/rss.xml'>"
        b"<link rel='alternate' type='application/atom+xml' href='/atom.xml'></head><body>news</body></html>"
    )
    big_items = "".join(
        f"<item><guid isPermaLink='false'>e{i}</guid><title>Entry {i}</title></item>" for i in range(50_000)
    )
    paragraph = "<p>" + "word " * 200 + "</p>"
    five_mib = item(
        "huge",
        "T" * MIB,
        "https://example.com/huge",
        extra=f"<description><![CDATA[{paragraph * (4 * MIB // len(paragraph))}]]></description>",
    )
    no_ids = "<item><description>only text</description></item><item><title>only a title</title></item><item></item>"
    dates = item("future", "From 2100", date="Fri, 01 Jan 2100 00:00:00 +0000") + item(
        "epoch", "From 1970", date="Thu, 01 Jan 1970 00:00:00 +0000"
    )
    dups = item("dup", "first copy") + item("dup", "second copy")
    flood = rss(f"<item><guid>f</guid><description>{'<a/>' * 1_100_000}</description></item>")
    xxe_file = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file://{secret_file}">'
        '<!ENTITY p SYSTEM "file:///etc/passwd">]><rss version="2.0"><channel><title>t</title>'
        "<item><guid>xxe</guid><title>a &x; b &p;</title><description>&x;&p;</description></item></channel></rss>"
    ).encode()
    xxe_dtd = (
        f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{base}/evil.dtd"><rss version="2.0"><channel><title>t</title>'
        "<item><guid>dtd</guid><title>T &stolen;</title></item></channel></rss>"
    ).encode()
    return [
        Case("body over cap, Content-Length", declared_huge, "error", "body too large: Content-Length is"),
        Case("body over cap, no length", endless, "error", "body too large: more than max_feed_bytes"),
        Case("gzip bomb 1 MiB -> 1 GiB", body(bomb(1024 * MIB, 31), **{"Content-Encoding": "gzip"}), "error",
             "body too large: more than max_feed_bytes (10,485,760) once gzip-decoded"),
        Case("deflate bomb", body(bomb(512 * MIB, 15), **{"Content-Encoding": "deflate"}), "error",
             "body too large: more than max_feed_bytes (10,485,760) once deflate-decoded"),
        Case("billion laughs", body(LAUGHS), "error", "refused: the document's XML entities expand"),
        Case("quadratic blowup", body(QUADRATIC), "error", "refused: the document's XML entities expand"),
        Case("XXE file:// entities", body(xxe_file), "stored"),
        Case("XXE remote DTD", body(xxe_dtd), "stored"),
        Case("slowloris (1 byte/s)", slowloris, "error", f"timed out: no complete answer within the {DEADLINE:g} s"),
        Case("never answers", silent, "error", f"timed out: no complete answer within the {DEADLINE:g} s"),
        Case("redirect loop", redirect("/loop"), "error", "redirect loop:"),
        Case("6 redirects", redirect("/chain1"), "error", "more than 5 redirects"),
        Case("redirect to file:", redirect("file:///etc/passwd"), "error",
             "redirect to 'file:///etc/passwd' refused"),
        Case("redirect to ftp:", redirect("ftp://127.0.0.1/feed"), "error",
             "redirect to 'ftp://127.0.0.1/feed' refused"),
        Case("HTTP 404", status(404), "error", "HTTP 404 Not Found"),
        Case("HTTP 410", status(410), "error", "HTTP 410 Gone: the feed is gone for good"),
        Case("HTTP 500", status(500), "error", "HTTP 500 Internal Server Error"),
        Case("HTTP 429 Retry-After", status(429, **{"Retry-After": "3600"}), "error",
             "HTTP 429 Too Many Requests (Retry-After: 3600)"),
        Case("HTTP 503 Retry-After date", status(503, **{"Retry-After": "Wed, 19 Aug 2026 13:00:00 GMT"}), "error",
             "HTTP 503 Service Unavailable (Retry-After: Wed, 19 Aug 2026 13:00:00 GMT)"),
        Case("reset mid-body", reset, "error", "connection lost while reading the body"),
        Case("TLS to a plain port", body(b""), "error", "TLS handshake failed:", scheme="https"),
        Case("DNS failure", body(b""), "error", "cannot resolve host", url="http://feeds.hostile.invalid/rss.xml"),
        Case("HTML page instead of a feed", body(html, "text/html"), "error",
             f"not a feed but an HTML page; it advertises these feeds: {base}/rss.xml, {base}/atom.xml"),
        Case("tag flood", body(flood), "error", "refused: the document has"),
        Case("JSON nested 100,000 deep", body(b'{"version":"https://jsonfeed.org/version/1.1","items":'
             + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/feed+json"), "error",
             "refused: the document is too deeply nested"),
        Case("wrong charset header", body(rss(item("cs", "Caf\u00e9")).replace(b"utf-8", b"windows-1252")
             .replace("\u00e9".encode(), b"\xe9"), "application/rss+xml; charset=utf-8"), "stored"),
        Case("UTF-16 with BOM", body(rss(item("u16", "\u65e5\u672c")).decode().replace("utf-8", "utf-16")
             .encode("utf-16"), "text/xml"), "stored"),
        Case("invalid UTF-8", body(rss(item("bad", "b\u00e9d")).replace("\u00e9".encode(), b"\xff\xfe")), "stored"),
        Case("NUL and control chars", body(rss(item("nul", "x")).replace(b"<title>x</title>",
             b"<title>a\x00b\x01c\x1fd</title>")), "stored"),
        Case("entries without id/link/title", body(rss(no_ids)), "stored"),
        Case("far-future and 1970 dates", body(rss(dates)), "stored"),
        Case("50,000 entries", body(rss(big_items)), "stored", "the feed has 50,000 entries; kept the newest 5,000"),
        Case("one 5 MiB entry", body(rss(five_mib)), "stored"),
        Case("duplicate ids", body(rss(dups)), "stored"),
    ]  # fmt: skip


# --- issue 13, items 1, 3, 4, 7, 8, 9, 11 (hardening): one block, kept together ---------------------------------


def issue13_cases() -> list[Case]:
    """Entries that stopped the pass, references that lost a feed, encodings that skipped the budgets."""
    markup = "<description>&lt;p&gt;Read &lt;a href='/more'&gt;more&lt;/a&gt;&lt;/p&gt;</description>"
    bad_hosts = ["http://xn--a.com/s", "http://ex ample.com/s", "http://ex\u202eample.com/s", "http://a.example:99999/"]
    links = "".join(item(f"host{n}", f"Unusable link {n}", link, extra=markup) for n, link in enumerate(bad_hosts))
    refs = "".join(
        item(f"ref{n}", f"Reference {ref} in a title", f"https://e.com/{n}", extra=f"<description>{ref}</description>")
        for n, ref in enumerate(["&#xD800;", "&#x110000;", "&#99999999999;", "&#0;", "&#xD83D;&#xDE00;"])
    )  # fmt: skip
    flood = "<?xml version='1.0' encoding='{}'?><rss version='2.0'><channel><title>t</title><item><guid>f</guid>"
    tags = "<a/>" * 1_100_000
    cp037_flood = (flood.format("cp037") + f"<description>{tags}</description></item></channel></rss>").encode("cp037")
    utf7_tags = b"<description>" + b"+ADw-a/>" * 1_100_000  # UTF-7 writes `<` as `+ADw-`
    utf7_flood = flood.format("utf-7").encode() + utf7_tags + b"</description></item></channel></rss>"
    cp037_feed = rss(item("ebcdic", "Caf\u00e9 in EBCDIC")).decode().replace("utf-8", "cp037").encode("cp037")
    script_link = "https://example.com/?q=&lt;script&gt;alert(1)&lt;/script&gt;"
    escapes = item("esc", "Evil \x9b2J title \u202egnp.exe", script_link)
    return [
        Case("links nh3 refuses, with markup", body(rss(links)), "stored"),
        Case("bad character references", body(rss(refs)), "stored"),
        Case("EBCDIC (cp037) tag flood", body(cp037_flood, "application/xml"), "error", "refused: the document has"),
        Case("UTF-7 tag flood", body(utf7_flood, "application/xml"), "error", "refused: the document has"),
        Case("EBCDIC (cp037) feed", body(cp037_feed, "application/xml"), "stored"),
        Case("C1, U+202E, <script> in a link", body(rss(escapes)), "stored"),
    ]  # fmt: skip


def issue13_process_checks(work: Path, good: dict[str, bytes], base: str, server: Server) -> list[tuple[str, bool]]:
    """Two `update`s at once on a new database (item 7), and kill -9 mid-pass leaving no worker (item 8)."""
    together = work / "together"
    together.mkdir()
    config = together / "feeds.yaml"
    config.write_text(yaml.safe_dump({"fetch": {"per_host": 16}, "feeds": [{"url": f"{base}{p}"} for p in good]}))
    command = [sys.executable, "-m", "aggregator", "--config", str(config), "update"]
    passes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    codes = [process.wait(timeout=300) for process in passes]
    with sqlite3.connect(together / "aggregator.db") as conn:
        stored, unique, unassigned = conn.execute(
            "SELECT count(*), count(DISTINCT feed_id || guid), sum(story_id IS NULL) FROM entries"
        ).fetchone()
    print(f"two updates at once on a new database: exit codes {codes}, entries {stored} ({unique} distinct, "
          f"{unassigned} without a story)")  # fmt: skip
    silent = work / "silent"
    silent.mkdir()
    config = silent / "feeds.yaml"
    config.write_text(yaml.safe_dump({"feeds": [{"url": f"{base}/never{n}"} for n in range(40)]}))
    for n in range(40):
        server.routes[f"/never{n}"] = lambda h: h.server.stop.wait(60)
    update = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(config), "update"], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers = _wait_for(lambda: child_pids(update.pid), 60)
    update.kill()
    update.wait()
    killed = time.perf_counter()
    gone = _wait_for(lambda: not any(running(pid) for pid in workers), 30)
    waited = time.perf_counter() - killed
    print(f"kill -9 mid-pass: {len(workers)} parse worker(s), gone {waited:.2f} s after the parent" if gone else
          f"kill -9 mid-pass: {len(workers)} parse worker(s) still running after 30 s")  # fmt: skip
    consistent = stored == unique == GOOD_FEEDS * GOOD_ENTRIES and not unassigned
    return [
        (f"two updates at once both exit 0 {codes}, every entry stored once", codes == [0, 0] and consistent),
        ("kill -9 mid-pass leaves no parse worker", bool(workers) and bool(gone)),
    ]


def _wait_for(condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


# --- the run ------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    secret = work / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    server = Server()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status = run(work, server, base, secret)
        return connection_flood(work, server) or status
    finally:
        server.stop.set()
        server.shutdown()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, server: Server, base: str, secret: Path) -> int:
    print("building payloads ...", flush=True)
    hostile = cases(base, secret) + network_cases(server) + issue13_cases()
    urls: dict[str, str] = {}
    for index, case in enumerate(hostile):
        path = f"/case{index}"
        server.routes[path] = case.respond
        urls[case.name] = case.url or f"{case.scheme}://127.0.0.1:{server.server_address[1]}{path}"
    server.routes["/loop"] = redirect("/loop2")
    server.routes["/loop2"] = redirect("/loop")
    for i in range(6):
        server.routes[f"/chain{i + 1}"] = redirect(f"/chain{i + 2}") if i < 5 else body(rss(item("c", "end")))
    server.routes["/evil.dtd"] = body(f'<!ENTITY stolen SYSTEM "file://{secret}">'.encode(), "application/xml-dtd")
    good = {f"/good{n}.xml": good_feed(n) for n in range(GOOD_FEEDS)}
    for path, payload in good.items():
        server.routes[path] = body(payload)
    good_urls = [f"{base}{path}" for path in good]
    # "6 redirects": /caseN -> /chain1 -> ... -> /chain6, six redirect responses before a feed
    config = {
        "database": "aggregator.db",
        "outputs": [{"path": "public/feed.atom", "format": "atom", "title": "Hostile benchmark", "limit": 500}],
        "fetch": {"deadline": DEADLINE, "per_host": 16},
        "feeds": [{"url": url} for url in [*urls.values(), *good_urls]],
    }
    config_path = work / "feeds.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    print(f"running: python -m aggregator -v --config {config_path} update --json", flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "-v", "--config", str(config_path), "update", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        print(done.stderr[-3000:])
        print(f"update failed with exit code {done.returncode}")
        return 1
    summary = json.loads(done.stdout)
    fetch_log = parse_log(done.stderr)
    db = work / "aggregator.db"
    with sqlite3.connect(db) as conn:
        feed_rows = {
            url: (status, error, count)
            for url, status, error, count in conn.execute(
                "SELECT f.url, f.last_status, f.last_error, (SELECT count(*) FROM entries e WHERE e.feed_id = f.id) "
                "FROM feeds f"
            )
        }
        everything = "\n".join(str(row) for row in conn.execute("SELECT * FROM entries"))
    everything += (work / "public" / "feed.atom").read_text(encoding="utf-8")
    errors = {e["url"]: e["error"] for e in summary["errors"]}

    problems: list[str] = []
    print()
    print(f"{'case':34s} {'outcome':7s} {'fetch s':>7s} {'body read':>11s} {'server sent':>12s}  recorded message")
    for index, case in enumerate(hostile):
        url = urls[case.name]
        _, last_error, count = feed_rows[url]
        message = errors.get(url) or last_error or ""
        ms, size = fetch_log.get(url, (0.0, 0))
        sent = server.sent[f"/case{index}"]
        failed = url in errors and count == 0
        outcome = "error" if failed else f"{count} new"
        if case.expect == "error":
            ok = failed and message.startswith(case.message)
        else:
            ok = count > 0 and (not case.message or message == case.message)
        if not ok:
            problems.append(f"{case.name}: expected {case.expect} {case.message!r}, got {outcome} {message!r}")
        shown = message if len(message) <= 110 else message[:107] + "..."
        print(f"{case.name:34s} {outcome:7s} {ms / 1000:7.2f} {size:11,d} {sent:12,d}  {shown}")
    if SECRET in everything or "root:x:0:0" in everything:
        problems.append("an XXE secret reached the database or the output")
    if server.requests["/evil.dtd"]:
        problems.append("the remote DTD was fetched")
    if server.requests[INSIDE]:
        problems.append(f"a redirect reached {INSIDE} on another host")
    complete = sum(
        1 for url in good_urls if feed_rows[url][2] == GOOD_ENTRIES and url not in errors and feed_rows[url][0] == 200
    )
    print()
    print(f"remote DTD requests: {server.requests['/evil.dtd']}; secret or /etc/passwd in store or output: "
          f"{'yes' if SECRET in everything or 'root:x:0:0' in everything else 'no'}")  # fmt: skip
    print(f"feeds: {summary['feeds']}, ok: {summary['ok']}, failed: {summary['failed']}, "
          f"entries new: {summary['entries_new']}")  # fmt: skip
    targets = [
        (f"pass wall time {wall:.1f} s (target < 30 s)", wall < 30),
        (f"peak memory {peak_mb:.0f} MB (target < 300 MB)", peak_mb < 300),
        (f"good feeds stored completely {complete}/{GOOD_FEEDS}", complete == GOOD_FEEDS),
        (f"hostile cases as expected {len(hostile) - len(problems)}/{len(hostile)}", not problems),
    ]
    targets += issue13_process_checks(work, good, base, server)
    for text, met in targets:
        print(f"{'ok  ' if met else 'MISS'} {text}")
    for problem in problems:
        print(f"  problem: {problem}")
    return 0 if all(met for _, met in targets) else 1


_FETCHED = re.compile(r"fetched (\S+): \w+ \S+, (\d+) bytes, (\d+) ms")


def parse_log(stderr: str) -> dict[str, tuple[float, int]]:
    """url -> (fetch milliseconds, body bytes) from update.py's `-v` log lines."""
    found = {}
    for match in _FETCHED.finditer(stderr):
        found[match.group(1)] = (float(match.group(3)), int(match.group(2)))
    return found


# --- network cases (issue 13: redirects into the local network, invalid redirect targets, idle sockets) -----------

INSIDE = "/inside"  # what a redirect to another host of the local network would reach; must never be requested
FLOOD_SOCKETS = 1100  # the issue's count of idle sockets
FLOOD_FD_LIMIT = 1024  # the service's file descriptor limit (soft and hard) during the flood: a shell's usual one


def network_cases(server: Server) -> list[Case]:
    """Redirects that leave the feed's own host for a private address, and redirects to hosts nobody can resolve."""
    port = server.server_address[1]
    server.routes[INSIDE] = body(rss(item("inside", "Inside")))
    server.routes["/same-host.xml"] = body(rss(item("same", "Same host")))
    own = "only the feed's own host (127.0.0.1) may be on a private network"
    return [
        Case("redirect to localhost", redirect(f"http://localhost:{port}{INSIDE}"), "error",
             f"refused: redirect to http://localhost:{port}{INSIDE}: localhost resolves to a loopback address"),
        Case("redirect to another loopback IP", redirect(f"http://127.0.0.2:{port}{INSIDE}"), "error",
             f"refused: redirect to http://127.0.0.2:{port}{INSIDE}: 127.0.0.2 is a loopback address (127.0.0.2); "
             + own),
        Case("redirect to [::1]", redirect(f"http://[::1]:{port}{INSIDE}"), "error",
             f"refused: redirect to http://[::1]:{port}{INSIDE}: ::1 is a loopback address (::1); {own}"),
        Case("redirect to 6to4 of 127.0.0.1", redirect(f"http://[2002:7f00:1::]:{port}{INSIDE}"), "error",
             f"refused: redirect to http://[2002:7f00:1::]:{port}{INSIDE}: 2002:7f00:1:: is a loopback address "
             f"(127.0.0.1, inside the 6to4 address 2002:7f00:1::); {own}"),
        Case("redirect to 169.254.169.254", redirect("http://169.254.169.254/latest/meta-data"), "error",
             "refused: redirect to http://169.254.169.254/latest/meta-data: 169.254.169.254 is a link-local address"),
        Case("redirect on the same host", redirect(f"http://127.0.0.1:{port}/same-host.xml"), "stored"),
        Case("redirect to xn--a.com", redirect("http://xn--a.com/"), "error",
             "redirect to an invalid URL 'http://xn--a.com/':"),
        Case("redirect to a host with a space", redirect("http://ex ample.com/"), "error",
             "redirect to an invalid URL 'http://ex ample.com/': not a valid host name"),
        Case("redirect to a host with U+202E", redirect("http://a\u202eb.com/".encode().decode("latin-1")), "error",
             "redirect to an invalid URL 'http://a\\u202eb.com/': Invalid IDNA hostname"),
        Case("Location with a NUL", redirect("http://ex\x00ample.com/"), "error",
             "redirect to an invalid URL: the server sent an illegal header line"),
    ]  # fmt: skip


def connection_flood(work: Path, server: Server) -> int:
    """`aggregator run --serve` under FLOOD_SOCKETS idle sockets with FLOOD_FD_LIMIT descriptors; prints numbers.

    The service polls one feed that answers only once the sockets are open, so its publish happens under the
    flood. Measured: /health while flooded, the descriptors the service holds, whether publishing worked, how
    long until every idle socket is closed by the server, and how many bytes of log the flood cost.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD_SOCKETS + 200:
        print(f"\nconnection flood skipped: this process may open only {hard} files")
        return 0
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(FLOOD_SOCKETS + 200, 4096) if hard == resource.RLIM_INFINITY
                                                else hard, hard))  # fmt: skip
    answer = threading.Event()

    def late_feed(handler: Handler) -> None:  # answers once the sockets are open: the publish comes under the flood
        answer.wait(60)
        handler.send_bytes(200, good_feed(0))

    server.routes["/flood.xml"] = late_feed
    folder = work / "flood"
    folder.mkdir()
    config = folder / "feeds.yaml"
    config.write_text(yaml.safe_dump({
        "outputs": [{"path": "public/feed.atom", "format": "atom"}],
        "feeds": [{"url": f"http://127.0.0.1:{server.server_address[1]}/flood.xml"}],
        "service": {"publish_debounce_seconds": 0, "reload_check_seconds": 0},
    }), encoding="utf-8")  # fmt: skip

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FLOOD_FD_LIMIT, FLOOD_FD_LIMIT))

    print(f"\nconnection flood: aggregator run --serve, ulimit -n {FLOOD_FD_LIMIT}, {FLOOD_SOCKETS} idle sockets")
    service = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(config), "run", "--serve", "--port", "0"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit,
    )  # fmt: skip
    log = bytearray()
    lines: list[str] = []

    def read() -> None:
        assert service.stderr is not None
        for raw in service.stderr:
            log.extend(raw)
            lines.append(raw.decode("utf-8", "replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(text: str, timeout: float = 30.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in lines if text in line), None)
            if found is not None:
                return found
            time.sleep(0.02)
        return None

    sockets: list[socket.socket] = []
    try:
        serving = wait_for("serving on http://127.0.0.1:")
        if serving is None:
            print("".join(lines)[-2000:])
            return 1
        port = int(serving.split("serving on http://127.0.0.1:")[1].split("/")[0])
        cap = serving.rstrip().rsplit("at most ", 1)[-1].removesuffix(" connections)")
        before = len(log)
        started = time.perf_counter()
        for _ in range(FLOOD_SOCKETS):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        opened = time.perf_counter() - started
        answer.set()
        published = wait_for("published: ") is not None
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
                probe.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reply = probe.recv(64).split(b" ")[1].decode()
        except (OSError, IndexError) as e:
            reply = f"failed ({e})"
        health_ms = (time.perf_counter() - started) * 1000
        held = len(os.listdir(f"/proc/{service.pid}/fd"))
        started = time.perf_counter()
        open_ones = {sock.fileno(): sock for sock in sockets}
        poller = select.poll()  # select() stops at descriptor 1,024
        for fd in open_ones:
            poller.register(fd, select.POLLIN)
        while open_ones and time.perf_counter() - started < 60:
            for fd, _ in poller.poll(1000):
                with contextlib.suppress(OSError):
                    open_ones[fd].recv(1)  # b"": the server closed it
                poller.unregister(fd)
                del open_ones[fd]
        closed_s = time.perf_counter() - started
        flood_log = len(log) - before
    finally:
        answer.set()
        for sock in sockets:
            sock.close()
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
        reader.join(timeout=10)
    failed = any("cannot open the database" in line or "publishing failed" in line for line in lines)
    print(f"  connection cap {cap}; {FLOOD_SOCKETS} sockets opened in {opened:.2f} s")
    print(f"  /health under the flood: {reply} in {health_ms:.0f} ms; descriptors held by the service: {held}")
    print(f"  idle sockets closed by the server: {FLOOD_SOCKETS - len(open_ones)}/{FLOOD_SOCKETS} "
          f"after {closed_s:.1f} s; log written during the flood: {flood_log:,} bytes")  # fmt: skip
    targets = [
        (f"/health answers 200 under the flood ({reply})", reply == "200"),
        ("publishing works under the flood", published and not failed),
        (f"descriptors held {held} < {FLOOD_FD_LIMIT}", held < FLOOD_FD_LIMIT - 100),
        (f"every idle socket closed ({len(open_ones)} left)", not open_ones),
        (f"log during the flood {flood_log:,} bytes (target < 10,000)", flood_log < 10_000),
    ]
    for text, met in targets:
        print(f"{'ok  ' if met else 'MISS'} {text}")
    return 0 if all(met for _, met in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
