"""Partner-controlled text (S3 keys, product ids, values) made safe to show and to paste.

Keys and ids come from partners: an upload named ``acme/x'$(touch /tmp/p)'.xml`` or one holding
ESC, CR or a right-to-left override must neither run code when an operator pastes the command
dropgate printed, nor rewrite the operator's terminal, nor fake a line of output. Three tools:

- :func:`shown` for a key, id or value inside a message: every control or invisible formatting
  character written as an escape (``\\x1b``, ``\\n``, ``\\u202e``) and the whole cut at 120
  characters, as README promises;
- :func:`neutralise` for text dropgate composed itself (it may hold line breaks of its own);
- :func:`shell_command` for a command to paste: each argument quoted so that bash, zsh and
  ``shlex.split`` give back exactly the original (``$'…'`` quoting when it holds control
  characters, which a plain quoted string would carry raw to the terminal).
"""

from __future__ import annotations

import re
import shlex

from parsers.base import MAX_VALUE_CHARS, truncate

#: C0 and C1 controls, DEL, zero-width and bidirectional formatting characters, line and paragraph
#: separators, BOM: none prints as itself, several reorder or hide what follows them.
INVISIBLE_ABOVE_ASCII = "\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f{INVISIBLE_ABOVE_ASCII}]")
_UNSAFE_KEEPING_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{INVISIBLE_ABOVE_ASCII}]")  # \t and \n stay
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    """How Python's repr writes the character: ``\\n``, ``\\x1b``, ``\\u202e``."""
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def _shell_escape(match: re.Match[str]) -> str:
    """How ``$'…'`` writes the character whatever the locale: its UTF-8 bytes (``\\u`` needs a UTF-8 one)."""
    char = match.group()
    return _NAMED.get(char) or "".join(f"\\x{byte:02x}" for byte in char.encode())


def shown(value: object, limit: int | None = MAX_VALUE_CHARS) -> str:
    """``value`` on one line with nothing invisible in it, cut at ``limit`` characters (none: no cut)."""
    text = _UNSAFE.sub(_escape, str(value))
    return text if limit is None else str(truncate(text, limit))


def neutralise(text: str) -> str:
    """Text of our own making: its line breaks and tabs kept, every other control character escaped."""
    return _UNSAFE_KEEPING_LINES.sub(_escape, text)


def shell_quote(argument: str) -> str:
    """One shell word that evaluates to exactly ``argument``."""
    if not _UNSAFE.search(argument):
        return shlex.quote(argument)
    # ANSI-C quoting (bash, zsh, ksh): the control characters travel as escapes, never raw.
    body = argument.replace("\\", "\\\\").replace("'", "\\'")
    return "$'" + _UNSAFE.sub(_shell_escape, body) + "'"


def shell_command(*argv: str) -> str:
    """A command line to paste, whatever its arguments hold."""
    return " ".join(shell_quote(argument) for argument in argv)
