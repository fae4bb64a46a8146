"""The core against a real Kafka-protocol broker and moto: what consumers see, what the ledger says."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.ingest.service import Ingestor
from dropgate.publishing import PublishError
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe, fixture_bytes, values_by_key

pytestmark = pytest.mark.integration
BUCKET = "drops"


@pytest.fixture
def ingestor(aws: dict[str, Any], settings: Settings) -> Ingestor:
    return build_ingestor(settings)


def upload(aws: dict[str, Any], fixture: str, key: str) -> ObjectRef:
    response = aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=fixture_bytes(fixture))
    return ObjectRef(BUCKET, key, response["VersionId"])


def test_upload_becomes_keyed_state_events(aws: dict[str, Any], ingestor: Ingestor, topic_probe: TopicProbe) -> None:
    ref = upload(aws, "good/acme-2026-11-20.xml", "acme/inventory-2026-11-20.xml")
    outcome = ingestor.ingest(ObjectRef(BUCKET, ref.key), trigger="test")  # version resolved by the core
    assert (outcome.status, outcome.events, outcome.tombstones) == ("published", 5, 1)
    assert outcome.ref.version_id == ref.version_id

    messages = topic_probe.messages()
    values = values_by_key(messages)
    assert sorted(values) == ["P0000001", "P0000002", "P0000003", "P0000004", "P0000005"]
    assert values["P0000005"] is None  # tombstone
    sha = hashlib.sha256(fixture_bytes("good/acme-2026-11-20.xml")).hexdigest()
    assert values["P0000001"] == {
        "schemaVersion": 1,
        "productId": "P0000001",
        "partnerId": "acme",
        "sku": "ACME-0000001",
        "name": "Widget 1",
        "quantity": 12,
        "availability": "in_stock",
        "price": {"amount": "19.99", "currency": "USD"},
        "locations": [{"locationId": "WH1", "quantity": 7}, {"locationId": "WH2", "quantity": 5}],
        "asOf": "2026-11-20T06:00:00Z",
        "source": {"bucket": BUCKET, "key": ref.key, "versionId": ref.version_id, "sha256": sha, "record": 1},
        "parser": {"name": "generic-xml", "version": "1"},
    }
    first = next(m for m in messages if m.key == b"P0000001")
    assert first.headers["content-type"] == b"application/json"
    assert first.headers["schema"] == b"inventory.product-state.v1"
    assert first.headers["parser-version"] == b"generic-xml/1"
    assert first.headers["source-object"] == f"s3://{BUCKET}/{ref.key}?versionId={ref.version_id}".encode()
    assert first.headers["event-id"] == hashlib.sha256(b"P0000001\x00" + (first.value or b"")).hexdigest().encode()
    assert b"ingested-at" in b" ".join(k.encode() for k in first.headers)

    row = DynamoLedger(aws["dynamodb"], Settings().ledger_table).get(outcome.ref)
    assert row is not None
    assert (row.status, row.event_count, row.tombstones, row.parser_name, row.parser_version) == (
        "published",
        5,
        1,
        "generic-xml",
        "1",
    )
    assert row.sha256 == sha and row.attempts[-1]["outcome"] == "published"


def test_same_file_twice_gives_byte_identical_values(
    aws: dict[str, Any], ingestor: Ingestor, topic_probe: TopicProbe
) -> None:
    ref = upload(aws, "good/acme-2026-11-21.xml.gz", "acme/inventory 2026-11-21.xml.gz")
    ingestor.ingest(ref, trigger="test")
    again = ingestor.ingest(ref, trigger="test", force=True)
    assert again.status == "published"
    messages = topic_probe.messages()
    assert len(messages) == 6
    by_key: dict[bytes, list[bytes | None]] = {}
    for message in messages:
        by_key.setdefault(message.key or b"", []).append(message.value)
    assert sorted(by_key) == [b"P0000001", b"P0000002", b"P0000006"]
    for values in by_key.values():
        assert values[0] == values[1]


def test_duplicate_notification_does_no_work(aws: dict[str, Any], ingestor: Ingestor, topic_probe: TopicProbe) -> None:
    ref = upload(aws, "good/globex-stock.xml", "globex/stock.xml")
    assert ingestor.ingest(ref, trigger="sqs").status == "published"
    duplicate = ingestor.ingest(ref, trigger="sqs")
    assert duplicate.status == "duplicate"
    assert duplicate.reason == "already published with parser generic-xml/1"
    assert len(topic_probe.messages()) == 2
    assert sorted(materialise(topic_probe.messages())) == [b"globex:1001", b"globex:1002"]


def test_a_new_upload_of_the_same_key_is_a_new_version(
    aws: dict[str, Any], ingestor: Ingestor, topic_probe: TopicProbe
) -> None:
    first = upload(aws, "good/acme-2026-11-20.xml", "acme/latest.xml")
    second = upload(aws, "good/acme-2026-11-21.xml.gz", "acme/latest.xml")
    assert ingestor.ingest(first, trigger="test").status == "published"
    assert ingestor.ingest(second, trigger="test").status == "published"
    state = materialise(topic_probe.messages())
    assert orjson.loads(state[b"P0000001"])["quantity"] == 3  # the newer file's state
    assert b"P0000002" not in state  # deleted by the newer file
    assert orjson.loads(state[b"P0000001"])["source"]["versionId"] == second.version_id


def test_invalid_file_publishes_nothing_under_strict(
    aws: dict[str, Any], ingestor: Ingestor, topic_probe: TopicProbe
) -> None:
    ref = upload(aws, "bad/acme-bad-values.xml", "acme/inventory-2026-11-22.xml")
    outcome = ingestor.ingest(ref, trigger="test")
    assert outcome.status == "quarantined" and outcome.events == 0 and outcome.problem_count == 6
    ingestor.sink.ensure_topic()  # type: ignore[union-attr]
    assert topic_probe.messages() == []  # P0000001 was valid, and still nothing was published
    row = DynamoLedger(aws["dynamodb"], Settings().ledger_table).get(outcome.ref)
    assert row is not None and row.status == "quarantined" and row.problem_count == 6


def test_broker_unreachable_fails_and_nothing_is_recorded_published(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from devstack.ports import free_port

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("DROPGATE_CREATE_TOPIC", "false")
    ingestor = build_ingestor(Settings())
    ref = upload(aws, "good/globex-stock.xml", "globex/stock.xml")
    from dropgate.publishing import TopicError

    with pytest.raises((PublishError, TopicError), match=r"127\.0\.0\.1"):
        ingestor.ingest(ref, trigger="test")
    row = DynamoLedger(aws["dynamodb"], Settings().ledger_table).get(ref)
    assert row is not None and row.status == "received"
    assert row.attempts[-1]["outcome"] == "failed" and "127.0.0.1" in row.attempts[-1]["error"]


def test_deleted_before_processing_is_ignored_with_a_reason(aws: dict[str, Any], ingestor: Ingestor) -> None:
    outcome = ingestor.ingest(ObjectRef(BUCKET, "acme/never-uploaded.xml"), trigger="test")
    assert outcome.status == "ignored" and "does not exist" in (outcome.reason or "")
    row = DynamoLedger(aws["dynamodb"], Settings().ledger_table).get(ObjectRef(BUCKET, "acme/never-uploaded.xml"))
    assert row is not None and row.status == "ignored"


def test_unacknowledged_events_fail_the_file(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker goes away after the topic is known: produce cannot be acknowledged in time."""
    from devstack.broker import LocalBroker

    with LocalBroker() as broker:
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
        monkeypatch.setenv("DROPGATE_DELIVERY_TIMEOUT_MS", "3000")
        ingestor = build_ingestor(Settings())
        first = upload(aws, "good/globex-stock.xml", "globex/stock.xml")
        assert ingestor.ingest(first, trigger="test").status == "published"
        broker.stop()
        second = upload(aws, "good/acme-2026-11-20.xml", "acme/inventory.xml")
        with pytest.raises(PublishError, match="acknowledged"):
            ingestor.ingest(second, trigger="sqs")
    row = DynamoLedger(aws["dynamodb"], Settings().ledger_table).get(second)
    assert row is not None
    assert row.status == "received"  # never published, so a retry will do the work
    assert row.event_count == 0
    assert row.attempts[-1]["outcome"] == "failed"


def test_the_ledger_keeps_the_newest_attempts_and_counts_them_all(aws: dict[str, Any], settings: Settings) -> None:
    from dropgate.ledger import MAX_ATTEMPTS, Attempt, LedgerEntry

    ledger = DynamoLedger(aws["dynamodb"], settings.ledger_table)
    ref = ObjectRef(BUCKET, "acme/busy.xml", "v1")
    for i in range(MAX_ATTEMPTS + 5):
        entry = LedgerEntry(bucket=BUCKET, key=ref.key, version="v1", status="received")
        ledger.record(ref, entry, Attempt(trigger="sqs", parser="generic-xml/1", outcome="failed", error=f"try {i}"))
    row = ledger.get(ref)
    assert row is not None
    assert row.attempt_count == MAX_ATTEMPTS + 5
    assert len(row.attempts) == MAX_ATTEMPTS
    assert row.attempts[0]["error"] == "try 5" and row.attempts[-1]["error"] == f"try {MAX_ATTEMPTS + 4}"
