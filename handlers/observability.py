"""What the functions tell CloudWatch: JSON logs with a correlation id per file, one summary line per
file, EMF metrics, and (opt-in) X-Ray traces (Powertools Logger, Metrics, Tracer). Shared by both handlers.

Metrics go out once per file, as one EMF line with two dimension sets: ``service`` (what the alarms
watch) and ``service`` + ``partner`` (the dashboard's per-partner view). The partner dimension is
capped at the partners configured in partners.yaml: a file no partner claims counts as
``unrouted``, so a stranger dropping files under made-up prefixes cannot mint metrics (CloudWatch
bills every distinct dimension combination as a metric of its own).

Locally (demo, soak, tests) ``POWERTOOLS_METRICS_DISABLED=true`` keeps EMF blobs off the terminal.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from dropgate.config import Settings
from dropgate.ingest.outcome import FileOutcome
from dropgate.storage import ObjectRef

SERVICE = "dropgate"
#: The partner dimension's value for a file no configured partner claims.
UNROUTED = "unrouted"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "dropgate"), service=SERVICE)

# Every file's metrics are flushed with the file (so each line carries that file's partner); the
# handler's own flush then often has nothing left, which Powertools would warn about at every
# invocation. The cold-start metric is unaffected.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def traced(handler: Callable[..., Any]) -> Callable[..., Any]:
    """X-Ray tracing when DROPGATE_TRACING=true. Opt-in because importing the X-Ray SDK alone costs
    about 250 ms of every cold start; logs and metrics carry what operating dropgate needs. Off, the
    X-Ray SDK is never imported, so OpenTelemetry (the ADOT layer) can instrument the function instead."""
    if not Settings().tracing:
        return handler
    from aws_lambda_powertools import Tracer

    wrapped: Callable[..., Any] = Tracer(service=SERVICE).capture_lambda_handler(handler, capture_response=False)
    return wrapped


def measured(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Powertools' ``log_metrics`` with its cold-start metric, except where metrics are off:
    Powertools prints that one even under POWERTOOLS_METRICS_DISABLED (it was the stray EMF line in
    the demo's output). Checked at each invocation, as Powertools checks its own flag."""
    with_cold_start = metrics.log_metrics(handler, capture_cold_start_metric=True)
    without = metrics.log_metrics(handler)

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        return (without if is_metrics_disabled() else with_cold_start)(event, context)

    return run


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
        metrics.clear_metrics()  # not even the FilesReceived of its start
        return
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
    _flush_for(outcome.partner)


def file_failed(ref: ObjectRef, error: BaseException, partner: str | None = None) -> None:
    """A file with no outcome (it will be retried); ``partner``: the configured partner whose prefix
    the key is under, if any."""
    logger.exception("file failed; it will be retried", extra={"error": str(error), "partner": partner})
    metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=1)
    _flush_for(partner)


def deletions_decided(decision: str, partner: str | None) -> None:
    """An operator's decision on a snapshot's held tombstones (through the reprocess function)."""
    name = "DeletionsApproved" if decision == "approved" else "DeletionsRejected"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    _flush_for(partner)


def _flush_for(partner: str | None) -> None:
    """This file's metrics as one EMF line: once by service, once by service and partner."""
    metrics.add_dimensions(service=SERVICE, partner=partner or UNROUTED)
    metrics.flush_metrics()
    metrics.clear_metrics()  # flushing clears only what it printed: disabled metrics must not pile up


def file_done() -> None:
    logger.remove_keys(["bucket", "key", "version", "trigger"])
    logger.set_correlation_id(None)
