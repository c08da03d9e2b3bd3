"""Every kind of bad feeds.yaml through the real CLI: one clear line naming the file and the key, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from conftest import run_cli

from aggregator.errors import OutputError
from aggregator.publish import write_atomically

OK_FEED = "https://example.com/feed.xml"

# (feeds.yaml text, the line after "error: <path>: ")
CASES: dict[str, tuple[str, str]] = {
    "unknown top-level key": (
        f"colour: red\nfeeds:\n  - url: {OK_FEED}\n",
        "colour: unknown key",
    ),
    "unknown feed key": (
        f"feeds:\n  - url: {OK_FEED}\n    titel: Example\n",
        "feeds[0].titel: unknown key",
    ),
    "wrong type": (
        "fetch:\n  concurrency: many\n",
        "fetch.concurrency: expected an integer, got text",
    ),
    "a string where a list belongs": (
        f"feeds: {OK_FEED}\n",
        "feeds: expected a list, got text",
    ),
    "wrong type of a boolean": (
        "allow_private_addresses: maybe\n",
        "allow_private_addresses: expected true or false, got text",
    ),
    "not a URL": (
        "feeds:\n  - url: not a url\n",
        "feeds[0].url: 'not a url' is not an http or https URL",
    ),
    "non-HTTP scheme": (
        f"feeds:\n  - url: {OK_FEED}\n  - url: ftp://example.com/feed.xml\n",
        "feeds[1].url: 'ftp://example.com/feed.xml' is not an http or https URL",
    ),
    "file scheme": (
        "feeds:\n  - url: file:///etc/passwd\n",
        "feeds[0].url: 'file:///etc/passwd' is not an http or https URL",
    ),
    "URL without a host": (
        "feeds:\n  - url: 'https:///feed.xml'\n",
        "feeds[0].url: 'https:///feed.xml' has no host",
    ),
    "duplicate URL": (
        f"feeds:\n  - url: {OK_FEED}\n  - url: https://example.com/b.xml\n  - url: {OK_FEED}\n",
        f"feeds[2].url: duplicate of feeds[0] ({OK_FEED})",
    ),
    "YAML syntax error": (
        f"feeds:\n  - url: {OK_FEED}\n   title: [oops\n",
        "YAML syntax error: line 3, column 4: did not find expected '-' indicator",
    ),
    "not a mapping": (
        f"- url: {OK_FEED}\n",
        "expected a mapping of keys at the top level, got list",
    ),
    "private address": (
        f"allow_private_addresses: false\nfeeds:\n  - url: {OK_FEED}\n  - url: http://192.168.1.10/feed.xml\n",
        "feeds[1].url: http://192.168.1.10/feed.xml: its host is a private address (192.168.1.10); "
        "set allow_private_addresses: true to allow it",
    ),
    "loopback address": (
        "allow_private_addresses: false\nfeeds:\n  - url: http://127.0.0.1:8080/feed.xml\n",
        "feeds[0].url: http://127.0.0.1:8080/feed.xml: its host is a loopback address (127.0.0.1); "
        "set allow_private_addresses: true to allow it",
    ),
    "IPv6 loopback": (
        "allow_private_addresses: false\nfeeds:\n  - url: http://[::1]:8080/feed.xml\n",
        "feeds[0].url: http://[::1]:8080/feed.xml: its host is a loopback address (::1); "
        "set allow_private_addresses: true to allow it",
    ),
    "localhost": (
        "allow_private_addresses: false\nfeeds:\n  - url: http://localhost:8080/feed.xml\n",
        "feeds[0].url: http://localhost:8080/feed.xml: its host is a loopback host name (localhost); "
        "set allow_private_addresses: true to allow it",
    ),
    "cloud metadata address": (
        "allow_private_addresses: false\nfeeds:\n  - url: http://169.254.169.254/latest/meta-data\n",
        "feeds[0].url: http://169.254.169.254/latest/meta-data: its host is a link-local address "
        "(169.254.169.254); set allow_private_addresses: true to allow it",
    ),
    "IPv4-mapped private address": (
        "allow_private_addresses: false\nfeeds:\n  - url: http://[::ffff:10.0.0.1]/feed.xml\n",
        "feeds[0].url: http://[::ffff:10.0.0.1]/feed.xml: its host is a private address (10.0.0.1); "
        "set allow_private_addresses: true to allow it",
    ),
    "feed interval below the floor": (
        f"feeds:\n  - url: {OK_FEED}\n    interval: 1\n",
        "feeds[0].interval: 60 s is below min_interval (300 s); lower min_interval to allow it",
    ),
    "interval below the floor": (
        "interval: 2m\n",
        "interval: 120 s is below min_interval (300 s); lower min_interval to allow it",
    ),
    "bad duration": (
        "interval: soon\n",
        "interval: 'soon' is not a duration such as 30 (minutes), '90s', '30m' or '2h'",
    ),
}


@pytest.mark.parametrize("text", [text for text, _ in CASES.values()], ids=list(CASES))
def test_a_bad_config_is_one_line_and_exit_code_2(tmp_path: Path, text: str) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(text, encoding="utf-8")
    expected = next(line for t, line in CASES.values() if t == text)
    for command in ("check", "update"):
        result = run_cli(command, config=config)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr == f"error: {config}: {expected}\n", command
        assert result.stdout == ""
    assert not (tmp_path / "aggregator.db").exists()  # nothing was touched


@pytest.mark.parametrize("path", ["../elsewhere/feed.atom", "/var/www/feed.atom", "public/../../feed.atom"])
def test_an_output_outside_the_config_folder_needs_permission(tmp_path: Path, path: str) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"outputs:\n  - path: {path}\n", encoding="utf-8")
    result = run_cli("check", config=config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {config}: outputs[0].path: {path} is outside the folder of the config file ({tmp_path}); "
        "set allow_outputs_outside: true to allow it\n"
    )
    config.write_text(f"allow_outputs_outside: true\noutputs:\n  - path: {path}\n", encoding="utf-8")
    assert run_cli("check", config=config).exit_code == 0


def test_outputs_inside_the_config_folder_are_fine(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("outputs:\n  - path: public/../site/feed.atom\n  - path: feed.rss\n", encoding="utf-8")
    assert run_cli("check", config=config).exit_code == 0


def test_private_addresses_are_allowed_by_default(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n  - url: http://127.0.0.1:8080/feed.xml\n  - url: http://10.1.2.3/f\n", encoding="utf-8")
    assert run_cli("check", config=config).exit_code == 0


def test_a_public_address_passes_when_private_ones_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"allow_private_addresses: false\nfeeds:\n  - url: {OK_FEED}\n  - url: http://93.184.216.34/feed.xml\n",
        encoding="utf-8",
    )
    assert run_cli("check", config=config).exit_code == 0


def test_a_missing_file(tmp_path: Path) -> None:
    config = tmp_path / "nowhere" / "feeds.yaml"
    for command in ("check", "update"):
        result = run_cli(command, config=config)
        assert result.exit_code == 2
        assert result.stderr == (
            f"error: {config}: file not found (`aggregator add URL` starts one; --config names another)\n"
        )


def test_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_bytes(b"feeds:\n  - url: https://example.com/\xff\xfe\n")
    result = run_cli("check", config=config)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {config}: cannot read: 'utf-8' codec can't decode byte 0xff")
    assert result.stderr.count("\n") == 1


# --- outputs that would replace what is not theirs (issue 13, item 6) --------------------------------------


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("aggregator.db", "the database ({db})"),
        ("aggregator.db-wal", "the database ({db})"),
        ("./aggregator.db-shm", "the database ({db})"),
        ("feeds.yaml", "the config file itself"),
        ("public/../feeds.yaml", "the config file itself"),
        ("link-to-db", "the database ({db})"),
        ("public", "a folder, not a regular file"),
        ("pipe", "a FIFO, not a regular file"),
    ],
)
def test_an_output_cannot_replace_the_database_the_config_or_a_non_file(
    tmp_path: Path, output: str, problem: str
) -> None:
    (tmp_path / "public").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link-to-db").symlink_to(tmp_path / "aggregator.db")
    config = tmp_path / "feeds.yaml"
    config.write_text(f"database: aggregator.db\noutputs:\n  - path: feed.rss\n  - path: {output}\n", encoding="utf-8")
    line = f"error: {config}: outputs[1].path: {output} is {problem.format(db=tmp_path / 'aggregator.db')}; "
    for command in ("check", "publish", "update"):
        result = run_cli(command, config=config)
        assert result.exit_code == 2, (command, result.stderr)
        assert result.stderr == line + "choose another path\n"
    assert not (tmp_path / "aggregator.db").exists()


def test_publishing_to_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    # in a subprocess under a timeout: before, publishing read the FIFO and waited forever for a writer
    os.mkfifo(tmp_path / "feed.atom")
    config = tmp_path / "feeds.yaml"
    config.write_text("outputs:\n  - path: feed.atom\n", encoding="utf-8")
    command = [sys.executable, "-m", "aggregator", "--config", str(config), "publish"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {config}: outputs[0].path: feed.atom is a FIFO, not a regular file; choose another path\n"
    )


def test_the_database_named_by_db_is_protected_too(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("outputs:\n  - path: store.sqlite\n", encoding="utf-8")
    result = run_cli("--db", str(tmp_path / "store.sqlite"), "check", config=config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {config}: outputs[0].path: store.sqlite is the database ({tmp_path / 'store.sqlite'}); "
        "choose another path\n"
    )


def test_two_outputs_that_are_one_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("outputs:\n  - path: feed.atom\n  - path: ./feed.atom\n", encoding="utf-8")
    result = run_cli("check", config=config)
    assert (
        result.stderr == f"error: {config}: outputs[1].path: ./feed.atom is outputs[0].path too; choose another path\n"
    )


def test_a_symlink_out_of_the_config_folder_is_outside(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "public").symlink_to(tmp_path / "site")  # inside: fine
    (tmp_path / "etc").symlink_to("/etc")  # outside, whatever the path says
    config = tmp_path / "feeds.yaml"
    config.write_text("outputs:\n  - path: public/feed.atom\n  - path: etc/feed.atom\n", encoding="utf-8")
    result = run_cli("check", config=config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {config}: outputs[1].path: etc/feed.atom is outside the folder of the config file ({tmp_path}); "
        "set allow_outputs_outside: true to allow it\n"
    )


def test_a_large_file_at_an_output_is_replaced_without_being_read(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("outputs:\n  - path: feed.atom\n", encoding="utf-8")
    output = tmp_path / "feed.atom"
    with output.open("wb") as file:
        file.truncate(256 * 1024 * 1024)  # sparse: 256 MiB that cost no disk
    tracemalloc.start()
    try:
        result = run_cli("publish", config=config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{output}: written\n"
    assert output.read_bytes().startswith(b"<?xml")
    assert peak < 32 * 1024 * 1024  # the old file was never read into memory


def test_a_fifo_made_after_the_check_fails_the_output_instead_of_blocking(tmp_path: Path) -> None:
    output = tmp_path / "feed.atom"
    os.mkfifo(output)
    with pytest.raises(OutputError, match="something other than a regular file is there"):
        write_atomically(output, b"<feed/>")
