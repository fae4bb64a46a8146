"""The key index says where each key's newest events are on the topic (``dropgate key`` reads them
by offset): the positions come from the sink's delivery reports, a key keeps its last few offsets,
an event held back as unchanged keeps the one still on the topic, a run without state asks for
none; and an index of format 1 (no positions) still reads and is migrated when written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from dropgate.guard import NullGuard
from dropgate.index_shards import ShardLayout, migrated
from dropgate.key_index import POSITIONS, KeyIndex, key_hash, row_dtype
from dropgate.key_positions import no_positions, placed
from dropgate.partner_index import update_rows
from dropgate.publishing import OutMessage, PositionSink, PublishReport
from tests.fakes import RecordingSink, inventory, make_service
from tests.unit.test_index_shards import DAY_16_MS, CountingStore, catalogue, service_with

FORMAT_1 = b"DGKI\x01\x00\x00\x00"
FORMAT_2 = b"DGKI\x02\x00\x00\x00"


def format_1(index: KeyIndex) -> bytes:
    """``index`` as a format 1 object (36-byte rows, no positions), as dropgate wrote them before."""
    rows = np.zeros(len(index), dtype=row_dtype())
    for name in row_dtype().names:
        rows[name] = index.entries[name]
    return FORMAT_1 + rows.tobytes()


def entry(index: KeyIndex, key: bytes) -> Any:
    [row] = index.entries[index.entries["key"] == np.uint64(key_hash(key))]
    return row


def offsets(index: KeyIndex, key: bytes) -> list[int]:
    """The key's recorded offsets, newest first (``ends`` are offset + 1; 0: none)."""
    return [int(end) - 1 for end in entry(index, key)["ends"] if end]


def last_offset(sink: RecordingSink, key: bytes, *, before: int | None = None) -> int:
    """Where the fake broker put the key's newest message (its place in ``messages``)."""
    found = [i for i, message in enumerate(sink.messages[:before]) if message.key == key]
    return found[-1]


def test_a_format_1_index_reads_with_no_positions_and_is_written_as_format_2() -> None:
    before = catalogue(1_000)
    old = KeyIndex.from_bytes(format_1(before))
    assert (old.entries[list(row_dtype().names)] == before.entries[list(row_dtype().names)]).all()
    assert (old.entries["ends"] == 0).all()
    again = KeyIndex.from_bytes(old.to_bytes())
    assert old.to_bytes().startswith(FORMAT_2) and (again.entries == old.entries).all()


def test_format_1_shards_still_guard_and_each_shard_a_file_touches_is_migrated_on_write() -> None:
    store = CountingStore()
    parts = list(migrated(catalogue(150_000, as_of_ms=DAY_16_MS + 10)))
    for shard, index in parts:
        store.objects[("acme", "drops", shard.name)] = format_1(index)
    store.objects[("acme", "drops", "layout")] = ShardLayout([shard for shard, _ in parts]).to_bytes()
    svc = service_with(store)

    outcome = svc.ingest(svc.drop("acme/delta.xml", inventory({"P1": 5, "P2": 6, "NEW": 1}, day=17)))
    stale = svc.ingest(svc.drop("acme/old.xml", inventory({"P3": 1}, day=16)))

    assert (outcome.events, stale.events, stale.stale) == (3, 0, 1)  # format 1 rows decide as before
    written = {name for (_partner, _bucket, name), data in store.objects.items() if data.startswith(FORMAT_2)}
    assert written and len(written) <= 3 and written == set(store.writes)
    assert any(data.startswith(FORMAT_1) for data in store.objects.values())  # untouched ones stay as they are
    whole = store.whole("acme", "drops")
    assert len(whole) == 150_001
    for key in (b"P1", b"P2", b"NEW"):
        assert offsets(whole, key) == [last_offset(svc.sink, key)]
    assert offsets(whole, b"P4") == []  # a format 1 row claims no position


