"""Synthetic news feeds and a loopback server for benchmarks and tests.

Nothing here imports aggregator: the corpus is a plain `{path: body}` dict, so any client can be measured
against it. A feed is fully determined by `(seed, feed index, newest entry serial, entry count, base time)`,
which the feed records in its `<generator>` element; that lets `change_corpus` add entries to a feed without
re-rendering (and so without changing) the entries it already had.

Sizes follow real outlets: BBC and Guardian feeds carry 1-3 KB per item once the HTML summary is counted, so
an entry here is about 2.2 KB, i.e. 200 feeds x 50 entries is about 22 MB.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import yaml

__all__ = [
    "BASE_TIME",
    "CorpusServer",
    "Measurement",
    "build_corpus",
    "change_corpus",
    "child_pids",
    "feed_path",
    "peak_rss_of",
    "run_measured",
    "running",
    "write_config",
]

# The newest entry of every feed is dated about here unless `build_corpus(now=...)` says otherwise; fixed so
# that the same seed always gives the same bytes.
BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

# Entry serial k of a feed is dated STEP after serial k - 1, minus up to STEP / 2 of jitter (so order holds):
# 50 entries span about four days, like a busy section feed.
_STEP = timedelta(hours=2)

# Share of entries that report one of the slot's shared stories; the rest are unique to their feed.
_SHARED_FRACTION = 0.35
# Shared stories per serial slot: at 200 feeds x 35 % about 9 outlets report each story, at 1,000 about 44.
_STORIES_PER_SLOT = 8

_GENERATOR_RE = re.compile(rb"<generator>aggregator-benchmarks corpus ([^<]*)</generator>")

_PLACES = (
    "Germany", "France", "Japan", "Brazil", "India", "Canada", "Kenya", "Mexico", "Australia", "Egypt",
    "Poland", "Spain", "Italy", "Nigeria", "Indonesia", "Chile", "Norway", "Turkey", "Vietnam", "Ukraine",
    "Argentina", "Sweden", "Ghana", "Peru", "Greece", "Europe", "Asia", "Africa", "Washington", "Brussels",
)  # fmt: skip
_SUBJECTS = (
    "central bank", "government", "parliament", "regulators", "prime minister", "president", "court",
    "voters", "workers", "investors", "carmakers", "chipmakers", "airlines", "farmers", "scientists",
    "startups", "banks", "retailers", "energy firms", "tech giants", "unions", "police", "doctors", "judges",
)  # fmt: skip
_VERBS = (
    "raises", "cuts", "approves", "rejects", "delays", "unveils", "blocks", "backs", "warns over",
    "announces", "expands", "pauses", "reviews", "signs", "launches", "probes", "ends", "extends", "fines",
    "agrees", "halts", "boosts", "slashes", "defends",
)  # fmt: skip
_ADJECTIVES = (
    "new", "record", "surprise", "controversial", "long-awaited", "sweeping", "emergency", "landmark",
    "major", "global", "fragile", "rising", "temporary", "digital", "green", "historic", "rare", "key",
    "early", "final", "national", "regional", "bold", "cautious",
)  # fmt: skip
_NOUNS = (
    "interest rates", "budget", "trade deal", "election", "climate plan", "tariffs", "ceasefire",
    "merger", "chip exports", "data rules", "minimum wage", "tax reform", "rail strike", "gas prices",
    "housing market", "AI law", "vaccine rollout", "peace talks", "oil output", "bond sale", "flood defences",
    "satellite launch", "privacy fine", "battery plant", "wheat harvest", "pension reform", "border checks",
)  # fmt: skip
_CONNECTORS = ("amid", "after", "as", "despite", "over", "ahead of", "following", "before")
_FILLER = (
    "the", "a", "of", "and", "to", "in", "on", "for", "with", "by", "that", "from", "at", "its", "their",
    "said", "would", "could", "will", "has", "have", "was", "were", "is", "are", "not", "more", "than",
    "officials", "analysts", "statement", "week", "month", "year", "plan", "report", "talks", "market",
    "company", "minister", "people", "country", "city", "region", "sector", "prices", "growth", "demand",
    "supply", "costs", "shares", "profits", "losses", "jobs", "spending", "policy", "decision", "deal",
    "agreement", "proposal", "vote", "law", "rules", "court", "ruling", "appeal", "inquiry", "evidence",
    "data", "figures", "survey", "forecast", "outlook", "risk", "crisis", "recovery", "pressure", "support",
    "opposition", "critics", "experts", "residents", "customers", "users", "services", "network", "systems",
    "software", "platform", "devices", "research", "study", "results", "team", "project", "funding",
    "investment", "economy", "inflation", "currency", "exports", "imports", "industry", "production",
    "energy", "power", "emissions", "weather", "storm", "drought", "health", "hospital", "schools",
    "students", "security", "defence", "troops", "aid", "refugees", "border", "capital", "coast", "north",
    "south", "east", "west", "local", "federal", "public", "private", "foreign", "domestic", "senior",
    "former", "latest", "next", "last", "first", "second", "several", "many", "most", "some", "further",
    "expected", "reported", "confirmed", "announced", "described", "added", "told", "according", "during",
    "while", "since", "until", "about", "around", "nearly", "almost", "already", "still", "also", "however",
)  # fmt: skip
_CATEGORIES = (
    "World", "Business", "Technology", "Politics", "Markets", "Economy", "Science", "Climate", "Health",
    "Europe", "Asia", "Americas", "Africa", "Middle East", "Energy", "AI", "Transport", "Security",
)  # fmt: skip
_FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "James", "Kemi", "Lukas",
    "Maria", "Nikhil", "Olga", "Pedro", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yara", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Adams", "Becker", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hassan", "Ito", "Jensen", "Khan",
    "Lopez", "Moreau", "Novak", "Okafor", "Patel", "Quinn", "Rossi", "Silva", "Tanaka", "Umar", "Weber",
)  # fmt: skip
_SECTIONS = ("World", "Business", "Technology", "Top stories")


@dataclass(frozen=True, slots=True)
class _Params:
    """What a rendered feed needs besides its index: recorded in the feed's `<generator>` element."""

    seed: int
    head: int
    count: int
    base: int  # POSIX seconds of BASE_TIME or `now`

    def encode(self) -> str:
        return f"seed={self.seed} head={self.head} count={self.count} base={self.base}"

    @classmethod
    def decode(cls, body: bytes) -> _Params:
        match = _GENERATOR_RE.search(body)
        if match is None:
            raise ValueError("not a feed made by build_corpus: no generator element")
        fields = dict(part.split("=", 1) for part in match.group(1).decode().split())
        return cls(int(fields["seed"]), int(fields["head"]), int(fields["count"]), int(fields["base"]))


