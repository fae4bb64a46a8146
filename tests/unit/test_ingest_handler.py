"""Handler semantics with a fake core: which messages Lambda retries, and when it raises."""

from __future__ import annotations

import json
from typing import Any

import pytest

import handlers.ingest as ingest
from devstack.lambda_context import LocalLambdaContext
from devstack.sqs_runner import lambda_sqs_event
from dropgate import lambda_runtime
from dropgate.ingest.outcome import FileOutcome
from dropgate.partners import PartnerDirectory
from dropgate.storage import ObjectRef
from tests.conftest import REPO
from tests.unit.test_triggers import s3_record


class FakeIngestor:
    partners = PartnerDirectory.load(str(REPO / "partners.yaml"))

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.seen: list[ObjectRef] = []

    def ingest(self, ref: ObjectRef, **_: Any) -> FileOutcome:
        self.seen.append(ref)
        if ref.key in self.failing:
            raise RuntimeError("broker unavailable")
        return FileOutcome(ref=ref, status="published", events=2)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeIngestor:
    core = FakeIngestor({"acme/bad.xml"})
    monkeypatch.setattr(ingest, "lambda_ingestor", lambda context=None: core)
    return core


def sqs_message(message_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": json.dumps(body),
        "Attributes": {},
        "MD5OfBody": "",
    }


