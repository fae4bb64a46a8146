"""Snapshot-delete rules and the key-set file, without AWS or Kafka."""

from __future__ import annotations

import io
import os

import pytest

from dropgate.snapshots import SnapshotHeader, SnapshotKeys, StoredKeys, plan, write_keyset
from dropgate.spool import SpoolEntry


def entry(key: bytes, *, deleted: bool = False) -> SpoolEntry:
    from dropgate.key_index import TRACKED_FIELDS

    return SpoolEntry(key, None if deleted else b"{}", 1, 0, 1, (0,) * len(TRACKED_FIELDS))


def test_missing_and_merged_sets_come_sorted_from_disk() -> None:
    entries = [entry(b"D"), entry(b"B"), entry(b"E"), entry(b"C", deleted=True), entry(b"B")]
    with SnapshotKeys() as keys:
        path = keys._path
        keys.add_current(entries).add_previous([b"A", b"B", b"C", b"D", b"F"])
        assert keys.live == 3
        assert list(keys.all_sorted()) == [b"B", b"C", b"D", b"E"]
        assert list(keys.live_sorted()) == [b"B", b"D", b"E"]
        # a full snapshot deletes what it does not mention (C is deleted by the file itself)
        assert (list(keys.missing_sorted()), keys.missing_count()) == ([b"A", b"F"], 2)
        # any other file adds what it made live and removes what it deleted
        assert (list(keys.merged_sorted()), keys.merged_count()) == ([b"A", b"B", b"D", b"E", b"F"], 5)
    assert not os.path.exists(path)


def test_with_nothing_stored_nothing_is_missing() -> None:
    with SnapshotKeys() as keys:
        keys.add_current([entry(b"A"), entry(b"B", deleted=True)])
        assert list(keys.missing_sorted()) == [] and list(keys.merged_sorted()) == [b"A"]


def test_key_set_round_trips_with_its_header() -> None:
    header = SnapshotHeader(
        partner="acme",
        as_of_ms=1_700_000_000_000,
        source="s3://drop/acme/a.xml",
        count=3,
        key_template="{partnerId}:{productId}",
    )
    buffer = io.BytesIO()
    write_keyset(buffer, header, [b"A", b"B\nwith newline", "é".encode()])
    buffer.seek(0)
    stored = StoredKeys(buffer)
    assert stored.header == header
    assert list(stored.keys()) == [b"A", b"B\nwith newline", "é".encode()]


def test_key_set_count_must_match_its_header() -> None:
    header = SnapshotHeader(partner="acme", as_of_ms=0, source="x", count=5)
    with pytest.raises(ValueError, match="says 5 keys but 1 were written"):
        write_keyset(io.BytesIO(), header, [b"A"])


def test_a_foreign_object_is_not_read_as_a_key_set() -> None:
    import gzip

    with pytest.raises(ValueError, match="not a dropgate key set"):
        StoredKeys(io.BytesIO(gzip.compress(b"something else entirely")))


PREVIOUS = SnapshotHeader(partner="acme", as_of_ms=2_000, source="s3://drop/acme/1.xml", count=10)


@pytest.mark.parametrize(
    ("kwargs", "delete", "says"),
    [
        ({"mode": "full", "problems": 0, "live": 5, "as_of_ms": 3_000, "previous": PREVIOUS}, True, "full snapshot"),
        ({"mode": "full", "problems": 0, "live": 5, "as_of_ms": 2_000, "previous": PREVIOUS}, True, "full snapshot"),
        ({"mode": "full", "problems": 0, "live": 5, "as_of_ms": 1_000, "previous": None}, True, "full snapshot"),
        ({"mode": "delta", "problems": 0, "live": 5, "as_of_ms": 3_000, "previous": PREVIOUS}, False, "delta file"),
        ({"mode": "full", "problems": 1, "live": 5, "as_of_ms": 3_000, "previous": PREVIOUS}, False, "partial file"),
        ({"mode": "full", "problems": 0, "live": 0, "as_of_ms": 3_000, "previous": PREVIOUS}, False, "no products"),
        ({"mode": "full", "problems": 0, "live": 5, "as_of_ms": 1_999, "previous": PREVIOUS}, False, "older than"),
    ],
)
def test_plan_deletes_only_from_a_clean_newest_full_snapshot(kwargs: dict, delete: bool, says: str) -> None:  # type: ignore[type-arg]
    decision = plan(**kwargs)
    assert decision.delete is delete
    assert says in decision.reason
