"""StoreBase: one open database, its write transactions and the error wrapping every query goes through.

Each concept of the store (feeds.py, schedules.py, entries.py, stories.py, search.py, pruning.py, health.py) is
a mixin over this base; `Store` (store/__init__.py) is their union. Any SQLite failure leaves here as a
StoreError naming the database and saying what it means for the user.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sqlite_utils import Database

from ..errors import StoreError
from .schema import migrate

__all__ = ["BUSY_TIMEOUT_SECONDS", "StoreBase", "explain"]

BUSY_TIMEOUT_SECONDS = 30.0


class StoreBase:
    """An open aggregator database. Create with `Store.open(path)`; close with `close()` or `with`."""

    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self.path = path
        self.busy_timeout = BUSY_TIMEOUT_SECONDS

    @classmethod
    def open(cls, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> Self:
        """Open (creating and migrating as needed) the database at `path`.

        `busy_timeout` is how long a write waits for another process's write transaction to end before it
        fails with "database is locked".
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
            _use_wal(conn, busy_timeout)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = Database(conn, execute_plugins=False)
            migrate(db)
        except sqlite3.Error as e:
            if "unable to open" in str(e) and path.parent.is_dir() and not os.access(path.parent, os.W_OK):
                # WAL mode needs the -wal and -shm files beside the database, so its folder must be writable
                raise StoreError(
                    f"{path}: cannot open the database: its folder {path.parent} is read-only ({e})"
                ) from e
            raise StoreError(f"{path}: cannot open the database: {explain(e, busy_timeout)}") from e
        except OSError as e:
            raise StoreError(f"{path}: cannot open the database: {e.strerror or e}") from e
        store = cls(db, path)
        store.busy_timeout = busy_timeout
        return store

    def close(self) -> None:
        """Close the connection."""
        self.db.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; any SQLite failure becomes a StoreError naming the database.

        It starts with BEGIN IMMEDIATE: the write lock is taken (waiting up to the busy timeout for another
        writer) before anything is read, so a transaction never reads, then finds its snapshot stale when it
        writes; that fails at once with "database is locked", busy timeout or not. Nested, it is a savepoint.
        """
        conn = self.db.conn
        with self._errors():
            if conn.in_transaction:
                with self.db.atomic():
                    yield
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
                    conn.execute("ROLLBACK")
                raise

    def install_id(self) -> str:
        """The random id this store got when it was made (m010): what makes this install's output ids unique."""
        (value,) = self._query("SELECT value FROM meta WHERE key = 'install_id'")[0]
        return str(value)

    def count(self, table: str) -> int:
        """Rows in one of our tables."""
        if table not in ("feeds", "entries", "stories"):
            raise ValueError(table)
        return int(self._query(f"SELECT count(*) FROM {table}")[0][0])

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Any SQLite failure inside becomes a StoreError naming the database: every public read goes through
        here (via _rows, _query or _iterate) or through transaction(), so none escapes as sqlite3.Error."""
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {explain(e, self.busy_timeout)}") from e

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._errors():
            cursor = self.db.conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors():
            return self.db.conn.execute(sql, params).fetchall()

    def _iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a query one at a time, for scans too large to hold (the dedup window)."""
        with self._errors():
            yield from self.db.conn.execute(sql, params)


def _use_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the database in WAL mode. SQLite does not apply the busy timeout to this switch: a process opening a
    new database while another one switches it got "database is locked" at once, so it is retried here."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def explain(error: sqlite3.Error, busy_timeout: float) -> str:
    """SQLite's message with what it means for the user, for the faults a running service meets."""
    text = str(error)
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return (
            f"{text}: another process kept a write transaction open for more than {busy_timeout:g} s; "
            "try again when it is done"
        )
    if "readonly database" in lowered or "read-only" in lowered:
        return f"{text}: the database file or its folder is read-only; nothing was written"
    if "database or disk is full" in lowered:
        return f"{text}: disk full; the last transaction was rolled back, free some space and run again"
    if "disk i/o error" in lowered:
        return f"{text}: the disk failed a read or write; the last transaction was rolled back"
    if "unable to open database file" in lowered:
        return f"{text}: check that the folder exists and is writable"
    if "file is not a database" in lowered or "malformed" in lowered:
        return f"{text}: the file is damaged or not an aggregator database"
    return text
