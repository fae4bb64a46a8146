"""``dropgate``: inspect a file, ingest one, provision a local stack.

Exit codes: 0 clean/published, 1 the file is (or would be) quarantined, 2 usage or
infrastructure error (the message says what to fix).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dropgate.config import Settings
from dropgate.storage import ObjectRef, parse_s3_uri
from dropgate.terminal import neutralise, shown

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)

PartnerOption = Annotated[
    str | None,
    typer.Option("--partner", "-p", help="Partner id from partners.yaml (default: from the key prefix)."),
]


def _with_progress(ingestor: Any, work: Any) -> Any:
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


def _fail(message: str, code: int = 2) -> typer.Exit:
    _echo(f"dropgate: {message}", err=True)
    return typer.Exit(code)


def _echo(text: str, *, err: bool = False) -> None:
    """Every line the CLI prints: keys, ids and values in it come from partners, so no control
    character reaches the terminal raw (their own fields are also cut with ``shown``)."""
    typer.echo(neutralise(text), err=err)


def _problem_line(problem: Any) -> str:
    return shown(problem.one_line(), limit=None)


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A local XML (or gzipped XML) drop.", exists=False)],
    partner: PartnerOption = None,
) -> None:
    """Parse a local file without AWS or Kafka: events on stdout (JSON lines), problems on stderr."""
    from dropgate.app import build_ingestor
    from dropgate.ingest.preparing import PREVIEW_PARTNER
    from dropgate.partners import PartnerConfigError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    try:
        ingestor = build_ingestor(settings, local=True, publish=False)
        prepared = ingestor.prepare(ObjectRef(bucket=None, key=str(file)), partner_id=partner, preview=True)
    except (PartnerConfigError, ObjectMissing) as error:
        raise _fail(str(error)) from None
    with prepared.spool:
        policy = prepared.partner.policy if prepared.partner else "strict"
        publishable = not prepared.problems or (policy == "skip_invalid" and not prepared.fatal)
        out = sys.stdout.buffer
        if publishable:
            for entry in prepared.spool.replay(prepared.sha256):
                key = json.dumps(entry.key.decode()).encode()
                out.write(b'{"key":' + key + b',"value":' + (entry.value or b"null") + b"}\n")
        out.flush()
        for problem in prepared.problems:
            _echo(_problem_line(problem), err=True)
        if prepared.problems:
            more = prepared.problem_count - len(prepared.problems)
            if more:
                _echo(f"… and {more} more problem(s)", err=True)
            published = "valid records would be published" if publishable else "nothing would be published"
            _echo(
                f"{file}: would be quarantined: {prepared.problem_count} problem(s); {published} (policy {policy})",
                err=True,
            )
            raise typer.Exit(1)
        if prepared.partner is None:
            named = (
                f"the document names partner '{shown(prepared.partner_id)}', which is not configured"
                if prepared.partner_id
                else "the document names none"
            )
            _echo(
                f"{file}: no partner claims this file (no --partner, and {named}); events are shown "
                f"with partnerId '{PREVIEW_PARTNER}' and key {{productId}}",
                err=True,
            )
        if prepared.snapshot == "full":
            _echo(f"{file}: a full snapshot: products missing from it will be deleted when it is ingested", err=True)
        _echo(f"{file}: ok, {prepared.spool.count} event(s), parser {prepared.parser_label}", err=True)


@app.command()
def ingest(
    target: Annotated[str, typer.Argument(help="s3://BUCKET/KEY, or a local file with --partner.")],
    partner: PartnerOption = None,
    force: Annotated[bool, typer.Option(help="Process even if the ledger says this version is done.")] = False,
) -> None:
    """Run the same core the Lambda handler runs, for one file, and print its outcome."""
    from dropgate.app import build_ingestor
    from dropgate.partners import PartnerConfigError
    from dropgate.publishing import PublishError, TopicError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    try:
        if target.startswith("s3://"):
            ref, local = parse_s3_uri(target), False
        else:
            ref, local = ObjectRef(bucket=None, key=target), True
        ingestor = build_ingestor(settings, local=local)
        outcome = _with_progress(ingestor, lambda: ingestor.ingest(ref, trigger="cli", partner_id=partner, force=force))
    except (PartnerConfigError, ObjectMissing, ValueError, TopicError, PublishError) as error:
        raise _fail(str(error)) from None
    for problem in outcome.problems:
        _echo(_problem_line(problem), err=True)
    _echo(outcome.summary())
    if outcome.status == "quarantined":
        raise typer.Exit(1)
    if outcome.status == "ignored":
        raise typer.Exit(2)


def _s3_target(target: str, settings: Settings) -> ObjectRef:
    """``s3://bucket/key``, or a bare key in DROPGATE_BUCKET."""
    if target.startswith("s3://"):
        return parse_s3_uri(target)
    if not settings.bucket:
        raise _fail(f"'{shown(target)}' has no bucket: give s3://BUCKET/KEY or set DROPGATE_BUCKET")
    return ObjectRef(settings.bucket, target.lstrip("/"))


def _describe(result: Any) -> str:
    outcome = result.outcome
    if result.dry_run:
        verdicts = outcome.verdicts
        if outcome.problems and verdicts is None:
            return f"{outcome.ref.shown}: would be quarantined again: {outcome.reason}"
        counts = (
            f"would publish {outcome.events} event(s): new {verdicts.new}, changed {verdicts.changed}, "
            f"unchanged {verdicts.unchanged}, stale {verdicts.stale} (skipped)"
            if verdicts
            else "nothing to publish"
        )
        lines = [f"{outcome.ref.shown}: {counts}"]
        if result.note:
            lines.append(f"  {result.note}")
        lines.extend(f"  {note}" for note in outcome.notes)
        if outcome.problems:
            lines.append(f"  and would still be quarantined: {outcome.reason}")
        if verdicts:
            for category in ("changed", "new", "stale"):
                if verdicts.samples.get(category):
                    lines.append(f"  {category}: " + "; ".join(verdicts.samples[category]))
        return "\n".join(lines)
    text: str = outcome.summary()
    if result.resolved:
        text += f"\n  quarantined copy resolved: {result.resolved}"
    if result.note:
        text += f"\n  {result.note}"
    for note in outcome.notes:
        text += f"\n  {note}"
    return text


