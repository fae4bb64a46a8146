"""Operators' commands: a file's history, the quarantine, the partners, provisioning."""

from __future__ import annotations

from typing import Annotated

import typer

from dropgate.cli.root import PartnerOption, app, echo, fail, s3_target
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from dropgate.terminal import shown


@app.command()
def status(target: Annotated[str, typer.Argument(help="s3://BUCKET/KEY or a key in DROPGATE_BUCKET.")]) -> None:
    """A file's history in the ledger: every version, every attempt."""
    from rich.console import Console

    from dropgate.app import build_ledger
    from dropgate.render import history_table, print_group

    settings = Settings()
    ref = s3_target(target, settings)
    entries = build_ledger(settings).history(ref)
    if not entries:
        raise fail(f"the ledger has no record of {shown(ref.uri)}", code=1)
    print_group(Console(), history_table(entries))


quarantine_app = typer.Typer(help="Quarantined files: list them, show why.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    partner: PartnerOption = None,
    since: Annotated[str | None, typer.Option(help="Quarantined since this date (YYYY-MM-DD).")] = None,
) -> None:
    """Files currently quarantined, newest first."""
    from rich.console import Console

    from dropgate.app import build_ledger
    from dropgate.render import quarantine_table

    settings = Settings()
    entries = build_ledger(settings).with_status("quarantined", partner=partner, since=since)
    Console().print(quarantine_table(entries))


@quarantine_app.command("show")
def quarantine_show(key: Annotated[str, typer.Argument(help="s3://BUCKET/KEY (original or quarantine key).")]) -> None:
    """A quarantined file's diagnostics, grouped by kind, with the lines around each problem."""
    from rich.console import Console

    from dropgate.app import build_object_store, build_quarantine
    from dropgate.quarantine import copy_of, original_key
    from dropgate.render import diagnostics_view, file_context, print_group
    from dropgate.storage import ObjectMissing

    settings = Settings()
    ref = s3_target(key, settings)
    original = original_key(ref.key)
    diagnostics = build_quarantine(settings).load(ref.bucket or "", original)
    if diagnostics is None:
        raise fail(
            f"no diagnostics for {shown(f's3://{ref.bucket}/{original}')}: it is not (or no longer) quarantined", code=1
        )
    context: dict[int, str] = {}
    store = build_object_store()
    copy = copy_of(diagnostics, ObjectRef(ref.bucket, original), settings.quarantine_bucket or ref.bucket or "")
    try:
        with store.open(copy, store.head(copy)) as body:
            context = file_context(body, diagnostics["problems"], max_bytes=settings.max_decompressed_bytes)
    except ObjectMissing:  # resolved meanwhile: show the diagnostics without context
        pass
    print_group(Console(), diagnostics_view(diagnostics, context))


@app.command()
def init() -> None:
    """Create bucket (versioned), queue + dead-letter queue, notifications, ledger table and topic."""
    from dropgate.app import aws_client
    from dropgate.provision import provision

    settings = Settings()
    try:
        done = provision(settings, {name: aws_client(name) for name in ("s3", "sqs", "dynamodb")})
    except Exception as error:
        raise fail(f"init failed: {error}") from None
    echo(f"bucket {done.bucket}, queue {done.queue_url}, ledger {done.table}, topic {done.topic}: ready")


@app.command("partners")
def partners_command() -> None:
    """List the configured partners and the formats dropgate reads (validates DROPGATE_PARTNERS)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from dropgate.app import load_partners
    from dropgate.partners import PartnerConfigError

    settings = Settings()
    try:
        directory = load_partners(settings)
    except PartnerConfigError as error:
        raise fail(str(error)) from None
    console = Console()
    table = Table(title=f"partners ({settings.partners})", title_justify="left")
    for column in ("partner", "prefix", "format", "parser", "snapshot", "policy", "key"):
        table.add_column(column, overflow="fold")  # piped at 80 columns: wrap, never hide a name
    for partner in sorted(directory, key=lambda p: p.id):
        parser = directory.parser_for(partner)
        table.add_row(  # configuration is untrusted too: a prefix or template with [ ] is not markup
            *(Text(shown(cell)) for cell in (partner.id, partner.prefix, partner.format)),
            f"{parser.name}/{parser.version}",
            partner.snapshot,
            partner.policy,
            Text(shown(partner.key_template)),
        )
    console.print(table)
    formats = Table(title="formats (files under no prefix are routed by their root element)", title_justify="left")
    for column in ("format", "parser", "root element"):
        formats.add_column(column, overflow="fold")
    for name, parser in directory.parsers():
        kind = "declarative" if name in directory.declared else "built-in"
        formats.add_row(f"{name} ({kind})", f"{parser.name}/{parser.version}", parser.expects)
    console.print(formats)
