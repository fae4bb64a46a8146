"""What CloudWatch receives: one EMF line per file, by service and by (configured) partner."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import handlers.ingest as ingest
from devstack.lambda_context import LocalLambdaContext
from devstack.sqs_runner import lambda_sqs_event
from dropgate.ingest.outcome import FileOutcome
from dropgate.partners import PartnerDirectory
from dropgate.storage import ObjectRef
from handlers import observability
from tests.conftest import REPO
from tests.unit.test_ingest_handler import sqs_message
from tests.unit.test_triggers import s3_record


class PartnerAwareIngestor:
    """Publishes every file as the configured partner whose prefix holds it; fails keys named bad."""

    def __init__(self) -> None:
        self.partners = PartnerDirectory.load(str(REPO / "partners.yaml"))

    def ingest(self, ref: ObjectRef, **_: Any) -> FileOutcome:
        if "bad" in ref.key:
            raise RuntimeError("broker unavailable")
        partner = self.partners.for_key(ref.key)
        return FileOutcome(ref=ref, status="published", partner=partner.id if partner else None, events=3)


@pytest.fixture
def emf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    monkeypatch.setattr(ingest, "lambda_ingestor", lambda context=None: PartnerAwareIngestor())
    observability.metrics.clear_metrics()


def blobs(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def names(blob: dict[str, Any]) -> set[str]:
    return {metric["Name"] for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def handle(*keys: str) -> dict[str, Any]:
    messages = [sqs_message(f"m{n}", {"Records": [s3_record(key)]}) for n, key in enumerate(keys)]
    event = lambda_sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")
    response: dict[str, Any] = ingest.handler(event, LocalLambdaContext())
    return response


@pytest.mark.usefixtures("emf")
def test_each_file_is_one_emf_line_by_service_and_by_partner(capsys: pytest.CaptureFixture[str]) -> None:
    response = handle("acme/a.xml", "northwind/b.xml")
    assert response == {"batchItemFailures": []}
    acme, northwind = [b for b in blobs(capsys.readouterr().out) if "FilesPublished" in b]
    for blob, partner in ((acme, "acme"), (northwind, "northwind")):
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "dropgate"
        assert directive["Dimensions"] == [["service"], ["service", "partner"]]
        assert (blob["service"], blob["partner"]) == ("dropgate", partner)
        assert {"FilesReceived", "FilesPublished", "EventsPublished", "PublishSeconds"} <= names(blob)
        assert (blob["FilesReceived"], blob["FilesPublished"], blob["EventsPublished"]) == ([1.0], [1.0], [3.0])


@pytest.mark.usefixtures("emf")
def test_a_failed_file_counts_as_failed_for_its_partner(capsys: pytest.CaptureFixture[str]) -> None:
    assert handle("acme/bad.xml") == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    (failed,) = [b for b in blobs(capsys.readouterr().out) if "FilesFailed" in b]
    assert (failed["FilesFailed"], failed["partner"], failed["service"]) == ([1.0], "acme", "dropgate")
    assert "FilesPublished" not in failed


@pytest.mark.parametrize(
    "key",
    [
        "stranger/a.xml",
        "stranger/bad.xml",  # failed as well as unclaimed
        "x\u001b[31m\u202e/a.xml",  # control characters and bidi overrides under a made-up prefix
        "'; rm -rf / #/a.xml",
        "p" * 5000 + "/a.xml",
    ],
)
@pytest.mark.usefixtures("emf")
def test_a_prefix_no_partner_claims_is_unrouted_never_its_own_dimension(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The partner dimension is capped at partners.yaml: made-up prefixes cannot mint metrics."""
    handle(key)
    (blob,) = [b for b in blobs(capsys.readouterr().out) if "FilesReceived" in b]
    assert blob["partner"] == "unrouted"
    assert key.split("/")[0] not in json.dumps(blob)


@pytest.mark.usefixtures("emf")
def test_the_reprocess_function_reports_each_file_with_its_partner(capsys: pytest.CaptureFixture[str]) -> None:
    acme = FileOutcome(ref=ObjectRef("b", "acme/a.xml"), status="quarantined", partner="acme", invalid=2)
    other = FileOutcome(ref=ObjectRef("b", "globex/a.xml"), status="published", partner="globex", events=5)
    observability.file_finished(acme)
    observability.file_finished(other)
    first, second = blobs(capsys.readouterr().out)
    assert (first["partner"], first["FilesQuarantined"], first["RecordsInvalid"]) == ("acme", [1.0], [2.0])
    assert (second["partner"], second["FilesPublished"], second["EventsPublished"]) == ("globex", [1.0], [5.0])
    assert "FilesQuarantined" not in second  # nothing of one file leaks into the next one's line


