"""Word frequencies on the Zipf scale, as wordfreq gives them, from a compact copy of its English list.

wordfreq's lookup keeps a dict of its 321,000 English words (39 MB in every process that clusters) and
tokenizes each word it is asked about (about 35 microseconds). Story matching asks about every new word of
every entry, nearly all of them English words of plain letters. Those are looked up here, in the same list
packed into a hash table of flat arrays (about 8 MB, built in 0.2 s, about 1 microsecond a lookup); any
other word (digits, apostrophes, other scripts and languages) goes to wordfreq. Both ways give the same
number (tests/test_zipf.py checks it).
"""

from __future__ import annotations

import gzip
import logging
import math
import threading
from array import array
from collections.abc import Iterable, Iterator
from functools import lru_cache

__all__ = ["zipf_frequency"]

log = logging.getLogger(__name__)


def zipf_frequency(word: str, lang: str) -> float:
    """wordfreq.zipf_frequency(word, lang) for a lowercased word: 0.0 for unknown words, about 7.7 for "the"."""
    table = _english() if lang == "en" and word.isascii() and word.isalpha() else None
    if table is not None:
        bucket = table.bucket(word.encode("ascii"))
        return 0.0 if bucket is None else _bucket_zipf(bucket)
    from wordfreq import zipf_frequency as wordfreq_zipf

    return wordfreq_zipf(word, lang)


class _WordTable:
    """A hash table of words in flat arrays: no Python object per word, so it costs ~5 MB, not 39.

    `blob` holds the words' bytes back to back, word i spanning starts[i]..starts[i + 1] with bucket
    buckets[i]; `slots` is an open-addressing table of word numbers + 1 (0: empty), probed linearly.
    """

    def __init__(self, lists: Iterable[list[str]]) -> None:
        blob, starts, buckets = bytearray(), array("I", [0]), array("H")
        for bucket, words in enumerate(lists):
            for word in words:
                if word.isascii() and word.isalpha():
                    blob += word.encode("ascii")
                    starts.append(len(blob))
                    buckets.append(bucket)
        self.blob, self.starts, self.buckets = bytes(blob), starts, buckets
        self.mask = (1 << (2 * len(buckets)).bit_length()) - 1  # at most half full
        self.slots = array("I", bytes(4 * (self.mask + 1)))
        for number in range(1, len(buckets) + 1):
            slot = hash(self.blob[starts[number - 1] : starts[number]]) & self.mask
            while self.slots[slot]:
                slot = (slot + 1) & self.mask
            self.slots[slot] = number

    def bucket(self, word: bytes) -> int | None:
        """The centibel bucket of `word` (0 is the most frequent), or None when it is not listed."""
        slot = hash(word) & self.mask
        while number := self.slots[slot]:
            if self.blob[self.starts[number - 1] : self.starts[number]] == word:
                return self.buckets[number - 1]
            slot = (slot + 1) & self.mask
        return None


_english_table: _WordTable | None = None
_english_failed = False
_building = threading.Lock()


def _english() -> _WordTable | None:
    """The English table, built on first use (0.2 s), once even when several threads ask at the same time;
    None when wordfreq's data cannot be read this way (another layout in a future release): then every word
    goes to wordfreq itself, slower but the same numbers."""
    global _english_table, _english_failed
    if _english_table is None and not _english_failed:
        with _building:
            if _english_table is None and not _english_failed:
                try:
                    _english_table = _WordTable(_word_lists("en"))
                except Exception:
                    log.warning("cannot read wordfreq's English list directly; using wordfreq", exc_info=True)
                    _english_failed = True
    return _english_table


def _word_lists(lang: str) -> Iterator[list[str]]:
    """wordfreq's lists of words by frequency bucket, read one list at a time (wordfreq's own reader
    unpacks all 321,000 words at once, and the process keeps the ~55 MB that took)."""
    import msgpack
    from wordfreq import available_languages

    with gzip.open(available_languages("best")[lang], "rb") as stream:
        unpacker = msgpack.Unpacker(stream, raw=False)
        count = unpacker.read_array_header()
        header = unpacker.unpack()
        if not isinstance(header, dict) or header.get("format") != "cB" or header.get("version") != 1:
            raise ValueError(f"unexpected wordfreq data header: {header!r}")
        for _ in range(count - 1):
            yield unpacker.unpack()


@lru_cache(maxsize=1024)
def _bucket_zipf(bucket: int) -> float:
    """The Zipf value wordfreq reports for a one-token word of this bucket, computed as it computes it."""
    from wordfreq import cB_to_freq, freq_to_zipf, zipf_to_freq

    frequency = max(1.0 / (1.0 / cB_to_freq(-bucket)), zipf_to_freq(0.0))
    rounded = round(frequency, math.floor(-math.log(frequency, 10)) + 3)
    return round(freq_to_zipf(rounded), 2)
