"""Ingest function: S3 notification, SQS-wrapped S3 notification, or EventBridge "Object Created".

Thin on purpose: work out which object versions the trigger names, hand each to the core, and
report the result the way the trigger expects. From SQS, failures are reported per message
(``batchItemFailures``) so one bad broker moment does not redeliver the whole batch; from S3 or
EventBridge, a failure raises so Lambda retries the invocation (published files are then
recognised in the ledger and not redone).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from dropgate.app import lambda_ingestor
from dropgate.ingest.service import Ingestor
from dropgate.lambda_runtime import deadline
from dropgate.storage import ObjectRef
from handlers.observability import file_done, file_failed, file_finished, file_started, logger, measured, traced
from handlers.triggers import Ignored, from_eventbridge, from_s3_notification, from_sqs_body, kind_of

# Failed messages are always reported in batchItemFailures (never by raising), so the response has
# one shape whether one message of a batch failed or all of them; SQS retries exactly those.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class IngestFailed(RuntimeError):
    """At least one file of the invocation has no outcome yet; the trigger must retry it."""


def _process(targets: list[ObjectRef | Ignored], trigger: str, context: Any) -> list[dict[str, Any]]:
    """Ingest every named object; files that fail are retried as a whole by raising at the end,
    after the others had their chance (those already done are recognised as duplicates)."""
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for target in targets:
        if isinstance(target, Ignored):
            logger.info("ignored notification", extra={"reason": target.reason, "trigger": trigger})
            results.append({"status": "ignored", "reason": target.reason})
            continue
        file_started(target, trigger)
        ingestor: Ingestor | None = None
        try:
            ingestor = lambda_ingestor(context)
            outcome = ingestor.ingest(target, trigger=trigger, deadline=deadline(context))
        except Exception as error:
            file_failed(target, error, partner=_partner_of(ingestor, target))
            failures.append(f"{target}: {error}")
            file_done()
            continue
        file_finished(outcome)
        file_done()
        if outcome.in_progress and trigger != "sqs":
            # S3/EventBridge retry this invocation, not the holder's: if the holder dies, this retry
            # must still find the work undone. (From SQS the holder's own message is retried.)
            failures.append(f"{outcome.ref}: {outcome.reason}")
            continue
        results.append({"object": str(outcome.ref), "status": outcome.status, "events": outcome.events})
    if failures:
        raise IngestFailed(f"{len(failures)} file(s) failed: " + "; ".join(failures))
    return results


def _partner_of(ingestor: Ingestor | None, ref: ObjectRef) -> str | None:
    """The configured partner whose prefix holds a failed file (none when the failure was building
    the ingestor: it is not built again just to name one)."""
    partner = ingestor.partners.for_key(ref.key) if ingestor is not None else None
    return partner.id if partner else None


def _sqs_record(record: SQSRecord, lambda_context: Any) -> list[dict[str, Any]]:
    """One SQS message (Powertools' batch utility passes the invocation's context by this name)."""
    return _process(from_sqs_body(record.body), "sqs", lambda_context)


@logger.inject_lambda_context(clear_state=True)
@measured
@traced
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    kind = kind_of(event)
    if kind == "sqs":
        response = process_partial_response(
            event=event, record_handler=_sqs_record, processor=processor, context=context
        )
        return dict(response)
    if kind == "s3":
        return {"results": _process(from_s3_notification(event), "s3", context)}
    if kind == "eventbridge":
        return {"results": _process([from_eventbridge(event)], "eventbridge", context)}
    logger.warning("unrecognised event shape; nothing to do", extra={"keys": sorted(event)[:20]})
    return {"results": [], "ignored": "unrecognised event shape"}
