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
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from dropgate.index_shards import CELL_BITS, Shard, ShardLayout
from dropgate.key_index import key_hash
from dropgate.spool import SpoolEntry

if TYPE_CHECKING:
    from dropgate.held import HeldDeletion

_MAGIC = b"dropgate-keyset 1\n"
_SHARD_MAGIC = b"dropgate-keyset-shard 1\n"
_MANIFEST = "dropgate-keyset-layout 1"
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """Which snapshot a stored key set belongs to.

    ``as_of_ms`` is the newest full snapshot's time (0 before the first one); files that publish
    without deleting (deltas, partial files) add their keys to the set but leave it unchanged.
    ``key_template`` is the partner's at the time: keys rendered with another template are
    not comparable, so a change restarts the set instead of deleting the whole catalogue.
    """

    partner: str
    as_of_ms: int
    source: str
    count: int
    key_template: str = "{productId}"


class SnapshotStore(Protocol):
    """Where each partner's key set is kept, in shards (:mod:`dropgate.partner_keyset` reads and
    writes them; :mod:`dropgate.index_shards` says how they are cut)."""

    enabled: bool

    def manifest(self, partner: str, bucket: str | None) -> KeySetManifest | None:
        """The key set's header and shards; ``None`` before its first sharded write."""

    def legacy(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]:
        """The key set as one object (how it was kept before shards), if it is still there."""

    def read(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> Iterator[list[bytes]]:
        """These shards' keys, in this order (a shard never written is empty)."""

    def write(
        self, partner: str, bucket: str | None, generation: int, shards: Iterable[tuple[Shard, list[bytes]]]
    ) -> None: ...

    def write_manifest(self, partner: str, bucket: str | None, manifest: KeySetManifest) -> None: ...

    def delete(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> None: ...

    def drop_legacy(self, partner: str, bucket: str | None) -> None: ...

    # Held deletions (dropgate.held): the keys, then the record; the record is what lists a hold.
    def write_held(self, held: HeldDeletion, keys: Iterable[bytes]) -> str:
        """Store a hold (the same file again overwrites it); returns where its keys are."""

    def held(self, partner: str | None, bucket: str | None) -> list[HeldDeletion]:
        """The pending holds (of one partner, or all), oldest first."""

    def held_keys(self, held: HeldDeletion) -> AbstractContextManager[Iterator[bytes]]:
        """A hold's keys, sorted, streamed."""

    def drop_held(self, held: HeldDeletion) -> None:
        """Forget a hold: its record first, then its keys."""


@dataclass(frozen=True, slots=True)
class KeySetManifest:
    """A sharded key set's header and the shards that hold its keys."""

    header: SnapshotHeader
    layout: ShardLayout
    #: Shards are stored per generation: a set written anew gets the next one, so until its
    #: manifest is written the one before still names untouched shards.
    generation: int = 1

    def to_bytes(self) -> bytes:
        shards = json.loads(self.layout.to_bytes())
        raw = {
            "format": _MANIFEST,
            "header": _header_json(self.header),
            "shards": shards,
            "generation": self.generation,
        }
        return json.dumps(raw, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeySetManifest:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != _MANIFEST:
            raise ValueError("not a dropgate key set manifest")
        layout = ShardLayout.from_bytes(json.dumps(raw["shards"]).encode())
        return cls(_header_of(raw["header"]), layout, int(raw["generation"]))


def _header_json(header: SnapshotHeader) -> dict[str, object]:
    return {
        "partner": header.partner,
        "asOfMs": header.as_of_ms,
        "source": header.source,
        "count": header.count,
        "keyTemplate": header.key_template,
    }


def _header_of(raw: dict[str, object]) -> SnapshotHeader:
    return SnapshotHeader(
        partner=str(raw["partner"]),
        as_of_ms=int(str(raw["asOfMs"])),
        source=str(raw["source"]),
        count=int(str(raw["count"])),
        key_template=str(raw["keyTemplate"]),
    )


def write_shard(target: IO[bytes], keys: Iterable[bytes]) -> int:
    """One key set shard: its keys (sorted), gzipped; returns how many."""
    return write_gzipped_keys(target, _SHARD_MAGIC, keys)


def write_gzipped_keys(target: IO[bytes], magic: bytes, keys: Iterable[bytes]) -> int:
    """``magic``, then each key with its length, gzipped as they stream; returns how many keys."""
    written = 0
    with gzip.GzipFile(fileobj=target, mode="wb", compresslevel=6, mtime=0) as out:
        out.write(magic)
        for key in keys:
            out.write(_LENGTH.pack(len(key)) + key)
            written += 1
    return written


def read_shard(data: bytes) -> list[bytes]:
    raw = gzip.decompress(data)
    if not raw.startswith(_SHARD_MAGIC):
        raise ValueError("not a dropgate key set shard (bad magic)")
    keys, at, unpack = [], len(_SHARD_MAGIC), _LENGTH.unpack_from
    while at < len(raw):
        (length,) = unpack(raw, at)
        at += _LENGTH.size
        keys.append(raw[at : at + length])
        at += length
    return keys


def cell_of(key: bytes) -> int:
    """The cell a key's shard is chosen by (the top bits of its key index hash)."""
    return key_hash(key) >> (64 - CELL_BITS)


class StoredKeys:
    """A stored key set being read: its header, then its keys in sorted order, streamed."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = gzip.GzipFile(fileobj=stream, mode="rb")
        if self._stream.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("not a dropgate key set (bad magic)")
        (length,) = _LENGTH.unpack(self._stream.read(_LENGTH.size))
        self.header = _header_of(json.loads(self._stream.read(length)))

    def keys(self) -> Iterator[bytes]:
        read = self._stream.read
        for _ in range(self.header.count):
            (length,) = _LENGTH.unpack(read(_LENGTH.size))
            yield read(length)


def write_keyset(target: IO[bytes], header: SnapshotHeader, keys: Iterable[bytes]) -> int:
    """Write a key set (keys must come sorted and unique); returns how many were written."""
    meta = json.dumps(_header_json(header), sort_keys=True).encode()
    written = 0
    with gzip.GzipFile(fileobj=target, mode="wb", compresslevel=6, mtime=0) as out:
        out.write(_MAGIC + _LENGTH.pack(len(meta)) + meta)
        for key in keys:
            out.write(_LENGTH.pack(len(key)) + key)
            written += 1
    if written != header.count:
        raise ValueError(f"key set header says {header.count} keys but {written} were written")
    return written


class SnapshotKeys:
    """This file's keys and the stored set, side by side in SQLite on disk.

    ``k`` holds the file's keys (``live`` 0 for keys the file itself tombstoned: present, so not
    deleted twice, but not part of what is live); ``p`` holds the stored set. Set differences and
    unions are then sorted queries, so memory does not grow with the catalogue.
    """

    _MISSING = "SELECT key FROM p WHERE NOT EXISTS (SELECT 1 FROM k WHERE k.key = p.key)"
    _MERGED = (
        "SELECT key FROM p WHERE NOT EXISTS (SELECT 1 FROM k WHERE k.key = p.key) "
        "UNION ALL SELECT key FROM k WHERE live = 1"
    )

    def __init__(self, directory: str | None = None) -> None:
        handle, self._path = tempfile.mkstemp(prefix="dropgate-keys-", suffix=".sqlite", dir=directory)
        os.close(handle)
        import sqlite3  # only files of full-snapshot partners need it: off the cold start

        self._db = sqlite3.connect(self._path)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-8192")  # 8 MiB, whatever the file's size
        self._db.execute("PRAGMA temp_store=FILE")
        # Each key's cell (dropgate.index_shards) too: the stored set is kept in shards by cell.
        self._db.execute("CREATE TABLE k (key BLOB PRIMARY KEY, live INTEGER NOT NULL, cell INTEGER) WITHOUT ROWID")
        self._db.execute("CREATE TABLE p (key BLOB PRIMARY KEY, cell INTEGER) WITHOUT ROWID")
        self.live = 0

    def add_current(self, entries: Iterable[SpoolEntry]) -> SnapshotKeys:
        # Later events for a key win, as they do on the compacted topic.
        rows = ((entry.key, 0 if entry.value is None else 1, cell_of(entry.key)) for entry in entries)
        self._insert("INSERT OR REPLACE INTO k VALUES (?, ?, ?)", rows)
        (self.live,) = self._db.execute("SELECT count(*) FROM k WHERE live = 1").fetchone()
        return self

    def add_previous(self, keys: Iterable[bytes]) -> SnapshotKeys:
        self._insert("INSERT OR IGNORE INTO p VALUES (?, ?)", ((key, cell_of(key)) for key in keys))
        return self

    def current_cells(self) -> set[int]:
        """The cells of this file's keys: the shards a file that does not delete touches."""
        return {int(cell) for (cell,) in self._db.execute("SELECT DISTINCT cell FROM k")}

    def merged_by_cell(self) -> Iterator[tuple[int, bytes]]:
        """:meth:`merged_sorted` as (cell, key), by cell, sorted within one."""
        return self._cells(
            "SELECT cell, key FROM p WHERE NOT EXISTS (SELECT 1 FROM k WHERE k.key = p.key) "
            "UNION ALL SELECT cell, key FROM k WHERE live = 1 ORDER BY cell, key"
        )

    def live_by_cell(self) -> Iterator[tuple[int, bytes]]:
        return self._cells("SELECT cell, key FROM k WHERE live = 1 ORDER BY cell, key")

    def _cells(self, query: str) -> Iterator[tuple[int, bytes]]:
        for cell, key in self._db.execute(query):
            yield int(cell), bytes(key)

    def _insert(self, statement: str, rows: Iterable[tuple[object, ...]]) -> None:
        batch: list[tuple[object, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 10_000:
                self._db.executemany(statement, batch)
                batch = []
        self._db.executemany(statement, batch)

    def _keys(self, query: str) -> Iterator[bytes]:
        for (key,) in self._db.execute(query):
            yield bytes(key)

    def _count(self, query: str) -> int:
        (count,) = self._db.execute(f"SELECT count(*) FROM ({query})").fetchone()  # noqa: S608 - constant queries
        return int(count)

    def missing_sorted(self) -> Iterator[bytes]:
        """Stored keys this file does not mention at all: what a full snapshot deletes."""
        return self._keys(self._MISSING + " ORDER BY key")

    def missing_count(self) -> int:
        return self._count(self._MISSING)

    def merged_sorted(self) -> Iterator[bytes]:
        """The stored set with this file applied: its live keys added, its own tombstones removed."""
        return self._keys(self._MERGED + " ORDER BY key")

    def merged_count(self) -> int:
        return self._count(self._MERGED)

    def live_sorted(self) -> Iterator[bytes]:
        return self._keys("SELECT key FROM k WHERE live = 1 ORDER BY key")

    def all_sorted(self) -> Iterator[bytes]:
        return self._keys("SELECT key FROM k ORDER BY key")

    def close(self) -> None:
        self._db.close()
        with suppress(FileNotFoundError):
            os.unlink(self._path)

    def __enter__(self) -> SnapshotKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether this file's publish may delete, and why (said in the outcome either way)."""

    delete: bool
    reason: str


def plan(*, mode: str, problems: int, live: int, as_of_ms: int, previous: SnapshotHeader | None) -> Decision:
    """The snapshot-delete rules, kept pure so each one is a one-line test."""
    if mode != "full":
        return Decision(False, "delta file: products are deleted only by explicit deletes")
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

    def manifest(self, partner: str, bucket: str | None) -> KeySetManifest | None:
        return None

    def legacy(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]:
        return nullcontext(None)

    def read(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> Iterator[list[bytes]]:
        return iter([[] for _ in shards])

    def write(
        self, partner: str, bucket: str | None, generation: int, shards: Iterable[tuple[Shard, list[bytes]]]
    ) -> None:
        return None

    def write_manifest(self, partner: str, bucket: str | None, manifest: KeySetManifest) -> None:
        return None

    def delete(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> None:
        return None

    def drop_legacy(self, partner: str, bucket: str | None) -> None:
        return None

    def write_held(self, held: HeldDeletion, keys: Iterable[bytes]) -> str:
        raise RuntimeError("no state store is configured: nothing can be held")

    def held(self, partner: str | None, bucket: str | None) -> list[HeldDeletion]:
        return []

    def held_keys(self, held: HeldDeletion) -> AbstractContextManager[Iterator[bytes]]:
        return nullcontext(iter(()))

    def drop_held(self, held: HeldDeletion) -> None:
        return None
