"""What tripped up a new user in their first hour (issue 16), each through the real CLI, service or server."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path

import lxml.html
from conftest import FeedFiles, run_cli, write_config
from test_service import ServiceProcess

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
    started = [r for r in records if r["logger"] == "uvicorn.error" and r["message"].startswith("Started server")]
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