@dataclass(frozen=True, slots=True)
class _Entry:
    serial: int
    title: str
    link: str
    guid: str
    when: datetime
    author: str
    categories: tuple[str, ...]
    html: str


def feed_path(index: int) -> str:
    """The corpus path of feed `index`, e.g. `/feeds/0007.xml`."""
    return f"/feeds/{index:04d}.xml"


def build_corpus(n_feeds: int, n_entries: int, seed: int = 0, *, now: datetime = BASE_TIME) -> dict[str, bytes]:
    """Deterministic synthetic feeds `{"/feeds/0007.xml": body}`: even indexes RSS 2.0, odd ones Atom 1.0.

    `now` is about the date of each feed's newest entry; the same arguments always give the same bytes.
    """
    if n_feeds < 0 or n_entries < 1:
        raise ValueError("need n_feeds >= 0 and n_entries >= 1")
    params = _Params(seed=seed, head=n_entries - 1, count=n_entries, base=int(now.timestamp()))
    return {feed_path(index): _render_feed(index, params) for index in range(n_feeds)}


def change_corpus(corpus: Mapping[str, bytes], fraction: float, new_entries: int, seed: int) -> dict[str, bytes]:
    """A copy of `corpus` where `round(fraction * len(corpus))` feeds, chosen by `seed`, gained `new_entries`.

    New entries go at the top, dated after the feed's newest one; the oldest are dropped so the size stays.
    Entries a changed feed keeps are byte-identical, and unchanged feeds keep their exact bodies.
    """
    if not 0 <= fraction <= 1 or new_entries < 0:
        raise ValueError("need 0 <= fraction <= 1 and new_entries >= 0")
    paths = sorted(corpus)
    chosen = random.Random(f"change:{seed}").sample(paths, round(fraction * len(paths)))
    changed = dict(corpus)
    for path in chosen:
        params = _Params.decode(corpus[path])
        moved = _Params(params.seed, params.head + new_entries, params.count, params.base)
        changed[path] = _render_feed(_index_of(path), moved)
    return changed


def _index_of(path: str) -> int:
    match = re.fullmatch(r"/feeds/(\d+)\.xml", path)
    if match is None:
        raise ValueError(f"{path!r} is not a corpus path")
    return int(match.group(1))


