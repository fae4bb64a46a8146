"""``dropgate deletions``: a full snapshot's held tombstones: list them, show one, approve or reject it.

docs/operating.md "Held deletions" is the operator's view; :mod:`dropgate.held_deletions` does the work.
``--json`` gives the shapes in ``schemas/cli/deletions-*.schema.json``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dropgate.cli.output import EXIT_NOT_FOUND, print_json, print_json_lines
from dropgate.cli.root import PartnerOption, app, echo, fail, s3_target
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from dropgate.terminal import shell_command, shown

if TYPE_CHECKING:
    from dropgate.held import HeldDeletion
    from dropgate.held_deletions import Decided, HeldDeletions

deletions_app = typer.Typer(
    help="Held deletions: a full snapshot's tombstones waiting for approval (exit 3: none for that file).",
    no_args_is_help=True,
)
app.add_typer(deletions_app, name="deletions")

JsonOption = Annotated[bool, typer.Option("--json", help="JSON output (schemas/cli/).")]
TargetArgument = Annotated[str, typer.Argument(help="s3://BUCKET/KEY of the full snapshot (or a bare key).")]
VersionOption = Annotated[
    str | None, typer.Option("--version-id", help="The snapshot's version, when several versions are held.")
]


def _held_deletions(*, publish: bool) -> HeldDeletions:
    from dropgate.app import build_reprocessor

    return build_reprocessor(Settings(), publish=publish).held


def _target(target: str, version: str | None) -> ObjectRef:
    return s3_target(target, Settings()).with_version(version)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def held_json(held: HeldDeletion) -> dict[str, Any]:
    """One held deletion as ``list`` prints it (``schemas/cli/deletions-held.schema.json``)."""
    return {
        "file": held.file,
        "bucket": held.bucket,
        "key": held.key,
        "versionId": held.version,
        "partner": held.partner,
        "held": held.count,
        "live": held.live,
        "fraction": round(held.fraction, 6),
        "asOf": _iso(held.as_of_ms),
        "predecessor": held.predecessor,
        "heldAt": held.held_at,
        "keyTemplate": held.key_template,
    }


def _line(held: HeldDeletion) -> str:
    return (
        f"{shown(held.file)}  partner={held.partner}  held={held.count} of {held.live} live key(s) "
        f"({held.fraction:.0%})  asOf={_iso(held.as_of_ms)}  heldAt={held.held_at}"
    )


def _run(work: Any) -> Any:
    """Errors as the exit-code contract says: 3 when nothing is held for the file, 2 otherwise."""
    from dropgate.held_deletions import NoSuchHold, NotHeld
    from dropgate.partners import PartnerConfigError
    from dropgate.publishing import PublishError, TopicError

    try:
        return work()
    except NoSuchHold as missing:
        raise fail(str(missing), code=EXIT_NOT_FOUND) from None
    except (NotHeld, PartnerConfigError, ValueError, TopicError, PublishError) as error:
        raise fail(str(error)) from None


@deletions_app.command("list")
def deletions_list(partner: PartnerOption = None, json: JsonOption = False) -> None:
    """Every pending held deletion (of one partner), oldest first."""
    pending = _run(lambda: _held_deletions(publish=False).pending(partner))
    if json:
        print_json_lines(held_json(held) for held in pending)
        return
    if not pending:
        echo("no held deletions" + (f" for partner {shown(partner)}" if partner else ""))
    for held in pending:
        echo(_line(held))


@deletions_app.command("show")
def deletions_show(target: TargetArgument, version_id: VersionOption = None, json: JsonOption = False) -> None:
    """One held deletion: the count, the share of live keys, a sample of keys, the file and its predecessor."""
    held_deletions = _held_deletions(publish=False)
    held = _run(lambda: held_deletions.find(_target(target, version_id)))
    sample = [key.decode(errors="replace") for key in held_deletions.sample(held)]
    if json:
        print_json({**held_json(held), "sample": sample})
        return
    uri = f"s3://{held.bucket}/{held.key}"
    lines = [
        f"held deletions of {shown(held.file)} (partner {held.partner})",
        f"  {held.count} of {held.live} live key(s) ({held.fraction:.1%}) would be deleted",
        f"  snapshot asOf {_iso(held.as_of_ms)}; held at {held.held_at}",
        f"  predecessor: {shown(held.predecessor or '-')}",
        f"  sample: {', '.join(shown(key, limit=60) for key in sample)}",
        f"  approve: {shell_command('dropgate', 'deletions', 'approve', uri)}",
        f"  reject:  {shell_command('dropgate', 'deletions', 'reject', uri)}",
    ]
    echo("\n".join(lines))


def decided_json(decided: Decided) -> dict[str, Any]:
    """What approve or reject did (``schemas/cli/deletions-decision.schema.json``)."""
    return {
        **held_json(decided.held),
        "decision": decided.decision,
        "published": decided.published,
        "skippedStale": decided.skipped,
        "already": decided.already,
    }


def _say(decided: Decided, json: bool) -> None:
    if json:
        print_json(decided_json(decided))
        return
    held = decided.held
    if decided.already:
        echo(f"{shown(held.file)}: its deletions were already {decided.decision}")
    elif decided.decision == "rejected":
        echo(f"{shown(held.file)}: rejected; {held.count} key(s) stay live (recorded in the ledger)")
    else:
        echo(
            f"{shown(held.file)}: approved; {decided.published} tombstone(s) published, "
            f"{decided.skipped} skipped as stale (a newer file re-added them)"
        )
        if decided.skipped_samples:
            echo("  stale: " + "; ".join(decided.skipped_samples))


@deletions_app.command("approve")
def deletions_approve(target: TargetArgument, version_id: VersionOption = None, json: JsonOption = False) -> None:
    """Publish the held tombstones now, with the snapshot's asOf (a key a newer file re-added is kept)."""
    ref = _target(target, version_id)
    _say(_run(lambda: _held_deletions(publish=True).approve(ref)), json)


@deletions_app.command("reject")
def deletions_reject(target: TargetArgument, version_id: VersionOption = None, json: JsonOption = False) -> None:
    """Drop the held tombstones: the keys stay live, and the ledger says so."""
    ref = _target(target, version_id)
    _say(_run(lambda: _held_deletions(publish=False).reject(ref)), json)
