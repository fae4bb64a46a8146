"""Held deletions on in-memory fakes: the hold rule, what a held snapshot publishes and records,
approve and reject, the headers that say why a key was deleted, and crashes around every write.
The same story against moto and a broker is ``tests/integration/test_held_deletions.py``."""

from __future__ import annotations

from typing import Any

import pytest

from dropgate.held import holds
from dropgate.held_deletions import HeldDeletions, NoSuchHold, NotHeld
from dropgate.storage import ObjectRef
from tests.fakes import InMemorySnapshotStore, Service, inventory, make_service

#: initech holds past 10 % and 3 keys, so a handful of products show every rule.
PARTNERS = """
partners:
  initech: {prefix: initech/, format: generic, snapshot: full, hold_deletions: {fraction: 0.1, minimum: 3}}
  never: {prefix: never/, format: generic, snapshot: full, hold_deletions: {fraction: 1}}
"""
CATALOGUE = {f"P{i:02d}": 1 for i in range(20)}
BROKEN = {"P00": 2, "P01": 2}  # an export that stopped after two products
GONE = sorted(f"P{i:02d}".encode() for i in range(2, 20))


def headers(message: Any) -> dict[str, bytes]:
    return {name: value for name, value in message.headers}


def held_service() -> tuple[Service, ObjectRef]:
    svc = make_service(PARTNERS)
    svc.ingest(svc.drop("initech/mon.xml", inventory(CATALOGUE, day=16)))
    tuesday = svc.drop("initech/tue.xml", inventory(BROKEN, day=17))
    return svc, tuesday


def deletions(svc: Service) -> HeldDeletions:
    return HeldDeletions.of(svc.ingestor)


@pytest.mark.parametrize(
    ("gone", "live", "held"),
    [
        (990, 1000, True),
        (101, 1000, True),  # more than 100 keys and more than 10 %
        (100, 1000, False),  # not more than the minimum
        (99, 100, False),  # 99 %, but only 99 keys
        (150, 2000, False),  # more than the minimum, but 7.5 %
        (5000, 1_000_000, False),
    ],
)
def test_the_hold_rule_needs_both_the_share_and_the_count(gone: int, live: int, held: bool) -> None:
    assert holds(gone, live, fraction=0.1, minimum=100) is held
    assert holds(gone, live, fraction=1.0, minimum=0) is False  # fraction 1 never holds


def test_a_mass_deletion_publishes_the_upserts_and_holds_the_tombstones() -> None:
    svc, tuesday = held_service()
    published = len(svc.sink.messages)
    outcome = svc.ingest(tuesday)

    assert (outcome.status, outcome.events, outcome.tombstones, outcome.held_deletes) == ("published", 2, 0, 18)
    assert svc.sink.tombstones == [] and len(svc.sink.messages) == published + 2
    assert "18 product(s) missing since s3://drops/initech/mon.xml" in outcome.notes[0]
    assert "18 of 20 live key(s), 90%" in outcome.notes[0]
    assert "tombstone(s) HELD; see dropgate deletions show s3://drops/initech/tue.xml" in outcome.notes[0]
    row = svc.row(outcome.ref)
    assert (row.status, row.deletions, row.held_deletes, row.tombstones) == ("published", "held", 18, 0)
    assert svc.snapshots.keys("initech") == sorted(k.encode() for k in CATALOGUE)  # still live until approved

    [held] = deletions(svc).pending()
    assert (held.partner, held.file, held.count, held.live) == ("initech", str(outcome.ref), 18, 20)
    assert held.predecessor is not None and held.predecessor.startswith("s3://drops/initech/mon.xml")
    assert deletions(svc).sample(held, 3) == GONE[:3]
    assert deletions(svc).pending("never") == []


def test_a_dry_run_says_the_deletions_would_be_held_and_holds_nothing() -> None:
    svc, tuesday = held_service()
    preview = svc.ingestor.dry_run(tuesday)
    assert (preview.held_deletes, preview.snapshot_deletes) == (18, 0)
    assert preview.notes[0].endswith("the tombstones would be HELD for approval")
    assert deletions(svc).pending() == []


