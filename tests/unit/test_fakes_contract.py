"""The in-memory fakes keep the real adapters' rules: the ledger's claims and records, the object
store's versions and deletes, the sink's report of where each event landed.

Each test runs on the fake and on the real adapter (on moto's in-process AWS), so a rule the unit
tests of the ingest service rely on cannot drift between the two.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import pytest

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_publisher import KafkaPublisher
from dropgate.adapters.kafka_topic_reader import events_at
from dropgate.adapters.object_stores import S3ObjectStore
from dropgate.ledger import Attempt, Claim, Ledger, LedgerEntry
from dropgate.provision import ensure_bucket, ensure_ledger_table
from dropgate.publishing import EventSink, OutMessage
from dropgate.storage import ObjectMissing, ObjectRef, ObjectStore
from tests.fakes import InMemoryLedger, InMemoryObjectStore, RecordingSink

REF = ObjectRef("drops", "acme/mon.xml", "v1")
LABEL = "generic-xml/1"


@contextmanager
def moto_client(service: str) -> Iterator[Any]:
    """A boto3 client of moto's in-process AWS (the real adapter's side of each test)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client(service, region_name="us-east-1")


@pytest.fixture(params=["in-memory", "dynamodb"])
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    if request.param == "in-memory":
        yield InMemoryLedger()
        return
    with moto_client("dynamodb") as client:
        ensure_ledger_table(client, "ledger")
        yield DynamoLedger(client, "ledger")


def outcome(status: str, *, events: int = 0, reason: str | None = None, diagnostics: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        bucket="drops",
        key=REF.key,
        version="v1",
        status=status,  # type: ignore[arg-type]
        partner="acme",
        parser_name="generic-xml",
        parser_version="1",
        event_count=events,
        reason=reason,
        diagnostics=diagnostics,
        etag='"e1"',
    )


def attempt(result: str, error: str | None = None) -> Attempt:
    return Attempt(trigger="test", parser=LABEL, outcome=result, error=error)


def claim(ledger: Ledger, *, force: bool = False, ttl_s: float = 60, label: str = LABEL, etag: str = '"e1"') -> Claim:
    return ledger.claim(REF, partner="acme", parser_label=label, ttl_s=ttl_s, force=force, etag=etag)


def test_a_claim_is_granted_once_and_blocks_until_the_outcome_is_recorded(ledger: Ledger) -> None:
    assert claim(ledger).granted
    blocked = claim(ledger, force=True)  # not even force takes a live claim
    assert (blocked.granted, blocked.in_progress) == (False, True)
    assert blocked.reason == "another invocation is processing this version right now"
    ledger.record(REF, outcome("published", events=3), attempt("published"))
    row = ledger.get(REF)
    assert row is not None and (row.status, row.event_count, row.claim_until, row.attempt_count) == (
        "published",
        3,
        None,
        1,
    )


def test_a_done_version_is_a_duplicate_unless_forced_or_read_by_another_parser_or_other_bytes(ledger: Ledger) -> None:
    assert claim(ledger).granted
    ledger.record(REF, outcome("quarantined", diagnostics="s3://d/q"), attempt("quarantined"))
    again = claim(ledger)
    assert (again.granted, again.in_progress, again.reason) == (
        False,
        False,
        f"already quarantined with parser {LABEL}",
    )
    assert claim(ledger, label="generic-xml/2").granted
    ledger.record(REF, outcome("quarantined"), attempt("quarantined"))
    assert claim(ledger, label="generic-xml/1", etag='"e2"').granted  # an overwrite of an unversioned key
    ledger.record(REF, outcome("published"), attempt("published"))
    assert claim(ledger, force=True).granted


def test_an_expired_claim_can_be_taken(ledger: Ledger) -> None:
    assert claim(ledger, ttl_s=-1).granted  # a crashed invocation whose claim has run out
    assert claim(ledger).granted


def test_a_failed_attempt_never_overwrites_a_final_outcome(ledger: Ledger) -> None:
    assert claim(ledger).granted
    ledger.record(REF, outcome("quarantined", events=2, reason="1 problem(s)", diagnostics="s3://d/q"), attempt("q"))
    assert claim(ledger, force=True).granted
    ledger.record(REF, outcome("received"), attempt("failed", error="broker went away"))
    row = ledger.get(REF)
    assert row is not None
    assert (row.status, row.event_count, row.reason, row.diagnostics) == ("quarantined", 2, "1 problem(s)", "s3://d/q")
    assert (row.last_error, row.claim_until, row.attempt_count) == ("broker went away", None, 2)
    assert [a["outcome"] for a in row.attempts] == ["q", "failed"]

    assert claim(ledger, force=True).granted
    ledger.record(REF, outcome("published", events=4), attempt("published"))
    row = ledger.get(REF)
    assert row is not None
    assert (row.status, row.event_count, row.reason, row.diagnostics, row.last_error) == (
        "published",
        4,
        None,
        None,
        None,
    )


