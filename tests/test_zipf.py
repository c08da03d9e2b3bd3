"""The compact English word list gives exactly wordfreq's numbers."""

from __future__ import annotations

import random
from importlib.metadata import version
from pathlib import Path

import pytest
import wordfreq

from aggregator import zipf
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


def test_words_with_apostrophes_accents_and_numbers_match_wordfreq() -> None:
    # read from the table too, so a parse worker never loads wordfreq's 39 MB dictionary for "pakistan's"
    listed = [
        w
        for bucket in wordfreq.get_frequency_list("en")
        for w in bucket
        if "'" in w or w[:1].isdigit() or not w.isascii()
    ]
    rng = random.Random(15)
    letters = "abcdefghijklmnopqrstuvwxyzàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿāăąćčďđēęěğīıłńňőœřśšşťūůűźżžſß"
    made_up = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    numbers = [str(n) for n in range(0, 3000)] + [str(rng.randint(0, 10**9)) for _ in range(3000)]
    numbers += [f"{rng.randint(1, 999)},{rng.randint(0, 999):03d}" for _ in range(1000)]
    numbers += [f"{rng.randint(0, 99)}.{rng.randint(0, 99)}" for _ in range(1000)]
    numbers += ["007", "1.2.3", "10,5", "2,023", "336,000", "1,000,000", "12.65", "0.5", "1e6", "3,00.0"]
    sample = [*listed, *numbers, *made_up, "pakistan's", "o'brien", "rock'n'roll", "zzz'qx", "it's", "orbán", "straße"]
    mismatches = [(w, zipf_frequency(w, "en"), wordfreq.zipf_frequency(w, "en")) for w in sample
                  if zipf_frequency(w, "en") != wordfreq.zipf_frequency(w, "en")]  # fmt: skip
    assert mismatches == []
    assert zipf_frequency("pakistan's", "en") == 3.33 and zipf_frequency("2023", "en") == 4.71


def test_other_words_and_languages_go_to_wordfreq() -> None:
    for word, lang in [("'tis", "en"), ("café", "en"), ("1e6", "en"), ("москва", "ru"), ("القاهرة", "ar")]:
        assert zipf_frequency(word, lang) == wordfreq.zipf_frequency(word, lang)


def test_the_word_table_is_kept_in_the_cache_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # building it costs every parse worker 0.5-1 s; the next process reads the file
    monkeypatch.setenv("AGGREGATOR_CACHE_DIR", str(tmp_path / "cache"))
    built = zipf._cached_table()
    [kept] = (tmp_path / "cache").iterdir()
    assert kept.name == f"zipf-en-wordfreq-{version('wordfreq')}-v{zipf._FORMAT}.bin"

    def no_build(lists: object) -> None:
        raise AssertionError("built again although the cache holds it")

    monkeypatch.setattr(zipf._WordTable, "build", no_build)
    read = zipf._cached_table()
    for word in ("the", "qiang", "nvidia", "zzzzqx", "earthquake"):
        assert read.bucket(word.encode()) == built.bucket(word.encode())
    assert read.bucket(b"zzzzqx") is None and read.bucket(b"the") < read.bucket(b"earthquake")  # type: ignore[operator]


@pytest.mark.parametrize("damage", ["cut", "flipped", "other format", "empty"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    monkeypatch.setenv("AGGREGATOR_CACHE_DIR", str(tmp_path))
    good = zipf._cached_table().to_bytes()
    [path] = tmp_path.iterdir()
    broken = {
        "cut": good[: len(good) // 2],
        "flipped": good[:-100] + bytes([good[-100] ^ 1]) + good[-99:],
        "other format": b"something-else-v9\0\0\0" + good[20:],
        "empty": b"",
    }[damage]
    path.write_bytes(broken)
    assert zipf._WordTable.from_bytes(broken) is None
    table = zipf._cached_table()
    assert table.bucket(b"the") == zipf._WordTable.from_bytes(good).bucket(b"the")  # type: ignore[union-attr]
    assert path.read_bytes() == good  # written again, whole


def test_an_unwritable_cache_only_costs_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("AGGREGATOR_CACHE_DIR", str(blocker / "cache"))
    table = zipf._cached_table()
    assert table.bucket(b"the") is not None and table.bucket(b"zzzzqx") is None
    assert blocker.read_text() == "not a folder"


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ("AGGREGATOR_CACHE_DIR", "CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert zipf.cache_dir() == tmp_path / ".cache" / "aggregator"
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert zipf.cache_dir() == Path("/xdg/aggregator")
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/aggregator")  # systemd's CacheDirectory=
    assert zipf.cache_dir() == Path("/var/cache/aggregator")
    monkeypatch.setenv("AGGREGATOR_CACHE_DIR", "/mine")
    assert zipf.cache_dir() == Path("/mine")
