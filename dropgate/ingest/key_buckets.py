"""The mechanics of finding a key spooled twice in bounded memory: candidates, and rows by bucket.

The spool keeps a 64-bit hash of every entry's key on disk (:meth:`EventSpool.key_hashes`). Here
each hash gets the entry's position in its low bits and goes to a bucket by its top bits (so equal
hashes share a bucket), through a scratch file; each bucket (~32,000 entries) is sorted on its own,
and an entry whose hash bits equal a neighbour's is a *candidate*, marked in a bitmap (one bit an
entry). :class:`Partition` is that scratch file: rows of one numpy type written bucket by bucket,
read back one bucket at a time; :mod:`dropgate.ingest.duplicates` partitions the candidates' digests
the same way, so no step holds more than a bucket, whatever the file holds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from dropgate.spool import EventSpool

if TYPE_CHECKING:
    import numpy as np

#: Key hashes packed per numpy step, and about as many as one bucket holds (256 KiB each, so the
#: temporaries stay around a megabyte whatever the file).
CHUNK = 1 << 15
BUCKET = 1 << 15
U64 = (1 << 64) - 1


class Layout:
    """How a file's entries are bucketed: ``bits`` low bits hold an entry's position, the top
    ``spread`` bits of its key hash choose its bucket."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.bits = max(1, (entries - 1).bit_length())
        self.spread = ((entries - 1) // BUCKET).bit_length()
        self.buckets = 1 << self.spread

    def bucket_of(self, key_hash: int) -> int:
        return (key_hash & U64) >> (64 - self.spread) if self.spread else 0


class Partition:
    """Rows of one numpy type in one scratch file, bucket by bucket (each bucket's size known first)."""

    def __init__(self, sizes: np.ndarray, dtype: Any, directory: str | None) -> None:
        import numpy as np

        self.dtype = np.dtype(dtype)
        self.sizes = sizes
        self.starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self._filled = self.starts[:-1].copy()
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()

    def write(self, buckets: np.ndarray, rows: np.ndarray) -> None:
        import numpy as np

        order = np.argsort(buckets, kind="stable")
        rows, buckets = rows[order], buckets[order]
        edges = np.searchsorted(buckets, np.arange(len(self.sizes) + 1))
        for bucket in np.flatnonzero(np.diff(edges)):
            piece = rows[edges[bucket] : edges[bucket + 1]]
            os.pwrite(self._file.fileno(), piece.tobytes(), int(self._filled[bucket]) * self.dtype.itemsize)
            self._filled[bucket] += len(piece)

    def check_full(self) -> None:
        """Every bucket got exactly the rows it was sized for (else a bucket ran into the next)."""
        if not (self._filled == self.starts[1:]).all():
            raise RuntimeError("a key bucket got more or fewer rows than counted")

    def buckets(self) -> Iterator[np.ndarray]:
        """Each non-empty bucket's rows, in bucket order."""
        import numpy as np

        for start, size in zip(self.starts[:-1], self.sizes, strict=True):
            if size:
                self._file.seek(int(start) * self.dtype.itemsize)
                yield np.fromfile(self._file, dtype=self.dtype, count=int(size))

    def between(self, lo: int, hi: int) -> np.ndarray:
        """The rows of buckets ``lo``..``hi`` (exclusive), in bucket order."""
        import numpy as np

        first, last = int(self.starts[lo]), int(self.starts[hi])
        self._file.seek(first * self.dtype.itemsize)
        return np.fromfile(self._file, dtype=self.dtype, count=last - first)

    def close(self) -> None:
        self._file.close()


def candidates(spool: EventSpool, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(a bitmap of the candidate entries, how many candidates each bucket holds)."""
    import numpy as np

    source = spool.key_hashes()
    top = np.uint64(64 - layout.spread) if layout.spread else None
    sizes = np.zeros(layout.buckets, dtype=np.int64)
    for part in _packed(source, layout):
        if top is not None:
            sizes += np.bincount((part >> top).astype(np.int64), minlength=layout.buckets)
        else:
            sizes[0] += len(part)
    marks = np.zeros((layout.entries + 7) // 8, dtype=np.uint8)
    found = np.zeros(layout.buckets, dtype=np.int64)
    partition = Partition(sizes, np.uint64, spool.directory)
    try:
        for part in _packed(source, layout):
            partition.write(part >> top if top is not None else np.zeros(len(part), np.uint64), part)
        shift, low = np.uint64(layout.bits), np.uint64((1 << layout.bits) - 1)
        for bucket, hashes in zip(np.flatnonzero(sizes), partition.buckets(), strict=True):
            hashes.sort()
            same = np.flatnonzero(((hashes[1:] ^ hashes[:-1]) >> shift) == 0)
            positions = (hashes[np.union1d(same, same + 1)] & low).astype(np.int64)
            np.bitwise_or.at(marks, positions >> 3, (1 << (positions & 7)).astype(np.uint8))
            found[bucket] = len(positions)
    finally:
        partition.close()
    return marks, found


def marked(marks: np.ndarray) -> Iterator[int]:
    """The positions a bitmap marks, ascending."""
    import numpy as np

    step = CHUNK // 8
    for start in range(0, len(marks), step):
        bits = np.unpackbits(marks[start : start + step], bitorder="little")
        yield from (np.flatnonzero(bits) + start * 8).tolist()


def _packed(source: BinaryIO, layout: Layout) -> Iterator[np.ndarray]:
    """The key hashes :data:`CHUNK` at a time, their low bits replaced by their position."""
    import numpy as np

    low = np.uint64((1 << layout.bits) - 1)
    source.seek(0)
    for start in range(0, layout.entries, CHUNK):
        part = np.fromfile(source, dtype=np.uint64, count=min(CHUNK, layout.entries - start))
        part &= ~low
        part |= np.arange(start, start + len(part), dtype=np.uint64)
        yield part
