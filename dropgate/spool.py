"""A temporary file of validated, serialized events waiting to be published.

Under the strict policy nothing from a file is published until all of it has been validated, but
holding a million events in a list would make memory grow with the file. The spool keeps them on
disk in a compact length-prefixed layout and replays them in file order.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from dropgate.events import SplitValue

_HEADER = struct.Struct("<IiII")  # key length, head length (-1: tombstone), tail length, record index
_TOMBSTONE = -1


class EventSpool:
    def __init__(self, directory: str | None = None) -> None:
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()
        self.count = 0
        self.tombstones = 0

    def append(self, key: bytes, value: SplitValue | None, record: int) -> None:
        if value is None:
            self._file.write(_HEADER.pack(len(key), _TOMBSTONE, 0, record) + key)
            self.tombstones += 1
        else:
            self._file.write(_HEADER.pack(len(key), len(value.head), len(value.tail), record))
            self._file.write(key + value.head + value.tail)
        self.count += 1

    def replay(self, sha256: str) -> Iterator[tuple[bytes, bytes | None, int]]:
        """Yield ``(key, value or None, record)`` with the file's sha256 filled in, in file order."""
        sha = sha256.encode()
        handle = self._file
        handle.flush()
        handle.seek(0)
        read = handle.read
        size = _HEADER.size
        for _ in range(self.count):
            key_len, head_len, tail_len, record = _HEADER.unpack(read(size))
            if head_len == _TOMBSTONE:
                yield read(key_len), None, record
                continue
            blob = read(key_len + head_len + tail_len)
            yield (
                blob[:key_len],
                blob[key_len : key_len + head_len] + sha + blob[key_len + head_len :],
                record,
            )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventSpool:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()
