"""Where each key's newest events are on the topic, for the key index (``dropgate key`` reads a
key's value with one fetch at its offset instead of reading the topic).

:class:`Positions` collects the broker's delivery reports (partition, offset) while a file
publishes, partitioned by cell on disk; :func:`placed` puts them into the index rows of the events
that went out at the write-back (:mod:`dropgate.partner_index`), keeping each key's earlier offsets
as its history. Kept apart from the index's reading and writing: this is the only part that runs
once per published event.
"""

from __future__ import annotations

import tempfile
from array import array
from typing import TYPE_CHECKING, Any, BinaryIO

from dropgate.cell_partition import CellPartition
from dropgate.index_shards import CELLS, cells_of
from dropgate.key_index import KeyIndex, blake2b_8, with_positions

if TYPE_CHECKING:
    import numpy as np


#: Delivery reports held in memory before they are spilled to the scratch file: the keys as the
#: broker returned them, ~60 bytes each (about a megabyte), 20 bytes each on disk.
_POSITIONS_CHUNK = 1 << 14


def _position_dtype() -> Any:
    import numpy as np

    return np.dtype([("key", "<u8"), ("partition", "<i4"), ("end", "<u8")])


def no_positions() -> np.ndarray:
    import numpy as np

    return np.zeros(0, dtype=_position_dtype())


class Positions:
    """Where the broker put each event of a session: (key hash, partition, offset + 1), from the
    delivery reports, partitioned by cell on disk so the write-back reads a shard's worth at a time.

    :meth:`delivered` runs once per acknowledged event, inside the producer's callback, on the one
    thread that publishes: three appends. The keys are hashed when a chunk of 16,384 is spilled
    (one comprehension, not a call per report), so memory stays flat whatever the file.
    """

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.count = 0
        self._keys: list[bytes] = []
        self._partitions = array("i")
        self._ends = array("Q")
        self._scratch: BinaryIO | None = None
        self._sizes: np.ndarray | None = None
        self._partition: CellPartition | None = None

    def delivered(self, key: bytes, partition: int, offset: int) -> None:
        keys = self._keys
        keys.append(key)
        self._partitions.append(partition)
        self._ends.append(offset + 1)
        if len(keys) >= _POSITIONS_CHUNK:
            self._spill()

    def _spill(self) -> None:
        import numpy as np

        if not self._partitions:
            return
        rows = np.empty(len(self._partitions), dtype=_position_dtype())
        hashes = b"".join([blake2b_8(key) for key in self._keys])  # key_hash's bytes, little-endian
        rows["key"] = np.frombuffer(hashes, dtype="<u8")
        rows["partition"] = np.frombuffer(self._partitions, dtype=np.int32)
        rows["end"] = np.frombuffer(self._ends, dtype=np.uint64)
        if self._scratch is None:
            self._scratch = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 - closed in close()
            self._sizes = np.zeros(CELLS, dtype=np.int64)
        rows.tofile(self._scratch)
        assert self._sizes is not None
        self._sizes += np.bincount(cells_of(rows["key"]), minlength=CELLS)
        self.count += len(rows)
        self._keys, self._partitions, self._ends = [], array("i"), array("Q")

    def between(self, lo: int, hi: int) -> np.ndarray:
        """The positions of cells ``lo``..``hi``, sorted by key hash (a key reported twice: last kept)."""
        import numpy as np

        if self._partition is None:
            self._spill()
            if self._scratch is None or self._sizes is None:
                return no_positions()
            self._partition = CellPartition(self._sizes, _position_dtype(), self.directory)
            self._scratch.seek(0)
            while len(rows := np.fromfile(self._scratch, dtype=_position_dtype(), count=_POSITIONS_CHUNK)):
                self._partition.write(rows)
            self._partition.check_full()
            self._scratch.close()
            self._scratch = None
        rows = self._partition.between(lo, hi)
        ordered = rows[np.argsort(rows["key"], kind="stable")]
        last = np.ones(len(ordered), dtype=bool)
        last[:-1] = ordered["key"][1:] != ordered["key"][:-1]
        return ordered[last]

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
        if self._partition is not None:
            self._partition.close()


def placed(updates: np.ndarray, positions: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Index entries for ``updates`` (:func:`update_rows`), with where each key's events are.

    A published update's newest offset is its delivery report's (none recorded when the sink
    reported none), its older ones the key's previous offsets, newest first, while they are in the
    same partition; an update held back (unchanged) keeps the key's position as it was, since the
    event on the topic is still the one before."""
    import numpy as np

    out = with_positions(updates)
    if not len(out):
        return out
    published = updates["published"].astype(bool)
    found, at = KeyIndex(before).lookup(updates["key"])
    previous = before[at] if len(before) else out  # out: a placeholder when there is nothing before
    was = np.where(found, previous["partition"], 0)
    reported, where = KeyIndex(positions).lookup(updates["key"])
    if len(positions):
        partition = np.where(reported, positions["partition"][where], was)
        end = np.where(reported, positions["end"][where], 0).astype(np.uint64)
    else:
        partition, end = was, np.zeros(len(out), np.uint64)
    kept = ~published & found
    out["partition"][kept] = previous["partition"][kept]
    out["ends"][kept] = previous["ends"][kept]
    out["partition"][published] = partition[published]
    out["ends"][published, 0] = end[published]
    chained = published & found & (previous["partition"] == partition)
    out["ends"][chained, 1:] = previous["ends"][chained, :-1]
    return out
