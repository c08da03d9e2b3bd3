"""Service benchmark: `aggregator run --serve` polling many small feeds on a loopback server, on a short interval.

    python benchmarks/service.py                                   # 10,000 feeds, 60 s interval
    python benchmarks/service.py --feeds 500 --interval 20 --window 30   # quick smoke

The service runs in a subprocess against a CorpusServer (ETag / 304) in this process. After the warm-up (every
feed fetched once, with its body), two windows are measured from the service's own /health:

* unchanged: every feed answers 304;
* changing: `--changed` of the feeds gain an entry every quarter interval (parse, store, cluster, publish).

For each window it prints CPU seconds per 1,000 polls twice: the scheduler's own (choosing due feeds,
planning and storing each next fetch, the clock: /health `scheduler_cpu_seconds`, the number the target is
about) and the whole service process's (also HTTP, storing the feeds, clustering, publishing and one log line
per fetch). Then how far actual fetch starts drift from their planned times (median and p99 of the last
10,000 polls), and for the changing window the process's CPU per 1,000 new entries (counted in the store):
all of the window's CPU, and what it spent beyond the same number of unchanged polls. Peak memory is the
process's peak RSS, read by wait4 after it exits. Exit status 1 if a target is missed or the service did not
exit cleanly.

All feeds live on one loopback host, so `per_host` (default 2, as in feeds.yaml) bounds the request rate.
The service runs with MALLOC_ARENA_MAX=2, as deploy/aggregator.service and deploy/Dockerfile set it: with
glibc's default (up to 8 malloc arenas per core for the worker threads) its peak RSS varied from 204 to
381 MB between identical runs; `--default-malloc` measures that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import CorpusServer, build_corpus, change_corpus, write_config

CPU_TARGET = 0.5  # s per 1,000 polls of unchanged feeds
RSS_TARGET = 300.0  # MB at 10,000 feeds


def free_port() -> int:
    """A port nobody listens on right now (the service binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health(port: int) -> dict[str, Any]:
    """The service's /health, or {} while it is not answering yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            return dict(json.load(response))
    except OSError:
        return {}


def wait_for(port: int, done: Any, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Poll /health until `done(health)`; fail after `timeout` seconds or if the service died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode} while waiting for {what}")
        state = health(port)
        if state and done(state):
            return state
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}: {state}")
        time.sleep(0.5)


def stored_entries(database: Path) -> int:
    """Entries in the service's store now (read-only; WAL lets us read beside the service's writes)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as db:
        return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])


