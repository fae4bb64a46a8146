"""What every command prints for a script: one exit-code contract and one JSON shape.

Exit codes (the same for every command; README "Command line" and each ``--help`` say so):

- 0: done (a file published, clean or ignored; a lookup found what it was asked for);
- 1: the file is (or would be) quarantined: ``inspect``, ``ingest``, ``reprocess`` only;
- 2: usage, configuration or infrastructure error; the message on stderr says what to fix;
- 3: not found: the thing asked about does not exist (an unknown file, key or held deletion, a
  file that is not quarantined).

``--json`` output is one JSON document on stdout, or JSON lines (one document per line) for a
list, with the shapes in ``schemas/cli/``. Partner-controlled strings are written as they are
(JSON escapes control characters itself), never cut: a script gets the exact key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import typer

EXIT_OK = 0
EXIT_QUARANTINED = 1
EXIT_ERROR = 2
EXIT_NOT_FOUND = 3

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def print_json(document: Any) -> None:
    """One JSON document, on one line (``jq`` pretty-prints it)."""
    typer.echo(orjson.dumps(document, option=_OPTIONS, default=str).decode())


def print_json_lines(documents: Iterable[Any]) -> None:
    """JSON lines: one document per line, so a long list streams and ``jq -c``/``grep`` work."""
    for document in documents:
        print_json(document)
