"""The SQLite store: schema, migrations and every query. The only package that speaks SQL.

Users query this database with their own tools, so its tables are a public contract documented in README.
WAL mode lets readers (sqlite3, Datasette) work while a pass writes; every feed's update is one transaction,
so a crash leaves each feed either before or after its update, never half-way. Times are ISO-8601 UTC text
(`2026-11-26T03:12:01Z`), which sorts correctly as text.

`Store` is one facade over a module per concept, each a mixin over `StoreBase` (the connection, transactions,
errors), as lemon24/reader's storage is:

- `base.py`: opening, transactions, errors; `schema.py`: the migrations (the schema's history);
- `feeds.py`: subscriptions and fetches that stored nothing; `schedules.py`: next fetches, host holds, plans;
- `entries.py`: storing a fetched feed's entries, reading them back for clustering;
- `stories.py`: `StoryWriter` (clustering's writes) and story queries; `search.py`: full-text search;
- `pruning.py`: deleting old stories, tombstones; `health.py`: feed status for `feeds` and /health;
- `rows.py`: column lists and row <-> model conversions; `results.py`: what queries return beyond the models.

Storage takes plain values and models (models.py): it imports no policy (config, schedule, retention).
"""

from __future__ import annotations

from .base import BUSY_TIMEOUT_SECONDS, StoreBase
from .entries import EntriesMixin
from .feeds import FeedsMixin
from .health import HealthMixin
from .pruning import PruningMixin
from .results import FeedHealth, Highlighted, PruneResult, SavedFeed, SearchMatch, SearchResult
from .rows import format_time, parse_time
from .schedules import SchedulesMixin
from .schema import SCHEMA_VERSION
from .search import SearchMixin
from .stories import StoriesMixin, StoryWriter

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


class Store(FeedsMixin, SchedulesMixin, EntriesMixin, SearchMixin, StoriesMixin, PruningMixin, HealthMixin, StoreBase):
    """An open aggregator database: every query the pipeline, CLI and service make, one concept per mixin.

    Create with `Store.open(path)`; close with `close()` or `with`.
    """
