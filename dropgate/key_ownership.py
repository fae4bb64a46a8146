"""Who may publish a key: the partner that published it first, until an operator transfers it.

Why: the default key is ``{productId}``, and two partners that share ids (GTINs, a supplier's part
numbers) would overwrite each other's state; the stale guard is per partner, so it cannot see it.
Partners are authenticated (their prefix, their FTP home); this authorises their keys.

The map is global (ownership is *between* partners): key hash (the key index's 64-bit
:func:`~dropgate.key_index.key_hash`) → owner partner id, in :data:`SHARDS` objects by key hash, so a
file reads only the shards its keys fall in and writes back only the shards where it claims a new
key (a partner sending keys it already owns writes nothing). A shard stores its owners' ids once,
in a small table, and 10 bytes per key: a million keys are ~10 MB in 64 objects of ~160 KB.

Why a fixed layout and not the key index's shards, which are cut as they grow
(:mod:`dropgate.index_shards`): those are written under one partner's lock, so cutting a shard
(write the parts, then the layout, then drop the old shard) cannot race with anything. The map is
written by every partner's files at once, each holding only its own partner lock, and S3 has no
transaction over several objects: a cut racing another partner's claim in the old shard would lose
that claim. With a fixed layout every change is one object's conditional write. 64 shards of 64
cells: a shard is ~160 KB at a million keys, ~1.6 MB at ten million; a large file touches all 64.
(256 were measured too: smaller objects, but a 100,000-product file paid ~1 s more CPU for the
requests alone, so 64 it is.)

Concurrency: two files of different partners may claim the same new key at the same moment. Each
writes a shard only if it is still the version it read (S3 ``If-Match`` on the ETag it read, or
``If-None-Match: *`` for a shard not yet written); the loser's write is refused, it reads the shard
again and decides again, so the key goes to exactly one partner and the other's record becomes an
``authorization`` problem. (A lock per shard would serialise every partner's files on the busiest
shards; the conditional write only costs a retry when two files really touch one shard at once.)

Everything here is pure but for the :class:`OwnershipStore` port (S3: :mod:`dropgate.adapters.
s3_ownership`; in-memory for the rule tests: ``tests/fakes.py``).
"""

from __future__ import annotations

import json
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from dropgate.index_shards import CELLS, Shard
from dropgate.key_index import key_hash

if TYPE_CHECKING:
    import numpy as np

#: Cells (:mod:`dropgate.index_shards`) per ownership shard, and the shards that makes.
SHARD_CELLS = 64
SHARDS = CELLS // SHARD_CELLS
#: Every shard of the map, in cell order.
LAYOUT: tuple[Shard, ...] = tuple(Shard(lo, lo + SHARD_CELLS) for lo in range(0, CELLS, SHARD_CELLS))
#: Conditional writes tried on one shard before the file fails (and its invocation is retried).
MAX_ATTEMPTS = 20
_MAGIC = b"DGKO\x01\x00\x00\x00"
_HEAD = struct.Struct("<I")


class OwnershipBusy(RuntimeError):
    """A shard kept changing under this file's claims; the invocation fails and is retried."""


def entry_dtype() -> Any:
    import numpy as np

    return np.dtype([("key", "<u8"), ("owner", "<u2")])


def shard_index(hashes: np.ndarray) -> np.ndarray:
    """The :data:`LAYOUT` position of each 64-bit key hash."""
    from dropgate.index_shards import cells_of

    return cells_of(hashes) // SHARD_CELLS


def shard_of(key: bytes) -> Shard:
    import numpy as np

    return LAYOUT[int(shard_index(np.array([key_hash(key)], dtype=np.uint64))[0])]