# --- generation -------------------------------------------------------------------------------------------


@functools.cache
def _vocabulary() -> tuple[str, ...]:
    """Content words of news prose: wordfreq's English words ranked 2,000-40,000 (deterministic)."""
    from wordfreq import top_n_list

    return tuple(w for w in top_n_list("en", 40_000)[2_000:] if w.isalpha() and w.isascii())


def _name(rng: random.Random) -> str:
    """A made-up proper name ("Valmora"): real headlines name people, places and firms no other story does."""
    syllables = ("ka", "lo", "mi", "ra", "ven", "tor", "sa", "dri", "mo", "nel", "qua", "bel", "zu", "fen")
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).capitalize()


def _headline(rng: random.Random) -> list[str]:
    """6-12 words shaped like a news headline: who does what to which thing, often naming someone, and why."""
    place = rng.choice(_PLACES)
    words = [place + ("'" if place.endswith("s") else "'s"), *rng.choice(_SUBJECTS).split()]
    words += [*rng.choice(_VERBS).split(), rng.choice(_ADJECTIVES), *rng.choice(_NOUNS).split()]
    if rng.random() < 0.6:
        words += ["in", _name(rng)]
    if rng.random() < 0.7:
        words += [*rng.choice(_CONNECTORS).split(), rng.choice(_vocabulary())]
    if len(words) > 12:
        words = words[:12]
    while len(words) < 6:
        words += rng.choice((["this", "week"], ["again"], ["in", rng.choice(_PLACES)]))
    return words


def _near_wording(words: list[str], rng: random.Random) -> list[str]:
    """The same headline as another outlet might word it: often identical, else one small edit."""
    words = list(words)
    roll = rng.random()
    if roll < 0.4:
        return words
    if roll < 0.7:
        words[rng.randrange(1, len(words))] = rng.choice(_ADJECTIVES)
    elif roll < 0.85 and len(words) > 6:
        del words[rng.randrange(1, len(words))]
    elif len(words) < 12:
        words.insert(0, rng.choice(("Live:", "Update:", "Analysis:", "Explainer:")))
    return words


def _sentence(rng: random.Random, host: str) -> str:
    vocabulary = _vocabulary()
    words = [rng.choice(_FILLER) if rng.random() < 0.5 else rng.choice(vocabulary) for _ in range(rng.randint(10, 20))]
    words[rng.randrange(len(words))] = rng.choice(_PLACES)
    if rng.random() < 0.25:
        i = rng.randrange(len(words))
        words[i] = f'<a href="https://{host}/topic/{words[i].lower()}">{words[i]}</a>'
    if rng.random() < 0.2:
        i = rng.randrange(len(words))
        words[i] = f"<b>{words[i]}</b>"
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random, host: str) -> str:
    return "<p>" + " ".join(_sentence(rng, host) for _ in range(rng.randint(2, 3))) + "</p>"


def _shared_story(seed: int, slot: int, story: int) -> tuple[list[str], str]:
    """Headline words and lede of story `story` of serial slot `slot`, the same for every feed."""
    rng = random.Random(f"{seed}:story:{slot}:{story}")
    return _headline(rng), _paragraph(rng, "wire.example.com")


def _entry(index: int, serial: int, params: _Params) -> _Entry:
    rng = random.Random(f"{params.seed}:{index}:{serial}")
    host = f"news{index}.example.com"
    if rng.random() < _SHARED_FRACTION:
        slot = max(serial - rng.randrange(2), 0)
        words, lede = _shared_story(params.seed, slot, rng.randrange(_STORIES_PER_SLOT))
        words = _near_wording(words, rng)
    else:
        words, lede = _headline(rng), _paragraph(rng, host)
    title = " ".join(words)
    title = title[0].upper() + title[1:]
    newest = datetime.fromtimestamp(params.base, UTC)
    when = newest + (serial - params.count + 1) * _STEP - timedelta(seconds=rng.randrange(3600))
    slug = re.sub(r"[^a-z0-9]+", "-", " ".join(words[:6]).lower()).strip("-")
    author = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    categories = tuple(rng.sample(_CATEGORIES, rng.randint(1, 2)))
    paragraphs = [lede, *(_paragraph(rng, host) for _ in range(rng.randint(3, 6)))]
    return _Entry(
        serial=serial,
        title=title,
        link=f"https://{host}/{when:%Y/%m/%d}/{slug}-{serial}",
        guid=f"tag:{host},2026:entry/{serial}",
        when=when,
        author=author,
        categories=categories,
        html="\n".join(paragraphs),
    )


