"""One state per key per file: a key the file gives twice is a problem, or a note if the states agree.

A compacted topic keeps one state per key, so a file that gives one key two different states (real
feeds reuse an id for two products; Google refuses a repeated ``g:id``) would publish whichever came
last, silently. The check runs on the spooled *keys* (after the partner's key template), after the
whole file is read, the same for every format and for the streaming and the parallel path. (A Google
local inventory feed repeats an id once per store: its parser gives one record per product, so it
has nothing to find here.)

- **Different states** (a delete and an update count as two): one ``validation`` problem per
  duplicated key, on its first record whose state differs from the key's first, naming both
  records. ``strict``: the file is quarantined. ``skip_invalid``: *none* of the key's records is
  published (publishing either would publish a state the file contradicts), the rest is.
- **Identical states**: accepted; published once, from the key's first record, and the outcome
  carries a note. Identical means the same key and the same serialized value up to
  ``source.sha256`` (every product field, ``asOf`` and the file's lineage); the rest of the value is
  the file's sha256, the record number (which differs by construction) and the parser, the same
  for the whole file. Two tombstones of one key are identical. (Not the guard's state hash: it
  leaves out ``asOf``, and a run without a key index does not compute it.)

How, in little memory and time: the spool keeps a 64-bit hash of every entry's key (~50 ns an
entry; on disk, 8 bytes an entry). After the parse each hash gets the entry's position in its low
bits, and the hashes are sorted bucket by bucket (by their top bits, through a scratch file, ~32,000
to a bucket), so memory stays around a megabyte whatever the file holds. Only entries whose hash
bits equal a neighbour's are read again from the spool (in file order, batch by batch) and told
apart by 64-bit BLAKE2b digests of their key and state. Nothing per key is held for a file without
duplicates; per candidate entry 32 bytes (about 100 while they are sorted): a file made of repeats
costs memory in proportion to its repeats. Told apart wrongly: two different keys
only if they also agree in the first hash's high bits (64 minus log2 of the entries: 39 at 20
million), odds below 1e-20 per file; two different states of one key pass as identical with odds
~5e-20 per pair. Measured on 1,000,000 products: see README "Performance and memory".
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from dropgate.events import render_key
from dropgate.ingest.problems import ProblemCollector
from dropgate.spool import EventSpool
from dropgate.terminal import shown
from parsers.base import Problem

if TYPE_CHECKING:
    import numpy as np

#: Key hashes packed per numpy step, and about as many as one bucket sorts at a time (256 KiB each,
#: so the temporaries stay around a megabyte whatever the file).
_CHUNK = 1 << 15
_BUCKET = 1 << 15


@dataclass(frozen=True, slots=True)
class Duplicates:
    """What the check found: keys given different states, keys repeated with identical states,
    records left out of the replay, and the outcome's note (if any)."""

    conflicting: int = 0
    identical: int = 0
    excluded: int = 0
    note: str | None = None


def check(spool: EventSpool, problems: ProblemCollector, *, key_template: str, partner_id: str) -> Duplicates:
    """Find the keys ``spool`` holds more than once; report them to ``problems`` (one problem per
    conflicting key while the collector keeps problems, the rest counted), and leave out of the
    replay every record of a conflicting key and all but the first of an identical one."""
    if spool.entries < 2:
        return Duplicates()
    positions, groups = _candidates(spool)
    if not len(positions):
        return Duplicates()
    runs = _read_runs(spool, positions, groups)
    excluded = runs.excluded()
    records = array("Q", excluded["record"].astype("<u8").tobytes())
    spool.exclude(records, tombstones=int((excluded["state"] == 0).sum()))
    conflicts, identical = runs.conflicting_runs(), runs.identical_runs()
    reported = conflicts[: problems.room]
    pairs = [runs.pair(int(run)) for run in reported]
    sample = runs.pair(int(identical[0])) if len(identical) else None
    names = _Names(key_template, partner_id)
    names.read(spool, [first.position for first, _ in pairs] + ([sample[0].position] if sample else []))
    for (first, later), run in zip(pairs, reported, strict=True):
        problems.add(_problem(names, first, later, int(runs.lengths[run])))
    problems.tally(len(conflicts) - len(reported))
    note = None
    if sample is not None:
        note = (
            f"{len(identical)} product id(s) appear more than once with identical states (e.g. "
            f"{names.of(sample[0].position)} in records {sample[0].record} and {sample[1].record}); "
            "each is published once, from its first record"
        )
    return Duplicates(len(conflicts), len(identical), len(excluded), note)