def test_each_key_keeps_the_offsets_of_its_newest_events_newest_first() -> None:
    svc = make_service()
    for day in (16, 17, 18, 19):
        products: dict[str, int | str | None] = {"P1": day} if day > 16 else {"P1": day, "P2": 1}
        assert svc.ingest(svc.drop(f"acme/{day}.xml", inventory(products, day=day))).status == "published"

    whole = svc.key_index.whole("acme", "drops")
    published = [i for i, message in enumerate(svc.sink.messages) if message.key == b"P1"]
    assert len(published) == 4 and POSITIONS == 3
    assert offsets(whole, b"P1") == published[::-1][:POSITIONS]  # the oldest one dropped
    assert offsets(whole, b"P2") == [last_offset(svc.sink, b"P2")]


def test_an_event_held_back_as_unchanged_keeps_the_position_of_the_one_on_the_topic() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/mon.xml", inventory({"P1": 5}, day=16)))
    svc.ingest(svc.drop("acme/tue.xml", inventory({"P1": 6}, day=17)))
    held = svc.ingest(svc.drop("acme/wed.xml", inventory({"P1": 6}, day=18)), changed_only=True)

    assert (held.events, held.unchanged) == (0, 1)
    row = entry(svc.key_index.whole("acme", "drops"), b"P1")
    assert int(row["as_of"]) == DAY_16_MS + 2 * 86_400_000  # the asOf moves forward...
    assert offsets(svc.key_index.whole("acme", "drops"), b"P1") == [1, 0]  # ...the position does not


def test_a_deletion_is_positioned_like_any_event() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/mon.xml", inventory({"P1": 5}, day=16)))
    svc.ingest(svc.drop("acme/tue.xml", inventory({"P1": None}, day=17)))
    row = entry(svc.key_index.whole("acme", "drops"), b"P1")
    assert (
        int(row["state"]) == 0
        and svc.sink.messages[offsets(svc.key_index.whole("acme", "drops"), b"P1")[0]].value is None
    )


class AskingSink(RecordingSink):
    """Remembers whether each publish asked for positions."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[bool] = []

    def publish(
        self, messages: Iterable[OutMessage], *, deadline: float | None = None, positions: PositionSink | None = None
    ) -> PublishReport:
        self.asked.append(positions is not None)
        return super().publish(messages, deadline=deadline, positions=positions)


def test_only_a_run_that_keeps_a_key_index_asks_the_sink_for_positions() -> None:
    svc = make_service()
    asking = AskingSink()
    svc.ingestor.sink = asking
    svc.ingest(svc.drop("acme/mon.xml", inventory({"P1": 5}, day=16)))
    svc.ingestor.guard = NullGuard()  # a local run: no state, so no delivery report per event
    svc.ingest(svc.drop("acme/tue.xml", inventory({"P1": 6}, day=17)))
    assert asking.asked == [True, False]


def test_a_key_that_moved_partition_starts_its_history_again_and_an_unreported_event_has_no_position() -> None:
    before = KeyIndex.new_entries([(key_hash(b"K"), DAY_16_MS, 7, (0,) * 6)])
    before["partition"], before["ends"] = 1, [6, 4, 0]  # offsets 5 and 3 in partition 1
    update = update_rows(before[list(row_dtype().names)], np.array([True]))
    reported = np.array([(key_hash(b"K"), 2, 11)], dtype=no_positions().dtype)

    moved = placed(update, reported, before)
    assert (int(moved["partition"][0]), moved["ends"][0].tolist()) == (2, [11, 0, 0])
    unreported = placed(update, no_positions(), before)
    assert (int(unreported["partition"][0]), unreported["ends"][0].tolist()) == (1, [0, 6, 4])
    new = placed(update, no_positions(), before[:0])
    assert (int(new["partition"][0]), new["ends"][0].tolist()) == (0, [0, 0, 0])