def _entries(index: int, params: _Params) -> list[_Entry]:
    return [_entry(index, serial, params) for serial in range(params.head, params.head - params.count, -1)]


def _render_feed(index: int, params: _Params) -> bytes:
    entries = _entries(index, params)
    if index % 2 == 0:
        return _render_rss(index, params, entries)
    return _render_atom(index, params, entries)


def _rss_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


def _atom_date(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _render_rss(index: int, params: _Params, entries: list[_Entry]) -> bytes:
    host = f"news{index}.example.com"
    section = _SECTIONS[index % len(_SECTIONS)]
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<channel>",
        f"<title>Example News {index:04d} - {section}</title>",
        f"<link>https://{host}/{section.lower().replace(' ', '-')}</link>",
        f"<description>{section} news from Example News {index:04d}</description>",
        "<language>en-gb</language>",
        f"<lastBuildDate>{_rss_date(entries[0].when)}</lastBuildDate>",
        f"<generator>aggregator-benchmarks corpus {params.encode()}</generator>",
        "<ttl>15</ttl>",
    ]
    for e in entries:
        out += [
            "<item>",
            f"<title>{escape(e.title)}</title>",
            f"<link>{escape(e.link)}</link>",
            f'<guid isPermaLink="false">{escape(e.guid)}</guid>',
            f"<pubDate>{_rss_date(e.when)}</pubDate>",
            f"<dc:creator>{escape(e.author)}</dc:creator>",
            *(f"<category>{escape(c)}</category>" for c in e.categories),
            f"<description><![CDATA[{e.html}]]></description>",
            "</item>",
        ]
    out += ["</channel>", "</rss>", ""]
    return "\n".join(out).encode("utf-8")


def _render_atom(index: int, params: _Params, entries: list[_Entry]) -> bytes:
    host = f"news{index}.example.com"
    section = _SECTIONS[index % len(_SECTIONS)]
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">',
        f"<title>Example News {index:04d} - {section}</title>",
        f"<subtitle>{section} news from Example News {index:04d}</subtitle>",
        f'<link rel="alternate" type="text/html" href="https://{host}/"/>',
        f"<id>tag:{host},2026:feed</id>",
        f"<updated>{_atom_date(entries[0].when)}</updated>",
        f"<generator>aggregator-benchmarks corpus {params.encode()}</generator>",
    ]
    for e in entries:
        out += [
            "<entry>",
            f'<title type="text">{escape(e.title)}</title>',
            f'<link rel="alternate" type="text/html" href={quoteattr(e.link)}/>',
            f"<id>{escape(e.guid)}</id>",
            f"<published>{_atom_date(e.when)}</published>",
            f"<updated>{_atom_date(e.when)}</updated>",
            f"<author><name>{escape(e.author)}</name></author>",
            *(f"<category term={quoteattr(c)}/>" for c in e.categories),
            f'<summary type="html">{escape(e.html)}</summary>',
            "</entry>",
        ]
    out += ["</feed>", ""]
    return "\n".join(out).encode("utf-8")


# --- server -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Resource:
    body: bytes
    etag: str
    modified: datetime  # whole seconds, UTC
    content_type: str


class _Handler(BaseHTTPRequestHandler):
    """Serves one CorpusServer's bodies with ETag / Last-Modified validation and optional gzip."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as real feed hosts do
    timeout = 30  # idle keep-alive connections give their thread back

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark makes thousands of requests."""

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        if owner.latency:
            time.sleep(owner.latency)
        resource = owner._lookup(self.path.split("?", 1)[0])
        if resource is None:
            self._send(404, b"not found\n", {"Content-Type": "text/plain"}, head)
            return
        headers = {
            "ETag": resource.etag,
            "Last-Modified": format_datetime(resource.modified, usegmt=True),
            "Cache-Control": "max-age=60",
            "Vary": "Accept-Encoding",
        }
        if _not_modified(self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since"), resource):
            self._send(304, b"", headers, head)
            return
        body = resource.body
        if _accepts_gzip(self.headers.get("Accept-Encoding", "")):
            body = owner._gzipped(resource)
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = resource.content_type
        self._send(200, body, headers, head)

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        # counted before answering: a client that reads the counts after its response must see this one
        self.server.owner._count(status)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)


