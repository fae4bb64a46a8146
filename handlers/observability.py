"""What the functions tell CloudWatch: JSON logs with a correlation id per file, one summary line per
file, the file's EMF metrics (``handlers.file_metrics``), and (opt-in) X-Ray traces (Powertools
Logger, Metrics, Tracer). Shared by both handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from dropgate.config import Settings
from dropgate.ingest.outcome import FileOutcome
from dropgate.storage import ObjectRef
from handlers import file_metrics
from handlers.file_metrics import SERVICE, UNROUTED, measured, metrics

__all__ = ["SERVICE", "UNROUTED", "logger", "measured", "metrics", "traced"]
logger = Logger(service=SERVICE)


def traced(handler: Callable[..., Any]) -> Callable[..., Any]:
    """X-Ray tracing when DROPGATE_TRACING=true. Opt-in because importing the X-Ray SDK alone costs
    about 250 ms of every cold start; logs and metrics carry what operating dropgate needs. Off, the
    X-Ray SDK is never imported, so OpenTelemetry (the ADOT layer) can instrument the function instead."""
    if not Settings().tracing:
        return handler
    from aws_lambda_powertools import Tracer

    wrapped: Callable[..., Any] = Tracer(service=SERVICE).capture_lambda_handler(handler, capture_response=False)
    return wrapped


def file_started(ref: ObjectRef, trigger: str) -> None:
    """Every log line until the next file carries this file's identity."""
    logger.set_correlation_id(str(ref))
    logger.append_keys(bucket=ref.bucket, key=ref.key, version=ref.version_id, trigger=trigger)
    file_metrics.count("FilesReceived")


def file_finished(outcome: FileOutcome, *, dry_run: bool = False) -> None:
    """The one summary line per file, and its metrics (``outcome.partner`` is a configured partner's
    id or ``None``: the router only ever names partners from the configuration). A dry run's outcome
    says what would happen: it is logged, never counted (it would count as published or quarantined,
    and a dry run over the quarantine would set off the quarantine alarm)."""
    logger.info(
        ("dry run: " if dry_run else "") + outcome.summary(),
        extra={
            "dryRun": dry_run,
            "outcome": outcome.status,
            "partner": outcome.partner,
            "parser": outcome.parser,
            "events": outcome.events,
            "tombstones": outcome.tombstones,
            "heldDeletes": outcome.held_deletes,
            "stale": outcome.stale,
            "invalid": outcome.invalid,
            "problems": outcome.problem_count,
            "seconds": round(outcome.seconds, 3),
            "diagnostics": outcome.diagnostics,
            "notes": outcome.notes,
        },
    )
    if dry_run:
        file_metrics.discard()  # not even the FilesReceived of its start
        return
    file_metrics.outcome_counted(outcome)


def file_failed(ref: ObjectRef, error: BaseException, partner: str | None = None) -> None:
    """A file with no outcome (it will be retried); ``partner``: the configured partner whose prefix
    the key is under, if any."""
    logger.exception("file failed; it will be retried", extra={"error": str(error), "partner": partner})
    file_metrics.count("FilesFailed")
    file_metrics.flush_for(partner)


def deletions_decided(decision: str, partner: str | None) -> None:
    """An operator's decision on a snapshot's held tombstones (through the reprocess function)."""
    file_metrics.count("DeletionsApproved" if decision == "approved" else "DeletionsRejected")
    file_metrics.flush_for(partner)


def file_done() -> None:
    logger.remove_keys(["bucket", "key", "version", "trigger"])
    logger.set_correlation_id(None)