def test_approve_publishes_the_held_tombstones_with_the_snapshot_time_and_says_why() -> None:
    svc, tuesday = held_service()
    svc.ingest(tuesday)
    decided = deletions(svc).approve(tuesday)

    assert (decided.decision, decided.published, decided.skipped, decided.already) == ("approved", 18, 0, False)
    assert sorted(svc.sink.tombstones) == GONE
    tombstone = svc.sink.messages[-1]
    assert headers(tombstone)["deletion-reason"] == b"approved-held"
    assert headers(tombstone)["deletion-source"] == str(tuesday).encode()
    assert headers(tombstone)["source-object"] == headers(tombstone)["deletion-source"]
    row = svc.row(tuesday)
    assert (row.deletions, row.tombstones, row.event_count) == ("approved", 18, 20)
    assert row.attempts[-1]["outcome"] == "deletions-approved"
    assert svc.snapshots.keys("initech") == [b"P00", b"P01"]
    assert deletions(svc).pending() == []
    with pytest.raises(NoSuchHold):
        deletions(svc).approve(tuesday)


def test_approve_skips_a_key_a_newer_file_re_added_meanwhile() -> None:
    svc, tuesday = held_service()
    svc.ingest(tuesday)
    svc.ingest(svc.drop("initech/wed.xml", inventory({**BROKEN, "P05": 3, "P07": 3}, day=18)))  # held too
    decided = deletions(svc).approve(tuesday)

    assert (decided.published, decided.skipped) == (16, 2)
    assert sorted(svc.sink.tombstones) == [key for key in GONE if key not in (b"P05", b"P07")]
    assert svc.sink.latest()[b"P05"] is not None and svc.sink.latest()[b"P07"] is not None
    assert svc.snapshots.keys("initech") == [b"P00", b"P01", b"P05", b"P07"]  # the re-added keys stay live
    assert [held.key for held in deletions(svc).pending()] == ["initech/wed.xml"]


def test_reject_publishes_nothing_keeps_the_keys_live_and_says_so_in_the_ledger() -> None:
    svc, tuesday = held_service()
    svc.ingest(tuesday)
    before = len(svc.sink.messages)
    decided = deletions(svc).reject(tuesday)

    assert (decided.decision, decided.published) == ("rejected", 0)
    assert len(svc.sink.messages) == before and svc.sink.tombstones == []
    row = svc.row(tuesday)
    assert (row.deletions, row.tombstones, row.attempts[-1]["outcome"]) == ("rejected", 0, "deletions-rejected")
    assert svc.snapshots.keys("initech") == sorted(k.encode() for k in CATALOGUE)
    assert deletions(svc).pending() == []


def test_a_partner_that_never_holds_deletes_at_once_with_the_reason_on_each_tombstone() -> None:
    svc = make_service(PARTNERS)
    svc.ingest(svc.drop("never/mon.xml", inventory(CATALOGUE, day=16)))
    outcome = svc.ingest(svc.drop("never/tue.xml", inventory({**BROKEN, "P03": None}, day=17)))
    assert (outcome.held_deletes, outcome.snapshot_deletes, outcome.tombstones) == (0, 17, 18)
    reasons = {m.key: headers(m)["deletion-reason"] for m in svc.sink.messages if m.value is None}
    assert reasons.pop(b"P03") == b"explicit"
    assert set(reasons.values()) == {b"absent-from-snapshot"} and len(reasons) == 17
    sources = {headers(m)["deletion-source"] for m in svc.sink.messages if m.value is None}
    assert sources == {str(outcome.ref).encode()}
    assert all("deletion-reason" not in headers(m) for m in svc.sink.messages if m.value is not None)


def test_nothing_is_decided_before_the_ledger_records_the_hold() -> None:
    svc, tuesday = held_service()
    svc.ingestor.ledger.record = lambda *args, **kwargs: None  # type: ignore[method-assign]  # the crash window
    svc.ingest(tuesday)
    with pytest.raises(NotHeld, match="its ingest has not finished"):
        deletions(svc).approve(tuesday)
    assert svc.sink.tombstones == []


