"""``dropgate``: inspect a file, ingest one, reprocess, and look into the ledger and the quarantine.

Exit codes, the same for every command: 0 done (published, clean, ignored, or found); 1 the file is
(or would be) quarantined (inspect, ingest, reprocess), or schema check found a breaking change;
2 usage, configuration or infrastructure error (the message says what to fix); 3 not found (an
unknown file, a file not quarantined, no such object to ingest or inspect).

--json on a command prints JSON for scripts: one document, or JSON lines for a list (shapes in
schemas/cli/). Human output is plain lines when piped, tables on a terminal; NO_COLOR is honoured.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from dropgate.cli.output import EXIT_ERROR
from dropgate.config import Settings
from dropgate.storage import ObjectRef, parse_s3_uri
from dropgate.terminal import neutralise, shown

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=__doc__,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # paragraphs reflow to the width; a docstring line break is not kept
)


def _version(asked: bool) -> None:
    """``--version``: the installed package's version, as pip and importlib.metadata know it."""
    if asked:
        from importlib.metadata import version

        typer.echo(f"dropgate {version('dropgate')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the installed version and exit."),
    ] = False,
) -> None:
    pass


PartnerOption = Annotated[
    str | None,
    typer.Option("--partner", "-p", help="Partner id from partners.yaml (default: from the key prefix)."),
]


def with_progress(ingestor: Any, work: Any) -> Any:
    """Run ``work`` with a live count of products read on a terminal; silent when piped."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return work()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("reading products", total=None)
        ingestor.progress = lambda n: progress.update(task, description=f"{n:,} products read and validated")
        return work()


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    echo(f"dropgate: {message}", err=True)
    return typer.Exit(code)


def echo(text: str, *, err: bool = False) -> None:
    """Every line the CLI prints: keys, ids and values in it come from partners, so no control
    character reaches the terminal raw (their own fields are also cut with ``shown``)."""
    typer.echo(neutralise(text), err=err)


def problem_line(problem: Any) -> str:
    return shown(problem.one_line(), limit=None)


def s3_target(target: str, settings: Settings) -> ObjectRef:
    """``s3://bucket/key``, or a bare key in DROPGATE_BUCKET."""
    if target.startswith("s3://"):
        try:
            return parse_s3_uri(target)
        except ValueError as error:
            raise fail(str(error)) from None
    if not settings.bucket:
        raise fail(f"'{shown(target)}' has no bucket: give s3://BUCKET/KEY or set DROPGATE_BUCKET")
    return ObjectRef(settings.bucket, target.lstrip("/"))


def run(command: Callable[[], Any], *, debug: Callable[[], bool]) -> None:
    """Run a console command: an unexpected error is one line and exit 2, never a traceback and
    exit 1 (1 means "quarantined"; scripts depend on that). Shared with ``python -m devstack``."""
    try:
        command()
    except Exception as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        echo(f"dropgate: {type(error).__name__}: {shown(detail, limit=400)}", err=True)
        echo("dropgate: set DROPGATE_DEBUG=1 for the traceback", err=True)
        if debug():
            raise
        sys.exit(EXIT_ERROR)


def debugging() -> bool:
    """DROPGATE_DEBUG, through the settings (when they are what failed: no traceback of that)."""
    try:
        return Settings().debug
    except ValueError:
        return False
