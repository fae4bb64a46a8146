"""The event spool gives back exactly what was appended, in order, with the file's sha256 filled in."""

from __future__ import annotations

from dropgate.events import NO_FIELD_HASHES, SplitValue
from dropgate.spool import EventSpool

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