class Owners:
    """One shard of the map: key hashes (sorted) and the index of their owner in ``names``."""

    def __init__(self, entries: np.ndarray, names: Sequence[str]) -> None:
        self.entries = entries
        self.names = tuple(names)

    @classmethod
    def empty(cls) -> Owners:
        import numpy as np

        return cls(np.zeros(0, dtype=entry_dtype()), ())

    def __len__(self) -> int:
        return len(self.entries)

    def to_bytes(self) -> bytes:
        import numpy as np

        head = json.dumps({"owners": list(self.names)}).encode()
        body = np.ascontiguousarray(self.entries).view("u1").data
        return b"".join((_MAGIC, _HEAD.pack(len(head)), head, body))

    @classmethod
    def from_bytes(cls, data: bytes) -> Owners:
        import numpy as np

        if not data:
            return cls.empty()
        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a dropgate key ownership shard (bad magic)")
        (size,) = _HEAD.unpack_from(data, len(_MAGIC))
        start = len(_MAGIC) + _HEAD.size
        names = json.loads(data[start : start + size])["owners"]
        return cls(np.frombuffer(data, dtype=entry_dtype(), offset=start + size), names)

    def owners_of(self, hashes: np.ndarray) -> np.ndarray:
        """For key hashes: the index of each one's owner in ``names`` (-1: nobody owns it)."""
        import numpy as np

        known = self.entries["key"]
        out = np.full(len(hashes), -1, dtype=np.int32)
        if not len(known):
            return out
        at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
        found = known[at] == hashes
        out[found] = self.entries["owner"][at[found]]
        return out

    def position(self, partner: str) -> int:
        """``partner``'s index in ``names`` (-1: it owns nothing here)."""
        return self.names.index(partner) if partner in self.names else -1

    def with_owner(self, hashes: np.ndarray, partner: str) -> Owners:
        """A new shard where ``partner`` owns ``hashes`` (new keys are added, known ones change hands)."""
        import numpy as np

        names = list(self.names)
        if partner not in names:
            names.append(partner)
        added = np.zeros(len(hashes), dtype=entry_dtype())
        added["key"], added["owner"] = hashes, names.index(partner)
        combined = np.concatenate([self.entries, added])
        ordered = combined[np.argsort(combined["key"], kind="stable")]
        last = np.ones(len(ordered), dtype=bool)
        last[:-1] = ordered["key"][1:] != ordered["key"][:-1]  # the later (new) entry of a key wins
        kept = ordered[last]
        used = sorted(set(np.unique(kept["owner"]).tolist()))  # drop names that own nothing any more
        remap = np.zeros(len(names), dtype=np.uint16)
        remap[used] = np.arange(len(used), dtype=np.uint16)
        kept["owner"] = remap[kept["owner"]]
        return Owners(kept, [names[i] for i in used])


@dataclass(frozen=True, slots=True)
class Stored:
    """A shard as read, and the version a conditional write must still find (``None``: no object)."""

    owners: Owners
    version: str | None