def test_sqs_batch_reports_only_the_failed_message(fake: FakeIngestor) -> None:
    event = lambda_sqs_event(
        [
            sqs_message("m-good", {"Records": [s3_record("acme/good.xml")]}),
            sqs_message("m-bad", {"Records": [s3_record("acme/bad.xml")]}),
            sqs_message("m-test", {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "drops"}),
        ],
        "arn:aws:sqs:us-east-1:123456789012:q",
        "us-east-1",
    )
    response = ingest.handler(event, LocalLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert [ref.key for ref in fake.seen] == ["acme/good.xml", "acme/bad.xml"]


def test_direct_s3_event_tries_every_record_then_raises(fake: FakeIngestor) -> None:
    event = {"Records": [s3_record("acme/bad.xml"), s3_record("acme/good.xml")]}
    with pytest.raises(ingest.IngestFailed, match=r"1 file\(s\) failed: s3://drops/acme/bad\.xml"):
        ingest.handler(event, LocalLambdaContext())
    assert [ref.key for ref in fake.seen] == ["acme/bad.xml", "acme/good.xml"]


def test_unknown_event_shape_does_nothing(fake: FakeIngestor) -> None:
    assert ingest.handler({"hello": "world"}, LocalLambdaContext())["results"] == []
    assert fake.seen == []


def test_deadline_leaves_a_safety_margin() -> None:
    import time

    context = LocalLambdaContext(timeout_s=60)
    deadline = lambda_runtime.deadline(context)
    assert deadline is not None
    assert 45 < deadline - time.monotonic() <= 50


class BusyIngestor(FakeIngestor):
    def ingest(self, ref: ObjectRef, **_: Any) -> FileOutcome:
        self.seen.append(ref)
        return FileOutcome(
            ref=ref,
            status="duplicate",
            in_progress=True,
            reason="another invocation is processing this version right now",
        )


def test_in_progress_duplicate_is_retried_from_s3_but_not_from_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3/EventBridge retry this invocation; from SQS the claim holder's own message is retried."""
    monkeypatch.setattr(ingest, "lambda_ingestor", lambda context=None: BusyIngestor(set()))
    with pytest.raises(ingest.IngestFailed, match="processing this version right now"):
        ingest.handler({"Records": [s3_record("acme/a.xml")]}, LocalLambdaContext())
    event = lambda_sqs_event(
        [sqs_message("m1", {"Records": [s3_record("acme/a.xml")]})], "arn:aws:sqs:us-east-1:1:q", "us-east-1"
    )
    assert ingest.handler(event, LocalLambdaContext()) == {"batchItemFailures": []}


def test_one_summary_line_and_emf_metrics_per_file(
    fake: FakeIngestor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    from handlers.observability import metrics

    metrics.clear_metrics()  # disabled metrics are never flushed, so earlier tests' values linger
    ingest.handler({"Records": [s3_record("acme/good.xml")]}, LocalLambdaContext())
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = [blob for blob in blobs if "ColdStart" not in blob]  # the file's line (ColdStart has its own)
    names = {metric["Name"] for metric in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"FilesReceived", "FilesPublished", "EventsPublished", "PublishSeconds"} <= names
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "dropgate"
    assert (emf["FilesReceived"], emf["FilesPublished"], emf["EventsPublished"]) == ([1.0], [1.0], [2.0])


def test_delivery_timeout_is_derived_from_the_function_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from dropgate.app import lambda_settings

    monkeypatch.setenv("DROPGATE_DELIVERY_TIMEOUT_MS", "240000")
    derived = lambda_settings(LocalLambdaContext(timeout_s=60))  # a 60 s function's first invocation
    assert 44_000 <= derived.delivery_timeout_ms <= 45_000
    assert os.environ["DROPGATE_DELIVERY_TIMEOUT_MS"] == "240000"  # a value, not written back
    monkeypatch.setenv("DROPGATE_DELIVERY_TIMEOUT_MS", "30000")
    assert lambda_settings(LocalLambdaContext(timeout_s=900)).delivery_timeout_ms == 30_000  # already below
    assert lambda_settings(None).delivery_timeout_ms == 30_000  # no Lambda context: as configured


def test_the_ingestor_is_built_once_per_process_with_the_first_invocations_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dropgate import app

    built: list[int] = []
    monkeypatch.setattr(app, "build_ingestor", lambda settings: built.append(settings.delivery_timeout_ms) or built)
    per_process = app.PerProcess(lambda context: app.build_ingestor(app.lambda_settings(context)))
    monkeypatch.setenv("DROPGATE_DELIVERY_TIMEOUT_MS", "240000")
    first = per_process(LocalLambdaContext(timeout_s=60))
    assert per_process(LocalLambdaContext(timeout_s=900)) is first  # warm: the same one
    assert len(built) == 1 and 44_000 <= built[0] <= 45_000
    per_process.cache_clear()
    per_process(None)
    assert built[1] == 240_000


def test_tracing_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers.observability import traced

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {}

    monkeypatch.delenv("DROPGATE_TRACING", raising=False)
    assert traced(handle) is handle  # no X-Ray SDK on the cold-start path
    monkeypatch.setenv("DROPGATE_TRACING", "true")
    assert traced(handle) is not handle


def test_aws_clients_give_up_inside_the_functions_timeout() -> None:
    """botocore's defaults (60 s to connect, 60 s per read, legacy retries) could outlast the function."""
    from dropgate.app import aws_client

    for service in ("s3", "dynamodb"):
        config = aws_client(service).meta.config
        assert (config.connect_timeout, config.read_timeout) == (5, 30)
        assert config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_a_file_whose_deletions_were_held_emits_the_metric_the_alarm_watches(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_template_and_events import template

    class HoldingIngestor(FakeIngestor):
        def ingest(self, ref: ObjectRef, **_: Any) -> FileOutcome:
            return FileOutcome(ref=ref, status="published", events=10, held_deletes=990)

    monkeypatch.setattr(ingest, "lambda_ingestor", lambda context=None: HoldingIngestor(set()))
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    from handlers.observability import metrics

    metrics.clear_metrics()
    ingest.handler({"Records": [s3_record("initech/tue.xml")]}, LocalLambdaContext())
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert (emf["DeletionsHeld"], emf["TombstonesHeld"]) == ([1.0], [990.0])
    alarm = template()["Resources"]["DeletionsHeldAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == ("dropgate", "DeletionsHeld", 0)
