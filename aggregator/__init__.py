"""aggregator: polls news feeds, clusters the same story across outlets, publishes one aggregated feed."""

from __future__ import annotations

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
