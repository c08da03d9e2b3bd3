"""Ingest benchmark: `aggregator update` against a loopback corpus, cold, warm and (optionally) changed.

    python benchmarks/ingest.py                      # 200x50 and 1000x50
    python benchmarks/ingest.py --sizes 20x10        # quick smoke
    python benchmarks/ingest.py --changed 0.3        # also a pass after 30 % of feeds got new entries

Each pass runs `python -m aggregator --config feeds.yaml update --json` in a subprocess and checks the counts
of its summary; the exit status is 1 if any pass failed or counted wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import CorpusServer, Measurement, build_corpus, change_corpus, run_measured, write_config

REPO = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = (
    "feeds",
    "ok",
    "not_modified",
    "failed",
    "entries_new",
    "entries_updated",
    "seconds",
    "errors",
)


@dataclass(frozen=True, slots=True)
class PassResult:
    """One `update` run: what it cost, what it reported, and what was wrong with that."""

    size: str
    name: str
    measured: Measurement
    summary: dict[str, Any] | None
    problems: tuple[str, ...]
    requests: int


def parse_size(text: str) -> tuple[int, int]:
    """`200x50` -> (200 feeds, 50 entries each)."""
    try:
        feeds, entries = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not FEEDSxENTRIES, e.g. 200x50") from None
    if feeds < 1 or entries < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both numbers must be positive")
    return feeds, entries


def parse_summary(stdout: str) -> dict[str, Any] | None:
    """The JSON object `update --json` printed: the whole output, or else its last line that is one."""
    candidates = [stdout.strip(), *reversed(stdout.strip().splitlines())]
    for text in candidates:
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def check(summary: dict[str, Any] | None, expected: dict[str, int]) -> tuple[str, ...]:
    """Every way `summary` differs from `expected` counts (and a missing or partial summary)."""
    if summary is None:
        return ("no JSON summary on stdout",)
    problems = [f"summary lacks {key!r}" for key in SUMMARY_KEYS if key not in summary]
    for key, want in expected.items():
        got = summary.get(key)
        if got != want:
            problems.append(f"{key} = {got}, expected {want}")
    return tuple(problems)


def run_pass(
    name: str, size: str, config: Path, server: CorpusServer, expected: dict[str, int], timeout: float
) -> PassResult:
    """Run one `aggregator update` and check its summary against `expected`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "aggregator", "--config", str(config), "update", "--json"]
    server.reset_counts()
    measured = run_measured(cmd, cwd=config.parent, env=env, timeout=timeout)
    summary = parse_summary(measured.stdout)
    problems = list(check(summary, expected))
    if measured.returncode != 0:
        problems.insert(0, f"exit status {measured.returncode}")
    if problems and measured.stderr.strip():
        problems.append("stderr: " + measured.stderr.strip().splitlines()[-1][:200])
    errors = summary.get("errors") if summary else None
    if problems and isinstance(errors, list) and errors:
        problems.append(f"first error: {str(errors[0])[:200]}")
    return PassResult(size, name, measured, summary, tuple(problems), server.requests)


def bench_size(n_feeds: int, n_entries: int, args: argparse.Namespace, workdir: Path, report: list[PassResult]) -> None:
    """Cold, warm and optionally changed passes for one corpus size, appended to `report` as they finish."""
    size = f"{n_feeds}x{n_entries}"
    # Dated a day back so that the entries change_corpus adds (2 h apart) are still in the past.
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    corpus = build_corpus(n_feeds, n_entries, seed=args.seed, now=now)
    with CorpusServer(corpus, latency=args.latency) as server:
        folder = workdir / size
        folder.mkdir()
        # Every synthetic feed is on 127.0.0.1, where real ones are spread over many hosts: lift the per-host
        # limit so the benchmark measures the aggregator rather than its politeness towards one host.
        fetch: dict[str, int] = {"per_host": args.per_host}
        if args.concurrency:
            fetch["concurrency"] = args.concurrency
        config = write_config(folder, server.urls(), fetch=fetch)
        total = n_feeds * n_entries
        passes: list[tuple[str, dict[str, int]]] = [
            ("cold", {"feeds": n_feeds, "ok": n_feeds, "failed": 0, "entries_new": total}),
            ("warm", {"feeds": n_feeds, "not_modified": n_feeds, "failed": 0, "entries_new": 0}),
        ]
        for name, expected in passes:
            report.append(run_pass(name, size, config, server, expected, args.timeout))
            _print_row(report[-1])
        if args.changed:
            changed = change_corpus(corpus, args.changed, args.new_entries, seed=args.seed)
            n_changed = sum(changed[path] != corpus[path] for path in corpus)
            server.set_corpus(changed)
            expected = {
                "feeds": n_feeds,
                "ok": n_changed,
                "not_modified": n_feeds - n_changed,
                "failed": 0,
                "entries_new": n_changed * args.new_entries,
            }
            report.append(run_pass(f"changed {args.changed:g}", size, config, server, expected, args.timeout))
            _print_row(report[-1])


# (name, width): negative widths align left, 0 is the free last column.
_COLUMNS = (
    ("size", -9),
    ("pass", -12),
    ("wall s", 8),
    ("entries/s", 10),
    ("peak RSS MB", 12),
    ("requests", 9),
    ("ok", 6),
    ("304", 6),
    ("failed", 7),
    ("new", 8),
    ("updated", 8),
    ("check", 0),
)


def _print_header() -> None:
    print(_line(name for name, _ in _COLUMNS), flush=True)


def _line(cells: Iterable[str]) -> str:
    parts = []
    for cell, (_, width) in zip(cells, _COLUMNS, strict=True):
        parts.append(cell.ljust(-width) if width < 0 else cell.rjust(width))
    return "  ".join(parts)


def _print_row(result: PassResult) -> None:
    s = result.summary or {}
    stored = (s.get("entries_new") or 0) + (s.get("entries_updated") or 0)
    rate = f"{stored / result.measured.seconds:,.0f}" if stored else "-"
    cells = (
        result.size,
        result.name,
        f"{result.measured.seconds:.2f}",
        rate,
        f"{result.measured.peak_rss_mb:.0f}",
        str(result.requests),
        *(str(s.get(key, "?")) for key in ("ok", "not_modified", "failed", "entries_new", "entries_updated")),
        "ok" if not result.problems else "FAIL: " + "; ".join(result.problems),
    )
    print(_line(cells), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 if every pass succeeded with the expected counts, else 1."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(200, 50), (1000, 50)],
        metavar="FEEDSxENTRIES",
        help="corpus sizes (default 200x50 1000x50)",
    )
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--latency", type=float, default=0.0, help="server delay per request, seconds")
    parser.add_argument(
        "--changed",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="also run a pass after this share of feeds got new entries",
    )
    parser.add_argument("--new-entries", type=int, default=5, help="new entries per changed feed (default 5)")
    parser.add_argument("--per-host", type=int, default=16, help="fetch.per_host in the config (default 16)")
    parser.add_argument("--concurrency", type=int, default=0, help="fetch.concurrency (default: the config's)")
    parser.add_argument("--timeout", type=float, default=900.0, help="kill a pass after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args(argv)
    if not 0 <= args.changed <= 1:
        parser.error("--changed must be between 0 and 1")

    workdir = Path(tempfile.mkdtemp(prefix="aggregator-bench-"))
    report: list[PassResult] = []
    _print_header()
    try:
        for n_feeds, n_entries in args.sizes:
            bench_size(n_feeds, n_entries, args, workdir, report)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(result.problems for result in report) else 0


if __name__ == "__main__":
    sys.exit(main())
