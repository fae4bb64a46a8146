"""Snapshot deletes: a product missing from a partner's full snapshot gets a tombstone.

For a partner in ``full`` snapshot mode every file is the whole catalogue, so a key that was in
the previous published snapshot and is absent from this one was deleted by the partner. To know
that, the previous snapshot's key set is kept durably, per partner, in S3 beside the key index
(``dropgate-state/snapshots/<partner>.keyset``): a gzipped, sorted list of Kafka keys with a
header naming the snapshot time and the file it came from.

Memory stays flat whatever the catalogue size: the current file's keys are sorted on disk
(SQLite in a temporary file) and merged with the previous set as both stream, so a million-key
catalogue never becomes a million-entry Python set.

The rules that make deletes safe live in :func:`plan`: never from a file with problems (it may be
partial), never in delta mode, never for a snapshot older than the newest one already recorded,
and never from a snapshot with no products at all (a broken export looks exactly like that).
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import struct
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import IO, Any, Protocol

from dropgate.spool import SpoolEntry

_MAGIC = b"dropgate-keyset 1\n"
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """Which snapshot a stored key set belongs to."""

    partner: str
    as_of_ms: int
    source: str
    count: int


class SnapshotStore(Protocol):
    """Where each partner's last published full-snapshot key set is kept."""

    enabled: bool

    def load(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]: ...

    def save(self, partner: str, bucket: str | None, header: SnapshotHeader, keys: Iterable[bytes]) -> None: ...


class StoredKeys:
    """A stored key set being read: its header, then its keys in sorted order, streamed."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = gzip.GzipFile(fileobj=stream, mode="rb")
        if self._stream.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("not a dropgate key set (bad magic)")
        (length,) = _LENGTH.unpack(self._stream.read(_LENGTH.size))
        raw = json.loads(self._stream.read(length))
        self.header = SnapshotHeader(
            partner=raw["partner"], as_of_ms=int(raw["asOfMs"]), source=raw["source"], count=int(raw["count"])
        )

    def keys(self) -> Iterator[bytes]:
        read = self._stream.read
        for _ in range(self.header.count):
            (length,) = _LENGTH.unpack(read(_LENGTH.size))
            yield read(length)


def write_keyset(target: IO[bytes], header: SnapshotHeader, keys: Iterable[bytes]) -> int:
    """Write a key set (keys must come sorted and unique); returns how many were written."""
    meta = json.dumps(
        {"partner": header.partner, "asOfMs": header.as_of_ms, "source": header.source, "count": header.count},
        sort_keys=True,
    ).encode()
    written = 0
    with gzip.GzipFile(fileobj=target, mode="wb", compresslevel=6, mtime=0) as out:
        out.write(_MAGIC + _LENGTH.pack(len(meta)) + meta)
        for key in keys:
            out.write(_LENGTH.pack(len(key)) + key)
            written += 1
    if written != header.count:
        raise ValueError(f"key set header says {header.count} keys but {written} were written")
    return written


class CurrentKeys:
    """The keys of the file being published, sorted on disk.

    ``live`` keys carry a state; keys the file itself tombstoned are remembered as present (so
    they are not deleted twice) but are not part of the new snapshot.
    """

    def __init__(self, directory: str | None = None) -> None:
        handle, self._path = tempfile.mkstemp(prefix="dropgate-keys-", suffix=".sqlite", dir=directory)
        os.close(handle)
        self._db = sqlite3.connect(self._path)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-8192")  # 8 MiB, whatever the file's size
        self._db.execute("PRAGMA temp_store=FILE")
        self._db.execute("CREATE TABLE k (key BLOB PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID")
        self.live = 0

    @classmethod
    def from_entries(cls, entries: Iterable[SpoolEntry], directory: str | None = None) -> CurrentKeys:
        keys = cls(directory)
        batch: list[tuple[bytes, int]] = []
        for entry in entries:
            batch.append((entry.key, 0 if entry.value is None else 1))
            if len(batch) == 10_000:
                keys._add(batch)
                batch = []
        keys._add(batch)
        (keys.live,) = keys._db.execute("SELECT count(*) FROM k WHERE live = 1").fetchone()
        return keys

    def _add(self, batch: list[tuple[bytes, int]]) -> None:
        # Later events for a key win, as they do on the compacted topic.
        self._db.executemany("INSERT OR REPLACE INTO k VALUES (?, ?)", batch)

    def all_sorted(self) -> Iterator[bytes]:
        for (key,) in self._db.execute("SELECT key FROM k ORDER BY key"):
            yield bytes(key)

    def live_sorted(self) -> Iterator[bytes]:
        for (key,) in self._db.execute("SELECT key FROM k WHERE live = 1 ORDER BY key"):
            yield bytes(key)

    def close(self) -> None:
        self._db.close()
        with suppress(FileNotFoundError):
            os.unlink(self._path)

    def __enter__(self) -> CurrentKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def missing(previous: Iterator[bytes], current: Iterator[bytes]) -> Iterator[bytes]:
    """Keys in ``previous`` and not in ``current``; both sorted ascending (bytes order)."""
    sentinel = None
    here = next(current, sentinel)
    for key in previous:
        while here is not None and here < key:
            here = next(current, sentinel)
        if here != key:
            yield key


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether this file's publish may delete, and why (said in the outcome either way)."""

    delete: bool
    reason: str


