"""A temporary file of validated, serialized events waiting to be published.

Under the strict policy nothing from a file is published until all of it has been validated, but
holding a million events in a list would make memory grow with the file. The spool keeps them on
disk in a compact length-prefixed layout and replays them in file order, with what the
stale-overwrite guard needs per event (asOf, state hash, field hashes).

It also keeps what finding a key spooled twice needs without holding any key
(:mod:`dropgate.ingest.duplicates`): a 64-bit hash of every entry's key (8 bytes an entry, moved
to a scratch file 65,536 at a time), the line each record starts on, a mark where each written
batch starts (so a few entries can be read again by their position without replaying the file),
and the records left out of the replay once a file's duplicates are decided.
"""

from __future__ import annotations

import io
import struct
import tempfile
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import BinaryIO, NamedTuple

from dropgate.events import NO_FIELD_HASHES, SplitValue
from dropgate.key_index import TRACKED_FIELDS, blake2b_8

# key length, head length (-1: tombstone), tail length, record index, line (0: unknown), asOf ms,
# state hash, field hashes
_HEADER = struct.Struct(f"<IiIIIqQ{len(TRACKED_FIELDS)}H")
_TOMBSTONE = -1
_NO_FIELDS = NO_FIELD_HASHES
_READ_BYTES = 1 << 20
#: Key hashes are kept in memory up to this many, then moved to a scratch file (512 KiB at a time).
_SPILL_HASHES = 1 << 16

#: The key hash every entry is spooled with: Python's own hash of the key bytes (SipHash-1-3 under
#: this process's hash secret; ~50 ns where BLAKE2b costs ten times more). The parsing processes of
#: :mod:`dropgate.parallel` are forked, so they share the secret; they check it with
#: :data:`HASH_PROBE` before spooling anything. Not stable across processes otherwise: never store it.
key_hash = hash
_PROBE = b"dropgate spool key hash"


#: An entry's row for the stale guard's key index (``dropgate.partner_index.FileRows`` reads them
#: as a numpy array): the key's stable 64-bit hash, asOf ms, state hash, field hashes, its record.
#: (The key hash is packed as the digest's own bytes, which are its little-endian integer.)
INDEX_ROW = struct.Struct(f"<8sqQ{len(TRACKED_FIELDS)}HI")


def index_row(key: bytes, value: SplitValue | None, record: int, tombstone_as_of_ms: int) -> bytes:
    """The entry's :data:`INDEX_ROW`, built where the entry is (a parsing process, when there are)."""
    if value is None:
        return INDEX_ROW.pack(blake2b_8(key), tombstone_as_of_ms, 0, *_NO_FIELDS, record)
    return INDEX_ROW.pack(blake2b_8(key), value.as_of_ms, value.state, *value.fields, record)


def hash_probe() -> int:
    """What :data:`key_hash` gives a fixed input in this process (a forked worker must agree)."""
    return key_hash(_PROBE)


def encode(
    key: bytes, value: SplitValue | None, record: int, *, tombstone_as_of_ms: int = 0, line: int | None = None
) -> tuple[bytes, ...]:
    """One entry's bytes, in parts (joined when written); ``line``: where the record starts, if known."""
    if value is None:
        return (_HEADER.pack(len(key), _TOMBSTONE, 0, record, line or 0, tombstone_as_of_ms, 0, *_NO_FIELDS), key)
    header = _HEADER.pack(
        len(key), len(value.head), len(value.tail), record, line or 0, value.as_of_ms, value.state, *value.fields
    )
    return (header, key, value.head, value.tail)


class SpoolEntry:
    __slots__ = ("as_of_ms", "fields", "key", "record", "state", "value")

    def __init__(
        self, key: bytes, value: bytes | None, record: int, as_of_ms: int, state: int, fields: tuple[int, ...]
    ) -> None:
        self.key = key
        self.value = value
        self.record = record
        self.as_of_ms = as_of_ms
        self.state = state
        self.fields = fields


class RawEntry(NamedTuple):
    """One entry as spooled, read again by position: ``head`` is ``None`` for a tombstone."""

    ordinal: int
    key: bytes
    head: bytes | None
    tail: bytes
    record: int
    line: int | None


