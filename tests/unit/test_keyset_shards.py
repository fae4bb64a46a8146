"""The snapshot key set in shards: a file that does not delete reads and writes only the shards its
keys fall in, the single object of before is migrated, and a crash at any key-set write loses no
tombstone (on the in-memory store; the S3 store runs the same in tests/integration)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import pytest

from dropgate.index_shards import Shard
from dropgate.snapshots import KeySetManifest, SnapshotHeader, cell_of, write_keyset
from tests.fakes import InMemorySnapshotStore, Service, inventory, make_service
from tests.unit.test_index_shards import DAY_16_MS

FULL = """
partners:
  initech: {prefix: initech/, format: generic, snapshot: full, hold_deletions: {fraction: 1}}  # deletes at scale, never held
"""
DAY_MS = 86_400_000


class StepStore(InMemorySnapshotStore):
    """Records each write step; with ``fail_at``, the write with that number raises, as a crash."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[str] = []
        self.fail_at: int | None = None

    def _step(self, name: str) -> None:
        if self.fail_at is not None and len(self.steps) == self.fail_at:
            self.fail_at = None
            raise RuntimeError(f"crash before {name}")
        self.steps.append(name)

    def write(
        self, partner: str, bucket: str | None, generation: int, shards: Iterable[tuple[Shard, list[bytes]]]
    ) -> None:
        for shard, keys in shards:
            self._step(f"shard {generation}/{shard.name}")
            super().write(partner, bucket, generation, [(shard, keys)])

    def write_manifest(self, partner: str, bucket: str | None, manifest: KeySetManifest) -> None:
        self._step("manifest")
        super().write_manifest(partner, bucket, manifest)

    def delete(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> None:
        self._step("delete")
        super().delete(partner, bucket, generation, shards)

    def drop_legacy(self, partner: str, bucket: str | None) -> None:
        self._step("drop legacy")
        super().drop_legacy(partner, bucket)


def with_legacy_set(store: StepStore, count: int, *, as_of_ms: int) -> list[bytes]:
    """The partner's key set as the single object of before: K0000000.. (sorted)."""
    keys = sorted(f"K{i:07d}".encode() for i in range(count))
    buffer = io.BytesIO()
    write_keyset(buffer, SnapshotHeader("initech", as_of_ms, "s3://drops/initech/old.xml", count), keys)
    store.legacy_objects[("initech", "drops")] = buffer.getvalue()
    return keys


def service(store: StepStore) -> Service:
    svc = make_service(FULL)
    svc.ingestor.snapshots = store
    svc.snapshots = store
    return svc


def test_the_single_key_set_of_before_is_cut_into_shards_and_an_older_snapshot_then_touches_only_its_shards() -> None:
    store = StepStore()
    keys = with_legacy_set(store, 150_000, as_of_ms=DAY_16_MS + 4 * DAY_MS)  # a snapshot of the 20th
    svc = service(store)

    older = svc.ingest(svc.drop("initech/old.xml", inventory({"K0000001": 5, "NEW1": 1}, day=17)))
    assert older.status == "published" and older.snapshot_deletes == 0
    assert "older than the newest one already published" in older.notes[0]
    assert store.legacy_objects == {} and store.steps[-2:] == ["manifest", "drop legacy"]
    manifest = store.manifest("initech", "drops")
    assert manifest is not None and len(manifest.layout.shards) >= 4 and manifest.header.count == 150_001
    assert store.keys("initech") == sorted([*keys, b"NEW1"])

    store.reads.clear()
    store.steps.clear()
    again = svc.ingest(svc.drop("initech/old2.xml", inventory({"K0000002": 5, "NEW2": 1}, day=18)))
    assert again.snapshot_deletes == 0
    touched = {s.name for s in manifest.layout.shards if any(s.lo <= cell_of(k) < s.hi for k in (b"K0000002", b"NEW2"))}
    assert set(store.reads) == touched and len(touched) < len(manifest.layout.shards)
    assert sorted(store.steps) == sorted([*(f"shard 1/{name}" for name in touched), "manifest"])
    assert store.keys("initech") == sorted([*keys, b"NEW1", b"NEW2"])


def _crash_run(fail_at: int) -> tuple[StepStore, Service]:
    """A full snapshot lacking K0000003..: its first run crashes at key-set write ``fail_at``."""
    store = StepStore()
    with_legacy_set(store, 70_000, as_of_ms=DAY_16_MS)
    svc = service(store)
    keep = {f"K{i:07d}": 1 for i in range(3)}
    ref = svc.drop("initech/tue.xml", inventory({**keep, "NEW": 1}, day=17))
    store.fail_at = fail_at
    with pytest.raises(RuntimeError, match="crash before"):
        svc.ingest(ref)
    retried = svc.ingest(ref)
    assert retried.status == "published"
    return store, svc


def test_a_crash_at_any_key_set_write_loses_no_tombstone() -> None:
    clean = StepStore()
    with_legacy_set(clean, 70_000, as_of_ms=DAY_16_MS)
    svc = service(clean)
    svc.ingest(svc.drop("initech/tue.xml", inventory({"K0000000": 1, "K0000001": 1, "K0000002": 1, "NEW": 1}, day=17)))
    steps = list(clean.steps)
    # widened (the set of before migrated into generation 1), then the new set as generation 2
    assert steps[-1] == "delete" and "drop legacy" in steps and steps.count("manifest") == 2
    expected_live = {b"K0000000", b"K0000001", b"K0000002", b"NEW"}

    for fail_at in range(len(steps)):
        store, crashed = _crash_run(fail_at)
        latest = crashed.sink.latest()
        assert {key for key, value in latest.items() if value is not None} == expected_live, f"step {fail_at}"
        assert sum(1 for value in latest.values() if value is None) == 70_000 - 3, f"step {fail_at}"
        assert store.keys("initech") == sorted(expected_live), f"step {fail_at}"
