"""How a partner's key index is cut into shards, so a file reads and writes only the shards its keys touch.

The index (:mod:`dropgate.key_index`) is sorted by a 64-bit key hash. Its top :data:`CELL_BITS`
bits name one of 4,096 *cells*; a shard holds the entries of a contiguous range of cells
(``lo``..``hi``), and the partner's :class:`ShardLayout` lists the shards, which together cover
every cell once. A partner starts with one shard holding every cell; a shard that grows past
:data:`INDEX_MAX_ROWS` entries is cut, at cell boundaries, into shards of about
:data:`INDEX_TARGET_ROWS` (so one shard object stays around a megabyte and a ten-product delta
reads and writes at most ten of them, whatever the catalogue). With 4,096 cells the layout holds
about 130 million keys before a single cell outgrows :data:`INDEX_MAX_ROWS`; past that a shard is
simply larger. (:class:`Cutter` also cuts the snapshot key sets, at :data:`MAX_ROWS`.)

Why not a fixed number of shards: a partner with a thousand products would pay for thousands of
objects on a full file, and a partner with a hundred million would have huge ones. Why cells and
not a split per bit: the rows of a file are partitioned by cell once, on disk
(:class:`dropgate.cell_partition.CellPartition`), and every shard's rows are then one contiguous
run of that partition, however the shards have been cut.

Everything here is pure (arrays in, arrays out); where shards live is an adapter's business
(:mod:`dropgate.adapters.s3_state`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Generic, NamedTuple, Protocol, TypeVar

from dropgate.key_index import KeyIndex

if TYPE_CHECKING:
    import numpy as np


class _Sized(Protocol):
    def __len__(self) -> int: ...


P = TypeVar("P", bound=_Sized)
R = TypeVar("R")

CELL_BITS = 12
CELLS = 1 << CELL_BITS
#: A shard is cut when it holds more entries than this...
MAX_ROWS = 1 << 16
#: ...into shards of about this many.
TARGET_ROWS = 1 << 15
#: The key index's rows are 64 bytes (topic positions included), so its shards are cut at half
#: those counts: about a megabyte each (2.1 MB at most), which bounds what a write-back holds.
INDEX_MAX_ROWS = MAX_ROWS // 2
INDEX_TARGET_ROWS = TARGET_ROWS // 2
_FORMAT = "dropgate-key-index-layout 1"


class Shard(NamedTuple):
    """The cells ``lo`` (inclusive) to ``hi`` (exclusive); its name is stable for that range."""

    lo: int
    hi: int

    @property
    def name(self) -> str:
        return f"{self.lo:03x}-{self.hi:03x}"


class ShardLayout:
    """The partner's shards, in cell order, covering every cell exactly once."""

    def __init__(self, shards: Sequence[Shard]) -> None:
        ordered = sorted(shards)
        if not ordered or ordered[0].lo != 0 or ordered[-1].hi != CELLS:
            raise ValueError("a key index layout must cover every cell")
        for before, after in itertools.pairwise(ordered):
            if before.hi != after.lo or before.lo >= before.hi:
                raise ValueError(f"key index shards {before.name} and {after.name} do not meet")
        self.shards: tuple[Shard, ...] = tuple(ordered)

    @classmethod
    def single(cls) -> ShardLayout:
        return cls([Shard(0, CELLS)])

    def to_bytes(self) -> bytes:
        return json.dumps({"format": _FORMAT, "shards": [[s.lo, s.hi] for s in self.shards]}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShardLayout:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            raise ValueError("not a dropgate key index layout")
        return cls([Shard(int(lo), int(hi)) for lo, hi in raw["shards"]])

    def replaced(self, old: Shard, new: Sequence[Shard]) -> ShardLayout:
        return ShardLayout([s for s in self.shards if s != old] + list(new))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShardLayout) and self.shards == other.shards

    def __hash__(self) -> int:
        return hash(self.shards)


def cells_of(hashes: np.ndarray) -> np.ndarray:
    """The cell of each 64-bit key hash (its top bits), as int64."""
    import numpy as np

    return (hashes >> np.uint64(64 - CELL_BITS)).astype(np.int64)


def cell_edges(entries: np.ndarray) -> np.ndarray:
    """For rows sorted by key hash: where each cell starts (``CELLS + 1`` positions)."""
    import numpy as np

    return np.searchsorted(cells_of(entries["key"]), np.arange(CELLS + 1))


