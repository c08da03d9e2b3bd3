"""Side by side with `reader`: the same loopback corpus, cold, warm and changed passes, alternating tools.

    python benchmarks/compare.py                                  # 1000x50, 3 repeats (long: ~20 min)
    python benchmarks/compare.py --feeds 200 --repeat 1           # a quicker look
    python benchmarks/compare.py --latency 0.02                   # 20 ms per request, like a real network
    python benchmarks/compare.py --feeds 6 --entries 4 --skip-reader   # the CI smoke
    python benchmarks/compare.py --corpus real                    # real feeds (rumca-dev: 54 news feeds)

Two corpora: `synthetic` (corpus.py: seeded feeds of a given size) and `real`, the 54 real news feeds of
../shared/data/stories/rumca-dev as captured (titles, links, summaries as the outlets sent them): round 1 is
each feed as it stood at the end of 6 October 2023 (its newest 100 items), round 2 the same feed a day later,
where the new items of 7 October push the oldest out and a feed with nothing new is byte-identical.

Both tools run as child processes against one CorpusServer: ours as `python -m aggregator update --json`,
reader (lemon24/reader, its own virtualenv) as a small script: make_reader(db), add_feed for each URL,
update_feeds_iter(workers=..., scheduled=False). Each repeat runs both tools on a fresh database, in
alternating order, through three passes: cold (empty database), warm (every feed answers 304) and changed
(a share of the feeds gained a few new entries). Every pass is checked (counts of new entries, failures);
the exit status is 1 if any check failed. Memory is the peak, over the pass, of the summed PSS of the child
and its descendants (sampled every 20 ms): a worker process counts, and pages it shares with its parent count
once. The largest single process's peak RSS (VmHWM, sampled too: wait4's ru_maxrss would include the RSS
of this script, which holds the corpus, at the fork) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import CorpusServer, build_corpus, change_corpus, write_config
from ingest import check, parse_summary

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-reader"
# Ours runs as a user installs it (`pip install .`, no test extras): the test tools pull in packages (trio,
# through selenium) that httpx then imports at start-up, which a user never pays for.
OURS_VENV = Path(__file__).resolve().parent / ".venv-ours"
# reader vendors feedparser 6, which still imports sgmllib (sgmllib3k on PyPI).
READER_PACKAGES = ("reader", "sgmllib3k")
PASSES = ("cold", "warm", "changed")
TOOLS = ("ours", "reader")
# Issue 15's targets: every pass at least twice reader's speed, peak memory at most 1.5 times reader's.
TARGET_SPEEDUP = {"cold": 2.0, "warm": 2.0, "changed": 2.0}
TARGET_MEMORY = 1.5

READER_SCRIPT = '''
"""One reader update pass over the URLs in a file; prints a JSON summary."""
import json, sys, time
from reader import make_reader

db, workers, urls_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reader = make_reader(db)
for url in open(urls_file).read().split():
    reader.add_feed(url, exist_ok=True)
started = time.perf_counter()
new = modified = errors = not_modified = 0
first_error = None
for url, value in reader.update_feeds_iter(workers=workers, scheduled=False):
    if isinstance(value, Exception):
        errors += 1
        first_error = first_error or f"{url}: {value}"
    elif value is None:
        not_modified += 1
    else:
        new += value.new
        modified += value.modified
reader.close()
print(json.dumps({"seconds": time.perf_counter() - started, "entries_new": new, "entries_updated": modified,
                  "failed": errors, "not_modified": not_modified, "first_error": first_error}))
'''


REAL_FEEDS = REPO.parent / "shared" / "data" / "stories" / "rumca-dev" / "feeds"
# The real corpus's first round ends here; the second takes what came out up to a day later.
REAL_ROUND_1_END = datetime(2023, 10, 7, tzinfo=UTC)
REAL_ITEMS_PER_FEED = 100
_ITEM = re.compile(rb"<item>.*?</item>\s*", re.S)
_PUBDATE = re.compile(rb"<pubDate>(.*?)</pubDate>")


def real_corpus(folder: Path = REAL_FEEDS) -> tuple[dict[str, bytes], dict[str, bytes], int, int, int]:
    """Round 1 and round 2 of the real feeds ({path: body}), the entries of round 1, how many feeds changed
    and how many entries round 2 adds."""
    first, second = {}, {}
    stored = changed = added = 0
    for path in sorted(folder.glob("*.xml")):
        body = path.read_bytes()
        items = _ITEM.findall(body)
        head = body[: body.index(items[0])] if items else body.replace(b"</channel>", b"")
        dated = sorted(((_published(item), item) for item in items), key=lambda pair: pair[0], reverse=True)
        round_1 = [item for when, item in dated if when < REAL_ROUND_1_END][:REAL_ITEMS_PER_FEED]
        round_2 = [item for when, item in dated if when < REAL_ROUND_1_END + timedelta(days=1)][:REAL_ITEMS_PER_FEED]
        first[f"/{path.name}"] = head + b"".join(round_1) + b"</channel></rss>\n"
        second[f"/{path.name}"] = head + b"".join(round_2) + b"</channel></rss>\n"
        stored += len(round_1)
        new = len(set(round_2) - set(round_1))
        changed += new > 0
        added += new
    return first, second, stored, changed, added


def _published(item: bytes) -> datetime:
    match = _PUBDATE.search(item)
    return parsedate_to_datetime(match.group(1).decode()) if match else datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Run:
    """One pass of one tool."""

    tool: str
    name: str
    seconds: float
    peak_mb: float  # the process tree's summed PSS
    max_rss_mb: float  # the largest process's own RSS
    summary: dict[str, Any] | None
    problems: tuple[str, ...]


def tree_pids(root: int) -> list[int]:
    """`root` and every live descendant (from /proc/PID/task/*/children)."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return pids


def pss_kb(pid: int) -> int:
    """A process's proportional set size: its private pages plus its share of the pages it shares (a forked
    worker shares most of its parent's), so a sum over a process tree counts every page once."""
    return _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def hwm_kb(pid: int) -> int:
    """A process's peak RSS so far (VmHWM; unlike wait4's ru_maxrss, not inherited from the parent at fork)."""
    return _proc_kb(f"/proc/{pid}/status", "VmHWM:")


def _proc_kb(path: str, field: str) -> int:
    """The kB value of `field` in a /proc file; 0 when the process is gone."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_tree_measured(
    cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[float, float, float, int, str, str]:
    """Run `cmd`: (wall s, peak summed PSS of its process tree in MB, peak RSS of its largest process in MB
    (both sampled every 20 ms), exit status, stdout, stderr). Killed after `timeout` seconds."""
    peak, hwm = [0], [0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                pids = tree_pids(proc.pid)
                peak[0] = max(peak[0], sum(pss_kb(pid) for pid in pids))
                hwm[0] = max([hwm[0], *(hwm_kb(pid) for pid in pids)])
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status = os.waitpid(proc.pid, 0)
        finally:
            timer.cancel()
            done.set()
            sampler.join()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    return seconds, peak[0] / 1024, hwm[0] / 1024, proc.returncode, stdout, stderr


def find_reader(venv: Path, install: bool) -> Path | None:
    """The Python of a virtualenv where `import reader` works; created with pip when `install` allows."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import reader, sgmllib"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not install:
        return None
    print(f"installing reader into {venv} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *READER_PACKAGES], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"cannot install reader: {e}", file=sys.stderr)
        return None
    return python if subprocess.run(probe, capture_output=True).returncode == 0 else None


def find_ours(venv: Path, install: bool) -> Path:
    """The Python of a virtualenv with this checkout installed as a user installs it (editable, so it runs this
    code); made when `install` allows, else the Python running this script."""
    python = venv / "bin" / "python"
    if not python.exists() and install:
        print(f"installing aggregator into {venv} ...", file=sys.stderr, flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "-e", str(REPO)], check=True, capture_output=True
            )
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"cannot make {venv}: {e}; running ours with {sys.executable}", file=sys.stderr)
            return Path(sys.executable)
    probe = [str(python), "-c", "import aggregator.cli"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    return Path(sys.executable)


def ours(python: Path, folder: Path, config: Path, expected: dict[str, int], name: str, timeout: float) -> Run:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [str(python), "-m", "aggregator", "--config", str(config), "update", "--json"]
    seconds, peak, max_rss, status, stdout, stderr = run_tree_measured(cmd, folder, env, timeout)
    summary = parse_summary(stdout)
    problems = list(check(summary, expected))
    if status != 0:
        problems.insert(0, f"exit status {status}: {stderr.strip().splitlines()[-1:]}")
    return Run("ours", name, seconds, peak, max_rss, summary, tuple(problems))


def theirs(
    python: Path, folder: Path, urls: Path, workers: int, expected: dict[str, int], name: str, timeout: float
) -> Run:
    script = folder / "reader_pass.py"
    script.write_text(READER_SCRIPT, encoding="utf-8")
    cmd = [str(python), str(script), str(folder / "reader.sqlite"), str(workers), str(urls)]
    seconds, peak, max_rss, status, stdout, stderr = run_tree_measured(cmd, folder, dict(os.environ), timeout)
    summary = parse_summary(stdout)
    problems = [] if summary is not None else ["no JSON summary"]
    if summary is not None:
        for key in ("entries_new", "failed"):
            if summary.get(key) != expected[key]:
                problems.append(f"{key} = {summary.get(key)}, expected {expected[key]}")
        if summary.get("first_error"):
            problems.append(f"first error: {summary['first_error'][:200]}")
    if status != 0:
        problems.insert(0, f"exit status {status}: {stderr.strip().splitlines()[-1:]}")
    return Run("reader", name, seconds, peak, max_rss, summary, tuple(problems))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; 0 if every pass of every tool counted right, else 1."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="server delay per request, seconds")
    parser.add_argument("--changed", type=float, default=0.3, help="share of feeds changed for the changed pass")
    parser.add_argument("--new-entries", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8, help="reader's update_feeds(workers=...)")
    parser.add_argument("--per-host", type=int, default=16, help="our fetch.per_host (all feeds are on 127.0.0.1)")
    parser.add_argument("--concurrency", type=int, default=0, help="our fetch.concurrency (default: the config's)")
    parser.add_argument("--reader-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--no-install", action="store_true", help="use an existing reader venv or skip reader")
    parser.add_argument("--skip-reader", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="also write every run to this file")
    args = parser.parse_args(argv)

    python = None if args.skip_reader else find_reader(args.reader_venv, install=not args.no_install)
    ours_python = find_ours(OURS_VENV, install=not args.no_install)
    if python is None and not args.skip_reader:
        print("reader is not available: comparing nothing, running ours only", file=sys.stderr)
    tools = [tool for tool in TOOLS if tool == "ours" or python is not None]

    if args.corpus == "real":
        base, changed, total, n_changed, n_added = real_corpus()
        args.feeds = len(base)
        expected = {
            "cold": {"feeds": args.feeds, "ok": args.feeds, "failed": 0, "entries_new": total},
            "warm": {"feeds": args.feeds, "not_modified": args.feeds, "failed": 0, "entries_new": 0},
            "changed": {
                "feeds": args.feeds, "ok": n_changed, "not_modified": args.feeds - n_changed, "failed": 0,
                "entries_new": n_added,
            },
        }  # fmt: skip
        described = (
            f"real feeds: {args.feeds} feeds, {total} entries; a day later {n_changed} feeds changed, {n_added} new"
        )
    else:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
        base = build_corpus(args.feeds, args.entries, seed=args.seed, now=now)
        changed = change_corpus(base, args.changed, args.new_entries, seed=args.seed)
        n_changed = sum(changed[path] != base[path] for path in base)
        total = args.feeds * args.entries
        expected = {
            "cold": {"feeds": args.feeds, "ok": args.feeds, "failed": 0, "entries_new": total},
            "warm": {"feeds": args.feeds, "not_modified": args.feeds, "failed": 0, "entries_new": 0},
            "changed": {
                "feeds": args.feeds, "ok": n_changed, "not_modified": args.feeds - n_changed, "failed": 0,
                "entries_new": n_changed * min(args.new_entries, args.entries),
            },
        }  # fmt: skip
        described = (
            f"{args.feeds} feeds x {args.entries} entries, changed pass: {n_changed} feeds with {args.new_entries} "
            "new entries"
        )
    mb = sum(map(len, base.values())) / 1e6
    print(
        f"corpus: {described} ({mb:.0f} MB); latency {args.latency * 1000:.0f} ms; {args.repeat} repeat(s); "
        f"tools: {', '.join(tools)}",
        flush=True,
    )
    runs: list[Run] = []
    workdir = Path(tempfile.mkdtemp(prefix="aggregator-compare-"))
    try:
        with CorpusServer(base, latency=args.latency) as server:
            urls = workdir / "urls.txt"
            urls.write_text("\n".join(server.urls()), encoding="utf-8")
            for repeat in range(args.repeat):
                order = tools if repeat % 2 == 0 else tools[::-1]
                for tool in order:
                    folder = workdir / f"{tool}-{repeat}"
                    folder.mkdir()
                    fetch: dict[str, int] = {"per_host": args.per_host}
                    if args.concurrency:
                        fetch["concurrency"] = args.concurrency
                    config = write_config(folder, server.urls(), fetch=fetch)
                    server.set_corpus(base)
                    for name in PASSES:
                        if name == "changed":
                            server.set_corpus(changed)
                        if tool == "ours":
                            run = ours(ours_python, folder, config, expected[name], name, args.timeout)
                        else:
                            assert python is not None
                            run = theirs(python, folder, urls, args.workers, expected[name], name, args.timeout)
                        runs.append(run)
                        status = "ok" if not run.problems else "FAIL: " + "; ".join(run.problems)
                        print(
                            f"  repeat {repeat + 1} {tool:<6} {name:<8} {run.seconds:8.2f} s  "
                            f"{run.peak_mb:6.0f} MB PSS {run.max_rss_mb:6.0f} MB RSS  {status}",
                            flush=True,
                        )
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(runs, tools, total, args)
    if args.json:
        rows = [{name: getattr(run, name) for name in Run.__slots__} for run in runs]
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 1 if any(run.problems for run in runs) else 0


def report(runs: list[Run], tools: list[str], total: int, args: argparse.Namespace) -> None:
    """The table of medians, ratios and targets."""

    def runs_of(tool: str, name: str) -> list[Run]:
        return [run for run in runs if run.tool == tool and run.name == name]

    print()
    print(f"{'pass':<9}{'tool':<8}{'median s':>10}{'min s':>8}{'max s':>8}{'entries/s':>11}{'PSS MB':>8}"
          f"{'RSS MB':>8}{'cluster s':>11}")  # fmt: skip
    for name in PASSES:
        for tool in tools:
            chosen = runs_of(tool, name)
            seconds = [run.seconds for run in chosen]
            stored = total if name == "cold" else 0
            rate = f"{stored / median(seconds):,.0f}" if stored else "-"
            cluster = [run.summary.get("cluster_seconds") for run in chosen if run.summary and tool == "ours"]
            cluster_text = f"{median([c for c in cluster if isinstance(c, int | float)]):.2f}" if cluster else "-"
            print(
                f"{name:<9}{tool:<8}{median(seconds):>10.2f}{min(seconds):>8.2f}{max(seconds):>8.2f}{rate:>11}"
                f"{median([run.peak_mb for run in chosen]):>8.0f}{median([run.max_rss_mb for run in chosen]):>8.0f}"
                f"{cluster_text:>11}"
            )
    if "reader" not in tools:
        return
    print()
    print(f"{'pass':<9}{'reader s / ours s':>19}{'target':>8}{'ours PSS / reader PSS':>23}{'target':>8}  verdict")
    for name in PASSES:
        ours_s = median([run.seconds for run in runs_of("ours", name)])
        reader_s = median([run.seconds for run in runs_of("reader", name)])
        ours_mb = median([run.peak_mb for run in runs_of("ours", name)])
        reader_mb = median([run.peak_mb for run in runs_of("reader", name)])
        speedup, memory = reader_s / ours_s, ours_mb / reader_mb
        verdict = []
        verdict.append("speed met" if speedup >= TARGET_SPEEDUP[name] else "speed MISSED")
        verdict.append("memory met" if memory <= TARGET_MEMORY else "memory MISSED")
        print(
            f"{name:<9}{speedup:>18.2f}x{TARGET_SPEEDUP[name]:>7.1f}x{memory:>22.2f}x{TARGET_MEMORY:>7.1f}x  "
            f"{', '.join(verdict)}"
        )


if __name__ == "__main__":
    sys.exit(main())
