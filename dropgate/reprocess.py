"""Reprocess: run the current parser over a file that was already received, and republish.

The file is named by its original key or its quarantine key. Without ``force`` a file already
published or quarantined by the *current* parser version is left alone (a fix bumps the parser
version, and that is what makes a reprocess do work). A successful reprocess of a quarantined
file moves its copy and sidecar under ``quarantine/resolved/``; a failed one rewrites them.

It also decides a full snapshot's held deletions (:mod:`dropgate.held_deletions`), so the
reprocess function approves or rejects them on AWS without a laptop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dropgate.held_deletions import Decided, HeldDeletions
from dropgate.ingest.outcome import FileOutcome
from dropgate.ingest.service import Ingestor
from dropgate.ledger import Ledger, LedgerEntry
from dropgate.quarantine import Quarantine, copy_of, original_key
from dropgate.storage import ObjectMeta, ObjectMissing, ObjectRef


@dataclass(slots=True)
class ReprocessResult:
    target: ObjectRef
    outcome: FileOutcome
    dry_run: bool
    resolved: str | None = None
    note: str | None = None

    def summary(self) -> dict[str, Any]:
        """What the reprocess function returns for the file (``verdicts`` on a dry run)."""
        outcome = self.outcome
        summary: dict[str, Any] = {
            "object": str(outcome.ref),
            "status": "dry-run" if self.dry_run else outcome.status,
            "events": outcome.events,
            "stale": outcome.stale,
            "problems": outcome.problem_count,
            "resolved": self.resolved,
            "note": self.note,
        }
        if outcome.held_deletes:
            summary["heldDeletes"] = outcome.held_deletes
        if self.dry_run and outcome.verdicts is not None:
            verdicts = outcome.verdicts
            summary["verdicts"] = {
                "new": verdicts.new,
                "changed": verdicts.changed,
                "unchanged": verdicts.unchanged,
                "stale": verdicts.stale,
                "samples": verdicts.samples,
            }
        return summary


class Reprocessor:
    def __init__(self, ingestor: Ingestor, ledger: Ledger, quarantine: Quarantine) -> None:
        self.ingestor = ingestor
        self.ledger = ledger
        self.quarantine = quarantine

    @property
    def held(self) -> HeldDeletions:
        """Held deletions, over the same state, ledger, guard and broker."""
        return HeldDeletions.of(self.ingestor)

    def decide_deletions(self, ref: ObjectRef, *, approve: bool, deadline: float | None = None) -> Decided:
        """Approve (publish, stopping cleanly at ``deadline``) or reject a file's held tombstones."""
        return self.held.approve(ref, deadline=deadline) if approve else self.held.reject(ref)

    def resolve_target(self, ref: ObjectRef) -> ObjectRef:
        """Quarantine key → original key; no version → the newest quarantined version, else the latest."""
        key = original_key(ref.key)
        target = ObjectRef(ref.bucket, key, ref.version_id)
        if target.version_id is None:
            quarantined = [e for e in self.ledger.history(target) if e.status == "quarantined"]
            if quarantined:
                version = quarantined[0].version
                target = target.with_version(None if version == "null" else version)
        return target

    def _copy_instead(self, target: ObjectRef) -> tuple[ObjectRef, ObjectMeta] | None:
        """When the original version is gone, its byte-identical quarantine copy (and the original's
        metadata from the sidecar), so lineage and the ledger still name the original version."""
        try:
            self.ingestor.store.head(target)
            return None
        except ObjectMissing:
            pass
        if target.bucket is None:
            return None
        diagnostics = self.quarantine.load(target.bucket, target.key)
        if diagnostics is None:
            return None
        file = diagnostics["file"]
        if target.version_id and file.get("versionId") not in (target.version_id, None):
            return None  # the copy is of another version
        copy = copy_of(diagnostics, target, self.quarantine_bucket(target.bucket))
        try:
            copy_meta = self.ingestor.store.head(copy)
        except ObjectMissing:
            return None
        uploaded = datetime.fromisoformat(file["uploadedAt"]) if file.get("uploadedAt") else copy_meta.last_modified
        return copy, ObjectMeta(version_id=file.get("versionId"), size=copy_meta.size, last_modified=uploaded)

    def quarantine_bucket(self, bucket: str) -> str:
        configured: str | None = getattr(self.quarantine, "bucket", None)
        return configured or bucket

    def one(
        self,
        ref: ObjectRef,
        *,
        dry_run: bool = False,
        force: bool = False,
        changed_only: bool | None = None,
        deadline: float | None = None,
    ) -> ReprocessResult:
        """Reprocess one file; ``deadline`` (a ``time.monotonic()`` instant): stop cleanly before it,
        nothing recorded as published, so the invocation's retry does the work."""
        target = self.resolve_target(ref)
        read_from = self._copy_instead(target)
        note = (
            f"the original version is gone; read the quarantined copy s3://{read_from[0].bucket}/{read_from[0].key}"
            if read_from
            else None
        )
        if dry_run:
            return ReprocessResult(target, self.ingestor.dry_run(target, read_from=read_from), dry_run=True, note=note)
        outcome = self.ingestor.ingest(
            target, trigger="reprocess", force=force, changed_only=changed_only, read_from=read_from, deadline=deadline
        )
        result = ReprocessResult(outcome.ref, outcome, dry_run=False, note=note)
        if outcome.status == "published" and target.bucket:
            result.resolved = self.quarantine.resolve(target.bucket, target.key)
        elif outcome.status == "duplicate":
            result.note = (
                note + "; " if note else ""
            ) + f"nothing to do: {outcome.reason}; fix the parser (and bump its version) or use --force"
        return result

    def quarantined(self, *, partner: str | None = None, since: str | None = None) -> list[LedgerEntry]:
        return self.ledger.with_status("quarantined", partner=partner, since=since)

    def each(
        self,
        entries: Iterable[LedgerEntry],
        *,
        dry_run: bool = False,
        force: bool = False,
        changed_only: bool | None = None,
        deadline: float | None = None,
    ) -> Iterator[ReprocessResult]:
        """Reprocess the files of these ledger rows (as :meth:`quarantined` lists them), one at a time."""
        for entry in entries:
            ref = ObjectRef(entry.bucket, entry.key, None if entry.version == "null" else entry.version)
            yield self.one(ref, dry_run=dry_run, force=force, changed_only=changed_only, deadline=deadline)

    def bulk(
        self,
        *,
        partner: str | None = None,
        since: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        changed_only: bool | None = None,
        deadline: float | None = None,
    ) -> list[ReprocessResult]:
        """Every file quarantined (of ``partner``, since ``since``), reprocessed before ``deadline``."""
        entries = self.quarantined(partner=partner, since=since)
        return list(self.each(entries, dry_run=dry_run, force=force, changed_only=changed_only, deadline=deadline))
