"""Quarantine output and processing claims, against moto and the real broker."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe, fixture_bytes

pytestmark = pytest.mark.integration
BUCKET = "drops"


def put(aws: dict[str, Any], body: bytes, key: str) -> ObjectRef:
    return ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def test_quarantined_file_is_copied_untouched_with_actionable_diagnostics(
    aws: dict[str, Any], settings: Settings
) -> None:
    body = fixture_bytes("bad/acme-malformed.xml")
    ref = put(aws, body, "acme/2026/inventory.xml")
    outcome = build_ingestor(settings).ingest(ref, trigger="sqs")
    assert outcome.status == "quarantined"
    assert outcome.diagnostics == f"s3://{BUCKET}/quarantine/files/acme/2026/inventory.xml"

    s3 = aws["s3"]
    assert s3.get_object(Bucket=BUCKET, Key="quarantine/files/acme/2026/inventory.xml")["Body"].read() == body
    assert s3.get_object(Bucket=BUCKET, Key=ref.key, VersionId=ref.version_id)["Body"].read() == body  # original kept
    sidecar = json.loads(
        s3.get_object(Bucket=BUCKET, Key="quarantine/diagnostics/acme/2026/inventory.xml.diagnostics.json")[
            "Body"
        ].read()
    )
    import hashlib

    assert sidecar["file"] == {
        "bucket": BUCKET,
        "key": ref.key,
        "versionId": ref.version_id,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "uploadedAt": sidecar["file"]["uploadedAt"],
    }
    assert sidecar["partner"] == "acme"
    assert sidecar["parser"] == {"name": "generic-xml", "version": "1"}
    assert sidecar["problemCount"] == 1 and sidecar["problemCap"] == 1000
    assert sidecar["problems"] == [
        {
            "kind": "xml_syntax",
            "message": "Opening and ending tag mismatch: quantity line 7 and quantiy",
            "line": 7,
            "column": 26,
            "record": 2,
            "productId": "P0000002",
            "path": None,
            "field": None,
            "value": None,
        }
    ]
    assert sidecar["reprocess"] == f"dropgate reprocess s3://{BUCKET}/acme/2026/inventory.xml"
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None
    assert row.status == "quarantined" and row.diagnostics == outcome.diagnostics
    assert row.claim_until is None  # released with the outcome


def test_problem_cap_keeps_the_first_thousand_and_counts_all(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = b"".join(b'<product id="P%d"><quantity>-1</quantity></product>' % i for i in range(1500))
    ref = put(aws, b"<inventory>" + bad + b"</inventory>", "acme/many.xml")
    outcome = build_ingestor(Settings()).ingest(ref, trigger="test")
    assert (outcome.problem_count, len(outcome.problems)) == (1500, 1000)
    sidecar = json.loads(
        aws["s3"].get_object(Bucket=BUCKET, Key="quarantine/diagnostics/acme/many.xml.diagnostics.json")["Body"].read()
    )
    assert (sidecar["problemCount"], sidecar["problemsShown"]) == (1500, 1000)
    assert sidecar["problems"][999]["productId"] == "P999"


def test_quarantine_copies_are_never_ingested(aws: dict[str, Any], settings: Settings) -> None:
    ref = put(aws, fixture_bytes("good/acme-2026-11-20.xml"), "quarantine/files/acme/x.xml")
    outcome = build_ingestor(settings).ingest(ref, trigger="sqs")
    assert outcome.status == "ignored"
    assert "is a quarantine copy" in (outcome.reason or "") and "dropgate reprocess" in (outcome.reason or "")


def test_skip_invalid_publishes_valid_records_and_still_quarantines(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any, topic_probe: TopicProbe
) -> None:
    partners = tmp_path / "partners.yaml"
    partners.write_text("partners:\n  acme: {prefix: acme/, format: generic, policy: skip_invalid}\n")
    monkeypatch.setenv("DROPGATE_PARTNERS", str(partners))
    ref = put(aws, fixture_bytes("bad/acme-bad-values.xml"), "acme/mixed.xml")
    outcome = build_ingestor(Settings()).ingest(ref, trigger="test")
    assert (outcome.status, outcome.events, outcome.problem_count) == ("quarantined", 1, 6)
    assert [m.key for m in topic_probe.messages()] == [b"P0000001"]
    sidecar = json.loads(
        aws["s3"].get_object(Bucket=BUCKET, Key="quarantine/diagnostics/acme/mixed.xml.diagnostics.json")["Body"].read()
    )
    assert sidecar["policy"] == "skip_invalid" and sidecar["publishedEvents"] == 1


@pytest.fixture
def atomic_dynamodb_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are.

    moto evaluates a ConditionExpression and then writes without a lock, so two threads can both
    pass the same condition; real DynamoDB applies a conditional write atomically per item. Without
    this, the test below would measure moto's race instead of dropgate's claim logic.
    """
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    for name in ("update_item", "put_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def atomic(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, atomic)


@pytest.mark.usefixtures("atomic_dynamodb_writes")
def test_ten_concurrent_invocations_publish_each_key_once(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ref = put(aws, fixture_bytes("good/acme-2026-11-20.xml"), "acme/concurrent.xml")
    ingestor = build_ingestor(settings)
    ingestor.sink.ensure_topic()  # type: ignore[union-attr]
    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(lambda _: ingestor.ingest(ref, trigger="sqs"), range(10)))
    statuses = sorted(o.status for o in outcomes)
    assert statuses == ["duplicate"] * 9 + ["published"]
    keys = [m.key for m in topic_probe.messages()]
    assert sorted(keys) == [b"P0000001", b"P0000002", b"P0000003", b"P0000004", b"P0000005"]


def test_a_crashed_invocations_claim_expires(aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe) -> None:
    ref = put(aws, fixture_bytes("good/globex-stock.xml"), "globex/stock.xml")
    ledger = DynamoLedger(aws["dynamodb"], settings.ledger_table)
    # An invocation claimed the version and died without recording an outcome.
    assert ledger.claim(ref, partner="globex", parser_label="generic-xml/1", ttl_s=3).granted
    blocked = build_ingestor(settings).ingest(ref, trigger="sqs")
    assert blocked.status == "duplicate" and "processing this version right now" in (blocked.reason or "")
    # Time passes and the dead invocation never returns: its claim's expiry is now in the past.
    aws["dynamodb"].update_item(
        TableName=settings.ledger_table,
        Key=ledger.key_of(ref),
        UpdateExpression="SET claimUntil = :past",
        ExpressionAttributeValues={":past": {"N": f"{time.time() - 1:.3f}"}},
    )
    retried = build_ingestor(settings).ingest(ref, trigger="sqs")
    assert retried.status == "published" and retried.events == 2
