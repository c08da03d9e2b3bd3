"""aggregator: polls news feeds, clusters the same story across outlets, publishes one aggregated feed."""

from __future__ import annotations

import sys

from .errors import (
    AggregatorError,
    ConfigError,
    FeedError,
    FetchError,
    OutputError,
    ParseError,
    QueryError,
    StoreError,
)

__version__ = "0.1.0"

# httpx imports its command-line client (httpx._main, with rich's syntax highlighting and pygments) whenever
# click, rich and pygments are installed, as ours are: 0.12 s of every pass's start-up for a tool we never run.
# Marked absent before httpx loads, httpx defines its stub `httpx.main` instead (tests/test_contracts.py).
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

__all__ = [
    "AggregatorError",
    "ConfigError",
    "FeedError",
    "FetchError",
    "OutputError",
    "ParseError",
    "QueryError",
    "StoreError",
    "__version__",
]
