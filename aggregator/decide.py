"""What storing one fetched feed writes: a pure decision from what the store holds, the parsed feed and `now`.

As lemon24/reader's Decider: the store reads what it holds of the entries a document lists (`EntryForUpdate`),
`decide_update` says which are new, changed, resent or tombstoned (a `FeedUpdateIntent`), and the store writes
exactly that in the same transaction (Store.save_feed). Nothing here touches SQLite or reads the clock, so
every rule is tested on plain values (tests/test_decide.py):

- an entry the store does not hold is new, unless a tombstone names it (pruned by retention: it stays out,
  and its tombstone is marked as still listed);
- a held entry whose content hash differs is changed and rewritten in place; an undated one (its date is when
  we first saw it) keeps the dates it was first stored with, so a change does not make it news again;
- a held entry with the same content but another source hash was resent differently (new markup, reordered
  fields): only its source hash is rewritten, so the next pass skips it before normalizing;
- anything else writes nothing; an id a document repeats counts once (the first occurrence wins).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .models import Entry, FetchResult, ParsedFeed

__all__ = ["EntryChange", "EntryForUpdate", "FeedUpdateIntent", "decide_update"]


@dataclass(frozen=True, slots=True)
class EntryForUpdate:
    """What the store holds of one entry a fetched document lists."""

    entry_id: int
    content_hash: str
    source_hash: str | None = None


@dataclass(frozen=True, slots=True)
class EntryChange:
    """A stored entry to rewrite in place with what the feed sends now."""

    entry_id: int
    entry: Entry
    # an undated entry keeps its stored published/updated dates: it is not news again for changing
    keep_dates: bool = False


@dataclass(frozen=True, slots=True)
class FeedUpdateIntent:
    """Everything one fetched feed writes, in one transaction: its entries and its feed row."""

    feed_id: int
    fetched_at: datetime
    new: tuple[Entry, ...] = ()
    changed: tuple[EntryChange, ...] = ()
    # (entry id, source hash) of entries resent with the same content
    resent: tuple[tuple[int, str], ...] = ()
    # guids of tombstoned entries the document still lists
    listed_tombstones: frozenset[str] = frozenset()
    # the feed row: what the document and the response said
    title: str | None = None
    site_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    http_status: int | None = None
    warning: str | None = None


def decide_update(
    feed_id: int,
    stored: Mapping[str, EntryForUpdate],
    tombstoned: Collection[str],
    result: FetchResult,
    parsed: ParsedFeed,
    entries: Sequence[Entry],
    now: datetime,
) -> FeedUpdateIntent:
    """What to write for one fetched feed, given what the store holds of its entries (`stored`, by guid) and
    which of the others have tombstones (`tombstoned`)."""
    new: list[Entry] = []
    changed: list[EntryChange] = []
    resent: list[tuple[int, str]] = []
    listed: set[str] = set()
    seen: set[str] = set()
    for entry in entries:
        if entry.guid in seen:  # a feed that repeats an id: the first occurrence wins
            continue
        seen.add(entry.guid)
        old = stored.get(entry.guid)
        if old is None:
            if entry.guid in tombstoned:  # pruned by retention: its tombstone keeps it from coming back
                listed.add(entry.guid)
            else:
                new.append(entry)
        elif old.content_hash != entry.content_hash:
            changed.append(EntryChange(old.entry_id, entry, keep_dates=not entry.dated))
        elif entry.source_hash and old.source_hash != entry.source_hash:  # the same content sent differently
            resent.append((old.entry_id, entry.source_hash))
    return FeedUpdateIntent(
        feed_id=feed_id,
        fetched_at=now,
        new=tuple(new),
        changed=tuple(changed),
        resent=tuple(resent),
        listed_tombstones=frozenset(listed),
        title=parsed.title,
        site_url=parsed.link,
        etag=result.etag,
        last_modified=result.last_modified,
        body_hash=result.body_hash,
        http_status=result.http_status,
        warning=parsed.warning,
    )
