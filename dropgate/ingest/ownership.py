"""A partner may publish only keys it owns or nobody owns yet (:mod:`dropgate.key_ownership`).

Runs on the prepared spool (either path's), after the duplicate check and before the policy
decides, like :mod:`dropgate.ingest.duplicates`: a record whose key another partner owns is an
``authorization`` problem on that record (its line and record, the owner, the fix). ``strict``:
the file is quarantined. ``skip_invalid``: those records are left out of the replay, the rest is
published. A file that will publish then claims the keys nobody owned with conditional writes,
eight shards' in flight; a key another partner claimed in the meantime becomes a problem too.

Partners whose key template carries their own id (``{partnerId}``) are not checked at all: no
read, no write. A file claims before it publishes, so a retry after a failed publish finds the
keys its own. (A ``strict`` file that loses a race for one key keeps the claims it already wrote
in other shards: rare, and ``dropgate keys transfer`` hands them over. They are not given back:
the check runs outside the partner lock, so another file of the same partner may already have
found such a key its own and published it.)

A large file (:data:`EARLY_READ_BYTES` and more) touches every shard, so its shards are read on a
thread while the file is parsed (:class:`EarlyRead`), and the check after the parse only decides.

Memory: a pass over the spool's index rows (else its entries) partitions (key hash, record,
position) by shard in a scratch file, 17 bytes a row; each shard is then decided on its own.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropgate.index_shards import Shard
from dropgate.ingest.duplicates import KeyNames
from dropgate.ingest.key_buckets import Partition
from dropgate.ingest.outcome import Prepared
from dropgate.ingest.routing import Route
from dropgate.key_index import TRACKED_FIELDS, key_hash
from dropgate.key_ownership import (
    LAYOUT,
    SHARDS,
    Claim,
    Owners,
    OwnershipStore,
    Stored,
    carries_partner,
    claim_all,
    shard_index,
)
from dropgate.spool import INDEX_ROW, EventSpool
from dropgate.storage import ObjectMeta
from dropgate.terminal import shell_command, shown
from parsers.base import Problem

if TYPE_CHECKING:
    import numpy as np

#: The service's logger (Powertools' in Lambda, which is the same standard logger by name).
_log = logging.getLogger("dropgate")

#: A file touching at most this many shards keeps them from its check to its claims (one GET each).
_KEEP = 16
#: Past that, shards are kept while they hold this many entries in all (10 bytes each, ~10 MB), and
#: the rest are read again when claimed: a new partner's or a young map's shards cost nothing to
#: keep, and reading all 64 twice cost a large file about half a second.
_KEEP_ENTRIES = 1 << 20
_CHUNK = 1 << 16
#: A file from this size (as stored) has its shards read while it is parsed: a thousand keys or more
#: leave no shard untouched in practice, and a few kilobytes a product make that about a megabyte.
EARLY_READ_BYTES = 1 << 20
_ROW = [("key", "<u8"), ("record", "<u4"), ("position", "<u4"), ("tombstone", "?")]


@dataclass(slots=True)
class Checked:
    """What the check did: records whose key another partner owns, keys claimed, S3 requests."""

    foreign: int = 0
    claimed: int = 0
    reads: int = 0
    writes: int = 0


def applies(prepared: Prepared, store: OwnershipStore) -> bool:
    """Checked: a routed file with events, under durable state, of a partner whose keys lack its id."""
    partner = prepared.partner
    return (
        store.enabled
        and partner is not None
        and not prepared.fatal
        and prepared.spool.count > 0
        and not carries_partner(partner.key_template)
    )


class EarlyRead:
    """A large file's shards, read on a thread while the file is parsed (a million-product file
    waited about half a second for its 64 reads after the parse), kept up to :data:`_KEEP_ENTRIES`
    entries in all; a shard past that is read at the check, as for a small file.

    A shard read early is older at the check. A key another partner claims meanwhile makes this
    file's conditional write of that shard fail, and the shard is read again and decided again
    (:func:`dropgate.key_ownership.claim`), as for any race. A key this partner owned and an operator
    transfers away meanwhile is still published by this file once, as it was between a read after
    the parse and the publish: the window is now the parse as well (a transfer is an operator's
    act; the new owner's next file puts its state back)."""

    def __init__(self, store: OwnershipStore, bucket: str | None) -> None:
        self.reads = 0
        self._stopped = False
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dropgate-owners")
        self._shards: Future[dict[int, Stored]] | None = pool.submit(self._read, store, bucket)
        pool.shutdown(wait=False)  # the thread ends with its reads; nothing waits for it but take()

    def _read(self, store: OwnershipStore, bucket: str | None) -> dict[int, Stored]:
        shards: dict[int, Stored] = {}
        room = _KEEP_ENTRIES
        for i, stored in enumerate(store.read(bucket, LAYOUT)):
            self.reads += 1
            if self._stopped:
                break  # the file will not be checked; the reads in flight (up to 8 in S3) end on their own
            if len(stored.owners) > room:
                break  # the rest is read at the check, a shard at a time
            shards[i] = stored
            room -= len(stored.owners)
        return shards

    def take(self) -> dict[int, Stored]:
        """The shards read (waiting for the reads); none if they failed: the check reads them itself.

        Handed over, not kept: this object lives as long as the file's invocation, and the shards
        (up to a million entries) are needed only until the check has decided."""
        shards, self._shards = self._shards, None
        if shards is None:
            return {}
        try:
            return shards.result()
        except Exception as error:  # S3 unreachable, throttled: the check's own read says so, or works
            _log.warning("reading the key ownership map early failed (%s); reading it after the parse", error)
            return {}

    def stop(self) -> None:
        """No further reads: the file failed, or the check did not need them (nothing to publish).
        Otherwise the thread would read the rest of the map after the invocation has returned, and,
        on Lambda, go on with it in the next one."""
        self._stopped = True
        self._shards = None


def read_early(store: OwnershipStore, route: Route, meta: ObjectMeta, bucket: str | None) -> EarlyRead | None:
    """An :class:`EarlyRead` for a large file of a partner the check applies to, else ``None``."""
    partner = route.partner
    if not store.enabled or partner is None or carries_partner(partner.key_template):
        return None
    return EarlyRead(store, bucket) if meta.size >= EARLY_READ_BYTES else None


def check(
    prepared: Prepared, store: OwnershipStore, *, cap: int, claim_keys: bool, early: EarlyRead | None = None
) -> Checked:
    """Report (under skip_invalid also leave out) the records whose key another partner owns;
    with ``claim_keys``, if the file is still publishable, make its partner the owner of the keys
    nobody owned. A dry run checks without claiming. ``early``: the shards read during the parse."""
    checked = Checked()
    if not applies(prepared, store):
        return checked
    keys = _FileKeys(prepared.spool)
    try:
        _check(prepared, store, keys, checked, cap=cap, claim_keys=claim_keys, early=early)
    finally:
        keys.close()
    return checked


def _check(
    prepared: Prepared,
    store: OwnershipStore,
    keys: _FileKeys,
    checked: Checked,
    *,
    cap: int,
    claim_keys: bool,
    early: EarlyRead | None,
) -> None:
    assert prepared.partner is not None
    bucket, partner = prepared.ref.bucket, prepared.partner.id
    touched = [i for i in range(SHARDS) if keys.by_shard.sizes[i]]
    kept: dict[int, Stored] = {}
    room = _KEEP_ENTRIES
    to_claim: list[int] = []
    found = _Offenders()
    for i, stored in _touched_shards(store, bucket, touched, early, checked):
        rows = keys.by_shard.between(i, i + 1)
        owners = stored.owners.owners_of(rows["key"])
        found.add(rows, (owners >= 0) & (owners != stored.owners.position(partner)), stored.owners, owners)
        if (owners < 0).any():
            to_claim.append(i)
            if len(touched) <= _KEEP or len(stored.owners) <= room:
                kept[i] = stored
                room -= len(stored.owners)
    _report(prepared, found, keys, cap)
    if claim_keys and prepared.publishable:
        lost = _claim(store, bucket, partner, keys, to_claim, kept, found.records, checked)
        _report(prepared, lost, keys, cap)
        found.count += lost.count
    checked.foreign = found.count


def _touched_shards(
    store: OwnershipStore, bucket: str | None, touched: list[int], early: EarlyRead | None, checked: Checked
) -> Iterator[tuple[int, Stored]]:
    """Each touched shard, in order: as read early, else read now."""
    have = early.take() if early is not None else {}
    if early is not None:
        checked.reads += early.reads
    missing = [i for i in touched if i not in have]
    read = zip(missing, store.read(bucket, [LAYOUT[i] for i in missing]), strict=True)
    checked.reads += len(missing)
    for i in touched:  # popped: a shard the check does not keep is let go as soon as it is decided
        yield (i, have.pop(i)) if i in have else next(read)


def _claim(
    store: OwnershipStore,
    bucket: str | None,
    partner: str,
    keys: _FileKeys,
    to_claim: list[int],
    kept: dict[int, Stored],
    refused: np.ndarray,
    checked: Checked,
) -> _Offenders:
    """Claim the keys nobody owned, but the refused records'; returns the rows whose key another
    partner claimed between the check and the claim. A shard's rows are read when its claim is
    drawn, and dropped when its write is done: what is held is the writes in flight."""
    lost = _Offenders()
    rows_of: dict[Shard, np.ndarray] = {}

    def claims() -> Iterator[Claim]:
        for i in to_claim:
            rows = keys.by_shard.between(i, i + 1)
            rows = rows_of[LAYOUT[i]] = rows[~_isin(rows["record"], refused)]
            yield Claim(LAYOUT[i], rows["key"], kept.pop(i, None))

    for each, taken, seen in claim_all(store, bucket, claims(), partner):
        rows = rows_of.pop(each.shard)
        checked.writes += 1
        checked.claimed += len(_unique(rows["key"])) - len(taken)
        if len(taken):  # another partner claimed these between our read and our write
            lost.add(rows, _isin(rows["key"], taken), seen, seen.owners_of(rows["key"]))
    return lost


class _FileKeys:
    """The file's (key hash, record, position, tombstone) by ownership shard, but excluded records."""

    def __init__(self, spool: EventSpool) -> None:
        import numpy as np

        self.spool = spool
        excluded = np.frombuffer(spool.excluded, dtype=np.uint64)
        sizes = np.zeros(SHARDS, dtype=np.int64)
        #: Every entry's tombstones (excluded ones too): what the spool's exclusion count is made of.
        self.tombstones = 0
        for rows in _spool_rows(spool):
            self.tombstones += int(np.count_nonzero(rows["tombstone"]))
            kept = rows[~_isin(rows["record"], excluded)]
            sizes += np.bincount(shard_index(kept["key"]), minlength=SHARDS)
        self.by_shard = Partition(sizes, _ROW, spool.directory)
        for rows in _spool_rows(spool):
            kept = rows[~_isin(rows["record"], excluded)]
            self.by_shard.write(shard_index(kept["key"]), kept)
        self.by_shard.check_full()

    def exclude(self, records: np.ndarray, tombstones: int) -> None:
        """Leave these records (``tombstones`` of them deletes) out of the replay too."""
        import numpy as np

        spool = self.spool
        before = np.frombuffer(spool.excluded, dtype=np.uint64)
        left_out = self.tombstones - spool.tombstones  # the duplicate check's, so far
        merged = np.union1d(before, records.astype(np.uint64))
        spool.exclude(array("Q", merged.tobytes()), tombstones=left_out + tombstones)

    def close(self) -> None:
        self.by_shard.close()


class _Offenders:
    """Rows whose key another partner owns: their records (to leave out) and, for the problems the
    cap keeps, where they are and who owns them."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.owners: list[str] = []
        self.count = 0

    def add(self, rows: np.ndarray, mask: np.ndarray, shard: Owners, owners: np.ndarray) -> None:
        if mask.any():
            self.rows.append(rows[mask])
            self.owners += [shard.names[o] for o in owners[mask]]
            self.count += int(mask.sum())

    @property
    def records(self) -> np.ndarray:
        import numpy as np

        return np.concatenate([rows["record"] for rows in self.rows]) if self.rows else np.zeros(0, np.uint32)

    def first(self, room: int) -> list[tuple[int, int, str]]:
        """(record, position, owner) of the first ``room`` of them, in record order."""
        import numpy as np

        if not self.rows or room <= 0:
            return []
        rows = np.concatenate(self.rows)
        order = np.argsort(rows["record"], kind="stable")[:room]
        return [(int(rows["record"][i]), int(rows["position"][i]), self.owners[i]) for i in order]


def _report(prepared: Prepared, found: _Offenders, keys: _FileKeys, cap: int) -> None:
    """Problems for the offenders the cap keeps (all counted); skip_invalid leaves them all out."""
    import numpy as np

    if not found.count:
        return
    assert prepared.partner is not None
    partner = prepared.partner
    first = found.first(cap - len(prepared.problems))
    names = KeyNames(partner.key_template, partner.id)
    positions = sorted({position for _record, position, _owner in first})
    names.read(prepared.spool, positions)
    lines = {entry.ordinal: entry.line for entry in prepared.spool.read_at(positions)}
    for record, position, owner in first:
        prepared.problems.append(_problem(names, position, record, lines[position], owner, partner.id))
    prepared.problem_count += found.count
    if partner.policy == "skip_invalid":
        rows = np.concatenate(found.rows)
        keys.exclude(rows["record"], int(np.count_nonzero(rows["tombstone"])))


def _problem(names: KeyNames, position: int, record: int, line: int | None, owner: str, partner: str) -> Problem:
    key = names.key(position).decode(errors="replace")
    product_id = names.product_id(position)
    transfer = shell_command("dropgate", "keys", "transfer", key, "--from", owner, "--to", partner)
    return Problem(
        kind="authorization",
        message=(
            f"{names.of(position)} belongs to partner '{shown(owner)}', which published it first: a partner may "
            "publish only its own keys (a key holds one product's state on the topic). If these are different "
            f"products, give partner '{shown(partner)}' the key template '{{partnerId}}:{{productId}}' in "
            f"partners.yaml; if the product has moved to it, transfer the key: {transfer}"
        ),
        line=line,
        record=record,
        product_id=product_id,
        field="productId",
        value=product_id,
    ).bounded()


#: The spool's :data:`~dropgate.spool.INDEX_ROW`, as numpy reads it.
_INDEX_ROW = [
    ("key", "<u8"),
    ("as_of", "<i8"),
    ("state", "<u8"),
    ("fields", "<u2", (len(TRACKED_FIELDS),)),
    ("record", "<u4"),
]


def _spool_rows(spool: EventSpool) -> Iterator[np.ndarray]:
    """Every entry (excluded ones too) as :data:`_ROW`, a chunk at a time: from the index rows the
    spool kept (built in the parsing workers), else from its entries (hashing each key)."""
    import numpy as np

    source = spool.rows()
    if source is not None:
        layout = np.dtype(_INDEX_ROW)
        assert layout.itemsize == INDEX_ROW.size
        position = 0
        while len(chunk := np.fromfile(source, dtype=layout, count=_CHUNK)):
            out = np.empty(len(chunk), dtype=_ROW)
            out["key"], out["record"], out["tombstone"] = chunk["key"], chunk["record"], chunk["state"] == 0
            out["position"] = np.arange(position, position + len(chunk))
            position += len(chunk)
            yield out
        return
    batch: list[tuple[int, int, int, bool]] = []
    for entry in spool.read_at(range(spool.entries)):
        batch.append((key_hash(entry.key), entry.record, entry.ordinal, entry.head is None))
        if len(batch) == _CHUNK:
            yield np.array(batch, dtype=_ROW)
            batch = []
    if batch:
        yield np.array(batch, dtype=_ROW)


def _isin(values: np.ndarray, among: np.ndarray) -> np.ndarray:
    import numpy as np

    if not len(among):
        return np.zeros(len(values), dtype=bool)
    return np.isin(values, among.astype(values.dtype))


def _unique(keys: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.unique(keys)
