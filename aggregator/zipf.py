"""Word frequencies on the Zipf scale, as wordfreq gives them, from a compact copy of its English list.

wordfreq's lookup tokenizes each word it is asked about (about 35 microseconds), and its first lookup imports
its tokenizer and loads a 39 MB dictionary. Story matching asks about every new word of every entry, nearly all
of them English words of Latin letters (with inner apostrophes: "pakistan's") or numbers. Those are looked up
here, in the same list (wordfreq.get_frequency_list, its public reader) packed into a hash table of flat arrays
(about 1 microsecond a lookup), numbers by their shape and wordfreq's estimate for digit strings, as wordfreq
computes it; any other word (other scripts and languages, a mixed token) goes to wordfreq. Both ways give the
same number (tests/test_zipf.py checks every listed word, thousands of numbers and made-up words).

The list was once read from wordfreq's data file directly, one bucket at a time, for its memory; measured on
the real-corpus passes of benchmarks/compare.py, the public reader costs 1-2 MB of peak PSS more (140 against
138 MB), so the file's layout is no longer ours to follow (benchmarks/README.md, "Library internals").

Building the table takes 0.5-1 s of CPU, paid by every parse worker of every pass that reads new entries (a
third of a cold pass over 55 real feeds). So the built table is kept in a cache file, one per wordfreq
version, and the next process reads it in a few milliseconds: `$AGGREGATOR_CACHE_DIR`, else systemd's
`$CACHE_DIRECTORY`, else `$XDG_CACHE_HOME/aggregator` or `~/.cache/aggregator`. A file that cannot be written
or read back whole (checksum) only costs the build.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import struct
import threading
import zlib
from array import array
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from .atomic import replace_file

__all__ = ["cache_dir", "zipf_frequency"]

log = logging.getLogger(__name__)


# English words the table answers for: Latin letters, with inner apostrophes ("pakistan's", "won't", "orbán"),
# which wordfreq keeps as one token; and numbers, which it looks up by their shape ("2,023" as "0,000").
_LISTED = re.compile(r"[a-zà-öø-ÿĀ-ɏ]+(?:'[a-zà-öø-ÿĀ-ɏ]+)*|[0-9][0-9.,]*")
# wordfreq's numbers.py looks up a number of two or more characters by its shape, every digit read as 0
_ZEROES = str.maketrans("123456789", "000000000")
_PURE_DIGITS = re.compile(r"[0-9]+")


def zipf_frequency(word: str, lang: str) -> float:
    """wordfreq.zipf_frequency(word, lang) for a lowercased word: 0.0 for unknown words, about 7.7 for "the".

    English words of letters (and apostrophes) and numbers come from the table; anything else from wordfreq,
    whose lookup imports its tokenizer and loads its whole 39 MB English dictionary (0.4 s of a parse worker).
    """
    if lang == "en" and _LISTED.fullmatch(word) and word.casefold() == word:
        shape = word.translate(_ZEROES) if word[0].isdigit() and len(word) > 1 else word
        bucket = _english().bucket(shape.encode())
        if bucket is None:
            return 0.0
        if shape == word:
            return _bucket_zipf(bucket)
        return _zipf(10 ** (-bucket / 100) * _digit_frequency(word))
    from wordfreq import zipf_frequency as wordfreq_zipf

    return wordfreq_zipf(word, lang)


class _WordTable:
    """A hash table of words in flat arrays: no Python object per word, so it costs ~8 MB, not 39.

    `blob` holds the words' bytes back to back, word i spanning starts[i]..starts[i + 1] with bucket
    buckets[i]; `slots` is an open-addressing table of word numbers + 1 (0: empty), probed linearly from the
    word's CRC-32 (not hash(), which changes from process to process, so the table can be kept in a file).
    """

    def __init__(self, blob: bytes, starts: array[int], buckets: array[int], slots: array[int]) -> None:
        self.blob, self.starts, self.buckets, self.slots = blob, starts, buckets, slots
        self.mask = len(slots) - 1

    @classmethod
    def build(cls, lists: Iterable[list[str]]) -> _WordTable:
        """The table of the plain ASCII words of wordfreq's bucketed list (bucket i: -i centibels)."""
        blob, starts, buckets = bytearray(), array("I", [0]), array("H")
        for bucket, words in enumerate(lists):
            for word in words:
                if _LISTED.fullmatch(word):
                    blob += word.encode()
                    starts.append(len(blob))
                    buckets.append(bucket)
        mask = (1 << (2 * len(buckets)).bit_length()) - 1  # at most half full
        slots = array("I", bytes(4 * (mask + 1)))
        for number in range(1, len(buckets) + 1):
            slot = zlib.crc32(blob[starts[number - 1] : starts[number]]) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = number
        return cls(bytes(blob), starts, buckets, slots)

    def to_bytes(self) -> bytes:
        """The table as a file: a header (format, sizes, checksum), then the arrays' bytes."""
        body = b"".join((self.blob, self.starts.tobytes(), self.buckets.tobytes(), self.slots.tobytes()))
        sizes = (len(self.blob), len(self.starts), len(self.buckets), len(self.slots))
        return _HEADER.pack(_MAGIC, *sizes, zlib.crc32(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> _WordTable | None:
        """The table `to_bytes` wrote, or None when `data` is not one whole (another format, cut, damaged)."""
        if len(data) < _HEADER.size:
            return None
        magic, n_blob, n_starts, n_buckets, n_slots, checksum = _HEADER.unpack_from(data)
        body = memoryview(data)[_HEADER.size :]
        ends = list(itertools.accumulate((n_blob, 4 * n_starts, 2 * n_buckets, 4 * n_slots)))
        if magic != _MAGIC or len(body) != ends[-1] or zlib.crc32(body) != checksum or n_slots & (n_slots - 1):
            return None
        starts, buckets, slots = array("I"), array("H"), array("I")
        starts.frombytes(body[ends[0] : ends[1]])
        buckets.frombytes(body[ends[1] : ends[2]])
        slots.frombytes(body[ends[2] : ends[3]])
        return cls(bytes(body[: ends[0]]), starts, buckets, slots)

    def bucket(self, word: bytes) -> int | None:
        """The centibel bucket of `word` (0 is the most frequent), or None when it is not listed."""
        slot = zlib.crc32(word) & self.mask
        while number := self.slots[slot]:
            if self.blob[self.starts[number - 1] : self.starts[number]] == word:
                return self.buckets[number - 1]
            slot = (slot + 1) & self.mask
        return None


_english_table: _WordTable | None = None
_building = threading.Lock()


# The cache file's format: its name, then the array sizes and the CRC-32 of the arrays' bytes. A table of
# other words is another format (v1 held letters only): change the version with what the table holds.
_FORMAT = 3
_MAGIC = f"aggregator-zipf-v{_FORMAT}".encode().ljust(20, b"\0")
_HEADER = struct.Struct("<20s4QI")


def _english() -> _WordTable:
    """The English table, on first use, once even when several threads ask at the same time: read from the
    cache file, else built (0.5-1 s) and saved there for the next process."""
    global _english_table
    if _english_table is None:
        with _building:
            if _english_table is None:
                _english_table = _cached_table()
    return _english_table


def cache_dir() -> Path:
    """Where aggregator keeps what it can rebuild: $AGGREGATOR_CACHE_DIR, systemd's $CACHE_DIRECTORY,
    $XDG_CACHE_HOME/aggregator or ~/.cache/aggregator."""
    for variable in ("AGGREGATOR_CACHE_DIR", "CACHE_DIRECTORY"):
        if os.environ.get(variable):
            return Path(os.environ[variable].split(":")[0])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aggregator"


def _cached_table() -> _WordTable:
    """The English table from its cache file, or built from wordfreq's list and written there."""
    from importlib.metadata import version

    path = cache_dir() / f"zipf-en-wordfreq-{version('wordfreq')}-v{_FORMAT}.bin"
    try:
        table = _WordTable.from_bytes(path.read_bytes())
        if table is not None:
            return table
    except OSError:
        pass
    from wordfreq import get_frequency_list  # 0.25 s to import: only when the table must be built

    table = _WordTable.build(get_frequency_list("en", "best"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, table.to_bytes())
    except OSError as e:
        log.debug("cannot keep the word table in %s (%s): it is built again by the next process", path, e)
    return table


@lru_cache(maxsize=1024)
def _bucket_zipf(bucket: int) -> float:
    """The Zipf value wordfreq reports for a one-token word of this bucket (bucket i: -i centibels)."""
    return _zipf(10 ** (-bucket / 100))


# Computed as wordfreq computes them (its __init__.py and numbers.py), without importing it (0.25 s):
# tests/test_zipf.py compares every listed word and thousands of numbers with wordfreq itself.
_MIN_FREQUENCY = 10**0 / 1e9  # zipf_to_freq(0.0): zipf_frequency's floor
_BENFORD = (0.009, 0.300, 0.175, 0.124, 0.096, 0.078, 0.066, 0.057, 0.050, 0.045)


def _zipf(frequency: float) -> float:
    """A frequency as zipf_frequency reports it: floored, rounded to 3 significant digits, then to 0.01."""
    frequency = max(1.0 / (1.0 / frequency), _MIN_FREQUENCY)
    rounded = round(frequency, math.floor(-math.log(frequency, 10)) + 3)
    return round(math.log(rounded, 10) + 9, 2)


def _digit_frequency(text: str) -> float:
    """wordfreq's estimate of how often this particular number occurs among numbers of its shape: Benford's
    law, and for 4 digits mostly a year, peaking over 2019-2039."""
    frequency = 1.0
    for digits in _PURE_DIGITS.findall(text):  # the number is one of wordfreq's digit sequences: the whole text
        benford = _BENFORD[int(digits[0])] / 10 ** (len(digits) - 1)
        if len(digits) == 4:
            year = int(digits)
            if year <= 2019:
                log_frequency = -1.9185 - 0.0083 * (2019 - year)
            elif year <= 2039:
                log_frequency = -1.9185
            else:
                log_frequency = -1.9185 - 0.2 * (year - 2039)
            frequency *= 10.0**log_frequency + 0.1 * benford
        else:
            frequency *= benford
    return frequency
