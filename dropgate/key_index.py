"""The per-partner key index: for every key a partner has published, the newest ``asOf``, a hash
of its state and a small hash per field.

Why it exists: a compacted topic keeps the *last write* per key, not the newest ``asOf``, so
replaying Monday's file after Tuesday's would leave Monday's state on top. The publisher checks
every event against this index and skips the ones older than what was already published. The
same index tells ``--changed-only`` which keys did not change, and tells a dry-run which keys
would be new, changed (and which fields) or unchanged, without storing any previous value.

It also says where each key's newest events are on the topic (partition, and the offsets of its
last :data:`POSITIONS` published events, from the broker's delivery reports), so ``dropgate key``
reads a key's current value with one fetch at that offset instead of reading the topic.

Why this shape: compact rows (64 bytes per key, sorted by key hash), kept in shards
(:mod:`dropgate.index_shards`), so a file reads and writes only the part its keys touch; one
remote call per record would cost more than publishing. numpy does the sorted lookups and merges
in bulk; it is imported only when a file is guarded.

Format 2 added the positions; a format 1 object (36-byte rows, no positions) still reads, its rows
with no position recorded, and is written back as format 2 (migration on write).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: The state fields whose individual hashes are kept, in this order.
TRACKED_FIELDS = ("sku", "name", "quantity", "availability", "price", "locations")
#: Offsets kept per key: its newest published event and the ones before it (``dropgate key``'s history).
POSITIONS = 3
_MAGIC = b"DGKI\x02\x00\x00\x00"
_MAGIC_V1 = b"DGKI\x01\x00\x00\x00"


#: An empty 8-byte BLAKE2b, copied for each hash: a copy and an update cost about a third less than
#: ``blake2b(data, digest_size=8)``, whose keyword arguments are parsed on every call, and a guarded
#: file hashes every key and state this way (in the parsing workers and for each delivery report).
#: The digests are the same bytes.
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
_crc32 = zlib.crc32


def key_hash(key: bytes) -> int:
    """64-bit hash of a Kafka key (collision odds ~1e-8 for a million keys)."""
    return int.from_bytes(blake2b_8(key), "little")


def blake2b_8(data: bytes) -> bytes:
    """The 8-byte BLAKE2b digest of ``data`` (unkeyed): what :func:`key_hash` reads, little-endian."""
    digest = _BLAKE2B_8.copy()
    digest.update(data)
    return digest.digest()


def state_hashes(parts: Sequence[bytes]) -> tuple[int, tuple[int, ...]]:
    """(state hash, per-field 16-bit hashes) from each tracked field's JSON, in TRACKED_FIELDS order.

    ``asOf`` and lineage are deliberately left out: the same stock in a newer snapshot is
    "unchanged" for ``--changed-only``. Stored indexes hold these values: they never change.
    """
    digest = _BLAKE2B_8.copy()
    digest.update(b"\x1f".join(parts))
    state = int.from_bytes(digest.digest(), "little") or 1  # 0 is reserved for "deleted"
    # Written out, not a comprehension: this runs for every product of a guarded file.
    sku, name, quantity, availability, price, locations = parts  # TRACKED_FIELDS' order
    return state, (
        _crc32(sku) & 0xFFFF,
        _crc32(name) & 0xFFFF,
        _crc32(quantity) & 0xFFFF,
        _crc32(availability) & 0xFFFF,
        _crc32(price) & 0xFFFF,
        _crc32(locations) & 0xFFFF,
    )


def row_dtype() -> Any:
    """What the guard decides an event by (key hash, asOf ms, state hash, field hashes): format 1's
    whole row, and the layout of the spool's :data:`dropgate.spool.INDEX_ROW` (without its record)."""
    import numpy as np

    return np.dtype([("key", "<u8"), ("as_of", "<i8"), ("state", "<u8"), ("fields", "<u2", (len(TRACKED_FIELDS),))])


def index_dtype() -> Any:
    """A stored row: :func:`row_dtype` and where the key's newest events are on the topic.

    ``ends`` are Kafka's "next offset" of each event (its offset + 1), newest first, all in
    ``partition``: 0 means none recorded, so a zeroed row (or one migrated from format 1) claims
    no position."""
    import numpy as np

    return np.dtype([*row_dtype().descr, ("partition", "<i4"), ("ends", "<u8", (POSITIONS,))])


class KeyIndex:
    """Sorted array of (key hash, asOf ms, state hash, field hashes, partition, offset ends);
    ``state == 0`` is a tombstone."""

    def __init__(self, entries: np.ndarray) -> None:
        self.entries = entries

    @classmethod
    def empty(cls) -> KeyIndex:
        import numpy as np

        return cls(np.zeros(0, dtype=index_dtype()))

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyIndex:
        import numpy as np

        if not data:
            return cls.empty()
        magic = data[: len(_MAGIC)]
        if magic == _MAGIC_V1:
            return cls.from_rows(np.frombuffer(data, dtype=row_dtype(), offset=len(_MAGIC_V1)))
        if magic != _MAGIC:
            raise ValueError("not a dropgate key index (bad magic)")
        # Read-only over the bytes: an index is never changed in place (merges build new arrays).
        return cls(np.frombuffer(data, dtype=index_dtype(), offset=len(_MAGIC)))

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> KeyIndex:
        """Rows of :func:`row_dtype` (a format 1 index), with no position recorded."""
        return cls(with_positions(rows))

    def to_bytes(self) -> bytes:
        # One copy, not two (tobytes, then the concatenation): a shard is written eight at a time.
        import numpy as np

        return b"".join((_MAGIC, np.ascontiguousarray(self.entries).view("u1").data))

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def new_entries(rows: list[tuple[int, int, int, tuple[int, ...]]]) -> np.ndarray:
        """Entries with no position recorded, from (key hash, asOf, state, field hashes)."""
        import numpy as np

        return with_positions(np.array(rows, dtype=row_dtype()))

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For an array of key hashes: (found mask, positions into ``entries``)."""
        import numpy as np

        known = self.entries["key"]
        positions = np.searchsorted(known, keys)
        clipped = np.minimum(positions, max(len(known) - 1, 0))
        found = (positions < len(known)) & (known[clipped] == keys) if len(known) else np.zeros(len(keys), bool)
        return found, clipped

    def merged(self, updates: np.ndarray) -> KeyIndex:
        """A new index where ``updates`` (in publish order) replace older entries of the same key."""
        import numpy as np

        if len(updates) == 0:
            return self
        combined = np.concatenate([self.entries, updates])
        order = np.argsort(combined["key"], kind="stable")  # stable: later updates stay after earlier
        ordered = combined[order]
        last = np.ones(len(ordered), dtype=bool)
        last[:-1] = ordered["key"][1:] != ordered["key"][:-1]  # keep the last of each run of equal keys
        return KeyIndex(ordered[last])


def with_positions(rows: np.ndarray) -> np.ndarray:
    """Index entries from rows carrying at least :func:`row_dtype`'s fields, with no position recorded."""
    import numpy as np

    out = np.zeros(len(rows), dtype=index_dtype())
    for name in row_dtype().names:
        out[name] = rows[name]
    return out
