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

import itertools
import os
import tempfile
from array import array
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


def candidates(spool: EventSpool, layout: Layout) -> tuple[bytearray, list[int]]:
    """(a bitmap of the candidate entries, how many candidates each bucket holds).

    In plain Python (``array`` and ``sorted``, a bucket at a time), not numpy: this runs for every
    file, and most files have no repeated id at all; numpy's import alone would cost a local run
    about 14 MiB of its peak memory, while this costs a few tenths of a second per million
    products. Only a file with candidates goes on to the numpy steps (:mod:`dropgate.ingest.duplicates`).
    """
    source = spool.key_hashes()
    top, spread = 64 - layout.spread, layout.spread
    sizes = [0] * layout.buckets
    for part in _packed(source, layout):
        if spread:
            for value in part:
                sizes[value >> top] += 1
        else:
            sizes[0] += len(part)
    marks = bytearray((layout.entries + 7) // 8)
    found = [0] * layout.buckets
    with tempfile.TemporaryFile(dir=spool.directory) as scratch:
        starts = _write_buckets(scratch, source, layout, sizes)
        shift, low = layout.bits, (1 << layout.bits) - 1
        for bucket, size in enumerate(sizes):
            if size < 2:
                continue
            values = array("Q")
            values.frombytes(os.pread(scratch.fileno(), size * 8, starts[bucket] * 8))
            ordered = sorted(values)
            for before, after in itertools.pairwise(ordered):
                if (before ^ after) >> shift == 0:
                    for position in (before & low, after & low):
                        if not marks[position >> 3] & (1 << (position & 7)):
                            marks[position >> 3] |= 1 << (position & 7)
                            found[bucket] += 1
    return marks, found


def _write_buckets(scratch: BinaryIO, source: BinaryIO, layout: Layout, sizes: list[int]) -> list[int]:
    """Every packed hash into its bucket's stretch of ``scratch``; returns where each bucket starts."""
    starts, total = [], 0
    for size in sizes:
        starts.append(total)
        total += size
    filled = list(starts)
    top, spread = 64 - layout.spread, layout.spread
    for part in _packed(source, layout):
        pieces: dict[int, array[int]] = {}
        if spread:
            for value in part:
                bucket = value >> top
                piece = pieces.get(bucket)
                if piece is None:
                    pieces[bucket] = piece = array("Q")
                piece.append(value)
        else:
            pieces[0] = part
        for bucket, piece in pieces.items():
            os.pwrite(scratch.fileno(), piece.tobytes(), filled[bucket] * 8)
            filled[bucket] += len(piece)
    if filled != [*starts[1:], total]:
        raise RuntimeError("a key bucket got more or fewer rows than counted")
    return starts


def marked(marks: bytearray) -> Iterator[int]:
    """The positions a bitmap marks, ascending."""
    import numpy as np

    step = CHUNK // 8
    for start in range(0, len(marks), step):
        bits = np.unpackbits(
            np.frombuffer(marks, dtype=np.uint8, count=min(step, len(marks) - start), offset=start), bitorder="little"
        )
        yield from (np.flatnonzero(bits) + start * 8).tolist()


def _packed(source: BinaryIO, layout: Layout) -> Iterator[array[int]]:
    """The key hashes :data:`CHUNK` at a time (unsigned), their low bits replaced by their position."""
    keep = U64 ^ ((1 << layout.bits) - 1)
    source.seek(0)
    for start in range(0, layout.entries, CHUNK):
        raw = array("q")
        raw.frombytes(source.read(min(CHUNK, layout.entries - start) * 8))
        yield array("Q", [(value & keep) | position for position, value in enumerate(raw, start)])
