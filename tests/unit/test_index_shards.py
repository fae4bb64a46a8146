"""The sharded key index: how shards are cut, what a file reads and writes, the migration from the
single object of before, and a crash at every state write (nothing lost: the retry repeats work).

On the in-memory store (:class:`tests.fakes.InMemoryKeyIndexStore`); the S3 store runs the same
sessions against moto in ``tests/integration/test_index_shards_s3.py``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from dropgate.index_shards import CELLS, INDEX_MAX_ROWS, INDEX_TARGET_ROWS, Shard, ShardLayout, migrated, rewrite
from dropgate.key_index import KeyIndex, index_dtype, key_hash, row_dtype
from tests.fakes import InMemoryKeyIndexStore, RecordingSink, Service, inventory, make_service

DAY_16_MS = int(datetime(2026, 11, 16, 6, tzinfo=UTC).timestamp() * 1000)  # inventory(day=16)'s generatedAt


def catalogue(count: int, *, as_of_ms: int = DAY_16_MS - 1, prefix: str = "P") -> KeyIndex:
    """An index of ``count`` keys P0.., as if published before (state 1: live)."""
    rows = np.zeros(count, dtype=index_dtype())
    rows["key"] = np.fromiter((key_hash(f"{prefix}{i}".encode()) for i in range(count)), np.uint64, count)
    rows["as_of"] = as_of_ms
    rows["state"] = 1
    rows.sort(order="key")
    return KeyIndex(rows)


def covers(shards: Sequence[Shard], whole: Shard) -> bool:
    return (
        shards[0].lo == whole.lo
        and shards[-1].hi == whole.hi
        and all(a.hi == b.lo for a, b in itertools.pairwise(shards))
    )


def by_cells(rows: np.ndarray) -> Callable[[int, int, np.ndarray], np.ndarray]:
    """What :func:`rewrite` asks for: the rows of a cell range, by cell, in their order within one."""
    cells = (rows["key"] >> np.uint64(52)).astype(np.int64)

    def between(lo: int, hi: int, _before: np.ndarray) -> np.ndarray:
        chosen = rows[(cells >= lo) & (cells < hi)]
        return chosen[np.argsort((chosen["key"] >> np.uint64(52)).astype(np.int64), kind="stable")]

    return between


# -- cutting --------------------------------------------------------------------------------------
def test_a_shard_within_its_bound_keeps_its_range_and_takes_the_updates_in_order() -> None:
    old = catalogue(100)
    update = old.entries[:2].copy()
    update["as_of"] += 5
    twice = np.concatenate([update, update])
    twice["state"][2:] = 7  # the later update of each key wins
    parts = list(rewrite(Shard(0, CELLS), old, by_cells(twice)))
    assert [shard for shard, _ in parts] == [Shard(0, CELLS)]
    entries = parts[0][1].entries
    assert len(entries) == 100 and (np.diff(entries["key"].astype(np.float64)) > 0).all()
    changed = entries[np.isin(entries["key"], update["key"])]
    assert set(changed["state"].tolist()) == {7} and set(changed["as_of"].tolist()) == {DAY_16_MS + 4}


def test_a_shard_past_its_bound_is_cut_at_cell_boundaries_into_parts_of_about_the_target() -> None:
    big = catalogue(INDEX_MAX_ROWS + 5_000)
    parts = list(migrated(big))
    shards = [shard for shard, _ in parts]
    sizes = [len(index) for _, index in parts]
    assert covers(shards, Shard(0, CELLS)) and len(parts) >= 2
    assert sum(sizes) == len(big) and all(INDEX_TARGET_ROWS // 2 <= size <= INDEX_MAX_ROWS for size in sizes)
    joined = np.concatenate([index.entries for _, index in parts])
    assert (joined == big.entries).all()
    for shard, index in parts:  # each part holds exactly the keys of its cells
        cells = (index.entries["key"] >> np.uint64(52)).astype(np.int64)
        assert cells.min() >= shard.lo and cells.max() < shard.hi


def test_a_layout_must_cover_every_cell_once() -> None:
    with pytest.raises(ValueError, match="cover every cell"):
        ShardLayout([Shard(0, 100)])
    with pytest.raises(ValueError, match="do not meet"):
        ShardLayout([Shard(0, 100), Shard(101, CELLS)])
    layout = ShardLayout([Shard(100, CELLS), Shard(0, 100)])
    assert ShardLayout.from_bytes(layout.to_bytes()) == layout
    with pytest.raises(ValueError, match="not a dropgate key index layout"):
        ShardLayout.from_bytes(b'{"format": "something else"}')


# -- what a file reads and writes -----------------------------------------------------------------
class CountingStore(InMemoryKeyIndexStore):
    """Counts the shards read; with ``fail_at`` set, the write with that number (0-based, over
    shard writes, the layout, deletes and the legacy object's removal) raises, as a crash would."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.fail_at: int | None = None
        self.steps: list[str] = []

    def _step(self, name: str) -> None:
        if self.fail_at is not None and len(self.steps) == self.fail_at:
            self.fail_at = None
            raise RuntimeError(f"crash before {name}")
        self.steps.append(name)

    def read(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> Iterator[KeyIndex]:
        self.reads += [shard.name for shard in shards]
        return super().read(partner, bucket, shards)

    def write(self, partner: str, bucket: str | None, shards: Iterable[tuple[Shard, KeyIndex]]) -> None:
        for shard, index in shards:
            self._step(f"shard {shard.name}")
            super().write(partner, bucket, [(shard, index)])

    def write_layout(self, partner: str, bucket: str | None, layout: ShardLayout) -> None:
        self._step("layout")
        super().write_layout(partner, bucket, layout)

    def delete(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> None:
        self._step("delete")
        super().delete(partner, bucket, shards)

    def drop_legacy(self, partner: str, bucket: str | None) -> None:
        self._step("drop legacy")
        super().drop_legacy(partner, bucket)


def service_with(store: CountingStore, partners: str | None = None) -> Service:
    svc = make_service() if partners is None else make_service(partners)
    svc.ingestor.guard.store = store  # type: ignore[attr-defined]  # the real KeyIndexGuard, another store
    svc.key_index = store
    return svc


def newest_as_of(store: InMemoryKeyIndexStore, key: bytes) -> int | None:
    entries = store.whole("acme", "drops").entries
    found = entries[entries["key"] == np.uint64(key_hash(key))]
    return int(found["as_of"][0]) if len(found) else None


def test_a_single_index_is_migrated_to_shards_by_the_first_file_and_nothing_in_it_is_lost() -> None:
    store = CountingStore()
    before = catalogue(150_000)
    store.legacy_objects[("acme", "drops")] = before.to_bytes()
    svc = service_with(store)

    outcome = svc.ingest(svc.drop("acme/delta.xml", inventory({"P1": 5, "P2": 6, "NEW": 1}, day=16)))

    assert (outcome.status, outcome.events, outcome.stale) == ("published", 3, 0)
    layout = store.layout("acme", "drops")
    assert layout is not None and len(layout.shards) >= 4 and store.legacy_objects == {}
    after = store.whole("acme", "drops")
    assert len(after) == len(before) + 1
    assert np.isin(before.entries["key"], after.entries["key"]).all()
    assert newest_as_of(store, b"P1") == DAY_16_MS and newest_as_of(store, b"P3") == DAY_16_MS - 1
    assert store.steps[-2:] == ["layout", "drop legacy"]


def test_a_small_delta_reads_and_writes_only_the_shards_its_keys_touch() -> None:
    store = CountingStore()
    store.legacy_objects[("acme", "drops")] = catalogue(300_000).to_bytes()
    svc = service_with(store)
    svc.ingest(svc.drop("acme/first.xml", inventory({"P0": 1}, day=16)))  # migrates
    layout = store.layout("acme", "drops")
    assert layout is not None
    store.reads.clear()
    store.steps.clear()

    delta = {"P0": 2, "P123456": 2, "P299999": 2}
    outcome = svc.ingest(svc.drop("acme/delta.xml", inventory(delta, day=17)))

    touched = {shard.name for shard in layout.shards if any(_in(shard, key) for key in delta)}
    assert outcome.events == 3 and len(layout.shards) == 18 and len(touched) <= 3
    assert sorted(store.reads) == sorted(touched)  # each read once: kept from the decision to the write
    assert sorted(store.steps) == sorted(f"shard {name}" for name in touched)  # no layout: nothing was cut
    assert all(newest_as_of(store, key.encode()) == DAY_16_MS + 86_400_000 for key in delta)


def _in(shard: Shard, key: str) -> bool:
    return shard.lo <= key_hash(key.encode()) >> 52 < shard.hi


def test_stale_events_are_found_in_whichever_shard_holds_their_key() -> None:
    store = CountingStore()
    store.legacy_objects[("acme", "drops")] = catalogue(200_000, as_of_ms=DAY_16_MS + 10).to_bytes()
    svc = service_with(store)
    older = {f"P{i}": 1 for i in range(0, 200_000, 20_000)}
    outcome = svc.ingest(svc.drop("acme/old.xml", inventory({**older, "FRESH": 1}, day=16)))
    assert (outcome.events, outcome.stale) == (1, 10)
    assert svc.sink.keys == [b"FRESH"]
    assert outcome.verdicts is not None and outcome.verdicts.samples["stale"] == [
        "P0",
        "P20000",
        "P40000",
        "P60000",
        "P80000",
    ]


# -- a crash at every state write -----------------------------------------------------------------
def _crash_run(fail_at: int) -> tuple[CountingStore, RecordingSink, list[str]]:
    """A partner with a 150,000-key index of before; its first file crashes at write ``fail_at``,
    then is retried. Returns the store, the sink and the write steps of a run that did not crash."""
    store = CountingStore()
    store.legacy_objects[("acme", "drops")] = catalogue(150_000).to_bytes()
    svc = service_with(store)
    ref = svc.drop("acme/delta.xml", inventory({"P1": 5, "P7": None, "NEW": 1}, day=16))
    store.fail_at = fail_at
    with pytest.raises(RuntimeError, match="crash before"):
        svc.ingest(ref)
    assert svc.row(ref).status == "received"
    retried = svc.ingest(ref)
    assert (retried.status, retried.events, retried.stale) == ("published", 3, 0)
    return store, svc.sink, store.steps


def test_a_crash_at_any_state_write_is_repaired_by_the_retry() -> None:
    clean = CountingStore()
    clean.legacy_objects[("acme", "drops")] = catalogue(150_000).to_bytes()
    svc = service_with(clean)
    svc.ingest(svc.drop("acme/delta.xml", inventory({"P1": 5, "P7": None, "NEW": 1}, day=16)))
    expected = clean.whole("acme", "drops").entries
    steps = len(clean.steps)
    assert steps >= 4  # shards, layout, drop legacy

    decided = list(row_dtype().names)  # what the guard decides by; positions differ: the retry republished
    for fail_at in range(steps):
        store, sink, _ = _crash_run(fail_at)
        whole = store.whole("acme", "drops")
        assert (whole.entries[decided] == expected[decided]).all(), f"crash at step {fail_at}"
        for key in (b"P1", b"P7", b"NEW"):  # each key's position is its newest event: the retry's
            [row] = whole.entries[whole.entries["key"] == key_hash(key)]
            newest = max(i for i, message in enumerate(sink.messages) if message.key == key)
            assert int(row["ends"][0]) == newest + 1, f"crash at step {fail_at}"
        # The single object of before is removed last: a crash just before leaves it, never read again.
        assert (store.legacy_objects == {}) == (clean.steps[fail_at] != "drop legacy")
        assert sink.latest()[b"P7"] is None and b"NEW" in sink.latest()


# -- the rows the spool keeps ---------------------------------------------------------------------
@pytest.mark.parametrize("parallel", [False, True], ids=["streaming", "parallel"])
def test_the_guard_reads_the_rows_the_spool_kept_and_decides_as_it_would_from_the_events(
    parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dropgate.config import Settings
    from dropgate.partner_index import FileRows

    settings = Settings(parallel_parse_min_bytes=1 if parallel else -1, parse_processes=2)
    products: dict[str, int | str | None] = {f"K{i}": i for i in range(3_000)}
    products.update({"K7": None, "K8": None})
    decided: dict[str, list[object]] = {}
    for mode in ("spool rows", "events"):
        svc = make_service(settings=settings)
        svc.ingest(svc.drop("acme/mon.xml", inventory({f"K{i}": 1 for i in range(0, 3_000, 2)}, day=17)))
        if mode == "events":
            monkeypatch.setattr(FileRows, "add_spool", lambda self, spool: False)
        else:
            monkeypatch.setattr(FileRows, "add", lambda self, entries: pytest.fail("the events were hashed again"))
        outcome = svc.ingest(svc.drop("acme/tue.xml", inventory(products, day=16)))
        monkeypatch.undo()
        assert outcome.verdicts is not None
        decided[mode] = [outcome.events, outcome.stale, svc.sink.keys, outcome.verdicts.samples, svc.key_index.objects]
    assert decided["spool rows"] == decided["events"]
    assert decided["events"][1] == 1_500  # the even keys are a day newer in the index: stale