class EventSpool:
    #: Entries are gathered and written together once this many parts (two to four per entry) are
    #: waiting: one write call per entry costs more than packing it.
    _BATCH = 2048

    def __init__(self, directory: str | None = None, *, index_rows: bool = False) -> None:
        self.directory = directory
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()
        #: With ``index_rows``, every entry's :data:`INDEX_ROW` too, in a file of their own: the stale
        #: guard then reads them as one array instead of replaying the spool to hash every key.
        self.index_rows = index_rows
        self._rows: BinaryIO | None = tempfile.TemporaryFile(dir=directory) if index_rows else None  # noqa: SIM115
        self._pending_rows: list[bytes] = []
        self._pending: list[bytes] = []
        #: Entries appended (``count`` leaves out the excluded ones), and the tombstones among them.
        self.entries = 0
        self._tombstones = 0
        #: :data:`key_hash` of every entry's key, in spool order (see :meth:`key_hashes`).
        self._key_hashes: array[int] | None = array("q")
        #: The key hashes moved to a scratch file, :data:`_SPILL_HASHES` at a time.
        self._spilled: BinaryIO | None = None
        self._spilled_count = 0
        #: Where each written batch starts: its first entry's position, and its byte offset.
        self._mark_entries: array[int] = array("Q")
        self._mark_offsets: array[int] = array("Q")
        self._written_entries = 0
        self._written_bytes = 0
        #: Records left out of the replay (sorted), and how many of them are tombstones.
        self._excluded: array[int] = array("Q")
        self._excluded_tombstones = 0

    @property
    def count(self) -> int:
        """Entries the replay gives."""
        return self.entries - len(self._excluded)

    @property
    def tombstones(self) -> int:
        return self._tombstones - self._excluded_tombstones

    def append(
        self,
        key: bytes,
        value: SplitValue | None,
        record: int,
        *,
        tombstone_as_of_ms: int = 0,
        line: int | None = None,
    ) -> None:
        pending = self._pending
        pending += encode(key, value, record, tombstone_as_of_ms=tombstone_as_of_ms, line=line)
        if self._rows is not None:
            self._pending_rows.append(index_row(key, value, record, tombstone_as_of_ms))
        if value is None:
            self._tombstones += 1
        self.entries += 1
        self._key_hashes.append(key_hash(key))  # type: ignore[union-attr]  # appends end before it is taken
        if len(pending) >= self._BATCH:
            self._write_pending()

    def append_encoded(self, entries: bytes, count: int, tombstones: int, key_hashes: bytes, rows: bytes = b"") -> None:
        """``count`` entries laid out by :func:`encode` (by a parsing process), in file order, with
        their keys' :data:`key_hash` as native 64-bit integers (and their :data:`INDEX_ROW` s, if
        this spool keeps them)."""
        self._write_pending()
        self._key_hashes.frombytes(key_hashes)  # type: ignore[union-attr]
        self._pending.append(entries)
        if self._rows is not None:
            if len(rows) != count * INDEX_ROW.size:
                raise RuntimeError("a parsing process sent no index rows for a spool that keeps them")
            self._pending_rows.append(rows)
        self.entries += count
        self._tombstones += tombstones
        self._write_pending()

    def _spill(self, hashes: array[int]) -> BinaryIO:
        if self._spilled is None:
            self._spilled = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 - closed in close()
        hashes.tofile(self._spilled)
        self._spilled_count += len(hashes)
        del hashes[:]
        return self._spilled

    def _write_pending(self) -> None:
        hashes = self._key_hashes
        if hashes is not None and len(hashes) >= _SPILL_HASHES:
            self._spill(hashes)
        if self._pending_rows and self._rows is not None:
            self._rows.write(b"".join(self._pending_rows))
            self._pending_rows.clear()
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._mark_entries.append(self._written_entries)
        self._mark_offsets.append(self._written_bytes)
        self._file.write(data)
        self._written_entries = self.entries
        self._written_bytes += len(data)

    def key_hashes(self) -> BinaryIO:
        """A file of every entry's :data:`key_hash` (native 64-bit integers, in spool order), read from
        the start; once. It stays the spool's to close."""
        hashes, self._key_hashes = self._key_hashes, None
        if hashes is None or self._spilled_count + len(hashes) != self.entries:
            raise RuntimeError("the spool's key hashes were taken already, or are incomplete")
        spilled = self._spill(hashes)
        spilled.flush()
        spilled.seek(0)
        return spilled

    def rows(self) -> BinaryIO | None:
        """The file of every entry's :data:`INDEX_ROW` (``None`` unless the spool keeps them), read
        from the start. Excluded records' rows are in it: see :attr:`excluded`."""
        if self._rows is None:
            return None
        self._write_pending()
        self._rows.flush()
        self._rows.seek(0)
        return self._rows

    @property
    def excluded(self) -> array[int]:
        """Records left out of every replay, ascending."""
        return self._excluded

    def exclude(self, records: array[int], *, tombstones: int) -> None:
        """Leave these records' entries (``records`` ascending; ``tombstones`` of them tombstones)
        out of every replay."""
        self._excluded = records
        self._excluded_tombstones = tombstones

    def read_at(self, positions: Iterable[int]) -> Iterator[RawEntry]:
        """The entries at these positions (0-based, ascending), read again without a replay: each
        from the start of its batch, so a few cost a few batches."""
        self._write_pending()
        handle = self._file
        handle.flush()
        marks, offsets = self._mark_entries, self._mark_offsets
        buffer, at, position, batch_end = b"", 0, 0, 0  # the batch in ``buffer``, and the entry at ``position``
        try:
            for wanted in positions:
                if not at <= wanted < batch_end:
                    found = bisect_right(marks, wanted) - 1
                    at, position = marks[found], 0
                    batch_end = marks[found + 1] if found + 1 < len(marks) else self.entries
                    end = offsets[found + 1] if found + 1 < len(offsets) else self._written_bytes
                    handle.seek(offsets[found])
                    buffer = handle.read(end - offsets[found])
                while at < wanted:
                    position = _entry_end(buffer, position)
                    at += 1
                entry, position = _raw_entry(buffer, position, wanted)
                at += 1
                yield entry
        finally:
            handle.seek(0, io.SEEK_END)

    def replay(self, sha256: str) -> Iterator[SpoolEntry]:
        """Every spooled event with the file's sha256 filled in, in file order (but the excluded)."""
        if not self._excluded:
            return self._replay(sha256)
        return _without(self._replay(sha256), self._excluded)

    def _replay(self, sha256: str) -> Iterator[SpoolEntry]:
        sha = sha256.encode()
        self._write_pending()
        handle = self._file
        handle.flush()
        handle.seek(0)
        size = _HEADER.size
        unpack_from = _HEADER.unpack_from
        buffer = b""
        position = 0
        left = self.entries
        while left:
            # Entries are read a chunk at a time and cut out of it: a read call per entry costs more.
            if len(buffer) - position < size:
                buffer, position = _refill(handle, buffer, position, size), 0
            key_len, head_len, tail_len, record, _line, as_of_ms, state, *fields = unpack_from(buffer, position)
            end = position + size + key_len + max(head_len, 0) + tail_len
            if end > len(buffer):
                buffer, position = _refill(handle, buffer, position, end - position), 0
                continue
            key_end = position + size + key_len
            if head_len == _TOMBSTONE:
                yield SpoolEntry(buffer[position + size : key_end], None, record, as_of_ms, 0, _NO_FIELDS)
            else:
                head_end = key_end + head_len
                value = buffer[key_end:head_end] + sha + buffer[head_end:end]
                yield SpoolEntry(buffer[position + size : key_end], value, record, as_of_ms, state, tuple(fields))
            position = end
            left -= 1

    def close(self) -> None:
        self._file.close()
        if self._rows is not None:
            self._rows.close()
        if self._spilled is not None:
            self._spilled.close()

    def __enter__(self) -> EventSpool:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()