def rewrite(
    shard: Shard, old: KeyIndex, updates: Callable[[int, int, np.ndarray], np.ndarray]
) -> Iterator[tuple[Shard, KeyIndex]]:
    """``shard``'s entries with this file's ``updates`` applied, as the shard (same range) or, once
    it holds more than :data:`INDEX_MAX_ROWS`, as parts of about :data:`INDEX_TARGET_ROWS` cut at cell boundaries
    (a small tail joins the part before it, so no shard is left tiny).

    ``updates(lo, hi, before)`` gives the entries for cells ``lo``..``hi`` in publish order within
    each cell; ``before`` are the entries they replace (where a key's earlier events were).
    It works :data:`_CELLS_PER_STEP` cells at a time and yields each part as soon as it is cut, so
    memory stays around two shards even when a new partner's first million products all land in
    the one shard it starts with.
    """
    cutter: Cutter[np.ndarray, KeyIndex] = Cutter(shard, _joined, INDEX_MAX_ROWS, INDEX_TARGET_ROWS)
    edges = cell_edges(old.entries) if len(old) else None
    for lo in range(shard.lo, shard.hi, _CELLS_PER_STEP):
        hi = min(lo + _CELLS_PER_STEP, shard.hi)
        before = old.entries[edges[lo] : edges[hi]] if edges is not None else old.entries[:0]
        merged = KeyIndex(before).merged(updates(lo, hi, before)).entries
        at = cell_edges(merged) if len(merged) else None
        for cell in range(lo, hi):
            cutter.add(cell, merged[at[cell] : at[cell + 1]] if at is not None else merged[:0])
            yield from cutter.parts()
    yield from cutter.finish()


#: Cells merged per step in :func:`rewrite`.
_CELLS_PER_STEP = 64


class Cutter(Generic[P, R]):
    """Cuts a shard's cells, fed in order with their pieces (index rows, keys), into parts: the
    shard as it is while it holds at most ``max_rows``, else parts of about ``target_rows``
    at cell boundaries, a small tail joined to the part before it. Parts come out as soon as they
    are cut, so at most about two parts are held. ``join`` makes one part from its pieces."""

    def __init__(
        self, shard: Shard, join: Callable[[list[P]], R], max_rows: int = MAX_ROWS, target_rows: int = TARGET_ROWS
    ) -> None:
        self.shard = shard
        self.join = join
        self.max_rows = max_rows
        self.target_rows = target_rows
        self.held: list[P] = []
        self.held_cells: list[int] = []
        self.held_rows = 0
        self.held_lo = shard.lo
        self.splitting = False
        self.previous: tuple[Shard, list[P]] | None = None
        self._ready: list[tuple[Shard, list[P]]] = []

    def add(self, cell: int, piece: P) -> None:
        if len(piece):
            self.held.append(piece)
            self.held_cells.append(cell)
            self.held_rows += len(piece)
        if self.splitting:
            if self.held_rows >= self.target_rows:
                self._cut(cell + 1)
        elif self.held_rows > self.max_rows:
            # From here on the shard is cut: what was held is fed again, cut as it goes.
            self.splitting = True
            held = list(zip(self.held_cells, self.held, strict=True))
            self.held, self.held_cells, self.held_rows = [], [], 0
            for at, again in held:
                self.add(at, again)

    def _cut(self, hi: int) -> None:
        if self.previous is not None:
            self._ready.append(self.previous)
        self.previous = (Shard(self.held_lo, hi), self.held)
        self.held, self.held_cells, self.held_rows, self.held_lo = [], [], 0, hi

    def parts(self) -> Iterator[tuple[Shard, R]]:
        ready, self._ready = self._ready, []
        for shard, pieces in ready:
            yield shard, self.join(pieces)

    def finish(self) -> Iterator[tuple[Shard, R]]:
        yield from self.parts()
        tail = Shard(self.held_lo, self.shard.hi)
        if self.previous is None:
            yield tail, self.join(self.held)
        elif self.held_rows < self.target_rows // 2:
            joined, pieces = self.previous
            yield Shard(joined.lo, tail.hi), self.join(pieces + self.held)
        else:
            yield self.previous[0], self.join(self.previous[1])
            yield tail, self.join(self.held)


def _joined(pieces: list[np.ndarray]) -> KeyIndex:
    import numpy as np

    return KeyIndex(np.concatenate(pieces)) if pieces else KeyIndex.empty()


def migrated(index: KeyIndex) -> Iterator[tuple[Shard, KeyIndex]]:
    """A whole index (the single object of before) as shards of about :data:`INDEX_TARGET_ROWS`."""
    yield from rewrite(Shard(0, CELLS), index, lambda lo, hi, before: index.entries[:0])
