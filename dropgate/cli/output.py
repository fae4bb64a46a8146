"""What every command prints for a script: one exit-code contract and one JSON shape.

Exit codes (the same for every command; docs/operating.md "Command line" and each ``--help`` say so):

- 0: done (a file published, clean or ignored; a lookup found what it was asked for);
- 1: refused: the file is (or would be) quarantined (``inspect``, ``ingest``, ``reprocess``), the
  schema is not backward compatible (``schema check``); never an error of dropgate's own;
- 2: usage, configuration or infrastructure error; the message on stderr says what to fix;
- 3: not found: the thing asked about does not exist (an unknown file, key or held deletion, a
  file that is not quarantined).

``--json`` output is one JSON document on stdout, or JSON lines (one document per line) for a
list, with the shapes in ``schemas/cli/``. Partner-controlled strings are written as they are
(JSON escapes control characters itself), never cut: a script gets the exact key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

import orjson
import typer

from dropgate.terminal import INVISIBLE_ABOVE_ASCII

EXIT_OK = 0
EXIT_QUARANTINED = 1
EXIT_ERROR = 2
EXIT_NOT_FOUND = 3

#: ``--json`` on every command that prints something a script reads.
JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", help="Print JSON for scripts (one document, or JSON lines for a list); shapes in schemas/cli/."
    ),
]

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
#: What orjson writes raw but a terminal must not get raw (JSON lines are read on one too): DEL, C1
#: controls, invisible and bidirectional formatting characters. They occur only inside strings, where
#: ``\uXXXX`` decodes to exactly the same string.
_INVISIBLE = re.compile(f"[{INVISIBLE_ABOVE_ASCII}]")


def dumps(document: Any) -> str:
    """``document`` as one line of JSON: sorted keys, UTC times, nothing invisible written raw."""
    return escape_invisible(orjson.dumps(document, option=_OPTIONS, default=str).decode())


def escape_invisible(json_text: str) -> str:
    """JSON text with every character a terminal must not get raw written as ``\\uXXXX`` (the same
    JSON: such characters occur only inside strings)."""
    return _INVISIBLE.sub(lambda match: f"\\u{ord(match.group()):04x}", json_text)


def print_json(document: Any) -> None:
    """One JSON document, on one line (``jq`` pretty-prints it)."""
    typer.echo(dumps(document))


def print_json_lines(documents: Iterable[Any]) -> None:
    """JSON lines: one document per line, so a long list streams and ``jq -c``/``grep`` work."""
    for document in documents:
        print_json(document)