def test_disabled_metrics_do_not_pile_up_across_files(monkeypatch: pytest.MonkeyPatch) -> None:
    observability.metrics.clear_metrics()
    for n in range(50):
        observability.file_finished(FileOutcome(ref=ObjectRef("b", f"acme/{n}.xml"), status="published", events=1))
    assert observability.metrics.metric_set == {}
    assert observability.metrics.provider.dimension_sets == []


def test_both_handlers_import_and_run_untraced_without_the_xray_sdk() -> None:
    """Who prefers OpenTelemetry (the ADOT layer) may drop aws_xray_sdk from the package: with
    DROPGATE_TRACING off nothing imports it, and the handlers are not wrapped."""
    import subprocess
    import sys

    script = """
import sys
class NoXRay:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "aws_xray_sdk":
            raise ImportError("aws_xray_sdk is not installed")
sys.meta_path.insert(0, NoXRay())
import handlers.ingest, handlers.reprocess
from handlers.observability import traced
handle = lambda event, context: {}
assert traced(handle) is handle
assert not [name for name in sys.modules if name.startswith("aws_xray_sdk")]
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin", "DROPGATE_TRACING": "false", "AWS_REGION": "us-east-1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]


@pytest.mark.parametrize("disabled", [True, False])
def test_the_cold_start_metric_obeys_metrics_disabled(
    disabled: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Powertools prints its ColdStart EMF line even with POWERTOOLS_METRICS_DISABLED: that was the
    JSON blob in the middle of the demo's narrative."""
    from aws_lambda_powertools.metrics.provider import cold_start

    if not disabled:
        monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    monkeypatch.setattr(ingest, "lambda_ingestor", lambda context=None: PartnerAwareIngestor())
    monkeypatch.setattr(cold_start, "is_cold_start", True)
    capsys.readouterr()
    ingest.handler({"hello": "world"}, LocalLambdaContext())
    cold = [b for b in blobs(capsys.readouterr().out) if "ColdStart" in b]
    assert len(cold) == (0 if disabled else 1)


@pytest.mark.usefixtures("emf")
def test_a_dry_run_reprocess_is_logged_but_never_counted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A dry run over quarantine/files/acme/ must not count its still-bad files as quarantined again
    (QuarantinedFilesAlarm), nor its good ones as published."""
    from dropgate.reprocess import ReprocessResult
    from handlers import reprocess

    class DryRunner:
        def one(self, ref: ObjectRef, **flags: Any) -> ReprocessResult:
            outcome = FileOutcome(ref=ref, status="quarantined", partner="acme", invalid=4)
            return ReprocessResult(ref, outcome, dry_run=flags["dry_run"])

    monkeypatch.setattr(reprocess, "lambda_reprocessor", lambda context=None: DryRunner())
    caplog.set_level(logging.INFO, logger=observability.SERVICE)  # tests run at POWERTOOLS_LOG_LEVEL=WARNING
    payload = {"bucket": "drops", "key": "quarantine/files/acme/a.xml", "dryRun": True}
    assert reprocess.handler(payload, LocalLambdaContext())["results"][0]["status"] == "dry-run"
    out = capsys.readouterr().out
    assert not [b for b in blobs(out) if names(b) - {"ColdStart"}]
    assert "dry run: quarantined: s3://drops/quarantine/files/acme/a.xml" in caplog.text
    reprocess.handler({**payload, "dryRun": False}, LocalLambdaContext())
    (counted,) = [b for b in blobs(capsys.readouterr().out) if "FilesQuarantined" in b]
    assert (counted["partner"], counted["RecordsInvalid"]) == ("acme", [4.0])


def test_a_cold_start_that_cannot_build_the_ingestor_counts_the_file_failed_and_builds_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    builds: list[int] = []

    def broken(context: Any = None) -> Any:
        builds.append(1)
        raise RuntimeError("cannot read the partner configuration")

    monkeypatch.setattr(ingest, "lambda_ingestor", broken)
    observability.metrics.clear_metrics()
    assert handle("acme/a.xml") == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    (failed,) = [b for b in blobs(capsys.readouterr().out) if "FilesFailed" in b]
    assert failed["partner"] == "unrouted" and len(builds) == 1
