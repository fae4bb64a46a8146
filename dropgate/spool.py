"""A temporary file of validated, serialized events waiting to be published.

Under the strict policy nothing from a file is published until all of it has been validated, but
holding a million events in a list would make memory grow with the file. The spool keeps them on
disk in a compact length-prefixed layout and replays them in file order, with what the
stale-overwrite guard needs per event (asOf, state hash, field hashes).
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from dropgate.events import NO_FIELD_HASHES, SplitValue
from dropgate.key_index import TRACKED_FIELDS

# key length, head length (-1: tombstone), tail length, record index, asOf ms, state hash, field hashes
_HEADER = struct.Struct(f"<IiIIqQ{len(TRACKED_FIELDS)}H")
_TOMBSTONE = -1
_NO_FIELDS = NO_FIELD_HASHES
_READ_BYTES = 1 << 20


def encode(key: bytes, value: SplitValue | None, record: int, *, tombstone_as_of_ms: int = 0) -> tuple[bytes, ...]:
    """One entry's bytes, in parts (joined when written)."""
    if value is None:
        return (_HEADER.pack(len(key), _TOMBSTONE, 0, record, tombstone_as_of_ms, 0, *_NO_FIELDS), key)
    header = _HEADER.pack(
        len(key), len(value.head), len(value.tail), record, value.as_of_ms, value.state, *value.fields
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


class EventSpool:
    #: Entries are gathered and written together once this many parts (two to four per entry) are
    #: waiting: one write call per entry costs more than packing it.
    _BATCH = 2048

    def __init__(self, directory: str | None = None) -> None:
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()
        self._pending: list[bytes] = []
        self.count = 0
        self.tombstones = 0

    def append(self, key: bytes, value: SplitValue | None, record: int, *, tombstone_as_of_ms: int = 0) -> None:
        pending = self._pending
        pending += encode(key, value, record, tombstone_as_of_ms=tombstone_as_of_ms)
        if value is None:
            self.tombstones += 1
        self.count += 1
        if len(pending) >= self._BATCH:
            self._write_pending()

    def append_encoded(self, entries: bytes, count: int, tombstones: int) -> None:
        """``count`` entries laid out by :func:`encode` (by a parsing process), in file order."""
        self._write_pending()
        self._file.write(entries)
        self.count += count
        self.tombstones += tombstones

    def _write_pending(self) -> None:
        self._file.write(b"".join(self._pending))
        self._pending.clear()

    def replay(self, sha256: str) -> Iterator[SpoolEntry]:
        """Every spooled event with the file's sha256 filled in, in file order."""
        sha = sha256.encode()
        self._write_pending()
        handle = self._file
        handle.flush()
        handle.seek(0)
        size = _HEADER.size
        unpack_from = _HEADER.unpack_from
        buffer = b""
        position = 0
        left = self.count
        while left:
            # Entries are read a chunk at a time and cut out of it: a read call per entry costs more.
            if len(buffer) - position < size:
                buffer, position = _refill(handle, buffer, position, size), 0
            key_len, head_len, tail_len, record, as_of_ms, state, *fields = unpack_from(buffer, position)
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
