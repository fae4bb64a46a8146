"""The ``dropgate`` command line: one module per group of commands, registered on one typer app."""

from __future__ import annotations

from dropgate.cli import (  # noqa: F401 - importing registers the commands
    contract,
    deletions,
    files,
    key,
    operations,
    ownership,
    reprocessing,
)
from dropgate.cli.root import app, debugging, run


def main() -> None:
    """Console entry point (``dropgate``)."""
    run(app, debug=debugging)


__all__ = ["app", "main"]
