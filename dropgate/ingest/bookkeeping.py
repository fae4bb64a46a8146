"""What the ledger and the quarantine are told about a file: its row, this attempt, its diagnostics."""

from __future__ import annotations

import time

from dropgate.ingest.outcome import FileOutcome, Prepared
from dropgate.ledger import Attempt, LedgerEntry
from dropgate.ledger import Status as LedgerStatus
from dropgate.quarantine import Diagnostics
from dropgate.storage import ObjectRef


def bare_entry(
    ref: ObjectRef, status: LedgerStatus, *, partner: str | None = None, reason: str | None = None
) -> LedgerEntry:
    """The row of a file that was never parsed (ignored, or failed before its parse finished)."""
    return LedgerEntry(
        bucket=ref.bucket or "",
        key=ref.key,
        version=ref.version_id or "null",
        status=status,
        partner=partner,
        reason=reason,
    )


def entry_for(prepared: Prepared, outcome: FileOutcome, status: LedgerStatus, error: str | None) -> LedgerEntry:
    """The row of a parsed file: what it held, what was published, where its diagnostics are."""
    ref = prepared.ref
    return LedgerEntry(
        bucket=ref.bucket or "",
        key=ref.key,
        version=ref.version_id or "null",
        status=status,
        partner=prepared.partner_id,
        parser_name=prepared.parser.name,
        parser_version=prepared.parser.version,
        event_count=outcome.events,
        tombstones=outcome.tombstones,
        problem_count=prepared.problem_count,
        sha256=prepared.sha256,
        size=prepared.size,
        reason=error or outcome.reason,
        diagnostics=outcome.diagnostics,
        etag=prepared.meta.etag,
        deletions="held" if outcome.held_deletes else None,
        held_deletes=outcome.held_deletes,
        held_at=outcome.held_at,
    )


def attempt_for(prepared: Prepared, outcome: FileOutcome, trigger: str, started: float, error: str | None) -> Attempt:
    """This invocation's line in the file's history."""
    return Attempt(
        trigger=trigger,
        parser=prepared.parser_label,
        outcome="failed" if error else outcome.status,
        events=outcome.events,
        invalid=outcome.invalid,
        stale=outcome.stale,
        seconds=time.monotonic() - started,
        error=error,
    )


def diagnostics_for(prepared: Prepared, *, policy: str, published: int, problem_cap: int) -> Diagnostics:
    """The quarantine sidecar: everything a partner engineer needs to fix the file."""
    return Diagnostics(
        bucket=prepared.ref.bucket,
        key=prepared.ref.key,
        version_id=prepared.ref.version_id,
        size=prepared.size,
        sha256=prepared.sha256,
        uploaded_at=prepared.meta.last_modified,
        partner=prepared.partner_id,
        parser_name=prepared.parser.name,
        parser_version=prepared.parser.version,
        policy=policy,
        problems=prepared.problems,
        problem_count=prepared.problem_count,
        problem_cap=problem_cap,
        published=published,
    )