def _still_quarantined(result: Any) -> bool:
    outcome = result.outcome
    if result.dry_run:
        return bool(outcome.problems)
    return outcome.status == "quarantined" or (
        outcome.status == "duplicate" and "already quarantined" in (outcome.reason or "")
    )


@app.command()
def reprocess(
    target: Annotated[str | None, typer.Argument(help="s3://BUCKET/KEY (original or quarantine key).")] = None,
    quarantined: Annotated[bool, typer.Option("--quarantined", help="Every quarantined file (bulk).")] = False,
    partner: PartnerOption = None,
    since: Annotated[str | None, typer.Option(help="Bulk: files quarantined since this date (YYYY-MM-DD).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be published; change nothing.")] = False,
    force: Annotated[bool, typer.Option(help="Republish even if this parser version already did.")] = False,
    changed_only: Annotated[
        bool, typer.Option("--changed-only", help="Publish only keys whose state changed.")
    ] = False,
) -> None:
    """Run the current parser over files already received and republish them (idempotently)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from dropgate.app import build_reprocessor
    from dropgate.partners import PartnerConfigError
    from dropgate.publishing import PublishError, TopicError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    if (target is None) == (not quarantined):
        raise _fail("give one file (s3://BUCKET/KEY) or --quarantined [--partner P] [--since DATE]")
    console = Console(stderr=False)
    try:
        reprocessor = build_reprocessor(settings, publish=not dry_run)
        if target is not None:
            result = reprocessor.one(
                _s3_target(target, settings), dry_run=dry_run, force=force, changed_only=changed_only or None
            )
            _echo(_describe(result))
            if _still_quarantined(result):
                raise typer.Exit(1)
            return
        entries = reprocessor.quarantined(partner=partner, since=since)
        results = []
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("reprocessing", total=len(entries))
            for result in reprocessor.each(entries, dry_run=dry_run, force=force, changed_only=changed_only or None):
                results.append(result)
                if dry_run:
                    _echo(_describe(result))
                progress.advance(task)
    except (PartnerConfigError, ObjectMissing, ValueError, TopicError, PublishError) as error:
        raise _fail(str(error)) from None
    table = Table(title=f"reprocessed {len(results)} quarantined file(s)" + (" (dry run)" if dry_run else ""))
    for column in ("file", "version", "outcome", "events", "stale", "problems", "resolved"):
        table.add_column(column, overflow="fold")
    for result in results:
        outcome = result.outcome
        status = "dry-run" if dry_run else outcome.status
        table.add_row(  # keys as Text: a key like acme/[/].xml is not rich markup
            Text(shown(outcome.ref.uri)),
            Text(shown(outcome.ref.version_id or "null")),
            status,
            str(outcome.events),
            str(outcome.stale),
            str(outcome.problem_count),
            Text(shown(result.resolved or "")),
        )
    console.print(table)
    if any(_still_quarantined(r) for r in results):
        raise typer.Exit(1)


@app.command()
def status(target: Annotated[str, typer.Argument(help="s3://BUCKET/KEY or a key in DROPGATE_BUCKET.")]) -> None:
    """A file's history in the ledger: every version, every attempt."""
    from rich.console import Console

    from dropgate.app import build_ledger
    from dropgate.render import history_table, print_group

    settings = Settings()
    ref = _s3_target(target, settings)
    entries = build_ledger(settings).history(ref)
    if not entries:
        raise _fail(f"the ledger has no record of {shown(ref.uri)}", code=1)
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
    ref = _s3_target(key, settings)
    original = original_key(ref.key)
    diagnostics = build_quarantine(settings).load(ref.bucket or "", original)
    if diagnostics is None:
        raise _fail(
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
        raise _fail(f"init failed: {error}") from None
    _echo(f"bucket {done.bucket}, queue {done.queue_url}, ledger {done.table}, topic {done.topic}: ready")


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
        raise _fail(str(error)) from None
    console = Console()
    table = Table(title=f"partners ({settings.partners})", title_justify="left")
    for column in ("partner", "prefix", "format", "parser", "snapshot", "policy", "key"):
        table.add_column(column, overflow="fold")  # piped at 80 columns: wrap, never hide a name
    for partner in sorted(directory, key=lambda p: p.id):
        parser = directory.parser(partner.format)
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


@app.command()
def schema() -> None:
    """Print the JSON Schema of event values (as checked into schemas/)."""
    from dropgate.events import json_schema

    _echo(json.dumps(json_schema(), indent=2, sort_keys=True))


def _debugging() -> bool:
    try:
        return Settings().debug
    except ValueError:  # the settings are what failed: no traceback of that
        return False


def main() -> None:
    """Console entry point: an unexpected error is one line and exit 2, never a traceback and exit 1
    (1 means "quarantined"; scripts depend on that)."""
    try:
        app()
    except Exception as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        _echo(f"dropgate: {type(error).__name__}: {shown(detail, limit=400)}", err=True)
        _echo("dropgate: set DROPGATE_DEBUG=1 for the traceback", err=True)
        if _debugging():
            raise
        sys.exit(2)


if __name__ == "__main__":
    main()
