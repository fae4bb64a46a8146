"""What the functions tell CloudWatch: JSON logs with a correlation id per file, one summary line per
file, EMF metrics, and (opt-in) X-Ray traces (Powertools Logger, Metrics, Tracer). Shared by both handlers.

Locally (demo, soak, tests) ``POWERTOOLS_METRICS_DISABLED=true`` keeps EMF blobs off the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from dropgate.config import Settings
from dropgate.ingest.outcome import FileOutcome
from dropgate.storage import ObjectRef

SERVICE = "dropgate"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "dropgate"), service=SERVICE)


def traced(handler: Callable[..., Any]) -> Callable[..., Any]:
    """X-Ray tracing when DROPGATE_TRACING=true. Opt-in because importing the X-Ray SDK alone costs
    about 250 ms of every cold start; logs and metrics carry what operating dropgate needs."""
    if not Settings().tracing:
        return handler
    from aws_lambda_powertools import Tracer

    wrapped: Callable[..., Any] = Tracer(service=SERVICE).capture_lambda_handler(handler, capture_response=False)
    return wrapped


_STATUS_METRIC = {
    "published": "FilesPublished",
    "quarantined": "FilesQuarantined",
    "duplicate": "FilesDuplicate",
    "ignored": "FilesIgnored",
}


def file_started(ref: ObjectRef, trigger: str) -> None:
    """Every log line until the next file carries this file's identity."""
    logger.set_correlation_id(str(ref))
    logger.append_keys(bucket=ref.bucket, key=ref.key, version=ref.version_id, trigger=trigger)
    metrics.add_metric(name="FilesReceived", unit=MetricUnit.Count, value=1)


def file_finished(outcome: FileOutcome) -> None:
    """The one summary line per file, and its metrics."""
    logger.info(
        outcome.summary(),
        extra={
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
    metrics.add_metric(name=_STATUS_METRIC.get(outcome.status, "FilesOther"), unit=MetricUnit.Count, value=1)
    if outcome.status == "published":
        metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=outcome.events)
        metrics.add_metric(name="PublishSeconds", unit=MetricUnit.Seconds, value=outcome.seconds)
    if outcome.invalid:
        metrics.add_metric(name="RecordsInvalid", unit=MetricUnit.Count, value=outcome.invalid)
    if outcome.stale:
        metrics.add_metric(name="StaleSkipped", unit=MetricUnit.Count, value=outcome.stale)
    if outcome.held_deletes and outcome.status != "duplicate":  # the DeletionsHeldAlarm's metric
        metrics.add_metric(name="DeletionsHeld", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="TombstonesHeld", unit=MetricUnit.Count, value=outcome.held_deletes)


def file_failed(ref: ObjectRef, error: BaseException) -> None:
    logger.exception("file failed; it will be retried", extra={"error": str(error)})
    metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=1)


def file_done() -> None:
    logger.remove_keys(["bucket", "key", "version", "trigger"])
    logger.set_correlation_id(None)
