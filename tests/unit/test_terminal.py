"""Partner-controlled text shown to a person or pasted into a shell (dropgate/terminal.py)."""

from __future__ import annotations

import shlex
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from dropgate.quarantine import reprocess_command
from dropgate.terminal import neutralise, shell_command, shell_quote, shown

# Any text an S3 key can hold but NUL (no shell argument can carry one).
KEYS = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=200)
CONTROLS = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x200E, 0x202E, 0x2066, 0xFEFF]))


def bash_argument(word: str) -> str:
    """What bash makes of one word, in the C locale (no UTF-8 help)."""
    done = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, env={"LC_ALL": "C"}, check=True)
    return done.stdout.decode("utf-8", errors="surrogateescape")


@given(KEYS)
@settings(max_examples=300)
def test_shown_has_nothing_invisible_and_is_bounded(key: str) -> None:
    text = shown(key)
    assert not any(char in CONTROLS for char in text)
    assert len(text) <= 120 + len("… (1000 characters)")


@given(KEYS)
@settings(max_examples=60, deadline=None)
def test_a_quoted_key_is_one_word_that_gives_back_the_key(key: str) -> None:
    word = shell_quote(key)
    assert not any(char in CONTROLS for char in word)
    assert bash_argument(word) == key
    if not any(char in CONTROLS for char in key):
        assert shlex.split(word) == [key]


def test_the_printed_reprocess_command_runs_nothing_and_names_the_key() -> None:
    key = "acme/x'$(touch /tmp/p)'.xml"
    command = reprocess_command("drops", key)
    assert shlex.split(command) == ["dropgate", "reprocess", f"s3://drops/{key}"]
    assert command == "dropgate reprocess 's3://drops/acme/x'\"'\"'$(touch /tmp/p)'\"'\"'.xml'"


def test_control_characters_are_written_as_escapes() -> None:
    key = "acme/\x1b[2J\rfake line\nnext\u202eevil.xml"
    assert shown(key) == "acme/\\x1b[2J\\rfake line\\nnext\\u202eevil.xml"
    assert neutralise("line one\nline\ttwo\x1b[31m") == "line one\nline\ttwo\\x1b[31m"
    assert shell_command("dropgate", "status", key) == (
        "dropgate status $'acme/\\x1b[2J\\rfake line\\nnext\\xe2\\x80\\xaeevil.xml'"
    )


def test_long_values_are_cut_at_120_characters_and_say_how_long_they_were() -> None:
    assert shown("p" * 450_000) == "p" * 120 + "… (450000 characters)"
    assert shown("p" * 450_000, limit=None) == "p" * 450_000