class OwnershipStore(Protocol):
    """Where the map's shards live (S3 in production: :mod:`dropgate.adapters.s3_ownership`).
    ``bucket`` is the drop's bucket: the map lives in the state bucket, else there."""

    #: ``False``: no durable state (local runs): nobody owns anything and nothing is checked.
    enabled: bool

    def read(self, bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        """These shards, in this order (a shard never written is empty, version ``None``)."""

    def write(self, bucket: str | None, shard: Shard, owners: Owners, expected: str | None) -> bool:
        """Write the shard only if it is still at ``expected`` (``None``: only if it does not exist);
        ``False`` when another writer got there first (nothing written)."""

    def write_many(self, bucket: str | None, writes: Iterable[tuple[Shard, Owners, str | None]]) -> Iterator[bool]:
        """:meth:`write` for each (shard, owners, expected), several at once; the outcomes in the
        order given, each as soon as it is known (``writes`` is drawn as room frees up, so the next
        write can be prepared while earlier ones are in flight)."""


class NullOwnershipStore:
    """No durable state (local files): nobody owns a key, every partner may publish any."""

    enabled = False

    def read(self, bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        return iter([Stored(Owners.empty(), None) for _ in shards])

    def write(self, bucket: str | None, shard: Shard, owners: Owners, expected: str | None) -> bool:
        return True

    def write_many(self, bucket: str | None, writes: Iterable[tuple[Shard, Owners, str | None]]) -> Iterator[bool]:
        return (True for _write in writes)


def carries_partner(key_template: str) -> bool:
    """A partner whose keys carry its own id cannot collide with another's: it is never checked."""
    return "{partnerId}" in key_template


def claim(
    store: OwnershipStore, bucket: str | None, shard: Shard, hashes: np.ndarray, partner: str, read: Stored | None
) -> tuple[np.ndarray, Owners]:
    """Make ``partner`` the owner of every key in ``hashes`` (one shard's) that nobody owns yet;
    ``read`` is the shard as the caller read it (``None``: read it here). Returns the hashes another
    partner owns after all (claimed between the caller's read and this write), and the shard as
    last seen (to name their owners)."""
    import numpy as np

    hashes = np.unique(hashes)
    for _attempt in range(MAX_ATTEMPTS):
        stored = read if read is not None else next(store.read(bucket, [shard]))
        read = None
        foreign, new = _split(stored.owners, hashes, partner)
        if not len(new):
            return foreign, stored.owners
        if store.write(bucket, shard, stored.owners.with_owner(new, partner), stored.version):
            return foreign, stored.owners
    raise OwnershipBusy(f"key ownership shard {shard.name} kept changing; this file will be retried")


@dataclass(frozen=True, slots=True)
class Claim:
    """One shard's part of a file's claims: its key hashes, and the shard as the caller read it
    (``None``: read it here)."""

    shard: Shard
    hashes: np.ndarray
    read: Stored | None


def claim_all(
    store: OwnershipStore, bucket: str | None, claims: Iterable[Claim], partner: str
) -> Iterator[tuple[Claim, np.ndarray, Owners]]:
    """:func:`claim` for each of ``claims``, their first writes made several at once
    (``write_many``: eight in flight in S3, where a large file's 64 writes one after another cost
    it about a second); a shard whose write lost a race is then claimed again on its own, as
    :func:`claim` would. Yields (claim, the hashes another partner owns, the shard as last seen),
    in the order of ``claims``, each as soon as its write is done: the next claims are decided
    while earlier writes are in flight, and ``claims`` is drawn :data:`READ_AHEAD` at a time, only
    as fast as writes finish."""
    import numpy as np

    decided: deque[tuple[Claim, np.ndarray, Owners, bool]] = deque()

    def writes() -> Iterator[tuple[Shard, Owners, str | None]]:
        for each, stored in _with_reads(store, bucket, claims):
            foreign, new = _split(stored.owners, np.unique(each.hashes), partner)
            decided.append((each, foreign, stored.owners, bool(len(new))))
            if len(new):
                yield each.shard, stored.owners.with_owner(new, partner), stored.version

    for won in store.write_many(bucket, writes()):
        while True:  # the claims before this write wrote nothing: they are done
            each, foreign, owners, wrote = decided.popleft()
            if not wrote:
                yield each, foreign, owners
                continue
            if not won:  # another partner wrote the shard since it was read: read it again, decide again
                foreign, owners = claim(store, bucket, each.shard, each.hashes, partner, None)
            yield each, foreign, owners
            break
    for each, foreign, owners, _wrote in decided:  # after the last write: none of these wrote
        yield each, foreign, owners


#: Claims whose shards are read together when the caller did not keep them (S3 reads them at once).
READ_AHEAD = 8


def _with_reads(store: OwnershipStore, bucket: str | None, claims: Iterable[Claim]) -> Iterator[tuple[Claim, Stored]]:
    """Each claim with its shard: as the caller read it, else read here, :data:`READ_AHEAD` claims'
    shards in one call (a large file over a big map reads most of its shards here: one at a time,
    sixty reads cost it seconds)."""
    pending = iter(claims)
    while batch := list(islice(pending, READ_AHEAD)):
        read = store.read(bucket, [each.shard for each in batch if each.read is None])
        for each in batch:
            yield each, each.read if each.read is not None else next(read)


def _split(owners: Owners, hashes: np.ndarray, partner: str) -> tuple[np.ndarray, np.ndarray]:
    """(the hashes another partner owns, the hashes nobody owns) of these unique ``hashes``."""
    found = owners.owners_of(hashes)
    return hashes[(found >= 0) & (found != owners.position(partner))], hashes[found < 0]


def owner_of(store: OwnershipStore, bucket: str | None, key: bytes) -> str | None:
    """The partner that owns ``key`` (as on the topic), or ``None``."""
    import numpy as np

    stored = next(store.read(bucket, [shard_of(key)]))
    found = int(stored.owners.owners_of(np.array([key_hash(key)], dtype=np.uint64))[0])
    return stored.owners.names[found] if found >= 0 else None


class NotOwned(ValueError):
    """A transfer whose ``--from`` is not the key's owner (the message names who is)."""


def transfer(store: OwnershipStore, bucket: str | None, key: bytes, source: str, target: str) -> str | None:
    """Give ``key`` from ``source`` to ``target``; returns the owner before (``target`` when it was
    already the owner: nothing is written). Raises :class:`NotOwned` if ``source`` does not own it."""
    import numpy as np

    shard = shard_of(key)
    hashed = np.array([key_hash(key)], dtype=np.uint64)
    for _attempt in range(MAX_ATTEMPTS):
        stored = next(store.read(bucket, [shard]))
        found = int(stored.owners.owners_of(hashed)[0])
        owner = stored.owners.names[found] if found >= 0 else None
        if owner == target:
            return owner
        if owner != source:
            raise NotOwned(owner)
        if store.write(bucket, shard, stored.owners.with_owner(hashed, target), stored.version):
            return owner
    raise OwnershipBusy(f"key ownership shard {shard.name} kept changing; try again")


def owned_by_others(store: OwnershipStore, bucket: str | None, partner: str, keys: Iterable[bytes]) -> set[int]:
    """The hashes of those ``keys`` that another partner owns now (a transfer moved them away):
    what ``partner``'s full snapshot must not delete. Reads only the shards the keys fall in."""
    if not store.enabled:
        return set()
    import numpy as np

    hashes = np.fromiter((key_hash(key) for key in keys), dtype=np.uint64)
    if not len(hashes):
        return set()
    shards = shard_index(hashes)
    touched = sorted(set(shards.tolist()))
    found: set[int] = set()
    for index, stored in zip(touched, store.read(bucket, [LAYOUT[i] for i in touched]), strict=True):
        mine = hashes[shards == index]
        names = stored.owners.names
        for hashed, owner in zip(mine.tolist(), stored.owners.owners_of(mine).tolist(), strict=True):
            if owner >= 0 and names[owner] != partner:
                found.add(hashed)
    return found


@dataclass(frozen=True, slots=True)
class Namespace:
    """The keys a partner's template reserves for it: ``{partnerId}:{productId}`` gives globex every
    key ``globex:…``. Those keys are never in the ownership map (such a partner is never checked),
    so a partner keyed by ``{productId}`` alone must not make one by sending the product id
    ``globex:P1``: that would overwrite, or with a tombstone delete, globex's product."""

    owner: str
    prefix: bytes
    suffix: bytes

    def holds(self, key: bytes) -> bool:
        outside = len(self.prefix) + len(self.suffix)
        return len(key) > outside and key.startswith(self.prefix) and key.endswith(self.suffix)


def namespaces(partners: Iterable[tuple[str, str]], *, for_partner: str, template: str) -> tuple[Namespace, ...]:
    """The other partners' reserved keys that a partner keyed by ``template`` could make; none for a
    partner whose own keys carry its id (its keys and theirs differ by the id)."""
    if carries_partner(template):
        return ()
    found = []
    for partner_id, key_template in partners:
        if partner_id == for_partner or not carries_partner(key_template) or "{productId}" not in key_template:
            continue
        before, _, after = key_template.partition("{productId}")
        found.append(
            Namespace(
                partner_id, before.format(partnerId=partner_id).encode(), after.format(partnerId=partner_id).encode()
            )
        )
    return tuple(found)


def namespace_owner(key: bytes, reserved: Sequence[Namespace]) -> str | None:
    """The partner whose reserved keys hold ``key``, if any."""
    for namespace in reserved:
        if namespace.holds(key):
            return namespace.owner
    return None
