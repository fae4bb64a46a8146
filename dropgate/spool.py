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
    #: Entries are gathered and written this many at a time: one write call per entry costs more
    #: than packing it.
    _BATCH = 2048

    def __init__(self, directory: str | None = None) -> None:
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()
        self._pending: list[bytes] = []
        self.count = 0
        self.tombstones = 0

    def append(self, key: bytes, value: SplitValue | None, record: int, *, tombstone_as_of_ms: int = 0) -> None:
        pending = self._pending
        if value is None:
            pending += (_HEADER.pack(len(key), _TOMBSTONE, 0, record, tombstone_as_of_ms, 0, *_NO_FIELDS), key)
            self.tombstones += 1
        else:
            header = _HEADER.pack(
                len(key), len(value.head), len(value.tail), record, value.as_of_ms, value.state, *value.fields
            )
            pending += (header, key, value.head, value.tail)
        self.count += 1
        if len(pending) >= self._BATCH:
            self._write_pending()

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
        read = handle.read
        size = _HEADER.size
        unpack = _HEADER.unpack
        for _ in range(self.count):
            key_len, head_len, tail_len, record, as_of_ms, state, *fields = unpack(read(size))
            if head_len == _TOMBSTONE:
                yield SpoolEntry(read(key_len), None, record, as_of_ms, 0, _NO_FIELDS)
                continue
            blob = read(key_len + head_len + tail_len)
            value = blob[key_len : key_len + head_len] + sha + blob[key_len + head_len :]
            yield SpoolEntry(blob[:key_len], value, record, as_of_ms, state, tuple(fields))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventSpool:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()
