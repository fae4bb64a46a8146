"""The ``--json`` shapes: one function per schema in ``schemas/cli/``, the only place they are made.

Names are camelCase as in the event contract and the sidecar; a field is always present (``null``
when there is nothing to say), so a script can index without guarding. Shapes only grow: a new field
may appear, none is renamed or removed (docs/operating.md "Command line"). Strings are exact, never cut or
escaped for a terminal: orjson escapes control characters itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dropgate.guard import Verdicts
    from dropgate.ingest.outcome import FileOutcome, Prepared
    from dropgate.ledger import LedgerEntry
    from dropgate.partners import PartnerDirectory
    from dropgate.reprocess import ReprocessResult
    from parsers.base import Problem


def ledger_row(entry: LedgerEntry, *, attempts: bool = False) -> dict[str, Any]:
    """``file.json``: one version of one file as the ledger records it (with its attempts for ``status``)."""
    row: dict[str, Any] = {
        "file": f"s3://{entry.bucket}/{entry.key}",
        "bucket": entry.bucket,
        "key": entry.key,
        "version": entry.version,
        "status": entry.status,
        "partner": entry.partner,
        "parser": entry.parser_label if entry.parser_name else None,
        "events": entry.event_count,
        "tombstones": entry.tombstones,
        "problems": entry.problem_count,
        "sha256": entry.sha256,
        "size": entry.size,
        "reason": entry.reason,
        "diagnostics": entry.diagnostics,
        "lastError": entry.last_error,
        "updatedAt": entry.updated_at,
        "attemptCount": entry.attempt_count,
        "deletions": entry.deletions,  # a full snapshot's held tombstones: held, approved or rejected
        "heldDeletes": entry.held_deletes if entry.deletions else None,
    }
    if attempts:
        row["attempts"] = [_attempt(item) for item in entry.attempts]
    return row


def _attempt(item: dict[str, Any]) -> dict[str, Any]:
    seconds = item.get("seconds")
    return {
        "at": item.get("at"),
        "trigger": item.get("trigger"),
        "parser": item.get("parser"),
        "outcome": item.get("outcome"),
        "events": int(item.get("events", 0)),
        "invalid": int(item.get("invalid", 0)),
        "stale": int(item.get("stale", 0)),
        "seconds": float(seconds) if seconds not in (None, "") else None,  # stored as a string
        "error": item.get("error"),
    }


def status_document(uri: str, entries: list[LedgerEntry]) -> dict[str, Any]:
    """``status.json``: every recorded version of one file, newest update first."""
    return {"file": uri, "versions": [ledger_row(entry, attempts=True) for entry in entries]}


def problem(item: Problem) -> dict[str, Any]:
    """``problem.json``: the sidecar's layout of one problem."""
    return item.as_dict()


def outcome_document(outcome: FileOutcome) -> dict[str, Any]:
    """``outcome.json``: what one file came to (``ingest``; inside ``reprocess``)."""
    ref = outcome.ref
    return {
        "file": ref.uri,
        "bucket": ref.bucket,
        "key": ref.key,
        "version": ref.version_id,
        "status": outcome.status,
        "partner": outcome.partner,
        "parser": outcome.parser,
        "events": outcome.events,
        "tombstones": outcome.tombstones,
        "snapshotDeletes": outcome.snapshot_deletes,
        "invalid": outcome.invalid,
        "stale": outcome.stale,
        "unchanged": outcome.unchanged,
        "problemCount": outcome.problem_count,
        "problems": [problem(p) for p in outcome.problems],
        "seconds": round(outcome.seconds, 3),
        "reason": outcome.reason,
        "quarantineCopy": outcome.diagnostics,
        "notes": list(outcome.notes),
        "inProgress": outcome.in_progress,
    }


def reprocess_document(result: ReprocessResult, *, still_quarantined: bool) -> dict[str, Any]:
    """``reprocess.json``: one file reprocessed, or what a dry run would do."""
    return {
        "dryRun": result.dry_run,
        "stillQuarantined": still_quarantined,
        "resolved": result.resolved,
        "note": result.note,
        "verdicts": _verdicts(result.outcome.verdicts),
        "outcome": outcome_document(result.outcome),
    }


def _verdicts(verdicts: Verdicts | None) -> dict[str, Any] | None:
    if verdicts is None:
        return None
    return {
        "new": verdicts.new,
        "changed": verdicts.changed,
        "unchanged": verdicts.unchanged,
        "stale": verdicts.stale,
        "deleted": verdicts.deleted,
        "published": verdicts.published,
        "samples": {category: list(found) for category, found in verdicts.samples.items()},
    }


def inspect_document(file: str, prepared: Prepared) -> dict[str, Any]:
    """``inspect.json``: the verdict on a local file (its events are what ``inspect`` prints without --json)."""
    return {
        "file": file,
        "verdict": "would be quarantined" if prepared.problems else "ok",
        "partner": prepared.partner_id,
        "partnerConfigured": prepared.partner is not None,
        "parser": prepared.parser_label,
        "policy": prepared.policy,
        "snapshot": prepared.snapshot,
        "events": prepared.spool.count,
        "publishable": prepared.publishable,
        "problemCount": prepared.problem_count,
        "problems": [problem(p) for p in prepared.problems],
        "notes": list(prepared.notes),
    }


def partners_document(source: str, directory: PartnerDirectory) -> dict[str, Any]:
    """``partners.json``: the configured partners and the formats dropgate reads."""
    partners = []
    for partner in sorted(directory, key=lambda p: p.id):
        parser = directory.parser_for(partner)
        partners.append(
            {
                "id": partner.id,
                "prefix": partner.prefix,
                "format": partner.format,
                "parser": f"{parser.name}/{parser.version}",
                "snapshot": partner.snapshot,
                "policy": partner.policy,
                "keyTemplate": partner.key_template,
            }
        )
    formats = [
        {
            "format": name,
            "kind": "declarative" if name in directory.declared else "built-in",
            "parser": f"{parser.name}/{parser.version}",
            "rootElement": parser.expects,
        }
        for name, parser in directory.parsers()
    ]
    return {"source": source, "partners": partners, "formats": formats}
