"""How often our parse + normalize agree with feedparser's own test corpus, and that nothing in it crashes us.

    python benchmarks/feedparser_agreement.py                  # ../shared/data/malformed/feedparser
    python benchmarks/feedparser_agreement.py --verbose        # also list every disagreement
    python benchmarks/feedparser_agreement.py --corpus DIR

Every file of the corpus goes through `parse_feed` and `normalize_entry` the way `aggregator update` sends a
fetched body (the file's `Header:` lines as response headers, its URL on feedparser's test server as the base).
A ParseError is an answer (we refuse some documents on purpose); any other exception is a crash and makes the
exit status 1.

For the well-formed files (under wellformed/, or whose `Expect:` starts with `not bozo`) each clause of the
`Expect:` line that says what entries[0]'s title, link, id (or guid), published_parsed or updated_parsed is
becomes one check against the entry we would store:

- title: feedparser keeps the markup of an HTML title; we store plain text, so the expected value is compared
  after the same `clean_text` our titles get (`'Example <b>Atom</b>'` is `'Example Atom'` for both);
- link: the stored `url` (absolute, http/https only);
- id/guid: the stored `guid`;
- published_parsed/updated_parsed: the stored `published`/`updated`, in UTC.

Agreement is agreed checks / all checks. The clauses' right-hand sides are read with a tiny evaluator that
accepts only literals, tuples and `+` of strings: the corpus is data, never code we run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aggregator.errors import ParseError  # noqa: E402
from aggregator.models import Entry  # noqa: E402
from aggregator.normalize import clean_text, normalize_entry  # noqa: E402
from aggregator.parse import parse_feed  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "malformed" / "feedparser"
# feedparser's test suite serves every file from this server, so its expectations use this base URL
BASE = "http://127.0.0.1:8097/tests/"
NOW = datetime(2026, 8, 19, 12, 0, tzinfo=UTC)
FIELDS = {
    "title": "title",
    "link": "link",
    "id": "id",
    "guid": "id",
    "published_parsed": "published",
    "updated_parsed": "updated",
}
_HEADER_LINE = re.compile(r"^(Header|Expect|SkipUnless|Description):\s*(.*)$", re.M)


@dataclass
class Check:
    """One clause of an Expect line against our value."""

    file: str
    field: str
    expected: Any
    ours: Any

    @property
    def agrees(self) -> bool:
        return bool(self.expected == self.ours)


@dataclass
class Report:
    """What one run over the corpus found."""

    files: int = 0
    parsed: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    crashes: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    well_formed: int = 0

    @property
    def agreed(self) -> int:
        return sum(check.agrees for check in self.checks)

    @property
    def rate(self) -> float:
        return self.agreed / len(self.checks) if self.checks else 0.0

    def by_field(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for check in self.checks:
            agreed, total = totals.get(check.field, (0, 0))
            totals[check.field] = (agreed + check.agrees, total + 1)
        return dict(sorted(totals.items()))


def metadata(text: str) -> tuple[dict[str, str], list[str], str]:
    """(headers, Expect lines, SkipUnless) from the comment at the top of a corpus file."""
    head = text[: text.find("-->") + 3] if "-->" in text[:4000] else ""
    headers: dict[str, str] = {}
    expects: list[str] = []
    skip = ""
    for kind, value in _HEADER_LINE.findall(head):
        if kind == "Header" and ":" in value:
            name, _, content = value.partition(":")
            headers[name.strip().lower()] = content.strip()
        elif kind == "Expect":
            expects.append(value.strip())
        elif kind == "SkipUnless":
            skip = value.strip()
    return headers, expects, skip


def literal(node: ast.expr) -> Any:
    """The value of a literal expression: constants, tuples, and `+` of two literals; else ValueError."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(literal(element) for element in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal(node.left) + literal(node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -literal(node.operand)
    raise ValueError(ast.dump(node))


