"""Reprocess function: ``{"bucket", "key"}`` for one file, ``{"partner", "since"}`` for quarantined ones.

Optional ``dryRun``, ``force`` and ``changedOnly`` flags. ``{"deletions": "approve" | "reject",
"bucket", "key"[, "versionId"]}`` decides a full snapshot's held deletions instead. One file per invocation is what the
Step Functions Distributed Map sends; the bulk form suits a few files. Returns a summary per file.
"""

from __future__ import annotations

from typing import Any

from dropgate.app import lambda_reprocessor
from dropgate.config import Settings
from dropgate.held_deletions import Decided
from dropgate.reprocess import ReprocessResult
from dropgate.storage import ObjectRef
from handlers.observability import deletions_decided, file_finished, logger, measured, traced


def _summary(result: ReprocessResult) -> dict[str, Any]:
    outcome = result.outcome
    summary: dict[str, Any] = {
        "object": str(outcome.ref),
        "status": "dry-run" if result.dry_run else outcome.status,
        "events": outcome.events,
        "stale": outcome.stale,
        "problems": outcome.problem_count,
        "resolved": result.resolved,
        "note": result.note,
    }
    if outcome.held_deletes:
        summary["heldDeletes"] = outcome.held_deletes
    if result.dry_run and outcome.verdicts is not None:
        verdicts = outcome.verdicts
        summary["verdicts"] = {
            "new": verdicts.new,
            "changed": verdicts.changed,
            "unchanged": verdicts.unchanged,
            "stale": verdicts.stale,
            "samples": verdicts.samples,
        }
    return summary


def _decided(decided: Decided) -> dict[str, Any]:
    held = decided.held
    return {
        "object": held.file,
        "partner": held.partner,
        "deletions": decided.decision,
        "held": held.count,
        "published": decided.published,
        "skippedStale": decided.skipped,
        "already": decided.already,
    }


def _deletions(event: dict[str, Any], context: Any) -> dict[str, Any]:
    decision = event["deletions"]
    if decision not in ("approve", "reject") or "key" not in event:
        raise ValueError('a deletions payload is {"deletions": "approve" | "reject", "bucket", "key"}')
    bucket = event.get("bucket") or Settings().bucket
    if not bucket:
        raise ValueError('payload needs "bucket" (or DROPGATE_BUCKET must be set)')
    ref = ObjectRef(bucket, event["key"], event.get("versionId"))
    decided = lambda_reprocessor(context).decide_deletions(ref, approve=decision == "approve")
    logger.info(f"held deletions {decided.decision}", extra=_decided(decided))
    deletions_decided(decided.decision, decided.held.partner)
    return {"deletions": _decided(decided)}


@logger.inject_lambda_context(clear_state=True)
@measured
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    dry_run = bool(event.get("dryRun", False))
    force = bool(event.get("force", False))
    changed_only = event.get("changedOnly")
    if "deletions" in event:
        return _deletions(event, context)
    worker = lambda_reprocessor(context)
    if "key" in event:
        bucket = event.get("bucket") or Settings().bucket
        if not bucket:
            raise ValueError('payload needs "bucket" (or DROPGATE_BUCKET must be set)')
        ref = ObjectRef(bucket, event["key"], event.get("versionId"))
        result = worker.one(ref, dry_run=dry_run, force=force, changed_only=changed_only)
        file_finished(result.outcome, dry_run=result.dry_run)
        return {"results": [_summary(result)]}
    if "partner" in event or "since" in event:
        results = worker.bulk(
            partner=event.get("partner"),
            since=event.get("since"),
            dry_run=dry_run,
            force=force,
            changed_only=changed_only,
        )
        for result in results:
            file_finished(result.outcome, dry_run=result.dry_run)
        return {"results": [_summary(r) for r in results]}
    raise ValueError('payload must be {"bucket", "key"} or {"partner", "since"}')