def _refill(handle: BinaryIO, buffer: bytes, position: int, needed: int) -> bytes:
    """What is left of ``buffer`` from ``position`` plus the next chunk, holding at least ``needed`` bytes."""
    more = handle.read(max(_READ_BYTES, needed))
    if len(buffer) - position + len(more) < needed:
        raise RuntimeError("the event spool ends in the middle of an entry")
    return buffer[position:] + more


def _without(entries: Iterator[SpoolEntry], excluded: array[int]) -> Iterator[SpoolEntry]:
    """``entries`` (in record order) but those of the ``excluded`` records (sorted)."""
    skips = iter(excluded)
    skip = next(skips)
    for entry in entries:
        if entry.record == skip:
            skip = next(skips, -1)
            continue
        yield entry


def _entry_end(buffer: bytes, position: int) -> int:
    key_len, head_len, tail_len = _HEADER.unpack_from(buffer, position)[:3]
    return int(position + _HEADER.size + key_len + max(head_len, 0) + tail_len)


def _raw_entry(buffer: bytes, position: int, ordinal: int) -> tuple[RawEntry, int]:
    """The entry at ``position``, and where the next one starts."""
    key_len, head_len, tail_len, record, line = _HEADER.unpack_from(buffer, position)[:5]
    key_end = position + _HEADER.size + key_len
    key = buffer[position + _HEADER.size : key_end]
    if head_len == _TOMBSTONE:
        return RawEntry(ordinal, key, None, b"", record, line or None), key_end
    head_end = key_end + head_len
    tail_end = head_end + tail_len
    return RawEntry(ordinal, key, buffer[key_end:head_end], buffer[head_end:tail_end], record, line or None), tail_end
