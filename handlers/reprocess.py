"""Reprocess function: ``{"bucket", "key"}`` for one file, ``{"partner", "since"}`` for quarantined ones.

Optional ``dryRun``, ``force`` and ``changedOnly`` flags. ``{"deletions": "approve" | "reject",
"bucket", "key"[, "versionId"]}`` decides a full snapshot's held deletions instead. One file per invocation is what the
Step Functions Distributed Map sends; the bulk form suits a few files. Returns a summary per file.
"""

from __future__ import annotations

from typing import Any

from dropgate.app import lambda_reprocessor
from dropgate.config import Settings
from dropgate.lambda_runtime import deadline
from dropgate.storage import ObjectRef
from handlers.observability import deletions_decided, file_finished, logger, measured, traced


def _target(event: dict[str, Any]) -> ObjectRef:
    bucket = event.get("bucket") or Settings().bucket
    if not bucket:
        raise ValueError('payload needs "bucket" (or DROPGATE_BUCKET must be set)')
    return ObjectRef(bucket, event["key"], event.get("versionId"))


def _deletions(event: dict[str, Any], context: Any) -> dict[str, Any]:
    decision = event["deletions"]
    if decision not in ("approve", "reject") or "key" not in event:
        raise ValueError('a deletions payload is {"deletions": "approve" | "reject", "bucket", "key"}')
    worker = lambda_reprocessor(context)
    decided = worker.decide_deletions(_target(event), approve=decision == "approve", deadline=deadline(context))
    logger.info(f"held deletions {decided.decision}", extra=decided.summary())
    deletions_decided(decided.decision, decided.held.partner)
    return {"deletions": decided.summary()}


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
    stop = deadline(context)  # before the function's timeout: a clean failure, retried whole
    if "key" in event:
        result = worker.one(_target(event), dry_run=dry_run, force=force, changed_only=changed_only, deadline=stop)
        file_finished(result.outcome, dry_run=result.dry_run)
        return {"results": [result.summary()]}
    if "partner" in event or "since" in event:
        results = worker.bulk(
            partner=event.get("partner"),
            since=event.get("since"),
            dry_run=dry_run,
            force=force,
            changed_only=changed_only,
            deadline=stop,
        )
        for result in results:
            file_finished(result.outcome, dry_run=result.dry_run)
        return {"results": [r.summary() for r in results]}
    raise ValueError('payload must be {"bucket", "key"} or {"partner", "since"}')