def test_a_first_failed_attempt_leaves_a_received_row(ledger: Ledger) -> None:
    assert claim(ledger).granted
    ledger.record(REF, outcome("received"), attempt("failed", error="S3 connection reset"))
    row = ledger.get(REF)
    assert row is not None
    assert (row.status, row.claim_until, row.last_error, row.partner) == (
        "received",
        None,
        "S3 connection reset",
        "acme",
    )
    assert claim(ledger).granted


# -- the object store -------------------------------------------------------------------------------
class Bucket(Protocol):
    store: ObjectStore

    def put(self, key: str, body: bytes) -> ObjectRef: ...

    def delete(self, key: str, version_id: str | None = None) -> None: ...


class FakeBucket:
    def __init__(self) -> None:
        self.fake = InMemoryObjectStore()
        self.store: ObjectStore = self.fake

    def put(self, key: str, body: bytes) -> ObjectRef:
        return self.fake.put("drops", key, body)

    def delete(self, key: str, version_id: str | None = None) -> None:
        self.fake.delete("drops", key, version_id)


class S3Bucket:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.store: ObjectStore = S3ObjectStore(client)

    def put(self, key: str, body: bytes) -> ObjectRef:
        return ObjectRef("drops", key, self.client.put_object(Bucket="drops", Key=key, Body=body)["VersionId"])

    def delete(self, key: str, version_id: str | None = None) -> None:
        extra = {"VersionId": version_id} if version_id else {}
        self.client.delete_object(Bucket="drops", Key=key, **extra)


@pytest.fixture(params=["in-memory", "s3"])
def bucket(request: pytest.FixtureRequest) -> Iterator[Bucket]:
    if request.param == "in-memory":
        yield FakeBucket()
        return
    with moto_client("s3") as client:
        ensure_bucket(client, "drops")
        yield S3Bucket(client)


def test_head_pins_a_version_and_open_reads_that_version(bucket: Bucket) -> None:
    first = bucket.put("acme/a.xml", b"first")
    second = bucket.put("acme/a.xml", b"second, longer")
    assert first.version_id and second.version_id and first.version_id != second.version_id
    meta = bucket.store.head(first)
    assert (meta.version_id, meta.size) == (first.version_id, 5)
    assert bucket.store.head(first.with_version(None)).version_id == second.version_id
    with bucket.store.open(first, meta) as stream:
        assert stream.read() == b"first"


def test_a_deleted_object_or_version_is_missing(bucket: Bucket) -> None:
    ref = bucket.put("acme/a.xml", b"body")
    bucket.delete(ref.key)  # a delete marker: the version itself stays
    with pytest.raises(ObjectMissing, match="does not exist"):
        bucket.store.head(ref.with_version(None))
    assert bucket.store.head(ref).size == 4
    bucket.delete(ref.key, ref.version_id)
    with pytest.raises(ObjectMissing, match="does not exist"):
        bucket.store.head(ref)


# -- the event sink: where each event landed ------------------------------------------------------
class Landed:
    """A :class:`dropgate.publishing.PositionSink` that keeps what it is told."""

    def __init__(self) -> None:
        self.reports: list[tuple[bytes, int, int]] = []

    def delivered(self, key: bytes, partition: int, offset: int) -> None:
        self.reports.append((key, partition, offset))


@pytest.fixture(params=["in-memory", "kafka"])
def sink_and_reader(request: pytest.FixtureRequest) -> Iterator[tuple[EventSink, Callable[[int, int], bytes | None]]]:
    """A sink, and what reads the key at a (partition, offset) back from where it published."""
    if request.param == "in-memory":
        fake = RecordingSink()
        yield fake, lambda partition, offset: fake.messages[offset].key if partition == 0 else None
        return
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    topic = f"test.contract.{uuid.uuid4().hex[:10]}"
    config = {"bootstrap.servers": bootstrap}
    with events_at(config, topic) as reader:

        def key_at(partition: int, offset: int) -> bytes | None:
            found = reader.event_at(partition, offset)
            return found.key if found is not None else None

        yield KafkaPublisher(config, topic), key_at


def test_a_sink_reports_where_each_event_landed_only_when_asked(
    sink_and_reader: tuple[EventSink, Callable[[int, int], bytes | None]],
) -> None:
    sink, key_at = sink_and_reader
    messages = [OutMessage(key, b'{"n": 1}' if key != b"C" else None, []) for key in (b"A", b"B", b"C")]
    landed = Landed()
    report = sink.publish(messages, positions=landed)
    assert report.acknowledged == 3
    assert sorted(key for key, _, _ in landed.reports) == [b"A", b"B", b"C"]
    for key, partition, offset in landed.reports:
        assert key_at(partition, offset) == key
    sink.publish([OutMessage(b"D", b"{}", [])])  # not asked: nothing reported (and no report per event)
    assert len(landed.reports) == 3