def _not_modified(if_none_match: str | None, if_modified_since: str | None, resource: _Resource) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or resource.etag in tags
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return resource.modified <= since
    return False


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up close()
    request_queue_size = 1024  # a client opening 1,000 connections at once gets no refusals

    def __init__(self, owner: CorpusServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up mid-response (a killed or timed-out pass); loud about the rest."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class CorpusServer:
    """A threaded loopback HTTP server for a corpus; use as a context manager.

    Answers conditional requests with 304 (ETag is the body's sha1, Last-Modified the time the body last
    changed), gzips when asked, and counts requests by status. `latency` seconds are slept per request.
    """

    def __init__(self, corpus: Mapping[str, bytes], *, latency: float = 0.0) -> None:
        self.latency = latency
        self._lock = threading.Lock()
        self._resources: dict[str, _Resource] = {}
        self._gzip_cache: dict[str, bytes] = {}
        self._statuses: Counter[int] = Counter()
        self._http: _Server | None = None
        self._thread: threading.Thread | None = None
        self.set_corpus(corpus)

    def __enter__(self) -> CorpusServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._http is not None:
            return
        self._http = _Server(self)
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="corpus-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._http is None:
            return
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http = self._thread = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, once started."""
        if self._http is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def url(self, path: str) -> str:
        """The full URL of a corpus path."""
        return self.base_url + path

    def urls(self) -> list[str]:
        """The URL of every feed, in path order."""
        with self._lock:
            paths = sorted(self._resources)
        return [self.url(path) for path in paths]

    def set_corpus(self, corpus: Mapping[str, bytes]) -> None:
        """Swap in new bodies at once; a path whose body changed gets a new ETag and a later Last-Modified."""
        now = datetime.now(UTC).replace(microsecond=0)
        with self._lock:
            old = self._resources
        new: dict[str, _Resource] = {}
        for path, body in corpus.items():
            etag = '"' + hashlib.sha1(body).hexdigest() + '"'
            previous = old.get(path)
            if previous is not None and previous.etag == etag:
                new[path] = previous
                continue
            # A change within the same second as the last one must still move Last-Modified forward.
            modified = now if previous is None else max(now, previous.modified + timedelta(seconds=1))
            kind = "atom" if b"<feed" in body[:200] else "rss"
            new[path] = _Resource(body, etag, modified, f"application/{kind}+xml; charset=utf-8")
        with self._lock:
            self._resources = new

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        with self._lock:
            return sum(self._statuses.values())

    @property
    def statuses(self) -> Counter[int]:
        """Requests answered so far, by HTTP status."""
        with self._lock:
            return Counter(self._statuses)

    def reset_counts(self) -> None:
        """Start counting requests from zero."""
        with self._lock:
            self._statuses.clear()

    def _lookup(self, path: str) -> _Resource | None:
        with self._lock:
            return self._resources.get(path)

    def _gzipped(self, resource: _Resource) -> bytes:
        with self._lock:
            cached = self._gzip_cache.get(resource.etag)
        if cached is None:
            cached = gzip.compress(resource.body, compresslevel=6, mtime=0)
            with self._lock:
                self._gzip_cache[resource.etag] = cached
        return cached

    def _count(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1


# --- config and measurement -------------------------------------------------------------------------------


def write_config(dir: Path, urls: Sequence[str], **extra: Any) -> Path:
    """Write `dir/feeds.yaml` for `urls` (database `aggregator.db`, one Atom output); return its path.

    `extra` adds or replaces top-level keys, e.g. `fetch={"per_host": 16}`.
    """
    config: dict[str, Any] = {
        "database": "aggregator.db",
        "outputs": [{"path": "public/feed.atom", "format": "atom", "title": "Aggregated news", "limit": 100}],
        "feeds": [{"url": url} for url in urls],
    }
    config.update(extra)
    path = Path(dir) / "feeds.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class Measurement:
    """How one child process ran."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Measurement:
    """Run `cmd`, capturing its output, and measure wall time and the child's own peak RSS (via wait4).

    A child still running after `timeout` seconds is killed; its returncode is then negative.
    """
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=stdin, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer is not None:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer is not None:
                timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return Measurement(seconds, usage.ru_maxrss / scale, proc.returncode, stdout, stderr)


def peak_rss_of(cmd: Sequence[str | os.PathLike[str]]) -> tuple[float, float]:
    """Run `cmd` and return (wall seconds, peak RSS of the child in MB)."""
    measured = run_measured(cmd)
    return measured.seconds, measured.peak_rss_mb


def child_pids(pid: int) -> list[int]:
    """Running processes whose parent is `pid`, read from /proc (Linux): a pass's parse worker, say."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if int(parent) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet has ended)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
