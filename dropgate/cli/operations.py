"""Operators' commands: a file's history, files by status, the quarantine, the partners, provisioning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, get_args

import typer

from dropgate.cli.dates import SINCE_FORMS, parse_since
from dropgate.cli.output import EXIT_NOT_FOUND, JsonFlag, print_json, print_json_lines
from dropgate.cli.root import PartnerOption, app, echo, fail, s3_target
from dropgate.config import Settings
from dropgate.ledger import Status
from dropgate.storage import ObjectRef
from dropgate.terminal import shown

if TYPE_CHECKING:
    from dropgate.ledger import Ledger, LedgerEntry

SinceOption = Annotated[
    str | None, typer.Option(help=f"Updated since DATE: {SINCE_FORMS}.", parser=parse_since, metavar="DATE")
]
STATUSES: tuple[str, ...] = get_args(Status)


@app.command()
def status(
    target: Annotated[str, typer.Argument(help="s3://BUCKET/KEY or a key in DROPGATE_BUCKET.")],
    as_json: JsonFlag = False,
) -> None:
    """A file's history in the ledger: every version, every attempt.

    Exit: 0 found, 2 error, 3 the ledger has no record of the file.
    """
    from dropgate.app import build_ledger
    from dropgate.cli.documents import status_document
    from dropgate.render import Screen, print_history

    settings = Settings()
    ref = s3_target(target, settings)
    entries = build_ledger(settings).history(ref)
    if not entries:
        raise fail(f"the ledger has no record of {shown(ref.uri, limit=None)}", code=EXIT_NOT_FOUND)
    if as_json:
        print_json(status_document(ref.uri, entries))
        return
    print_history(Screen(), entries)


@app.command()
def files(
    partner: PartnerOption = None,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help=f"Only files in this status: {', '.join(STATUSES)}.")
    ] = None,
    since: SinceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Files in the ledger, newest update first (one row per version), from its status index.

    Exit: 0 (also when none match), 2 error or an unknown status.
    """
    from dropgate.app import build_ledger
    from dropgate.cli.documents import ledger_row
    from dropgate.render import Screen, print_files

    if status is not None and status not in STATUSES:
        raise fail(f"unknown status '{shown(status, limit=40)}': give one of {', '.join(STATUSES)}")
    entries = _by_status(build_ledger(Settings()), [status] if status else STATUSES, partner=partner, since=since)
    if as_json:
        print_json_lines(ledger_row(entry) for entry in entries)
        return
    print_files(Screen(), entries, title=f"{len(entries)} file(s)" + _filters(partner, status, since))


def _by_status(ledger: Ledger, statuses: list[str] | tuple[str, ...], **filters: str | None) -> list[LedgerEntry]:
    """Rows in any of ``statuses``, newest first: one index query per status (it is the index's key)."""
    found = [entry for wanted in statuses for entry in ledger.with_status(wanted, **filters)]
    return sorted(found, key=lambda entry: entry.updated_at, reverse=True)


def _filters(partner: str | None, status: str | None, since: str | None) -> str:
    said = [f"{name} {shown(value, limit=40)}" for name, value in (("partner", partner), ("status", status)) if value]
    if since:
        said.append(f"updated since {since}")
    return f" ({', '.join(said)})" if said else ""


quarantine_app = typer.Typer(help="Quarantined files: list them, show why.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(partner: PartnerOption = None, since: SinceOption = None, as_json: JsonFlag = False) -> None:
    """Files currently quarantined, newest first.

    Exit: 0 (also when none are), 2 error.
    """
    from dropgate.app import build_ledger
    from dropgate.cli.documents import ledger_row
    from dropgate.render import Screen, print_files

    entries = build_ledger(Settings()).with_status("quarantined", partner=partner, since=since)
    if as_json:
        print_json_lines(ledger_row(entry) for entry in entries)
        return
    print_files(Screen(), entries, title=f"{len(entries)} quarantined file(s)" + _filters(partner, None, since))


@quarantine_app.command("show")
def quarantine_show(
    key: Annotated[str, typer.Argument(help="s3://BUCKET/KEY (original or quarantine key).")],
    as_json: JsonFlag = False,
) -> None:
    """A quarantined file's diagnostics, grouped by kind, with the lines around each problem.

    --json prints the diagnostics sidecar as stored. Exit: 0 shown, 2 error, 3 the file is not
    (or no longer) quarantined.
    """
    from dropgate.app import build_object_store, build_quarantine
    from dropgate.quarantine import copy_of, original_key
    from dropgate.render import Screen, file_context, print_diagnostics
    from dropgate.storage import ObjectMissing

    settings = Settings()
    ref = s3_target(key, settings)
    original = original_key(ref.key)
    diagnostics = build_quarantine(settings).load(ref.bucket or "", original)
    if diagnostics is None:
        raise fail(
            f"no diagnostics for {shown(f's3://{ref.bucket}/{original}', limit=None)}: it is not (or no longer) "
            "quarantined",
            code=EXIT_NOT_FOUND,
        )
    if as_json:
        print_json(diagnostics)
        return
    context: dict[int, str] = {}
    store = build_object_store()
    copy = copy_of(diagnostics, ObjectRef(ref.bucket, original), settings.quarantine_bucket or ref.bucket or "")
    try:
        with store.open(copy, store.head(copy)) as body:
            context = file_context(body, diagnostics["problems"], max_bytes=settings.max_decompressed_bytes)
    except ObjectMissing:  # resolved meanwhile: show the diagnostics without context
        pass
    print_diagnostics(Screen(), diagnostics, context)


@app.command()
def init() -> None:
    """Create bucket (versioned), queue + dead-letter queue, notifications, ledger table and topic.

    Exit: 0 ready (idempotent), 2 error.
    """
    from dropgate.app import aws_client
    from dropgate.provision import provision

    settings = Settings()
    try:
        done = provision(settings, {name: aws_client(name) for name in ("s3", "sqs", "dynamodb")})
    except Exception as error:
        raise fail(f"init failed: {error}") from None
    echo(f"bucket {done.bucket}, queue {done.queue_url}, ledger {done.table}, topic {done.topic}: ready")


@app.command("partners")
def partners_command(as_json: JsonFlag = False) -> None:
    """List the configured partners and the formats dropgate reads (validates DROPGATE_PARTNERS).

    Exit: 0, 2 the configuration is invalid (the message names the partner and field).
    """
    from rich.text import Text

    from dropgate.app import load_partners
    from dropgate.cli.documents import partners_document
    from dropgate.partners import PartnerConfigError
    from dropgate.render import Screen

    settings = Settings()
    try:
        directory = load_partners(settings)
    except PartnerConfigError as error:
        raise fail(str(error)) from None
    document = partners_document(str(settings.partners), directory)
    if as_json:
        print_json(document)
        return
    screen = Screen()
    screen.rows(  # configuration is untrusted too: a prefix or template with [ ] is not markup
        ("partner", "prefix", "format", "parser", "snapshot", "policy", "key"),
        (
            [Text(shown(p[name])) for name in ("id", "prefix", "format", "parser", "snapshot", "policy", "keyTemplate")]
            for p in document["partners"]
        ),
        title=f"partners ({shown(settings.partners, limit=None)})",
    )
    screen.rows(
        ("format", "parser", "root element"),
        (
            (
                Text(shown(f"{f['format']} ({f['kind']})")),
                Text(shown(f["parser"])),
                Text(shown(f["rootElement"], limit=None)),
            )
            for f in document["formats"]
        ),
        title="formats (files under no prefix are routed by their root element)",
    )
