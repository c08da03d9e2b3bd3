"""Word frequencies on the Zipf scale, as wordfreq gives them, from a compact copy of its English list.

wordfreq's lookup tokenizes each word it is asked about (about 35 microseconds). Story matching asks about
every new word of every entry, nearly all of them English words of plain letters. Those are looked up here, in
the same list (wordfreq.get_frequency_list, its public reader) packed into a hash table of flat arrays (about
1 microsecond a lookup); any other word (digits, apostrophes, other scripts and languages) goes to wordfreq.
Both ways give the same number (tests/test_zipf.py checks it).

The list was once read from wordfreq's data file directly, one bucket at a time, for its memory; measured on
the real-corpus passes of benchmarks/compare.py, the public reader costs 1-2 MB of peak PSS more (140 against
138 MB), so the file's layout is no longer ours to follow (benchmarks/README.md, "Library internals").
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["zipf_frequency"]


def zipf_frequency(word: str, lang: str) -> float:
    """wordfreq.zipf_frequency(word, lang) for a lowercased word: 0.0 for unknown words, about 7.7 for "the"."""
    if lang == "en" and word.isascii() and word.isalpha():
        bucket = _english().bucket(word.encode("ascii"))
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
_building = threading.Lock()


def _english() -> _WordTable:
    """The English table, built on first use (0.4 s), once even when several threads ask at the same time."""
    global _english_table
    if _english_table is None:
        with _building:
            if _english_table is None:
                from wordfreq import get_frequency_list

                _english_table = _WordTable(get_frequency_list("en", "best"))
    return _english_table


@lru_cache(maxsize=1024)
def _bucket_zipf(bucket: int) -> float:
    """The Zipf value wordfreq reports for a one-token word of this bucket, computed as it computes it."""
    from wordfreq import cB_to_freq, freq_to_zipf, zipf_to_freq

    frequency = max(1.0 / (1.0 / cB_to_freq(-bucket)), zipf_to_freq(0.0))
    rounded = round(frequency, math.floor(-math.log(frequency, 10)) + 3)
    return round(freq_to_zipf(rounded), 2)