def entry_field(node: ast.expr) -> str | None:
    """`entries[0]['title']` or `entries[0].title` -> 'title', for the fields we check."""
    name = None
    target: ast.expr | None = None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        name, target = node.slice.value, node.value
    elif isinstance(node, ast.Attribute):
        name, target = node.attr, node.value
    if name not in FIELDS or target is None:
        return None
    if (
        isinstance(target, ast.Subscript)
        and isinstance(target.value, ast.Name)
        and target.value.id == "entries"
        and isinstance(target.slice, ast.Constant)
        and target.slice.value == 0
    ):
        return name
    return None


def clauses(expect: str) -> list[tuple[str, Any]]:
    """(field, expected value) for each `entries[0][field] == literal` clause of an Expect expression."""
    try:
        tree = ast.parse(expect, mode="eval").body
    except SyntaxError:
        return []
    parts = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
    found = []
    for part in parts:
        if not isinstance(part, ast.Compare) or not all(isinstance(op, ast.Eq) for op in part.ops):
            continue
        operands = [part.left, *part.comparators]
        names = [entry_field(operand) for operand in operands]
        values = []
        for operand, name in zip(operands, names, strict=True):
            if name is None:
                with contextlib.suppress(ValueError):
                    values.append(literal(operand))
        if len(values) == 1:
            found.extend((name, values[0]) for name in names if name is not None)
    return found


def ours(entry: Entry, name: str) -> Any:
    if name == "title":
        return entry.title
    if name == "link":
        return entry.url
    if name in ("id", "guid"):
        return entry.guid
    moment: datetime = entry.published if name == "published_parsed" else entry.updated
    return moment.timetuple()[:6]


def expected_value(name: str, value: Any) -> Any:
    if name == "title" and isinstance(value, str):
        return clean_text(value)
    if name in ("published_parsed", "updated_parsed") and isinstance(value, tuple):
        return tuple(value[:6])
    return value


def measure(corpus: Path) -> Report:
    """Run every file of the corpus through parse and normalize, and check the Expect clauses."""
    report = Report()
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".xml", ".json", ".rdf")):
        report.files += 1
        relative = path.relative_to(corpus).as_posix()
        body = path.read_bytes()
        headers, expects, _ = metadata(body.decode("utf-8", "replace"))
        base = BASE + relative
        try:
            feed = parse_feed(body, dict(headers, **{"content-location": base}))
            entries = [normalize_entry(entry, base, NOW) for entry in feed.entries]
        except ParseError as e:
            report.refused[str(e).split(":")[0]] += 1
            continue
        except Exception as e:  # a crash: what this script exists to find
            report.crashes.append((relative, f"{type(e).__name__}: {e}"))
            continue
        report.parsed += 1
        well_formed = relative.startswith("wellformed/") or any(e.startswith("not bozo") for e in expects)
        if not well_formed:
            continue
        report.well_formed += 1
        for expect in expects:
            for name, value in clauses(expect):
                mine = ours(entries[0], name) if entries else None
                report.checks.append(Check(relative, name, expected_value(name, value), mine))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--verbose", action="store_true", help="list every disagreement")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"no corpus at {args.corpus}", file=sys.stderr)
        return 2
    report = measure(args.corpus)
    print(f"corpus: {args.corpus}")
    print(f"files: {report.files}, parsed: {report.parsed}, refused (ParseError): {sum(report.refused.values())}, "
          f"crashes: {len(report.crashes)}")  # fmt: skip
    for reason, count in report.refused.most_common():
        print(f"  refused {count:4d}: {reason}")
    print(f"well-formed files: {report.well_formed}, checks from their Expect lines: {len(report.checks)}")
    for name, (agreed, total) in report.by_field().items():
        print(f"  {name:17s} {agreed:4d} / {total:4d}  ({agreed / total:.1%})")
    print(f"agreement: {report.agreed} / {len(report.checks)} = {report.rate:.1%}")
    if args.verbose:
        for check in report.checks:
            if not check.agrees:
                print(f"  differs: {check.file}: {check.field}: expected {check.expected!r}, ours {check.ours!r}")
    for file, error in report.crashes:
        print(f"  CRASH: {file}: {error}")
    return 1 if report.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
