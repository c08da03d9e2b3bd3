"""The SQLite store: schema, migrations and every query. The only package that speaks SQL.

Users query this database with their own tools, so its tables are a public contract documented in README.
WAL mode lets readers (sqlite3, Datasette) work while a pass writes; every feed's update is one transaction,
so a crash leaves each feed either before or after its update, never half-way. Times are ISO-8601 UTC text
(`2026-11-26T03:12:01Z`), which sorts correctly as text.

- `schema.py`: the migrations (the schema's history, version by version);
- `core.py`: `Store`, an open database and its queries, for the pipeline, the CLI and the service;
- `stories.py`: `StoryWriter`, story rows and assignments inside one clustering transaction;
- `rows.py`: column lists and row <-> model conversions; `search.py`: full-text search helpers;
- `results.py`: what queries return beyond the pipeline's models.
"""

from __future__ import annotations

from .core import BUSY_TIMEOUT_SECONDS, Store
from .results import FeedHealth, Highlighted, PruneResult, SavedFeed, SearchMatch, SearchResult
from .rows import format_time, parse_time
from .schema import SCHEMA_VERSION
from .stories import StoryWriter

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "SCHEMA_VERSION",
    "FeedHealth",
    "Highlighted",
    "PruneResult",
    "SavedFeed",
    "SearchMatch",
    "SearchResult",
    "Store",
    "StoryWriter",
    "format_time",
    "parse_time",
]
