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
entry; on disk, 8 bytes an entry). After the parse the hashes are sorted bucket by bucket
(:mod:`dropgate.ingest.key_buckets`: by their top bits, through a scratch file, ~32,000 to a
bucket); only entries whose hash bits equal a neighbour's (the candidates, marked one bit an entry)
are read again from the spool, in file order, batch by batch, and digested: the key by its whole
64-bit hash and its CRC-32, the state (the value up to ``source.sha256``) by its 64-bit hash;
partitioned by bucket the same way and compared one bucket at a time. So memory stays around a
megabyte whatever the file holds, plus 8 bytes per record left out of the replay; the time is
~0.1 s per million products, plus a few microseconds per candidate.

Told apart wrongly: two different keys only if both their hashes agree (96 bits: odds below 1e-16
even for a file of ten million repeats); two different states of one key pass as identical with
odds ~5e-20 per pair. Measured: docs/performance.md "Performance and memory".
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zlib import crc32

from dropgate.events import render_key
from dropgate.ingest.key_buckets import U64, Layout, Partition, candidates, marked
from dropgate.ingest.problems import ProblemCollector
from dropgate.spool import EventSpool, key_hash
from dropgate.terminal import shown
from parsers.base import Problem

if TYPE_CHECKING:
    import numpy as np

#: Candidates digested before they are written to their buckets.
_FLUSH = 8_192
#: A candidate's digests: its key's two hashes, its state's (0: a tombstone), where it is.
_FIELDS = [
    ("group", "<u8"),
    ("key", "<u4"),
    ("state", "<u8"),
    ("record", "<u4"),
    ("line", "<u4"),
    ("position", "<u4"),
]


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
    layout = Layout(spool.entries)
    marks, sizes = candidates(spool, layout)
    if not any(sizes):
        return Duplicates()
    import numpy as np  # only a file with candidates needs it (see key_buckets.candidates)

    found = _Found(problems.room)
    digests = Partition(np.array(sizes, dtype=np.int64), _FIELDS, spool.directory)
    try:
        _digest_candidates(spool, layout, marks, digests)
        for rows in digests.buckets():
            found.add(_Runs(rows))
    finally:
        digests.close()
    spool.exclude(found.excluded_records(), tombstones=found.excluded_tombstones)
    names = KeyNames(key_template, partner_id)
    sample = found.sample
    names.read(spool, [first.position for first, _, _ in found.reported] + ([sample[0].position] if sample else []))
    for first, later, occurrences in found.reported:
        problems.add(_problem(names, first, later, occurrences))
    problems.tally(found.conflicting - len(found.reported))
    note = None
    if sample is not None:
        note = (
            f"{found.identical} product id(s) appear more than once with identical states (e.g. "
            f"{names.of(sample[0].position)} in records {sample[0].record} and {sample[1].record}); "
            "each is published once, from its first record"
        )
    return Duplicates(found.conflicting, found.identical, len(found.excluded), note)


def _digest_candidates(spool: EventSpool, layout: Layout, marks: bytearray, digests: Partition) -> None:
    """Reads the candidates again (in spool order) and writes their digests to their buckets."""
    import numpy as np

    rows: list[tuple[int, ...]] = []
    buckets: list[int] = []

    def flush() -> None:
        digests.write(np.array(buckets, dtype=np.uint64), np.array(rows, dtype=_FIELDS))
        rows.clear()
        buckets.clear()

    for entry in spool.read_at(marked(marks)):
        hashed = key_hash(entry.key)
        state = 0 if entry.head is None else (key_hash(entry.head) & U64 or 1)
        buckets.append(layout.bucket_of(hashed))
        rows.append((hashed & U64, crc32(entry.key), state, entry.record, entry.line or 0, entry.ordinal))
        if len(rows) == _FLUSH:
            flush()
    if rows:
        flush()
    digests.check_full()


@dataclass(frozen=True, slots=True)
class _Seen:
    """One spooled occurrence of a duplicated key: where it is, its record and line, whether it deletes."""

    position: int
    record: int
    line: int | None
    tombstone: bool

    @classmethod
    def of(cls, row: Any) -> _Seen:
        return cls(int(row["position"]), int(row["record"]), int(row["line"]) or None, int(row["state"]) == 0)


