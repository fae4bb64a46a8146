"""``dropgate reprocess``: the current parser over files already received, republished idempotently."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dropgate.cli.dates import SINCE_FORMS, parse_since
from dropgate.cli.output import EXIT_QUARANTINED, JsonFlag, print_json
from dropgate.cli.root import PartnerOption, app, echo, fail, s3_target
from dropgate.config import Settings
from dropgate.terminal import shown


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
    since: Annotated[
        str | None,
        typer.Option(help=f"Bulk: files quarantined since DATE: {SINCE_FORMS}.", parser=parse_since, metavar="DATE"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be published; change nothing.")] = False,
    force: Annotated[bool, typer.Option(help="Republish even if this parser version already did.")] = False,
    changed_only: Annotated[
        bool, typer.Option("--changed-only", help="Publish only keys whose state changed.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run the current parser over files already received and republish them (idempotently).

    --json: one document for one file, JSON lines (one per file) for --quarantined.
    Exit: 0 published (or would be), 1 a file is (or would stay) quarantined, 2 usage or
    infrastructure error.
    """
    from rich.console import Console
    from rich.progress import Progress

    from dropgate.app import build_reprocessor
    from dropgate.partners import PartnerConfigError
    from dropgate.publishing import PublishError, TopicError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    if (target is None) == (not quarantined):
        raise fail("give one file (s3://BUCKET/KEY) or --quarantined [--partner P] [--since DATE]")
    console = Console(stderr=True)  # the progress bar: never between the lines a script reads
    try:
        reprocessor = build_reprocessor(settings, publish=not dry_run)
        if target is not None:
            result = reprocessor.one(
                s3_target(target, settings), dry_run=dry_run, force=force, changed_only=changed_only or None
            )
            _report(result, as_json=as_json)
            if _still_quarantined(result):
                raise typer.Exit(EXIT_QUARANTINED)
            return
        entries = reprocessor.quarantined(partner=partner, since=since)
        results = []
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("reprocessing", total=len(entries))
            for result in reprocessor.each(entries, dry_run=dry_run, force=force, changed_only=changed_only or None):
                results.append(result)
                if dry_run or as_json:  # each file as it is done: a long bulk run streams
                    _report(result, as_json=as_json)
                progress.advance(task)
    except (PartnerConfigError, ObjectMissing, ValueError, TopicError, PublishError) as error:
        raise fail(str(error)) from None
    if not as_json:
        _bulk_table(results, dry_run=dry_run)
    if any(_still_quarantined(r) for r in results):
        raise typer.Exit(EXIT_QUARANTINED)


def _report(result: Any, *, as_json: bool) -> None:
    if as_json:
        from dropgate.cli.documents import reprocess_document

        print_json(reprocess_document(result, still_quarantined=_still_quarantined(result)))
    else:
        echo(_describe(result))


def _bulk_table(results: list[Any], *, dry_run: bool) -> None:
    """One row per file of a bulk reprocess."""
    from rich.text import Text

    from dropgate.render import Screen, uri

    Screen().rows(
        ("file", "version", "outcome", "events", "stale", "problems", "resolved"),
        (
            (  # keys as Text: a key like acme/[/].xml is not rich markup
                uri(r.outcome.ref.bucket, r.outcome.ref.key),
                Text(shown(r.outcome.ref.version_id or "null", limit=None)),
                "dry-run" if dry_run else r.outcome.status,
                str(r.outcome.events),
                str(r.outcome.stale),
                str(r.outcome.problem_count),
                Text(shown(r.resolved or "", limit=None)),
            )
            for r in results
        ),
        title=f"reprocessed {len(results)} quarantined file(s)" + (" (dry run)" if dry_run else ""),
    )