def plan(
    *, mode: str, problems: int, live: int, as_of_ms: int, previous: SnapshotHeader | None, enabled: bool = True
) -> Decision:
    """The snapshot-delete rules, kept pure so each one is a one-line test."""
    if mode != "full":
        return Decision(False, "delta file: products are deleted only by explicit deletes")
    if not enabled:
        return Decision(False, "full snapshot, but no state store is configured (local run): no deletes")
    if problems:
        return Decision(False, "full snapshot with problems: a partial file never deletes")
    if live == 0:
        return Decision(False, "full snapshot with no products: refusing to delete the whole catalogue")
    if previous is not None and previous.as_of_ms > as_of_ms:
        return Decision(
            False, "full snapshot older than the newest one already published: no deletes, stored key set kept"
        )
    return Decision(True, "full snapshot")


def tombstone_entries(keys: Iterable[bytes], as_of_ms: int) -> Iterator[SpoolEntry]:
    """Tombstones for the missing keys, stamped with this snapshot's time (the stale guard checks it)."""
    from dropgate.key_index import TRACKED_FIELDS

    empty = (0,) * len(TRACKED_FIELDS)
    for key in keys:
        yield SpoolEntry(key, None, 0, as_of_ms, 0, empty)


class NullSnapshotStore:
    """No durable state (local files): full snapshots never delete."""

    enabled = False

    def load(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]:
        return nullcontext(None)

    def save(self, partner: str, bucket: str | None, header: SnapshotHeader, keys: Iterable[bytes]) -> None:
        return None


class S3SnapshotStore:
    """``s3://<state bucket or the drop's bucket>/dropgate-state/snapshots/<partner>.keyset``.

    The ``.keyset`` suffix matches no drop notification, so saving never triggers ingestion.
    """

    enabled = True

    def __init__(self, client: Any, bucket: str | None, prefix: str = "dropgate-state/snapshots/") -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def _where(self, partner: str, bucket: str | None) -> tuple[str, str]:
        target = self._bucket or bucket
        if not target:
            raise ValueError("no bucket for snapshot key sets: set DROPGATE_STATE_BUCKET or DROPGATE_BUCKET")
        return target, f"{self._prefix}{partner}.keyset"

    @contextmanager
    def _open(self, partner: str, bucket: str | None) -> Iterator[StoredKeys | None]:
        from botocore.exceptions import ClientError

        target, key = self._where(partner, bucket)
        try:
            body = self._client.get_object(Bucket=target, Key=key)["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                yield None
                return
            raise
        try:
            yield StoredKeys(body)
        finally:
            body.close()

    def load(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]:
        return self._open(partner, bucket)

    def save(self, partner: str, bucket: str | None, header: SnapshotHeader, keys: Iterable[bytes]) -> None:
        target, key = self._where(partner, bucket)
        with tempfile.TemporaryFile() as buffer:
            write_keyset(buffer, header, keys)
            buffer.seek(0)
            self._client.upload_fileobj(buffer, target, key)
