"""The one exception tree of aggregator.

AggregatorError            anything aggregator raises on purpose; the CLI prints it in one line
├── ConfigError            feeds.yaml is missing, not YAML, or invalid (exit code 2)
├── StoreError             the SQLite database cannot be opened, migrated or written
├── FeedError              one feed could not be used; recorded on that feed, never stops a pass
│   ├── FetchError         the HTTP request failed (network, status, size, time)
│   └── ParseError         the body is not a feed we can read
├── OutputError            an output file could not be written
└── QueryError             a search query or a lookup the user typed is not valid
"""

from __future__ import annotations

__all__ = [
    "AggregatorError",
    "ConfigError",
    "FeedError",
    "FetchError",
    "OutputError",
    "ParseError",
    "QueryError",
    "StoreError",
]


class AggregatorError(Exception):
    """Root of every error aggregator raises on purpose."""

    exit_code = 1


class ConfigError(AggregatorError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2


class StoreError(AggregatorError):
    """The database cannot be opened, migrated or written."""

    exit_code = 3


class FeedError(AggregatorError):
    """One feed could not be fetched or parsed."""


class FetchError(FeedError):
    """The HTTP request for a feed failed."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class ParseError(FeedError):
    """The document is not a feed we can read."""


class OutputError(AggregatorError):
    """An output file could not be written."""

    exit_code = 4


class QueryError(AggregatorError):
    """A query or identifier given by the user is not valid."""

    exit_code = 2
