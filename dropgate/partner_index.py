"""One partner's sharded key index, as a guard session reads and writes it.

:class:`PartnerIndex` reads only the shards a file's keys touch and writes back only those
(:mod:`dropgate.index_shards` says how the index is cut). :class:`FileRows` and
:class:`IndexUpdates` are the file's side: its rows partitioned by cell in scratch files, so a
million-product file costs a few megabytes of memory, not an array per product.

Crash safety, step by step (the partner lock is held throughout, and nothing is written before
the broker acknowledged every event):
1. every touched shard is written: in place when it keeps its range, under new names when it is
   cut (the layout still names the old shard, which still holds the state before the file);
2. the layout is written, if a shard was cut or the index was new or migrated;
3. shards the new layout no longer names, and the single object of before, are deleted.
A crash before 2 leaves some shards updated and others not; the retry republishes the file and
the guard lets every one of its events through again (same ``asOf``: not stale). A crash before
3 leaves objects nothing reads. Either way nothing is lost.

Each entry also says where the key's newest events are on the topic (:mod:`dropgate.key_positions`:
the broker's delivery reports, collected while the file publishes); the write-back puts them into
the rows of the events that went out.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from dropgate.cell_partition import CellPartition
from dropgate.index_shards import CELL_BITS, CELLS, Shard, ShardLayout, cells_of, rewrite
from dropgate.key_index import KeyIndex, key_hash, row_dtype
from dropgate.key_positions import Positions, no_positions, placed

if TYPE_CHECKING:
    import numpy as np

    from dropgate.spool import EventSpool, SpoolEntry

#: Events hashed per numpy step in :class:`FileRows`.
_CHUNK = 8192
#: Rows decided per step (44 bytes each, and a few temporaries as large).
_STEP_ROWS = 1 << 16
#: A file touching at most this many shards keeps them from its reading to its write-back (each
#: is about a megabyte): a small delta then costs one GET and one PUT per shard, not two GETs.
_KEEP = 16


class KeyIndexStore(Protocol):
    """Where partners' key index shards live (S3 in production: :mod:`dropgate.adapters.s3_state`)."""

    def layout(self, partner: str, bucket: str | None) -> ShardLayout | None:
        """The partner's layout; ``None`` before its first sharded write."""

    def legacy(self, partner: str, bucket: str | None) -> KeyIndex | None:
        """The partner's index as one object (how it was kept before shards), if it is still there."""

    def read(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> Iterator[KeyIndex]:
        """These shards, in this order (a shard never written is empty)."""

    def write(self, partner: str, bucket: str | None, shards: Iterable[tuple[Shard, KeyIndex]]) -> None: ...

    def write_layout(self, partner: str, bucket: str | None, layout: ShardLayout) -> None: ...

    def delete(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> None: ...

    def drop_legacy(self, partner: str, bucket: str | None) -> None: ...


def _row_dtype() -> Any:
    """An event's row and its ordinal: laid out as :data:`dropgate.spool.INDEX_ROW` (the record)."""
    import numpy as np

    return np.dtype([*row_dtype().descr, ("ordinal", "<u4")])


def _update_dtype() -> Any:
    """An update: the event's row, and whether it was published (else it keeps the key's position)."""
    import numpy as np

    return np.dtype([*row_dtype().descr, ("published", "u1")])


def update_rows(rows: np.ndarray, published: np.ndarray) -> np.ndarray:
    """:class:`FileRows` rows as updates: without their ordinal, with whether each goes out."""
    import numpy as np

    out = np.empty(len(rows), dtype=_update_dtype())
    for name in row_dtype().names:
        out[name] = rows[name]
    out["published"] = published
    return out


class FileRows:
    """A file's events as index rows (key hash, asOf, state, field hashes) and their position in
    the file, partitioned by cell on disk."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.count = 0
        self._partition: CellPartition | None = None

    def add(self, entries: Iterable[SpoolEntry]) -> None:
        import numpy as np

        dtype = _row_dtype()
        sizes = np.zeros(CELLS, dtype=np.int64)
        with tempfile.TemporaryFile(dir=self.directory) as scratch:
            chunk: list[tuple[int, int, int, tuple[int, ...], int]] = []
            for entry in entries:
                chunk.append((key_hash(entry.key), entry.as_of_ms, entry.state, entry.fields, self.count))
                self.count += 1
                if len(chunk) == _CHUNK:
                    sizes += self._spill(np.array(chunk, dtype=dtype), scratch)
                    chunk = []
            if chunk:
                sizes += self._spill(np.array(chunk, dtype=dtype), scratch)
            self._partition_by_cell(sizes, dtype, _read_rows(scratch, dtype, np.zeros(0, np.uint32)))

    def add_spool(self, spool: EventSpool) -> bool:
        """The rows the spool kept (each row's ordinal is its record), but the excluded records';
        ``False`` if it kept none. Nothing is hashed here: the rows were built with the entries."""
        import numpy as np

        source = spool.rows()
        if source is None:
            return False
        excluded = np.array(spool.excluded, dtype=np.uint32)
        dtype = _row_dtype()
        sizes = np.zeros(CELLS, dtype=np.int64)
        last = -1
        for rows in _read_rows(source, dtype, excluded):
            ordinals = rows["ordinal"].astype(np.int64)
            if ordinals[0] <= last or (len(ordinals) > 1 and not (np.diff(ordinals) > 0).all()):
                return False  # records not one entry each, in order: the rows cannot stand for entries
            last = int(ordinals[-1])
            sizes += np.bincount(cells_of(rows["key"]), minlength=CELLS)
        self.count = last + 1
        self._partition_by_cell(sizes, dtype, _read_rows(source, dtype, excluded))
        return True

    def _partition_by_cell(self, sizes: np.ndarray, dtype: Any, chunks: Iterator[np.ndarray]) -> None:
        self._partition = partition = CellPartition(sizes, dtype, self.directory)
        for rows in chunks:
            partition.write(rows)
        partition.check_full()

    @staticmethod
    def _spill(rows: np.ndarray, scratch: BinaryIO) -> np.ndarray:
        import numpy as np

        rows.tofile(scratch)
        return np.bincount(cells_of(rows["key"]), minlength=CELLS)

    def touch(self, shard: Shard) -> bool:
        assert self._partition is not None, "add() first"
        return bool(self._partition.starts[shard.hi] > self._partition.starts[shard.lo])

    def steps(self, shard: Shard) -> Iterator[tuple[int, int]]:
        """``shard``'s cells in runs of about :data:`_STEP_ROWS` of this file's rows (a run holds
        at least one cell), so a file with a million rows in one shard is decided in pieces."""
        import numpy as np

        assert self._partition is not None, "add() first"
        starts = self._partition.starts
        lo = shard.lo
        while lo < shard.hi:
            hi = int(np.searchsorted(starts, starts[lo] + _STEP_ROWS, side="right")) - 1
            hi = min(max(hi, lo + 1), shard.hi)
            yield lo, hi
            lo = hi

    def in_cells(self, lo: int, hi: int) -> np.ndarray:
        """The rows of cells ``lo``..``hi``, by cell, in file order within a cell."""
        assert self._partition is not None, "add() first"
        return self._partition.between(lo, hi)

    def close(self) -> None:
        if self._partition is not None:
            self._partition.close()


def _read_rows(source: BinaryIO, dtype: Any, excluded: np.ndarray) -> Iterator[np.ndarray]:
    import numpy as np

    source.seek(0)
    while len(rows := np.fromfile(source, dtype=dtype, count=1 << 16)):
        if len(excluded):
            rows = rows[~np.isin(rows["ordinal"], excluded)]
        if len(rows):
            yield rows


class IndexUpdates:
    """The index entries a session will write, by cell, in publish order within a cell.

    A *run* is one :meth:`GuardSession.select` (the file's events, then a snapshot's tombstones):
    within it, rows arrive in cell order (shard by shard), so a run is one stretch of a scratch
    file and its count per cell; :meth:`between` reads a cell range back from every run.
    """

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._file: BinaryIO | None = None
        self._rows = 0
        #: Per run: where it starts (in rows), and how many rows each cell has in it.
        self._runs: list[tuple[int, np.ndarray]] = []
        self._edges: list[np.ndarray] | None = None

    def begin(self) -> None:
        import numpy as np

        self._runs.append((self._rows, np.zeros(CELLS, dtype=np.int64)))
        self._edges = None

    def add(self, rows: np.ndarray) -> None:
        """Rows sorted by cell, each cell after every cell already added to this run."""
        import numpy as np

        if not len(rows):
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 - closed in close()
        os.pwrite(self._file.fileno(), rows.tobytes(), self._rows * rows.dtype.itemsize)
        self._runs[-1][1][:] += np.bincount(cells_of(rows["key"]), minlength=CELLS)
        self._rows += len(rows)
        self._edges = None

    def _run_edges(self) -> list[np.ndarray]:
        import numpy as np

        if self._edges is None:
            self._edges = [np.concatenate(([0], np.cumsum(counts))) for _start, counts in self._runs]
        return self._edges

    def touches(self, shard: Shard) -> bool:
        return any(edges[shard.hi] > edges[shard.lo] for edges in self._run_edges())

    def between(self, lo: int, hi: int) -> np.ndarray:
        import numpy as np

        dtype = _update_dtype()
        pieces = []
        for (start, _counts), edges in zip(self._runs, self._run_edges(), strict=True):
            first, last = int(edges[lo]), int(edges[hi])
            if last > first and self._file is not None:
                data = os.pread(self._file.fileno(), (last - first) * dtype.itemsize, (start + first) * dtype.itemsize)
                pieces.append(np.frombuffer(data, dtype=dtype))
        if not pieces:
            return np.zeros(0, dtype=dtype)
        if len(pieces) == 1:
            return pieces[0]
        rows = np.concatenate(pieces)
        # Cell by cell, runs in the order they were added (a stable sort keeps publish order).
        return rows[np.argsort(cells_of(rows["key"]), kind="stable")]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class PartnerIndex:
    """A partner's key index through a store: its layout, the shards a file touches, the write-back.

    ``legacy`` is the index of before shards, read whole; it stands for the one shard of a single
    layout until the first write-back cuts it into shards and removes it.
    """

    def __init__(self, store: KeyIndexStore, partner: str, bucket: str | None) -> None:
        self.store = store
        self.partner = partner
        self.bucket = bucket
        stored = store.layout(partner, bucket)
        self.new_layout = stored is None
        self.layout = stored or ShardLayout.single()
        self.legacy = store.legacy(partner, bucket) if stored is None else None
        self._kept: dict[Shard, KeyIndex] = {}

    def read(self, shards: Sequence[Shard]) -> Iterator[KeyIndex]:
        """These shards, in order. A file that touches few shards keeps them until the write-back,
        so a small delta reads each once; a large one reads them again rather than holding them."""
        if self.legacy is not None:
            return iter([self.legacy] * len(shards))  # a single layout: the only shard there is
        if all(shard in self._kept for shard in shards):
            return iter([self._kept[shard] for shard in shards])
        read = self.store.read(self.partner, self.bucket, shards)
        if len(shards) > _KEEP:
            return read
        return self._keep(shards, read)

    def _keep(self, shards: Sequence[Shard], read: Iterator[KeyIndex]) -> Iterator[KeyIndex]:
        for shard, index in zip(shards, read, strict=True):
            self._kept[shard] = index
            yield index

    def entry(self, key: bytes) -> Any | None:
        """The key's entry (a row of :func:`dropgate.key_index.index_dtype`), reading the one shard
        that holds it; ``None`` if the partner never published the key."""
        import numpy as np

        hashed = np.array([key_hash(key)], dtype=np.uint64)
        cell = int(hashed[0]) >> (64 - CELL_BITS)
        shard = next(s for s in self.layout.shards if s.lo <= cell < s.hi)
        [index] = list(self.read([shard]))
        found, at = index.lookup(hashed)
        return index.entries[int(at[0])] if bool(found[0]) else None

    def write_back(self, updates: IndexUpdates, positions: Positions | None = None) -> None:
        store = self.store
        touched = [shard for shard in self.layout.shards if updates.touches(shard)]
        if not touched:
            return
        layout, replaced = self.layout, []

        def entries(lo: int, hi: int, before: np.ndarray) -> np.ndarray:
            reported = positions.between(lo, hi) if positions is not None else no_positions()
            return placed(updates.between(lo, hi), reported, before)

        def parts() -> Iterator[tuple[Shard, KeyIndex]]:
            nonlocal layout
            for shard, old in zip(touched, self.read(touched), strict=True):
                cut = []
                for part in rewrite(shard, old, entries):
                    cut.append(part[0])
                    yield part
                if cut != [shard]:
                    layout = layout.replaced(shard, cut)
                    replaced.append(shard)

        store.write(self.partner, self.bucket, parts())
        if layout != self.layout or self.new_layout:
            store.write_layout(self.partner, self.bucket, layout)
            self.layout = layout
        if replaced and self.legacy is None and not self.new_layout:  # else it was never a stored shard
            store.delete(self.partner, self.bucket, replaced)
        if self.legacy is not None:
            store.drop_legacy(self.partner, self.bucket)
            self.legacy = None
        self.new_layout = False
        self._kept.clear()
