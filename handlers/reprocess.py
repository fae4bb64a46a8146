"""Reprocess function: ``{"bucket", "key"}`` for one file, ``{"partner", "since"}`` for quarantined ones.

Optional ``dryRun``, ``force`` and ``changedOnly`` flags. One file per invocation is what the
Step Functions Distributed Map sends; the bulk form suits a few files. Returns a summary per file.
"""

from __future__ import annotations

from typing import Any

from dropgate.app import lambda_reprocessor
from dropgate.config import Settings
from dropgate.reprocess import ReprocessResult
from dropgate.storage import ObjectRef
from handlers.observability import file_finished, logger, measured, traced


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


@logger.inject_lambda_context(clear_state=True)
@measured
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    dry_run = bool(event.get("dryRun", False))
    force = bool(event.get("force", False))
    changed_only = event.get("changedOnly")
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