def _candidates(spool: EventSpool) -> tuple[np.ndarray, np.ndarray]:
    """(positions, hash bits) of the entries whose key hash bits equal another entry's, in spool order."""
    import numpy as np

    count = spool.entries
    bits = max(1, (count - 1).bit_length())
    shift, low = np.uint64(bits), np.uint64((1 << bits) - 1)
    found = [np.zeros(0, dtype=np.uint64)]
    for bucket in _buckets(spool, bits):
        bucket.sort()
        same = np.flatnonzero(((bucket[1:] ^ bucket[:-1]) >> shift) == 0)
        found.append(bucket[np.union1d(same, same + 1)])
    chosen = np.concatenate(found)
    positions = chosen & low
    order = np.argsort(positions, kind="stable")
    return positions[order], chosen[order] >> shift


def _buckets(spool: EventSpool, bits: int) -> Iterator[np.ndarray]:
    """Every entry's key hash with its position in the low ``bits`` bits, bucket by bucket (by the
    hash's top bits, so equal hashes share a bucket); a bucket holds about :data:`_BUCKET` entries,
    partitioned through a scratch file."""
    import numpy as np

    count, source = spool.entries, spool.key_hashes()
    spread = ((count - 1) // _BUCKET).bit_length()  # log2 of the buckets
    if not spread:
        yield np.concatenate(list(_packed(source, count, bits)))
        return
    top, buckets = np.uint64(64 - spread), 1 << spread
    sizes = np.zeros(buckets, dtype=np.int64)
    for part in _packed(source, count, bits):
        sizes += np.bincount((part >> top).astype(np.int64), minlength=buckets)
    starts = np.concatenate(([0], np.cumsum(sizes)))
    filled = starts[:-1].copy()
    with tempfile.TemporaryFile(dir=spool.directory) as scratch:
        for part in _packed(source, count, bits):
            part.sort()
            edges = np.searchsorted(part >> top, np.arange(buckets + 1, dtype=np.uint64))
            for bucket in np.flatnonzero(np.diff(edges)):
                piece = part[edges[bucket] : edges[bucket + 1]]
                os.pwrite(scratch.fileno(), piece.tobytes(), int(filled[bucket]) * 8)
                filled[bucket] += len(piece)
        for at, size in zip(starts[:-1], sizes, strict=True):
            scratch.seek(int(at) * 8)
            yield np.fromfile(scratch, dtype=np.uint64, count=int(size))


def _packed(source: BinaryIO, count: int, bits: int) -> Iterator[np.ndarray]:
    """The key hashes :data:`_CHUNK` at a time, their low ``bits`` bits replaced by their position."""
    import numpy as np

    low = np.uint64((1 << bits) - 1)
    source.seek(0)
    for start in range(0, count, _CHUNK):
        part = np.fromfile(source, dtype=np.uint64, count=min(_CHUNK, count - start))
        part &= ~low
        part |= np.arange(start, start + len(part), dtype=np.uint64)
        yield part


@dataclass(frozen=True, slots=True)
class _Seen:
    """One spooled occurrence of a duplicated key: where it is, its record, whether it deletes."""

    position: int
    record: int
    line: int | None
    tombstone: bool


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


_FIELDS = [
    ("group", "<u8"),
    ("key", "<u8"),
    ("state", "<u8"),
    ("record", "<u4"),
    ("line", "<u4"),
    ("position", "<u4"),
]


def _read_runs(spool: EventSpool, positions: np.ndarray, groups: np.ndarray) -> _Runs:
    """Reads the candidates again (in spool order) and digests their keys and states."""
    import numpy as np

    entries = np.zeros(len(positions), dtype=_FIELDS)
    entries["group"] = groups
    entries["position"] = positions
    keys, states, records, lines = entries["key"], entries["state"], entries["record"], entries["line"]
    for i, entry in enumerate(spool.read_at(int(p) for p in positions)):
        keys[i] = _digest(entry.key)
        states[i] = 0 if entry.head is None else (_digest(entry.head) or 1)  # 0: a tombstone
        records[i] = entry.record
        lines[i] = entry.line or 0
    return _Runs(entries)


class _Runs:
    """The candidate entries sorted into runs of one key each (a run in record order)."""

    def __init__(self, entries: np.ndarray) -> None:
        import numpy as np

        self.entries = ordered = entries[np.lexsort((entries["record"], entries["key"], entries["group"]))]
        starts = np.ones(len(ordered), dtype=bool)
        starts[1:] = (ordered["group"][1:] != ordered["group"][:-1]) | (ordered["key"][1:] != ordered["key"][:-1])
        self.run = np.cumsum(starts) - 1
        self.first = np.flatnonzero(starts)
        self.lengths = np.diff(np.append(self.first, len(ordered)))
        #: An entry whose state is not its run's first's; the first such of each run, by run.
        self.differs = ordered["state"] != ordered["state"][self.first][self.run]
        differing = np.flatnonzero(self.differs)
        runs, at = np.unique(self.run[differing], return_index=True)
        self.later = np.full(len(self.first), -1)
        self.later[runs] = differing[at]

    def conflicting_runs(self) -> np.ndarray:
        """Keys given different states, in the order of the record that conflicts."""
        import numpy as np

        runs = np.flatnonzero(self.later >= 0)
        return runs[np.argsort(self.entries["record"][self.later[runs]], kind="stable")]

    def identical_runs(self) -> np.ndarray:
        """Keys repeated with identical states only, in the order of their first record."""
        import numpy as np

        runs = np.flatnonzero((self.later < 0) & (self.lengths > 1))
        return runs[np.argsort(self.entries["record"][self.first[runs]], kind="stable")]

    def pair(self, run: int) -> tuple[_Seen, _Seen]:
        """A run's first entry, and its first that differs (else its second)."""
        first = int(self.first[run])
        later = int(self.later[run]) if self.later[run] >= 0 else first + 1
        return self._seen(first), self._seen(later)

    def _seen(self, at: int) -> _Seen:
        entry = self.entries[at]
        line = int(entry["line"]) or None
        return _Seen(int(entry["position"]), int(entry["record"]), line, int(entry["state"]) == 0)

    def excluded(self) -> np.ndarray:
        """Every entry of a conflicting key, and all but the first of an identical one, by record."""
        import numpy as np

        repeated = np.ones(len(self.entries), dtype=bool)
        repeated[self.first] = False
        out: np.ndarray = self.entries[((self.later >= 0)[self.run] | repeated) & (self.lengths[self.run] > 1)]
        return out[np.argsort(out["record"], kind="stable")]


class _Names:
    """The product ids (else keys) of the few duplicates a problem or the note names."""

    def __init__(self, key_template: str, partner_id: str) -> None:
        rendered = render_key(key_template, product_id="\x00", partner_id=partner_id)
        parts = rendered.split(b"\x00")
        self._affixes = (parts[0], parts[1]) if len(parts) == 2 else None
        self._keys: dict[int, bytes] = {}

    def read(self, spool: EventSpool, positions: list[int]) -> None:
        self._keys = {entry.ordinal: entry.key for entry in spool.read_at(sorted(set(positions)))}

    def product_id(self, position: int) -> str | None:
        key = self._keys[position]
        if self._affixes is None:
            return None
        prefix, suffix = self._affixes
        if len(key) < len(prefix) + len(suffix) or not (key.startswith(prefix) and key.endswith(suffix)):
            return None
        return key[len(prefix) : len(key) - len(suffix)].decode(errors="replace")

    def of(self, position: int) -> str:
        """``product id 'P1'``, or ``key 'x:P1'`` when the key template hides the product id."""
        product_id = self.product_id(position)
        if product_id is not None:
            return f"product id '{shown(product_id)}'"
        return f"key '{shown(self._keys[position].decode(errors='replace'))}'"


def _problem(names: _Names, first: _Seen, later: _Seen, occurrences: int) -> Problem:
    def what(seen: _Seen) -> str:
        where = [f"line {seen.line}"] if seen.line else []
        where += ["a delete"] if seen.tombstone else []
        return f"record {seen.record}" + (f" ({', '.join(where)})" if where else "")

    more = f"; it is in {occurrences} records of this file" if occurrences > 2 else ""
    product_id = names.product_id(first.position)
    return Problem(
        kind="validation",
        message=(
            f"{names.of(first.position)} is given two different states, by {what(first)} and {what(later)}"
            f"{more}: a file may give one state per product (the topic would keep whichever came last); "
            "remove or merge the duplicates, or give each product its own id"
        ),
        line=later.line,
        record=later.record,
        product_id=product_id,
        field="productId",
        value=product_id,
    )
