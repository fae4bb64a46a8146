"""EMF metrics, once per file (Powertools Metrics). Shared by both handlers through ``observability``.

Each file's metrics go out as one EMF line with two dimension sets: ``service`` (what the alarms
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

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from dropgate.ingest.outcome import FileOutcome

SERVICE = "dropgate"
#: The partner dimension's value for a file no configured partner claims.
UNROUTED = "unrouted"
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "dropgate"), service=SERVICE)

# Every file's metrics are flushed with the file (so each line carries that file's partner); the
# handler's own flush then often has nothing left, which Powertools would warn about at every
# invocation. The cold-start metric is unaffected.
warnings.filterwarnings("ignore", message="No application metrics to publish")

_STATUS_METRIC = {
    "published": "FilesPublished",
    "quarantined": "FilesQuarantined",
    "duplicate": "FilesDuplicate",
    "ignored": "FilesIgnored",
}


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


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def outcome_counted(outcome: FileOutcome) -> None:
    """A file's outcome, as one EMF line for its partner."""
    count(_STATUS_METRIC.get(outcome.status, "FilesOther"))
    if outcome.status == "published":
        count("EventsPublished", outcome.events)
        metrics.add_metric(name="PublishSeconds", unit=MetricUnit.Seconds, value=outcome.seconds)
    if outcome.invalid:
        count("RecordsInvalid", outcome.invalid)
    if outcome.stale:
        count("StaleSkipped", outcome.stale)
    if outcome.held_deletes and outcome.status != "duplicate":  # the DeletionsHeldAlarm's metric
        count("DeletionsHeld")
        count("TombstonesHeld", outcome.held_deletes)
    flush_for(outcome.partner)


def discard() -> None:
    """Drop what this file counted so far (a dry run is never counted)."""
    metrics.clear_metrics()


def flush_for(partner: str | None) -> None:
    """This file's metrics as one EMF line: once by service, once by service and partner."""
    metrics.add_dimensions(service=SERVICE, partner=partner or UNROUTED)
    metrics.flush_metrics()
    metrics.clear_metrics()  # flushing clears only what it printed: disabled metrics must not pile up
