"""The per-partner key index: for every key a partner has published, the newest ``asOf``, a hash
of its state and a small hash per field.

Why it exists: a compacted topic keeps the *last write* per key, not the newest ``asOf``, so
replaying Monday's file after Tuesday's would leave Monday's state on top. The publisher checks
every event against this index and skips the ones older than what was already published. The
same index tells ``--changed-only`` which keys did not change, and tells a dry-run which keys
would be new, changed (and which fields) or unchanged, without storing any previous value.

Why this shape: one compact object per partner (36 bytes per key, sorted by key hash) is read
once at the start of a file and replaced once at the end, so the cost is two S3 requests per
file however many products it holds; one remote call per record would cost more than publishing.
numpy does the sorted lookups and merges in bulk; it is imported only when a file is guarded.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: The state fields whose individual hashes are kept, in this order.
TRACKED_FIELDS = ("sku", "name", "quantity", "availability", "price", "locations")
_MAGIC = b"DGKI\x01\x00\x00\x00"


def key_hash(key: bytes) -> int:
    """64-bit hash of a Kafka key (collision odds ~1e-8 for a million keys)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def state_hashes(fields_json: Iterable[bytes]) -> tuple[int, tuple[int, ...]]:
    """(state hash, per-field 16-bit hashes) from each tracked field's JSON, in TRACKED_FIELDS order.

    ``asOf`` and lineage are deliberately left out: the same stock in a newer snapshot is
    "unchanged" for ``--changed-only``.
    """
    parts = list(fields_json)
    digest = hashlib.blake2b(b"\x1f".join(parts), digest_size=8).digest()
    state = int.from_bytes(digest, "little") or 1  # 0 is reserved for "deleted"
    return state, tuple(zlib.crc32(part) & 0xFFFF for part in parts)


def index_dtype() -> Any:
    import numpy as np

    return np.dtype([("key", "<u8"), ("as_of", "<i8"), ("state", "<u8"), ("fields", "<u2", (len(TRACKED_FIELDS),))])


class KeyIndex:
    """Sorted array of (key hash, asOf ms, state hash, field hashes); ``state == 0`` is a tombstone."""

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
        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a dropgate key index (bad magic)")
        # Read-only over the bytes: an index is never changed in place (merges build new arrays).
        return cls(np.frombuffer(data, dtype=index_dtype(), offset=len(_MAGIC)))

    def to_bytes(self) -> bytes:
        # One copy, not two (tobytes, then the concatenation): a shard is written eight at a time.
        import numpy as np

        return b"".join((_MAGIC, np.ascontiguousarray(self.entries).view("u1").data))

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def new_entries(rows: list[tuple[int, int, int, tuple[int, ...]]]) -> np.ndarray:
        import numpy as np

        return np.array(rows, dtype=index_dtype())

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
