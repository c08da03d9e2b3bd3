"""The benchmark scripts keep working: a tiny corpus through benchmarks/compare.py and benchmarks/ingest.py.

Correctness only (every pass counts the entries it should); no timing is asserted. compare.py runs reader only
when its virtualenv already exists (benchmarks/.venv-reader, made by a first `python benchmarks/compare.py`);
installing reader is not this test's job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
READER_PYTHON = BENCHMARKS / ".venv-reader" / "bin" / "python"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(BENCHMARKS.parent))
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=120, env=env
    )


def reader_installed() -> bool:
    probe = [str(READER_PYTHON), "-c", "import reader, sgmllib"]
    return READER_PYTHON.exists() and subprocess.run(probe, capture_output=True).returncode == 0


def test_compare_ours_on_a_tiny_corpus() -> None:
    done = run("compare.py", "--feeds", "6", "--entries", "4", "--repeat", "1", "--skip-reader", "--no-install")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "6 feeds x 4 entries" in lines[0]
    passes = [line.split() for line in lines if line.startswith("  repeat")]
    assert [(p[2], p[3], p[-1]) for p in passes] == [("ours", name, "ok") for name in ("cold", "warm", "changed")]
    table = {tuple(line.split()[:2]) for line in lines if line.split()[:1] in (["cold"], ["warm"], ["changed"])}
    assert table == {("cold", "ours"), ("warm", "ours"), ("changed", "ours")}


@pytest.mark.skipif(not reader_installed(), reason="no reader virtualenv (python benchmarks/compare.py makes one)")
def test_compare_both_tools_on_a_tiny_corpus() -> None:
    done = run("compare.py", "--feeds", "6", "--entries", "4", "--repeat", "1", "--no-install")
    assert done.returncode == 0, done.stdout + done.stderr
    passes = [line.split() for line in done.stdout.splitlines() if line.startswith("  repeat")]
    assert sorted((p[2], p[3], p[-1]) for p in passes) == sorted(
        (tool, name, "ok") for tool in ("ours", "reader") for name in ("cold", "warm", "changed")
    )
    verdicts = [line for line in done.stdout.splitlines() if "speed" in line and "memory" in line]
    assert [line.split()[0] for line in verdicts] == ["cold", "warm", "changed"]


def test_ingest_on_a_tiny_corpus() -> None:
    done = run("ingest.py", "--sizes", "5x4", "--changed", "0.4", "--new-entries", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[-1]) for row in rows] == [
        ("5x4", "cold", "ok"),
        ("5x4", "warm", "ok"),
        ("5x4", "changed", "ok"),
    ]


SHARED_DATA = BENCHMARKS.parents[1] / "shared" / "data" / "stories"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside the checkout")
def test_tune_dedup_measures_both_data_sets() -> None:
    done = run("tune_dedup.py", "--smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["rumca-dev", "uci-dev"]
    assert all("ms/entry" in line for line in lines)
    assert "A P=" in lines[0] and "B P=" in lines[0] and "h0 P=" in lines[1] and "h1 P=" in lines[1]
