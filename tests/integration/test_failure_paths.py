"""Failure paths where a file could be lost, a stale state could win, or a bad file could publish."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

import parsers
from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe, fixture_bytes
from tests.integration.test_reprocess import ThousandsTolerantParser
from tests.integration.test_stale_guard import snapshot

pytestmark = pytest.mark.integration
BUCKET = "drops"


def put(aws: dict[str, Any], body: bytes, key: str, bucket: str = BUCKET) -> ObjectRef:
    response = aws["s3"].put_object(Bucket=bucket, Key=key, Body=body)
    return ObjectRef(bucket, key, response.get("VersionId"))


def skip_invalid(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    partners = tmp_path / "partners.yaml"
    partners.write_text(
        "partners:\n  acme: {prefix: acme/, format: generic, policy: skip_invalid}\n"
        "  globex: {prefix: globex/, format: generic}\n"
    )
    monkeypatch.setenv("DROPGATE_PARTNERS", str(partners))


def test_a_read_failure_releases_the_claim_so_the_retry_does_the_work(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = put(aws, fixture_bytes("good/globex-stock.xml"), "globex/stock.xml")
    ingestor = build_ingestor(settings)
    real_open = ingestor.store.open

    def broken_open(*args: Any) -> Any:
        raise ConnectionResetError("S3 connection reset mid-stream")

    monkeypatch.setattr(ingestor.store, "open", broken_open)
    with pytest.raises(ConnectionResetError):
        ingestor.ingest(ref, trigger="s3")
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None
    assert (row.status, row.claim_until) == ("received", None)
    assert "ConnectionResetError: S3 connection reset mid-stream" in (row.last_error or "")

    monkeypatch.setattr(ingestor.store, "open", real_open)
    retried = ingestor.ingest(ref, trigger="s3")
    assert (retried.status, retried.events) == ("published", 2)


def test_changed_only_still_advances_the_newest_as_of(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, snapshot(16, {"K": 1}), "acme/mon.xml"), trigger="test")
    wednesday = ingestor.ingest(put(aws, snapshot(18, {"K": 1}), "acme/wed.xml"), trigger="test", changed_only=True)
    assert (wednesday.events, wednesday.unchanged) == (0, 1)
    tuesday = ingestor.ingest(put(aws, snapshot(17, {"K": 2}), "acme/tue.xml"), trigger="test")
    assert (tuesday.events, tuesday.stale) == (0, 1)  # older than Wednesday's, which said K=1
    state = materialise(topic_probe.messages())
    assert orjson.loads(state[b"K"])["quantity"] == 1


def test_document_level_problems_publish_nothing_even_under_skip_invalid(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any, topic_probe: TopicProbe
) -> None:
    skip_invalid(monkeypatch, tmp_path)
    ingestor = build_ingestor(Settings())
    wrong_partner = b'<inventory partner="globex"><product id="A"><quantity>1</quantity></product></inventory>'
    no_zone = (
        b'<inventory generatedAt="2026-11-16T06:00:00"><product id="A"><quantity>1</quantity></product></inventory>'
    )
    future = (
        b'<inventory generatedAt="2062-11-16T06:00:00Z"><product id="A"><quantity>1</quantity></product></inventory>'
    )
    outcomes = [
        ingestor.ingest(put(aws, body, f"acme/{i}.xml"), trigger="test")
        for i, body in enumerate((wrong_partner, no_zone, future))
    ]
    assert [(o.status, o.events) for o in outcomes] == [("quarantined", 0)] * 3
    assert "the document says partner 'globex'" in outcomes[0].problems[0].message
    assert outcomes[1].problems[0].field == "generatedAt"
    assert "is after the upload time" in outcomes[2].problems[0].message
    ingestor.sink.ensure_topic()  # type: ignore[union-attr]
    assert topic_probe.messages() == []


def test_the_problem_cap_never_hides_a_truncated_file(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any, topic_probe: TopicProbe
) -> None:
    skip_invalid(monkeypatch, tmp_path)
    monkeypatch.setenv("DROPGATE_MAX_PROBLEMS", "2")
    bad = b"".join(b'<product id="B%d"><quantity>-1</quantity></product>' % i for i in range(3))
    cut = b'<inventory><product id="A"><quantity>1</quantity></product>' + bad + b'<product id="C"><quan'
    outcome = build_ingestor(Settings()).ingest(put(aws, cut, "acme/cut.xml"), trigger="test")
    assert (outcome.status, outcome.events) == ("quarantined", 0)
    assert outcome.problem_count == 4
    assert [p.kind for p in outcome.problems] == ["validation", "validation", "xml_syntax"]
    assert topic_probe.published_nothing()


def test_overwrites_in_an_unversioned_bucket_are_each_processed(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    aws["s3"].create_bucket(Bucket="plain-drops")  # versioning never enabled
    ingestor = build_ingestor(settings)
    first = put(aws, snapshot(16, {"K": 1}), "acme/latest.xml", bucket="plain-drops")
    assert first.version_id is None
    assert ingestor.ingest(first, trigger="sqs").status == "published"
    assert ingestor.ingest(first, trigger="sqs").status == "duplicate"  # the same bytes again
    second = put(aws, snapshot(17, {"K": 2}), "acme/latest.xml", bucket="plain-drops")
    assert ingestor.ingest(second, trigger="sqs").status == "published"
    assert orjson.loads(materialise(topic_probe.messages())[b"K"])["quantity"] == 2


def test_an_event_too_large_for_kafka_is_a_validation_problem(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPGATE_MAX_EVENT_BYTES", "5000")
    body = b'<inventory><product id="A"><name>' + b"n" * 6000 + b"</name><quantity>1</quantity></product></inventory>"
    outcome = build_ingestor(Settings()).ingest(put(aws, body, "acme/big.xml"), trigger="test")
    assert outcome.status == "quarantined"
    (problem,) = outcome.problems
    assert problem.product_id == "A" and "over the limit of 5,000" in problem.message


def test_a_failed_reprocess_leaves_the_file_quarantined_and_listed(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = put(aws, fixture_bytes("bad/acme-thousands-separator.xml"), "acme/erp.xml")
    assert build_ingestor(settings).ingest(ref, trigger="sqs").status == "quarantined"
    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)
    from devstack.ports import free_port

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")  # the broker is down
    monkeypatch.setenv("DROPGATE_CREATE_TOPIC", "false")
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        build_ingestor(Settings()).ingest(ref, trigger="reprocess")
    ledger = DynamoLedger(aws["dynamodb"], settings.ledger_table)
    row = ledger.get(ref)
    assert row is not None
    assert row.status == "quarantined" and row.diagnostics == f"s3://{BUCKET}/quarantine/files/acme/erp.xml"
    assert row.claim_until is None and "127.0.0.1" in (row.last_error or "")
    assert [e.key for e in ledger.with_status("quarantined")] == ["acme/erp.xml"]
    sidecar = json.loads(
        aws["s3"].get_object(Bucket=BUCKET, Key="quarantine/diagnostics/acme/erp.xml.diagnostics.json")["Body"].read()
    )
    assert sidecar["parser"]["version"] == "1"  # untouched by the failed attempt
