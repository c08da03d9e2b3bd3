"""The compact English word list gives exactly wordfreq's numbers."""

from __future__ import annotations

import random

import wordfreq

from aggregator.zipf import zipf_frequency


def test_every_listed_english_word_and_unknown_words_match_wordfreq() -> None:
    words = [w for bucket in wordfreq.get_frequency_list("en") for w in bucket]
    rng = random.Random(8)
    made_up = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 12))) for _ in range(2000)
    ]
    sample = [*rng.sample(words, 20_000), "the", "titanfall", "li", "qiang", "waic", "nvidia", "a", "zzzzqx", *made_up]
    mismatches = [(w, zipf_frequency(w, "en"), wordfreq.zipf_frequency(w, "en")) for w in sample
                  if zipf_frequency(w, "en") != wordfreq.zipf_frequency(w, "en")]  # fmt: skip
    assert mismatches == []
    assert zipf_frequency("the", "en") > 7.0
    assert zipf_frequency("zzzzqx", "en") == 0.0


def test_other_words_and_languages_go_to_wordfreq() -> None:
    for word, lang in [("don't", "en"), ("2026", "en"), ("café", "en"), ("москва", "ru"), ("القاهرة", "ar")]:
        assert zipf_frequency(word, lang) == wordfreq.zipf_frequency(word, lang)
