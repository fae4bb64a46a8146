"""Rows partitioned by cell on disk come back, for any cell range, exactly as a sort of everything
written would give them: every row of those cells and no other, by cell, in the order written
within a cell, however the rows were chunked and however many cells a block holds."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dropgate import cell_partition
from dropgate.cell_partition import BLOCK_ROWS, CellPartition, block_width
from dropgate.index_shards import CELL_BITS, CELLS, cells_of

DTYPE = np.dtype([("key", "<u8"), ("seq", "<u4")])


def rows_in(cells: list[int]) -> np.ndarray:
    rows = np.zeros(len(cells), dtype=DTYPE)
    low = np.arange(len(cells), dtype=np.uint64)  # distinct low bits: equal keys are not the point here
    rows["key"] = (np.array(cells, dtype=np.uint64) << np.uint64(64 - CELL_BITS)) | low
    rows["seq"] = np.arange(len(cells))
    return rows


def expected(rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
    cells = cells_of(rows["key"])
    inside = rows[(cells >= lo) & (cells < hi)]
    return inside[np.argsort(cells_of(inside["key"]), kind="stable")]


def partition_of(rows: np.ndarray, chunk: int) -> CellPartition:
    part = CellPartition(np.bincount(cells_of(rows["key"]), minlength=CELLS), DTYPE, None)
    for start in range(0, len(rows), chunk):
        part.write(rows[start : start + chunk])
    part.check_full()
    return part


@settings(max_examples=200, deadline=None)
@given(
    cells=st.lists(st.integers(0, CELLS - 1) | st.sampled_from([0, 1, 127, 128, CELLS - 1]), max_size=300),
    chunk=st.integers(1, 64),
    ranges=st.lists(st.tuples(st.integers(0, CELLS), st.integers(0, CELLS)), min_size=1, max_size=8),
    block_rows=st.sampled_from([1, 2, 3, 16, BLOCK_ROWS]),
)
def test_any_cell_range_reads_back_as_sorting_everything_would(
    cells: list[int], chunk: int, ranges: list[tuple[int, int]], block_rows: int
) -> None:
    """Small blocks too (a few rows each), so that a few hundred rows span many blocks."""
    rows = rows_in(cells)
    with mock.patch.object(cell_partition, "BLOCK_ROWS", block_rows):
        part = partition_of(rows, chunk)
    try:
        for lo, hi in ranges:
            got = part.between(lo, hi)
            assert got.tolist() == expected(rows, lo, hi).tolist(), (lo, hi)
    finally:
        part.close()


def test_a_large_partition_holds_many_cells_a_block_and_still_reads_single_cells() -> None:
    rng = np.random.default_rng(7)
    rows = rows_in(rng.integers(0, CELLS, 200_000).tolist())
    part = partition_of(rows, 16_384)
    try:
        assert part.width > 1  # several cells a block: a read drops the cells outside the range
        for lo, hi in [(0, 1), (5, 6), (part.width - 1, part.width + 1), (100, 3000), (0, CELLS)]:
            assert part.between(lo, hi).tolist() == expected(rows, lo, hi).tolist()
        assert int(part.starts[-1]) == len(rows)
    finally:
        part.close()


def test_blocks_hold_about_block_rows_whatever_the_count() -> None:
    assert block_width(0) == CELLS  # nothing or little: one block
    assert block_width(BLOCK_ROWS) == CELLS
    assert block_width(1_000_000) == 128  # about 31,000 rows a block
    assert block_width(BLOCK_ROWS * CELLS) == 1  # a block per cell from here on
    assert block_width(10 * BLOCK_ROWS * CELLS) == 1