class _Runs:
    """One bucket's candidates sorted into runs of one key each (a run in record order)."""

    def __init__(self, entries: np.ndarray) -> None:
        import numpy as np

        self.entries = ordered = entries[np.lexsort((entries["record"], entries["key"], entries["group"]))]
        starts = np.ones(len(ordered), dtype=bool)
        starts[1:] = (ordered["group"][1:] != ordered["group"][:-1]) | (ordered["key"][1:] != ordered["key"][:-1])
        self.run = np.cumsum(starts) - 1
        self.first = np.flatnonzero(starts)
        self.lengths = np.diff(np.append(self.first, len(ordered)))
        # The first entry of each run whose state is not the run's first's (-1: none).
        differs = np.flatnonzero(ordered["state"] != ordered["state"][self.first][self.run])
        runs, at = np.unique(self.run[differs], return_index=True)
        self.later = np.full(len(self.first), -1)
        self.later[runs] = differs[at]

    def identical_runs(self) -> np.ndarray:
        """Keys repeated with identical states only, in the order of their first record."""
        import numpy as np

        runs = np.flatnonzero((self.later < 0) & (self.lengths > 1))
        return runs[np.argsort(self.entries["record"][self.first[runs]], kind="stable")]

    def excluded(self) -> np.ndarray:
        """Every entry of a conflicting key, and all but the first of an identical one."""
        import numpy as np

        repeated = np.ones(len(self.entries), dtype=bool)
        repeated[self.first] = False
        out: np.ndarray = self.entries[((self.later >= 0)[self.run] | repeated) & (self.lengths[self.run] > 1)]
        return out


class _Found:
    """What the buckets found, bounded: the conflicts a problem is kept for (the ``room`` whose
    conflicting record comes first), the counts, one identical repeat to quote, the records to leave out."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.conflicting = self.identical = self.excluded_tombstones = 0
        self.excluded: array[int] = array("Q")
        self._kept: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.sample: tuple[_Seen, _Seen] | None = None

    def add(self, runs: _Runs) -> None:
        import numpy as np

        out = runs.excluded()
        self.excluded.frombytes(out["record"].astype("<u8").tobytes())
        self.excluded_tombstones += int((out["state"] == 0).sum())
        conflicting = np.flatnonzero(runs.later >= 0)
        self.conflicting += len(conflicting)
        if self.room and len(conflicting):
            firsts, laters = runs.entries[runs.first[conflicting]], runs.entries[runs.later[conflicting]]
            kept = (firsts, laters, runs.lengths[conflicting])
            if self._kept is not None:
                kept = tuple(np.concatenate((old, new)) for old, new in zip(self._kept, kept, strict=True))  # type: ignore[assignment]
            order = np.argsort(kept[1]["record"], kind="stable")[: self.room]
            self._kept = (kept[0][order], kept[1][order], kept[2][order])
        identical = runs.identical_runs()
        self.identical += len(identical)
        if len(identical):
            first = int(runs.first[identical[0]])
            if self.sample is None or int(runs.entries[first]["record"]) < self.sample[0].record:
                self.sample = (_Seen.of(runs.entries[first]), _Seen.of(runs.entries[first + 1]))

    @property
    def reported(self) -> list[tuple[_Seen, _Seen, int]]:
        """(first, conflicting, occurrences) of the conflicts a problem is kept for, in record order."""
        if self._kept is None:
            return []
        firsts, laters, lengths = self._kept
        return [(_Seen.of(f), _Seen.of(lt), int(n)) for f, lt, n in zip(firsts, laters, lengths, strict=True)]

    def excluded_records(self) -> array[int]:
        import numpy as np

        np.frombuffer(self.excluded, dtype=np.uint64).sort()  # in place: the replay skips them in order
        return self.excluded


class KeyNames:
    """The product ids (else keys) of the few records a problem or the note names (also the
    ownership check's: :mod:`dropgate.ingest.ownership`)."""

    def __init__(self, key_template: str, partner_id: str) -> None:
        rendered = render_key(key_template, product_id="\x00", partner_id=partner_id)
        parts = rendered.split(b"\x00")
        self._affixes = (parts[0], parts[1]) if len(parts) == 2 else None
        self._keys: dict[int, bytes] = {}

    def read(self, spool: EventSpool, positions: list[int]) -> None:
        self._keys = {entry.ordinal: entry.key for entry in spool.read_at(sorted(set(positions)))}

    def key(self, position: int) -> bytes:
        return self._keys[position]

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


def _problem(names: KeyNames, first: _Seen, later: _Seen, occurrences: int) -> Problem:
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
