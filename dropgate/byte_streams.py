"""Reading an untrusted object: hash every byte, detect gzip by its magic, cap what it expands to.

The sha256 covers the bytes as stored (compressed or not), which is what identifies the file in
lineage and the ledger. Gzip is recognised by its first two bytes, not the file name, because
partners' tools name files freely. Decompression is bounded, so a gzip bomb is refused with a
``security_limit`` problem instead of filling memory or the disk.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from typing import BinaryIO

from parsers.base import InputRejected, LimitExceeded

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024
#: The ratio is only judged past this much output, so a tiny file's header overhead never trips it.
_RATIO_GRACE = 1024 * 1024
#: Compressed input is fed in small pieces so the expansion ratio is judged early and precisely.
_GZIP_INPUT_CHUNK = 8 * 1024


class HashingReader(io.RawIOBase):
    """Counts and hashes the raw bytes as they are read; refuses objects over ``max_bytes``."""

    def __init__(self, raw: BinaryIO, *, max_bytes: int) -> None:
        self._raw = raw
        self._max = max_bytes
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        size = len(data)
        if size:
            self.bytes_read += size
            if self.bytes_read > self._max:
                raise LimitExceeded(
                    "max_object_bytes",
                    self._max,
                    f"the file is larger than the limit of {self._max:,} bytes; split it or raise the limit",
                )
            self.sha256.update(data)
            memoryview(buffer)[:size] = data
        return size

    def drain(self) -> None:
        """Read what the parser left unread (e.g. after an error) so the hash covers the file."""
        while self.readinto(bytearray(_CHUNK)):
            pass


class BoundedGunzip(io.RawIOBase):
    """Streaming gunzip (multi-member) that stops at ``max_output`` decompressed bytes."""

    def __init__(self, compressed: BinaryIO, *, max_output: int, max_ratio: int = 200) -> None:
        self._src = compressed
        self._max = max_output
        self._max_ratio = max_ratio
        self.bytes_in = 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._eof = False
        self.bytes_out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        while True:
            if self._pending:
                data = self._pending[:want]
                self._pending = self._pending[want:]
                break
            if self._eof:
                return 0
            data = self._inflate(want)
            if data:
                break
        self.bytes_out += len(data)
        if self.bytes_out > _RATIO_GRACE and self.bytes_out > self._max_ratio * max(self.bytes_in, 1):
            raise LimitExceeded(
                "max_compression_ratio",
                self._max_ratio,
                f"the gzip stream expands more than {self._max_ratio} times ({self.bytes_in:,} bytes became "
                f"over {self.bytes_out:,}): a gzip bomb, refused",
            )
        if self.bytes_out > self._max:
            raise LimitExceeded(
                "max_decompressed_bytes",
                self._max,
                f"the gzip stream expands past the limit of {self._max:,} bytes (a gzip bomb, or a file "
                "too large for one drop); split it or raise the limit",
            )
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def _inflate(self, want: int) -> bytes:
        inflater = self._inflater
        try:
            if inflater.unconsumed_tail:
                return inflater.decompress(inflater.unconsumed_tail, want)
            if inflater.eof:
                rest = inflater.unused_data
                if not rest:
                    rest = self._src.read(_GZIP_INPUT_CHUNK)
                    self.bytes_in += len(rest)
                    if not rest:
                        self._eof = True
                        return b""
                self._inflater = inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # next gzip member
                return inflater.decompress(rest, want)
            chunk = self._src.read(_GZIP_INPUT_CHUNK)
            self.bytes_in += len(chunk)
            if not chunk:
                raise InputRejected(
                    "the gzip stream ends before its end marker: the upload was cut off; send the complete file"
                )
            return inflater.decompress(chunk, want)
        except zlib.error as error:
            raise InputRejected(f"the file starts like gzip but is not a valid gzip stream ({error})") from None


class Payload:
    """An object's bytes, opened for parsing: hashed as stored, gunzipped when gzip."""

    def __init__(
        self, raw: BinaryIO, *, max_object_bytes: int, max_decompressed_bytes: int, max_compression_ratio: int = 200
    ) -> None:
        self.hashing = HashingReader(raw, max_bytes=max_object_bytes)
        buffered = io.BufferedReader(self.hashing, buffer_size=_CHUNK)
        head = buffered.peek(2)[:2]
        self.empty = head == b""
        self.gzip = head == GZIP_MAGIC
        if self.gzip:
            self.stream: BinaryIO = io.BufferedReader(
                BoundedGunzip(buffered, max_output=max_decompressed_bytes, max_ratio=max_compression_ratio),
                buffer_size=_CHUNK,
            )
        else:
            self.stream = buffered

    def finish(self) -> str:
        """Read any rest of the object and return the sha256 of everything stored."""
        self.hashing.drain()
        return self.hashing.sha256.hexdigest()

    @property
    def size(self) -> int:
        return self.hashing.bytes_read
