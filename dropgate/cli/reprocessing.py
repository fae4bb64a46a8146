"""``dropgate reprocess``: the current parser over files already received, republished idempotently."""

from __future__ import annotations

from typing import Annotated, Any

import typer

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

    from dropgate.app import build_reprocessor
    from dropgate.partners import PartnerConfigError
    from dropgate.publishing import PublishError, TopicError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    if (target is None) == (not quarantined):
        raise fail("give one file (s3://BUCKET/KEY) or --quarantined [--partner P] [--since DATE]")
    console = Console(stderr=False)
    try:
        reprocessor = build_reprocessor(settings, publish=not dry_run)
        if target is not None:
            result = reprocessor.one(
                s3_target(target, settings), dry_run=dry_run, force=force, changed_only=changed_only or None
            )
            echo(_describe(result))
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
                    echo(_describe(result))
                progress.advance(task)
    except (PartnerConfigError, ObjectMissing, ValueError, TopicError, PublishError) as error:
        raise fail(str(error)) from None
    console.print(_bulk_table(results, dry_run=dry_run))
    if any(_still_quarantined(r) for r in results):
        raise typer.Exit(1)


def _bulk_table(results: list[Any], *, dry_run: bool) -> Any:
    """One row per file of a bulk reprocess."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"reprocessed {len(results)} quarantined file(s)" + (" (dry run)" if dry_run else ""))
    for column in ("file", "version", "outcome", "events", "stale", "problems", "resolved"):
        table.add_column(column, overflow="fold")
    for result in results:
        outcome = result.outcome
        table.add_row(  # keys as Text: a key like acme/[/].xml is not rich markup
            Text(shown(outcome.ref.uri)),
            Text(shown(outcome.ref.version_id or "null")),
            "dry-run" if dry_run else outcome.status,
            str(outcome.events),
            str(outcome.stale),
            str(outcome.problem_count),
            Text(shown(result.resolved or "")),
        )
    return table