class CrashingStore(InMemorySnapshotStore):
    """Raises at the ``fail_at``-th write of any kind (keys, records, shards, manifests, deletes)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_at: int | None = None
        self.writes = 0

    def _step(self) -> None:
        self.writes += 1
        if self.fail_at is not None and self.writes == self.fail_at:
            raise RuntimeError(f"crash at write {self.writes}")

    def write_held(self, held: Any, keys: Any) -> str:
        self._step()
        return super().write_held(held, keys)

    def drop_held(self, held: Any) -> None:
        self._step()
        super().drop_held(held)

    def write(self, *args: Any) -> None:
        self._step()
        super().write(*args)

    def write_manifest(self, *args: Any) -> None:
        self._step()
        super().write_manifest(*args)


def _crashing(fail_hold: int | None, fail_approve: int | None) -> tuple[Service, CrashingStore, ObjectRef]:
    svc, tuesday = held_service()
    store = CrashingStore()
    store.objects = svc.snapshots.objects  # Monday's key set
    svc.ingestor.snapshots = store
    svc.snapshots = store
    store.writes, store.fail_at = 0, fail_hold
    if fail_hold is not None:
        with pytest.raises(RuntimeError, match="crash at write"):
            svc.ingest(tuesday)
    store.fail_at = None
    svc.ingest(tuesday)
    store.writes, store.fail_at = 0, fail_approve
    if fail_approve is not None:
        with pytest.raises(RuntimeError, match="crash at write"):
            deletions(svc).approve(tuesday)
    store.fail_at = None
    if deletions(svc).pending():
        deletions(svc).approve(tuesday)
    else:  # the crash came after the ledger recorded the decision: a repeat only says so
        assert svc.row(tuesday).deletions == "approved"
    return svc, store, tuesday


def _steps(phase: str) -> int:
    """How many state writes the hold (the snapshot's ingest) or the approval makes, uncrashed."""
    _svc, store, _ref = _crashing(None, None)
    approval = store.writes
    svc, tuesday = held_service()
    counting = CrashingStore()
    counting.objects = svc.snapshots.objects
    svc.ingestor.snapshots = counting
    svc.ingest(tuesday)
    return counting.writes if phase == "hold" else approval


@pytest.mark.parametrize("phase", ["hold", "approve"])
def test_a_crash_at_any_write_of_the_hold_or_the_approval_loses_nothing(phase: str) -> None:
    steps = _steps(phase)
    assert steps >= 2  # the hold: its keys and record, the key set; the approval: the key set, the hold dropped
    for fail_at in range(1, steps + 1):
        hold, approve = (fail_at, None) if phase == "hold" else (None, fail_at)
        crashed, store, tuesday = _crashing(hold, approve)
        # every held key deleted (a repeat may publish a tombstone twice: the same key, state and asOf)
        assert set(crashed.sink.tombstones) == set(GONE), f"write {fail_at}"
        assert {k for k, v in crashed.sink.latest().items() if v is not None} == {b"P00", b"P01"}, f"write {fail_at}"
        assert store.keys("initech") == [b"P00", b"P01"], f"write {fail_at}"
        assert crashed.row(tuesday).deletions == "approved", f"write {fail_at}"
        assert deletions(crashed).pending() == [], f"write {fail_at}"


def test_a_ledger_failure_after_the_approval_published_repeats_it_on_the_next_approve() -> None:
    svc, tuesday = held_service()
    svc.ingest(tuesday)
    real = svc.ledger.decide_deletions

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("DynamoDB went away")

    svc.ledger.decide_deletions = down  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        deletions(svc).approve(tuesday)
    assert svc.row(tuesday).deletions == "held" and len(deletions(svc).pending()) == 1  # nothing lost
    svc.ledger.decide_deletions = real  # type: ignore[method-assign]
    decided = deletions(svc).approve(tuesday)
    assert (decided.decision, decided.published) == ("approved", 18)
    assert set(svc.sink.tombstones) == set(GONE) and svc.row(tuesday).deletions == "approved"
    assert svc.snapshots.keys("initech") == [b"P00", b"P01"] and deletions(svc).pending() == []