def measure(
    port: int, seconds: float, proc: subprocess.Popen[bytes], database: Path, during: Any = None
) -> dict[str, float]:
    """CPU per 1,000 polls, new entries and drift over a window of `seconds`; `during(elapsed)` runs every
    second."""
    start = wait_for(port, lambda h: True, 30, "/health", proc)
    entries_before = stored_entries(database)
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        if during is not None:
            during(elapsed)
        time.sleep(1.0)
    end = wait_for(port, lambda h: True, 30, "/health", proc)
    new = stored_entries(database) - entries_before
    polls = end["fetches"] - start["fetches"]
    cpu = end["process"]["cpu_seconds"] - start["process"]["cpu_seconds"]
    scheduler = end["scheduler_cpu_seconds"] - start["scheduler_cpu_seconds"]
    return {
        "polls": polls,
        "new": new,
        "cpu": cpu,
        "polls_per_s": polls / seconds,
        "scheduler_per_1000": scheduler / polls * 1000 if polls else float("nan"),
        "cpu_per_1000": cpu / polls * 1000 if polls else float("nan"),
        "drift_median": end["drift_seconds"]["median"] or 0.0,
        "drift_p99": end["drift_seconds"]["p99"] or 0.0,
        "rss_mb": end["process"]["max_rss_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=10_000, help="feeds on the loopback server")
    parser.add_argument("--entries", type=int, default=1, help="entries per feed")
    parser.add_argument("--interval", type=float, default=60.0, help="polling interval, seconds")
    parser.add_argument("--window", type=float, default=90.0, help="length of each measured window, seconds")
    parser.add_argument("--changed", type=float, default=0.01, help="share of feeds changed per quarter interval")
    parser.add_argument("--per-host", type=int, default=2, help="fetch.per_host (every feed is on one host)")
    parser.add_argument(
        "--default-malloc", action="store_true", help="run the service without MALLOC_ARENA_MAX=2 (glibc default)"
    )
    args = parser.parse_args(argv)

    corpus = build_corpus(args.feeds, args.entries)
    with tempfile.TemporaryDirectory(prefix="aggregator-service-") as tmp, CorpusServer(corpus) as server:
        workdir = Path(tmp)
        config = write_config(
            workdir,
            server.urls(),
            interval=f"{args.interval:g}s",
            min_interval="1s",
            fetch={"per_host": args.per_host},
            service={"reload_check_seconds": 5},
        )
        port = free_port()
        log_path = workdir / "service.log"
        command = [
            sys.executable, "-m", "aggregator", "--config", str(config), "run", "--serve", "--port", str(port),
            "--log-format", "json",
        ]  # fmt: skip
        env = dict(os.environ)
        if args.default_malloc:
            env.pop("MALLOC_ARENA_MAX", None)
        else:
            env["MALLOC_ARENA_MAX"] = "2"
        print(
            f"{args.feeds} feeds x {args.entries} entries, interval {args.interval:g} s, window {args.window:g} s, "
            f"MALLOC_ARENA_MAX={env.get('MALLOC_ARENA_MAX', 'unset')}"
        )
        print("$ " + " ".join(command[1:]), flush=True)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=log)
        started = time.monotonic()
        try:
            wait_for(
                port,
                lambda h: h["fetches"] >= args.feeds and h["in_flight"] == 0,
                max(600.0, args.feeds / 10),
                "the warm-up (every feed fetched once)",
                proc,
            )
            warm_up = time.monotonic() - started
            print(
                f"warm-up: {args.feeds} first fetches in {warm_up:.1f} s, peak RSS so far "
                f"{health(port)['process']['max_rss_mb']:.0f} MB",
                flush=True,
            )
            # let the second round of polls (all 304) start before measuring it
            time.sleep(max(0.0, args.interval - warm_up + 2))
            server.reset_counts()
            unchanged = measure(port, args.window, proc, workdir / "aggregator.db")
            unchanged_statuses = dict(server.statuses)

            state = {"corpus": corpus, "step": 0}

            def change(elapsed: float) -> None:
                step = int(elapsed // (args.interval / 4)) + 1
                if step > state["step"]:
                    state["step"] = step
                    state["corpus"] = change_corpus(state["corpus"], args.changed, 1, seed=step)
                    server.set_corpus(state["corpus"])

            server.reset_counts()
            changing = measure(port, args.window, proc, workdir / "aggregator.db", during=change)
            changing_statuses = dict(server.statuses)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        peak_mb = usage.ru_maxrss / 1024
        errors = [line for line in log_path.read_text(errors="replace").splitlines() if '"level": "error"' in line]

    print()
    print("CPU s per 1,000 polls: scheduler = choosing, planning, storing plans, the clock; process = everything")
    print(
        f"{'window':<10} {'polls':>7} {'polls/s':>8} {'scheduler':>10} {'process':>8} "
        f"{'drift median':>13} {'drift p99':>10} {'peak RSS':>9}"
    )
    for name, numbers, statuses in (
        ("unchanged", unchanged, unchanged_statuses),
        ("changing", changing, changing_statuses),
    ):
        print(
            f"{name:<10} {numbers['polls']:>7.0f} {numbers['polls_per_s']:>8.1f} "
            f"{numbers['scheduler_per_1000']:>10.3f} {numbers['cpu_per_1000']:>8.3f} "
            f"{numbers['drift_median']:>12.3f}s {numbers['drift_p99']:>9.3f}s {numbers['rss_mb']:>6.0f} MB"
            f"   statuses {statuses}"
        )
    # the changing window's CPU beyond what its polls would have cost unchanged: what new entries cost
    marginal = changing["cpu"] - changing["polls"] * unchanged["cpu_per_1000"] / 1000
    if changing["new"]:
        print(
            f"new entries in the changing window: {changing['new']:.0f}; process CPU s per 1,000 new entries: "
            f"{changing['cpu'] / changing['new'] * 1000:.2f} all, {marginal / changing['new'] * 1000:.2f} beyond "
            "the same polls unchanged"
        )
    print(f"peak RSS of the service: {peak_mb:.1f} MB; exit code {proc.returncode}; error log lines: {len(errors)}")
    ok = (
        unchanged["scheduler_per_1000"] < CPU_TARGET
        and (args.feeds < 10_000 or peak_mb < RSS_TARGET)
        and proc.returncode == 0
        and not errors
    )
    print(
        f"targets: < {CPU_TARGET} s scheduler CPU per 1,000 unchanged polls, < {RSS_TARGET:g} MB at 10,000 feeds: "
        + ("met" if ok else "MISSED")
    )
    for line in errors[:5]:
        print("  " + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
