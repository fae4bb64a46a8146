"""Faults, against a real broker and moto: nothing lost, nothing half-recorded, the retry completes.

Broker faults use their own tansu on a fixed port so it can be stopped and started again (tansu
keeps topics in memory: a restarted broker is empty, and the retry must republish everything).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack.broker import LocalBroker
from devstack.lambda_context import LocalLambdaContext
from devstack.sqs_runner import lambda_sqs_event
from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import read_topic
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.publishing import PublishError
from dropgate.storage import ObjectRef
from tests.integration.test_stale_guard import snapshot

pytestmark = pytest.mark.integration
BUCKET = "drops"


def big_file(products: int) -> bytes:
    return snapshot(20, {f"P{i:06d}": i % 50 for i in range(products)})


@pytest.fixture
def own_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBroker]:
    broker = LocalBroker()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("DROPGATE_DELIVERY_TIMEOUT_MS", "3000")
    yield broker
    broker.stop()
    from dropgate.adapters.kafka_publisher import close_producers

    close_producers(timeout=0)


def put(aws: dict[str, Any], body: bytes, key: str) -> ObjectRef:
    return ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def keys_on(broker: LocalBroker, topic: str) -> set[bytes]:
    return {m.key for m in read_topic({"bootstrap.servers": broker.bootstrap}, topic) if m.key}


def row(aws: dict[str, Any], ref: ObjectRef) -> Any:
    return DynamoLedger(aws["dynamodb"], Settings().ledger_table).get(ref)


def test_broker_down_when_the_file_arrives_then_back(aws: dict[str, Any], own_broker: LocalBroker) -> None:
    ref = put(aws, big_file(500), "acme/down.xml")
    ingestor = build_ingestor(Settings())
    with pytest.raises(Exception, match=own_broker.bootstrap):  # nothing listening yet
        ingestor.ingest(ref, trigger="sqs")
    assert row(aws, ref).status == "received"
    own_broker.start()
    retried = ingestor.ingest(ref, trigger="sqs")
    assert (retried.status, retried.events) == ("published", 500)
    assert len(keys_on(own_broker, Settings().topic)) == 500


def test_broker_dies_in_the_middle_of_a_file(aws: dict[str, Any], own_broker: LocalBroker) -> None:
    own_broker.start()
    ref = put(aws, big_file(5_000), "acme/midway.xml")
    ingestor = build_ingestor(Settings())
    sink = ingestor.sink
    assert sink is not None
    real_publish = sink.publish

    def publish_then_kill(messages: Iterator[Any], **kwargs: Any) -> Any:
        def killing() -> Iterator[Any]:
            for sent, message in enumerate(messages):
                if sent == 2_000:
                    own_broker.stop()  # the broker process dies with events in flight
                yield message

        return real_publish(killing(), **kwargs)

    sink.publish = publish_then_kill  # type: ignore[method-assign]
    with pytest.raises(PublishError):
        ingestor.ingest(ref, trigger="sqs")
    half = row(aws, ref)
    assert (half.status, half.event_count) == ("received", 0)  # nothing recorded as published
    assert half.attempts[-1]["outcome"] == "failed"

    sink.publish = real_publish  # type: ignore[method-assign]
    own_broker.start()  # back, and empty (in-memory): the retry must bring every event
    retried = ingestor.ingest(ref, trigger="sqs")
    assert (retried.status, retried.events) == ("published", 5_000)
    assert len(keys_on(own_broker, Settings().topic)) == 5_000


def test_s3_read_failing_mid_stream_fails_cleanly_and_the_retry_completes(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = put(aws, big_file(3_000), "acme/flaky.xml")
    ingestor = build_ingestor(settings)
    real_open = ingestor.store.open

    class Flaky:
        def __init__(self, stream: Any) -> None:
            self.stream, self.read_bytes = stream, 0

        def read(self, size: int = -1) -> bytes:
            if self.read_bytes > 50_000:
                raise ConnectionResetError("connection reset by peer while reading the object")
            data: bytes = self.stream.read(size)
            self.read_bytes += len(data)
            return data

        def __enter__(self) -> Flaky:
            return self

        def __exit__(self, *exc: object) -> None:
            self.stream.close()

    monkeypatch.setattr(ingestor.store, "open", lambda *a: Flaky(real_open(*a)))
    with pytest.raises(ConnectionResetError):
        ingestor.ingest(ref, trigger="sqs")
    failed = row(aws, ref)
    assert (failed.status, failed.claim_until) == ("received", None)
    monkeypatch.setattr(ingestor.store, "open", real_open)
    assert ingestor.ingest(ref, trigger="sqs").events == 3_000


def test_ledger_unreachable_before_publishing_publishes_nothing(
    aws: dict[str, Any], settings: Settings, topic_probe: Any
) -> None:
    from devstack.ports import free_port

    ingestor = build_ingestor(settings)
    ref = put(aws, big_file(100), "acme/noledger.xml")
    broken = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=__import__("botocore.config").config.Config(retries={"max_attempts": 1}),
    )
    ingestor.ledger = DynamoLedger(broken, settings.ledger_table)
    with pytest.raises(Exception, match="Could not connect"):
        ingestor.ingest(ref, trigger="sqs")
    assert topic_probe.published_nothing()


def test_ledger_failing_after_publishing_is_retried_harmlessly(
    aws: dict[str, Any], settings: Settings, topic_probe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = build_ingestor(settings)
    ref = put(aws, big_file(100), "acme/late-ledger.xml")
    real_record = ingestor.ledger.record
    monkeypatch.setattr(
        ingestor.ledger, "record", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("DynamoDB unreachable"))
    )
    with pytest.raises(ConnectionError):
        ingestor.ingest(ref, trigger="sqs")
    monkeypatch.setattr(ingestor.ledger, "record", real_record)
    # The claim was not released (the ledger was down); once it expires the retry does the work.
    ledger = DynamoLedger(aws["dynamodb"], settings.ledger_table)
    aws["dynamodb"].update_item(
        TableName=settings.ledger_table, Key=ledger.key_of(ref), UpdateExpression="REMOVE claimUntil"
    )  # fast-forward the claim's expiry
    retried = ingestor.ingest(ref, trigger="sqs")
    assert retried.status == "published"
    by_key: dict[bytes, list[bytes | None]] = {}
    for message in topic_probe.messages():
        by_key.setdefault(message.key, []).append(message.value)
    assert len(by_key) == 100
    assert all(len(v) == 2 and v[0] == v[1] for v in by_key.values())  # republished byte-identical


def test_near_the_timeout_the_handler_stops_and_the_retry_completes(
    aws: dict[str, Any],
    settings: Settings,
    topic_probe: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import handlers.ingest as ingest_handler
    from dropgate.app import lambda_ingestor

    ref = put(aws, big_file(60_000), "acme/slow.xml")
    body = json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": BUCKET}, "object": {"key": ref.key, "versionId": ref.version_id}},
                }
            ]
        }
    )
    event = lambda_sqs_event(
        [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": body}], "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1"
    )
    lambda_ingestor.cache_clear()
    ingest_handler.logger.setLevel("INFO")
    try:
        # 50 ms to work with, far less than reading the file needs, even in parallel. (The handler
        # never allows itself less than 1 s, which a fast machine used to get as far as publishing.)
        real_deadline = ingest_handler.deadline
        monkeypatch.setattr(ingest_handler, "deadline", lambda _context: time.monotonic() + 0.05)
        short = ingest_handler.handler(event, LocalLambdaContext(timeout_s=60))
        monkeypatch.setattr(ingest_handler, "deadline", real_deadline)
        assert short == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
        failures = [r for r in caplog.records if r.getMessage() == "file failed; it will be retried"]
        assert failures
        assert "the invocation is about to time out; the retry will start over" in failures[-1].error  # type: ignore[attr-defined]
        assert row(aws, ref).status == "received"
        retry = ingest_handler.handler(event, LocalLambdaContext(timeout_s=300))
        assert retry == {"batchItemFailures": []}
    finally:
        ingest_handler.logger.setLevel("WARNING")
        lambda_ingestor.cache_clear()
    assert row(aws, ref).status == "published"
    assert len({m.key for m in topic_probe.messages()}) == 60_000
