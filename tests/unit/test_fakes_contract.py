"""The in-memory fakes keep the real adapters' rules: the ledger's claims, records and key
transfers, the object store's versions and deletes, the key ownership map's conditional writes,
the sink's report of where each event landed.

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
from dropgate.adapters.s3_ownership import S3OwnershipStore
from dropgate.adapters.s3_state import S3SnapshotStore
from dropgate.held import HeldDeletion
from dropgate.key_index import key_hash
from dropgate.key_ownership import LAYOUT, OwnershipStore, owner_of, shard_of
from dropgate.key_ownership import claim as claim_keys
from dropgate.ledger import Attempt, Claim, KeyTransfer, Ledger, LedgerEntry
from dropgate.provision import ensure_bucket, ensure_ledger_table
from dropgate.publishing import EventSink, OutMessage
from dropgate.snapshots import SnapshotStore
from dropgate.storage import ObjectMissing, ObjectRef, ObjectStore
from tests.fakes import (
    InMemoryLedger,
    InMemoryObjectStore,
    InMemoryOwnershipStore,
    InMemorySnapshotStore,
    RecordingSink,
)

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


def test_a_decision_on_held_deletions_adds_its_tombstones_and_a_publish_records_the_hold(ledger: Ledger) -> None:
    assert claim(ledger).granted
    held = outcome("published", events=2)
    held.deletions, held.held_deletes, held.held_at = "held", 990, "s3://state/held.keys"
    ledger.record(REF, held, attempt("published"))
    row = ledger.get(REF)
    assert row is not None and (row.deletions, row.held_deletes, row.held_at) == ("held", 990, "s3://state/held.keys")
    ledger.decide_deletions(REF, "approved", tombstones=985, attempt=attempt("deletions-approved"))
    row = ledger.get(REF)
    assert row is not None
    assert (row.status, row.deletions, row.event_count, row.tombstones, row.held_deletes) == (
        "published",
        "approved",
        987,
        985,
        990,
    )
    assert (row.attempt_count, row.attempts[-1]["outcome"]) == (2, "deletions-approved")
    assert claim(ledger, force=True).granted  # a reprocess that holds nothing: the current outcome only
    ledger.record(REF, outcome("published", events=2), attempt("published"))
    row = ledger.get(REF)
    assert row is not None and (row.deletions, row.held_deletes, row.held_at) == (None, 0, None)


# -- the snapshot store's held deletions -------------------------------------------------------------
@pytest.fixture(params=["in-memory", "s3"])
def snapshots(request: pytest.FixtureRequest) -> Iterator[SnapshotStore]:
    if request.param == "in-memory":
        yield InMemorySnapshotStore()
        return
    with moto_client("s3") as client:
        ensure_bucket(client, "drops")
        yield S3SnapshotStore(client, None)


def held_of(partner: str, key: str, at: str) -> HeldDeletion:
    return HeldDeletion(
        partner=partner,
        file=f"s3://drops/{key}?versionId=v1",
        bucket="drops",
        key=key,
        version="v1",
        predecessor=None,
        as_of_ms=1,
        count=3,
        live=4,
        key_template="{productId}",
        parser=LABEL,
        held_at=at,
    )


def test_holds_are_listed_oldest_first_per_partner_streamed_back_and_forgotten(snapshots: SnapshotStore) -> None:
    first, second = (
        held_of("initech", "initech/tue.xml", "2026-11-17"),
        held_of("acme", "acme/x'$(y).xml", "2026-11-18"),
    )
    snapshots.write_held(second, [b"B", b"C"])
    snapshots.write_held(first, [b"A", b"B\x1b", b"C"])
    snapshots.write_held(first, [b"A", b"B\x1b", b"C"])  # a retry writes the same hold again
    assert snapshots.held(None, "drops") == [first, second]
    assert snapshots.held("acme", "drops") == [second]
    with snapshots.held_keys(first) as keys:
        assert list(keys) == [b"A", b"B\x1b", b"C"]
    snapshots.drop_held(first)
    assert snapshots.held(None, "drops") == [second]
    assert snapshots.held("initech", "drops") == []


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


# -- the key ownership map ------------------------------------------------------------------------
@pytest.fixture(params=["in-memory", "s3"])
def owners(request: pytest.FixtureRequest) -> Iterator[OwnershipStore]:
    if request.param == "in-memory":
        yield InMemoryOwnershipStore()
        return
    with moto_client("s3") as client:
        ensure_bucket(client, "drops")
        yield S3OwnershipStore(client, None)


def test_an_ownership_shard_is_written_only_at_the_version_read(owners: OwnershipStore) -> None:
    import numpy as np

    shard = LAYOUT[7]
    empty = next(owners.read("drops", [shard]))
    assert (len(empty.owners), empty.version) == (0, None)
    acme = empty.owners.with_owner(np.array([11], dtype=np.uint64), "acme")
    assert owners.write("drops", shard, acme, None)
    assert not owners.write("drops", shard, acme, None)  # it exists now: If-None-Match refuses
    read = next(owners.read("drops", [shard]))
    assert read.version is not None and read.owners.names == ("acme",)
    assert owners.write("drops", shard, read.owners.with_owner(np.array([12], dtype=np.uint64), "beta"), read.version)
    assert not owners.write("drops", shard, read.owners.with_owner(np.array([13], dtype=np.uint64), "x"), read.version)
    final = next(owners.read("drops", [shard])).owners
    assert final.owners_of(np.array([11, 12, 13], dtype=np.uint64)).tolist() == [0, 1, -1]


def test_two_partners_claiming_one_key_at_once_leave_one_owner(owners: OwnershipStore) -> None:
    """Both read the shard before either writes: the second write is refused (the shard is not
    the version it read), so it reads again and finds the first partner's claim."""
    import numpy as np

    key = np.array([key_hash(b"P1")], dtype=np.uint64)
    shard = shard_of(b"P1")
    acme_read, beta_read = next(owners.read("drops", [shard])), next(owners.read("drops", [shard]))
    taken, _ = claim_keys(owners, "drops", shard, key, "acme", acme_read)
    assert taken.tolist() == []
    taken, seen = claim_keys(owners, "drops", shard, key, "beta", beta_read)
    assert taken.tolist() == key.tolist() and seen.names[int(seen.owners_of(key)[0])] == "acme"
    assert owner_of(owners, "drops", b"P1") == "acme"


def test_a_key_transfer_is_a_ledger_row_of_its_own(ledger: Ledger) -> None:
    first = KeyTransfer("P1", "00ab", "acme", "beta", by="ops", at="2026-12-06T10:00:00.000Z")
    second = KeyTransfer("P1", "00ab", "beta", "acme", by="ops", at="2026-12-06T11:00:00.000Z")
    ledger.record_transfer(second)
    ledger.record_transfer(first)
    ledger.record_transfer(KeyTransfer("P2", "00cd", "acme", "beta", by="ops"))
    assert ledger.transfers("00ab") == [first, second]
    assert ledger.transfers("ffff") == []
    assert ledger.get(REF) is None  # no file row


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
