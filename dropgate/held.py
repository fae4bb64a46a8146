"""A held deletion: a full snapshot's tombstones waiting for a person to approve or reject them.

A snapshot that would delete more than its partner's ``hold_deletions`` allow (:func:`holds`)
publishes its upserts, but its tombstones are written down instead of published: the keys as one
gzipped object, and beside it a small record (this module's :class:`HeldDeletion`) naming the
file, its predecessor, the snapshot's ``asOf`` and the counts. Both live in the state bucket under
``dropgate-state/held-deletions/<partner>/`` (:mod:`dropgate.adapters.s3_state`); the record is
written after the keys and deleted before them, so a record always has its keys, and listing the
records is listing the pending holds. Until approved the held keys stay live, in the partner's key
set too (:mod:`dropgate.ingest.snapshot_deletes`); :mod:`dropgate.held_deletions` acts on them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import IO

from dropgate.snapshots import write_gzipped_keys

_MAGIC = b"dropgate-held-keys 1\n"
_RECORD = "dropgate-held-deletion 1"
_LENGTH = struct.Struct("<I")


def holds(gone: int, live: int, *, fraction: float, minimum: int) -> bool:
    """The hold rule: more than ``fraction`` of the ``live`` keys AND more than ``minimum`` keys."""
    return gone > minimum and gone > fraction * live


@dataclass(frozen=True, slots=True)
class HeldDeletion:
    """What one held snapshot would delete (its keys are stored beside this record)."""

    partner: str
    #: The snapshot: ``s3://bucket/key?versionId=…`` (``str`` of its ObjectRef), and its parts.
    file: str
    bucket: str
    key: str
    version: str | None
    #: The file the partner's key set came from before this one (the snapshot it is compared with).
    predecessor: str | None
    as_of_ms: int
    #: Keys held, and the partner's live keys before the snapshot (the fraction is of those).
    count: int
    live: int
    key_template: str
    #: The parser that read the snapshot: its tombstones carry it, as the file's events did.
    parser: str
    held_at: str

    @property
    def id(self) -> str:
        """Names the stored objects: one hold per file version (a retry writes the same ones)."""
        return hashlib.sha256(self.file.encode()).hexdigest()[:32]

    @property
    def fraction(self) -> float:
        return self.count / self.live if self.live else 1.0

    def to_bytes(self) -> bytes:
        return json.dumps({"format": _RECORD, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> HeldDeletion:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.pop("format", None) != _RECORD:
            raise ValueError("not a dropgate held deletion record")
        return cls(**raw)


def write_keys(target: IO[bytes], keys: Iterable[bytes]) -> int:
    """The held keys (sorted), gzipped and streamed, as key set shards are; returns how many."""
    return write_gzipped_keys(target, _MAGIC, keys)


def read_keys(source: IO[bytes]) -> Iterator[bytes]:
    """The held keys, streamed: a million of them never sit in memory at once."""
    stream = gzip.GzipFile(fileobj=source, mode="rb")
    if stream.read(len(_MAGIC)) != _MAGIC:
        raise ValueError("not a dropgate held keys object (bad magic)")
    while header := stream.read(_LENGTH.size):
        (length,) = _LENGTH.unpack(header)
        yield stream.read(length)
