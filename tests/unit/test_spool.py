"""The event spool gives back exactly what was appended, in order, with the file's sha256 filled in."""

from __future__ import annotations

from array import array

from dropgate.events import NO_FIELD_HASHES, SplitValue
from dropgate.spool import EventSpool, encode, key_hash

SHA = "ab" * 32


def test_entries_come_back_in_order_whatever_their_size() -> None:
    # Sizes around the batch and read chunk boundaries, one value larger than a read chunk.
    sizes = [0, 1, 10, 5_000, 300_000, 1_500_000, 7, 2_000_000, 3]
    expected = []
    with EventSpool() as spool:
        for n in range(3_000):
            key = f"P{n:07d}".encode()
            if n % 11 == 0:
                spool.append(key, None, n + 1, tombstone_as_of_ms=99)
                expected.append((key, None, n + 1, 99, 0, NO_FIELD_HASHES))
                continue
            size = sizes[n % len(sizes)] if n < 100 else 200
            head, tail = b"{" + b"h" * size, b"t" * (n % 5) + b"}"
            fields = tuple(range(n % 7, n % 7 + len(NO_FIELD_HASHES)))
            spool.append(key, SplitValue(head, tail, as_of_ms=n, state=n * 3 + 1, fields=fields), n + 1)
            expected.append((key, head + SHA.encode() + tail, n + 1, n, n * 3 + 1, fields))
        for _ in range(2):  # replay can be read more than once (dry run, then publish)
            got = [(e.key, e.value, e.record, e.as_of_ms, e.state, e.fields) for e in spool.replay(SHA)]
            assert got == expected
        assert spool.count == 3_000 and spool.tombstones == len([e for e in expected if e[1] is None])


def test_an_empty_spool_replays_nothing() -> None:
    with EventSpool() as spool:
        assert list(spool.replay(SHA)) == []


def test_the_spool_reads_entries_again_by_position_across_batches_and_blobs() -> None:
    with EventSpool() as spool:
        for n in range(3_000):
            spool.append(b"K%d" % n, None if n % 7 == 0 else SplitValue(b"{h%d" % n, b"t}"), n + 1, line=n + 2)
        blob = b"".join(b"".join(encode(b"E%d" % n, SplitValue(b"{e", b"}"), 3_001 + n, line=9)) for n in range(500))
        spool.append_encoded(blob, 500, 0, b"\0" * 8 * 500)
        wanted = [0, 1, 7, 2_047, 2_999, 3_000, 3_250, 3_499]
        got = [(e.ordinal, e.key, e.head, e.record, e.line) for e in spool.read_at(wanted)]
        assert got == [
            (0, b"K0", None, 1, 2),
            (1, b"K1", b"{h1", 2, 3),
            (7, b"K7", None, 8, 9),
            (2_047, b"K2047", b"{h2047", 2_048, 2_049),
            (2_999, b"K2999", b"{h2999", 3_000, 3_001),
            (3_000, b"E0", b"{e", 3_001, 9),
            (3_250, b"E250", b"{e", 3_251, 9),
            (3_499, b"E499", b"{e", 3_500, 9),
        ]
        assert len(spool.key_hashes().read()) == 3_500 * 8


def test_excluded_records_are_left_out_of_every_replay_and_the_counts() -> None:
    with EventSpool() as spool:
        for n in range(1, 11):
            spool.append(b"K%d" % n, None if n in (4, 9) else SplitValue(b"{", b"}"), n)
        spool.exclude(array("Q", [2, 4, 10]), tombstones=1)
        for _ in range(2):
            assert [e.record for e in spool.replay(SHA)] == [1, 3, 5, 6, 7, 8, 9]
        assert (spool.entries, spool.count, spool.tombstones) == (10, 7, 1)


def test_every_entry_is_spooled_with_its_key_hash_in_order() -> None:
    with EventSpool() as spool:
        spool.append(b"A", None, 1)
        spool.append_encoded(b"".join(encode(b"B", None, 2)), 1, 1, array("q", [key_hash(b"B")]).tobytes())
        spool.append(b"C", SplitValue(b"{", b"}"), 3)
        assert array("q", spool.key_hashes().read()).tolist() == [key_hash(b"A"), key_hash(b"B"), key_hash(b"C")]
