"""A file's rows (index rows, delivery reports) partitioned on disk by the cell of their key hash,
so a shard's worth can be read back at a time (:mod:`dropgate.index_shards` names the cells).

Stored by *block*, a run of cells sized to hold about :data:`BLOCK_ROWS` rows, not cell by cell:
writing a chunk costs a syscall per block it touches, where one per cell cost 4,096 for each chunk
of rows (a quarter of a million ``pwrite`` calls for a million delivery reports, most of a second
of the write-back). Reading cells back reads the blocks that hold them and drops the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dropgate.index_shards import CELLS, cells_of
from dropgate.ingest.key_buckets import Partition

if TYPE_CHECKING:
    import numpy as np

#: About this many rows a block (a few hundred kilobytes of rows): what one read holds at least.
BLOCK_ROWS = 1 << 14


class CellPartition:
    """Rows of one numpy type with a ``key`` hash field, by cell, in one scratch file.

    ``sizes`` is how many rows each cell will get (known before the first write); ``starts``
    keeps that count as cumulative positions, cell by cell, for callers that plan their reads.
    """

    def __init__(self, sizes: np.ndarray, dtype: Any, directory: str | None) -> None:
        import numpy as np

        self.starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.width = block_width(int(self.starts[-1]))
        self._blocks = Partition(sizes.reshape(-1, self.width).sum(axis=1), dtype, directory)

    def write(self, rows: np.ndarray) -> None:
        self._blocks.write(cells_of(rows["key"]) // self.width, rows)

    def check_full(self) -> None:
        self._blocks.check_full()

    def between(self, lo: int, hi: int) -> np.ndarray:
        """The rows of cells ``lo``..``hi`` (exclusive), by cell, in the order written within a cell."""
        import numpy as np

        if hi <= lo:
            return self._blocks.between(0, 0)
        width = self.width
        rows = self._blocks.between(lo // width, (hi - 1) // width + 1)
        cells = cells_of(rows["key"])
        if lo % width or hi % width:  # the first or last block holds cells outside the range
            inside = (cells >= lo) & (cells < hi)
            rows, cells = rows[inside], cells[inside]
        return rows[np.argsort(cells, kind="stable")]

    def close(self) -> None:
        self._blocks.close()


def block_width(rows: int) -> int:
    """Cells a block: a power of two, so that blocks hold about :data:`BLOCK_ROWS` rows each."""
    width = 1
    while width < CELLS and rows * width < BLOCK_ROWS * CELLS:
        width *= 2
    return width
