"""feedparser's own test corpus through our parse and normalize: no crash, and agreement with its expectations.

The measurement lives in benchmarks/feedparser_agreement.py (which prints the numbers); this test holds the
floors. Measured: 2,107 files, none crashes, 8 refused as not feeds; 116 of the 120 checks that Expect lines
make on entries[0]'s title, link, id and dates agree (96.7 %). The four that differ are choices: ids are kept
exactly as published (feedparser resolves relative ones), the document URL is the base rather than a
Content-Location header, and a title is the text of its HTML without script text.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

AGREEMENT_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "feedparser_agreement.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("feedparser_agreement", AGREEMENT_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def test_the_whole_corpus_parses_without_a_crash_and_agrees(shared_data: Path) -> None:
    agreement = _load()
    report = agreement.measure(shared_data / "malformed" / "feedparser")
    assert report.files > 2_000
    assert report.crashes == []
    assert report.parsed + sum(report.refused.values()) == report.files
    assert set(report.refused) <= {"not a feed", "empty body"}
    assert len(report.checks) >= 110
    assert report.rate >= 0.95, [c for c in report.checks if not c.agrees]
    fields = report.by_field()
    for name in ("title", "link", "published_parsed", "updated_parsed"):
        agreed, total = fields[name]
        assert agreed / total >= 0.9, (name, agreed, total)


def test_the_clause_reader_evaluates_only_literals() -> None:
    agreement = _load()
    assert agreement.clauses("not bozo and entries[0]['title'] == 'A' + 'B'") == [("title", "AB")]
    assert agreement.clauses("entries[0].link == entries[1]['link'] == 'http://x/'") == [("link", "http://x/")]
    assert agreement.clauses("entries[0]['published_parsed'] == (2003, 12, 31, 10, 14, 55, 2, 365, 0)") == [
        ("published_parsed", (2003, 12, 31, 10, 14, 55, 2, 365, 0))
    ]
    assert agreement.clauses("entries[0]['title'] == __import__('os').getcwd()") == []
    assert agreement.clauses("entries[0]['summary'] == 'x'") == []
