"""In-memory stand-ins for the ingest service's ports, for fast unit tests of its rules.

Each fake mirrors the semantics of the real adapter it stands in for (named in its docstring), so
a rule tested here holds against S3, DynamoDB and Kafka too; the integration tests prove the real
adapters against moto and a broker. The stale guard is the product's own :class:`KeyIndexGuard`
over an in-memory index store and lock, so its rules are never re-implemented here.

The service is imported here and nowhere else in the unit tests of its rules.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from dropgate.config import Settings
from dropgate.guard import KeyIndexGuard, LockBusy
from dropgate.held import HeldDeletion, read_keys, write_keys
from dropgate.index_shards import Shard, ShardLayout
from dropgate.ingest.outcome import FileOutcome
from dropgate.ingest.service import Ingestor  # the one import of the service
from dropgate.key_index import KeyIndex
from dropgate.key_ownership import Owners, Stored
from dropgate.ledger import MAX_ATTEMPTS, Attempt, Claim, Deletions, KeyTransfer, LedgerEntry, version_of
from dropgate.partners import PartnerDirectory
from dropgate.publishing import OutMessage, PositionSink, PublishError, PublishReport
from dropgate.quarantine import Diagnostics, quarantine_key
from dropgate.snapshots import KeySetManifest, StoredKeys, read_shard, write_shard
from dropgate.storage import ObjectMeta, ObjectMissing, ObjectRef

__all__ = [
    "PARTNERS_YAML",
    "FileOutcome",
    "InMemoryKeyIndexStore",
    "InMemoryLedger",
    "InMemoryLock",
    "InMemoryObjectStore",
    "InMemoryOwnershipStore",
    "InMemoryQuarantine",
    "InMemorySnapshotStore",
    "Ingestor",
    "RecordingSink",
    "Service",
    "inventory",
    "make_service",
]

BUCKET = "drops"


@dataclass(slots=True)
class _Version:
    body: bytes
    meta: ObjectMeta


class InMemoryObjectStore:
    """Stands in for :class:`dropgate.storage.S3ObjectStore` over a versioned bucket.

    ``put`` keeps every version; ``delete`` adds a delete marker (or removes one version);
    ``head`` of what does not exist raises :class:`ObjectMissing` as the S3 store does.
    ``versioned=False`` is a bucket whose versioning was never enabled: every put overwrites
    version ``None`` and only the ETag tells the overwrites apart.
    """

    def __init__(self) -> None:
        #: (bucket, key) → versions, oldest first; ``None`` is a delete marker.
        self.objects: dict[tuple[str, str], list[_Version | None]] = {}

    def put(
        self, bucket: str, key: str, body: bytes, *, last_modified: datetime | None = None, versioned: bool = True
    ) -> ObjectRef:
        version_id = uuid.uuid4().hex if versioned else None
        meta = ObjectMeta(
            version_id=version_id,
            size=len(body),
            last_modified=last_modified or datetime.now(UTC),
            etag=f'"{hashlib.md5(body).hexdigest()}"',  # noqa: S324 - what S3 puts in an ETag
        )
        versions = self.objects.setdefault((bucket, key), [])
        if not versioned:
            versions.clear()
        versions.append(_Version(body, meta))
        return ObjectRef(bucket, key, version_id)

    def delete(self, bucket: str, key: str, version_id: str | None = None) -> None:
        versions = self.objects.get((bucket, key), [])
        if version_id is None:
            versions.append(None)  # a delete marker: the key is gone, its versions stay
        else:
            versions[:] = [v for v in versions if v is None or v.meta.version_id != version_id]

    def _find(self, ref: ObjectRef) -> _Version:
        versions = self.objects.get((ref.bucket or "", ref.key), [])
        found: _Version | None
        if ref.version_id and ref.version_id != "null":
            found = next((v for v in versions if v is not None and v.meta.version_id == ref.version_id), None)
        else:
            found = versions[-1] if versions else None
        if found is None:
            raise ObjectMissing(f"{ref.shown} does not exist (deleted before it was processed?)")
        return found

    def head(self, ref: ObjectRef) -> ObjectMeta:
        return self._find(ref).meta

    def open(self, ref: ObjectRef, meta: ObjectMeta) -> BinaryIO:
        found = self._find(ref.with_version(meta.version_id))
        if not meta.version_id and meta.etag and found.meta.etag != meta.etag:
            # S3ObjectStore reads an unversioned object with IfMatch: S3 refuses a newer overwrite.
            raise OSError(f"PreconditionFailed: {ref.shown} was overwritten since it was pinned")
        return io.BytesIO(found.body)


class RecordingSink:
    """Stands in for :class:`dropgate.adapters.kafka_publisher.KafkaPublisher`: ``messages`` is what the broker got.

    ``fail_after = N`` delivers N messages of the next publish, then raises :class:`PublishError`
    as the real publisher does when not every event was acknowledged (the N stay delivered: a
    partial publish is what the retry has to cope with). Clear it to let the retry through.
    """

    def __init__(self, topic: str = "test.product-state") -> None:
        self.topic = topic
        self.messages: list[OutMessage] = []
        self.fail_after: int | None = None

    def publish(
        self, messages: Iterable[OutMessage], *, deadline: float | None = None, positions: PositionSink | None = None
    ) -> PublishReport:
        """One partition (0): a message's offset is its place in ``messages``."""
        started, sent = time.monotonic(), 0
        for message in messages:
            if self.fail_after is not None and sent >= self.fail_after:
                raise PublishError(f"{sent} of {sent + 1} events to '{self.topic}' acknowledged: broker went away")
            self.messages.append(message)
            if positions is not None:
                positions.delivered(message.key, 0, len(self.messages) - 1)
            sent += 1
        return PublishReport(sent=sent, acknowledged=sent, seconds=time.monotonic() - started)

    @property
    def keys(self) -> list[bytes]:
        return [m.key for m in self.messages]

    @property
    def tombstones(self) -> list[bytes]:
        return [m.key for m in self.messages if m.value is None]

    def latest(self) -> dict[bytes, bytes | None]:
        """The compacted topic: each key's last value (``None``: deleted)."""
        return {m.key: m.value for m in self.messages}


class InMemoryLedger:
    """Stands in for :class:`dropgate.ledger.DynamoLedger`, with the same claim and record rules.

    A claim is granted when no live claim exists and (unless ``force``) the version is not already
    published or quarantined by the same parser label (and, when given, the same ETag). A claim
    lives ``ttl_s`` on the ledger's clock (``advance`` moves it on). ``record`` appends the attempt,
    releases the claim, and never lets a failed attempt (status ``received``) overwrite a final
    status, its counts or its diagnostics. Each call is atomic, as DynamoDB's conditional writes are.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], LedgerEntry] = {}
        self.key_transfers: list[KeyTransfer] = []
        self.offset = 0.0
        self._atomic = threading.Lock()

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    @staticmethod
    def _key(ref: ObjectRef) -> tuple[str, str]:
        return ref.uri, version_of(ref)

    def get(self, ref: ObjectRef) -> LedgerEntry | None:
        return self.entries.get(self._key(ref))

    def claim(
        self,
        ref: ObjectRef,
        *,
        partner: str | None,
        parser_label: str,
        ttl_s: float,
        force: bool = False,
        etag: str | None = None,
    ) -> Claim:
        with self._atomic:
            return self._claim(ref, partner, parser_label, ttl_s, force=force, etag=etag)

    def _claim(
        self, ref: ObjectRef, partner: str | None, parser_label: str, ttl_s: float, *, force: bool, etag: str | None
    ) -> Claim:
        now = self.now()
        entry = self.get(ref)
        if entry is not None:
            claimed = entry.claim_until is not None and entry.claim_until >= now
            done = (
                entry.status in ("published", "quarantined")
                and entry.parser_name is not None
                and entry.parser_label == parser_label
                and (not etag or entry.etag == etag)
            )
            if claimed or (done and not force):
                return Claim(granted=False, entry=entry)
        else:
            entry = LedgerEntry(bucket=ref.bucket or "", key=ref.key, version=version_of(ref), status="received")
            self.entries[self._key(ref)] = entry
        entry.claim_until = now + ttl_s
        entry.partner = entry.partner or partner
        return Claim(granted=True)

    def record(self, ref: ObjectRef, entry: LedgerEntry, attempt: Attempt) -> None:
        with self._atomic:
            self._record(ref, entry, attempt)

    def _record(self, ref: ObjectRef, entry: LedgerEntry, attempt: Attempt) -> None:
        row = self.entries.get(self._key(ref))
        if row is None:
            row = LedgerEntry(bucket=entry.bucket, key=entry.key, version=entry.version, status=entry.status)
            self.entries[self._key(ref)] = row
        failed = entry.status == "received"
        if not failed:
            row.status = entry.status
            for name in (
                "event_count",
                "tombstones",
                "problem_count",
                "reason",
                "diagnostics",
                "deletions",
                "held_deletes",
                "held_at",
            ):
                setattr(row, name, getattr(entry, name))  # the current outcome only: None clears
            row.last_error = None
            row.etag = entry.etag or row.etag
        elif attempt.error:
            row.last_error = attempt.error
        for name in ("partner", "parser_name", "parser_version", "sha256", "size"):
            if getattr(entry, name) is not None:
                setattr(row, name, getattr(entry, name))
        row.updated_at = entry.updated_at
        row.attempts = [*row.attempts, attempt.as_item()][-MAX_ATTEMPTS:]
        row.attempt_count += 1
        row.claim_until = None  # the outcome is recorded: the version is free again

    def decide_deletions(self, ref: ObjectRef, decision: Deletions, *, tombstones: int, attempt: Attempt) -> None:
        with self._atomic:
            row = self.entries.get(self._key(ref))
            if row is None:  # as DynamoDB's update would: a row with the decision alone
                row = LedgerEntry(bucket=ref.bucket or "", key=ref.key, version=version_of(ref), status="received")
                self.entries[self._key(ref)] = row
            row.deletions = decision
            row.event_count += tombstones
            row.tombstones += tombstones
            row.updated_at = attempt.at
            row.attempts = [*row.attempts, attempt.as_item()][-MAX_ATTEMPTS:]
            row.attempt_count += 1

    def record_transfer(self, transfer: KeyTransfer) -> None:
        with self._atomic:
            self.key_transfers.append(transfer)

    def transfers(self, key_hash: str) -> list[KeyTransfer]:
        return sorted((t for t in self.key_transfers if t.key_hash == key_hash), key=lambda t: t.at)


class InMemoryQuarantine:
    """Stands in for :class:`dropgate.quarantine.S3Quarantine`: keeps each file's :class:`Diagnostics`.

    ``fail = SomeError(...)`` makes ``put`` raise it (S3 refusing the copy or the sidecar).
    """

    def __init__(self) -> None:
        self.diagnostics: dict[tuple[str, str], Diagnostics] = {}
        self.resolved: dict[tuple[str, str], Diagnostics] = {}
        self.fail: Exception | None = None

    def put(self, diagnostics: Diagnostics) -> str | None:
        if self.fail is not None:
            raise self.fail
        if diagnostics.bucket is None:
            return None
        diagnostics.copy_location = f"s3://{diagnostics.bucket}/{quarantine_key(diagnostics.key)}"
        self.diagnostics[(diagnostics.bucket, diagnostics.key)] = diagnostics
        return diagnostics.copy_location

    def resolve(self, bucket: str, key: str) -> str | None:
        moved = self.diagnostics.pop((bucket, key), None)
        if moved is None:
            return None
        self.resolved[(bucket, key)] = moved
        return moved.copy_location

    def load(self, bucket: str, key: str) -> dict[str, Any] | None:
        found = self.diagnostics.get((bucket, key)) or self.resolved.get((bucket, key))
        return found.as_dict() if found is not None else None


class InMemoryKeyIndexStore:
    """Stands in for :class:`dropgate.adapters.s3_state.S3KeyIndexStore` (kept as bytes, as S3 keeps
    them): ``objects`` maps (partner, bucket, name) to bytes; ``legacy`` holds single-object indexes."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], bytes] = {}
        self.legacy_objects: dict[tuple[str, str | None], bytes] = {}
        self.writes: list[str] = []

    def layout(self, partner: str, bucket: str | None) -> ShardLayout | None:
        data = self.objects.get((partner, bucket, "layout"))
        return ShardLayout.from_bytes(data) if data is not None else None

    def legacy(self, partner: str, bucket: str | None) -> KeyIndex | None:
        data = self.legacy_objects.get((partner, bucket))
        return KeyIndex.from_bytes(data) if data is not None else None

    def read(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> Iterator[KeyIndex]:
        for shard in shards:
            data = self.objects.get((partner, bucket, shard.name))
            yield KeyIndex.from_bytes(data) if data is not None else KeyIndex.empty()

    def write(self, partner: str, bucket: str | None, shards: Iterable[tuple[Shard, KeyIndex]]) -> None:
        for shard, index in shards:
            self.writes.append(shard.name)
            self.objects[(partner, bucket, shard.name)] = index.to_bytes()

    def write_layout(self, partner: str, bucket: str | None, layout: ShardLayout) -> None:
        self.writes.append("layout")
        self.objects[(partner, bucket, "layout")] = layout.to_bytes()

    def delete(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> None:
        for shard in shards:
            self.objects.pop((partner, bucket, shard.name), None)

    def drop_legacy(self, partner: str, bucket: str | None) -> None:
        self.legacy_objects.pop((partner, bucket), None)

    def whole(self, partner: str, bucket: str | None) -> KeyIndex:
        """Every shard of the partner's index, joined (for assertions)."""
        import numpy as np

        layout = self.layout(partner, bucket) or ShardLayout.single()
        parts = [index.entries for index in self.read(partner, bucket, layout.shards)]
        return KeyIndex(np.concatenate(parts))


class InMemoryLock:
    """Stands in for :class:`dropgate.adapters.dynamo_lock.DynamoPartnerLock`: one expiring lease per partner.

    It never waits: a lease held by another owner raises :class:`LockBusy` at once.
    """

    def __init__(self) -> None:
        self.leases: dict[str, tuple[str, float]] = {}
        self._atomic = threading.Lock()

    def acquire(self, partner: str, owner: str, *, ttl_s: float, wait_until: float) -> None:
        with self._atomic:
            held = self.leases.get(partner)
            if held is not None and held[1] >= time.time():
                raise LockBusy(f"another file of partner '{partner}' is being published; this one will be retried")
            self.leases[partner] = (owner, time.time() + ttl_s)

    def release(self, partner: str, owner: str) -> None:
        with self._atomic:
            if self.leases.get(partner, ("",))[0] == owner:
                del self.leases[partner]


class InMemorySnapshotStore:
    """Stands in for :class:`dropgate.adapters.s3_state.S3SnapshotStore`: each partner's key set in
    the product's own layouts (shards, manifest; ``legacy`` the single object of before), as bytes."""

    enabled = True

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], bytes] = {}
        self.legacy_objects: dict[tuple[str, str | None], bytes] = {}
        self.reads: list[str] = []

    def manifest(self, partner: str, bucket: str | None) -> KeySetManifest | None:
        data = self.objects.get((partner, bucket, "manifest"))
        return KeySetManifest.from_bytes(data) if data is not None else None

    def legacy(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]:
        data = self.legacy_objects.get((partner, bucket))
        return nullcontext(StoredKeys(io.BytesIO(data)) if data is not None else None)

    def read(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> Iterator[list[bytes]]:
        for shard in shards:
            self.reads.append(shard.name)
            data = self.objects.get((partner, bucket, f"{generation}/{shard.name}"))
            yield read_shard(data) if data is not None else []

    def write(
        self, partner: str, bucket: str | None, generation: int, shards: Iterable[tuple[Shard, list[bytes]]]
    ) -> None:
        for shard, keys in shards:
            buffer = io.BytesIO()
            write_shard(buffer, keys)
            self.objects[(partner, bucket, f"{generation}/{shard.name}")] = buffer.getvalue()

    def write_manifest(self, partner: str, bucket: str | None, manifest: KeySetManifest) -> None:
        self.objects[(partner, bucket, "manifest")] = manifest.to_bytes()

    def delete(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> None:
        for shard in shards:
            self.objects.pop((partner, bucket, f"{generation}/{shard.name}"), None)

    def drop_legacy(self, partner: str, bucket: str | None) -> None:
        self.legacy_objects.pop((partner, bucket), None)

    def write_held(self, held: HeldDeletion, keys: Iterable[bytes]) -> str:
        buffer = io.BytesIO()
        write_keys(buffer, keys)
        self.objects[(held.partner, held.bucket, f"held/{held.id}.keys")] = buffer.getvalue()
        self.objects[(held.partner, held.bucket, f"held/{held.id}.json")] = held.to_bytes()
        return f"memory://{held.partner}/held/{held.id}.keys"

    def held(self, partner: str | None, bucket: str | None) -> list[HeldDeletion]:
        found = [
            HeldDeletion.from_bytes(data)
            for (owner, _bucket, name), data in self.objects.items()
            if name.startswith("held/") and name.endswith(".json") and partner in (None, owner)
        ]
        return sorted(found, key=lambda held: (held.held_at, held.file))

    def held_keys(self, held: HeldDeletion) -> AbstractContextManager[Iterator[bytes]]:
        data = self.objects[(held.partner, held.bucket, f"held/{held.id}.keys")]
        return nullcontext(read_keys(io.BytesIO(data)))

    def drop_held(self, held: HeldDeletion) -> None:
        self.objects.pop((held.partner, held.bucket, f"held/{held.id}.json"), None)
        self.objects.pop((held.partner, held.bucket, f"held/{held.id}.keys"), None)

    def keys(self, partner: str, bucket: str | None = BUCKET) -> list[bytes] | None:
        """The stored key set of ``partner``, sorted (``None``: nothing stored)."""
        manifest = self.manifest(partner, bucket)
        if manifest is None:
            with self.legacy(partner, bucket) as stored:
                return list(stored.keys()) if stored is not None else None
        shards = manifest.layout.shards
        found = sorted(key for keys in self.read(partner, bucket, manifest.generation, shards) for key in keys)
        if len(found) != manifest.header.count:
            raise AssertionError(f"the manifest says {manifest.header.count} keys, the shards hold {len(found)}")
        return found


class InMemoryOwnershipStore:
    """Stands in for :class:`dropgate.adapters.s3_ownership.S3OwnershipStore`: each shard as bytes
    with a version (S3's ETag) that every write changes; a write is refused unless the shard is still
    at the version the writer read (``None``: not written yet), as S3's If-Match / If-None-Match are.
    ``before_write`` (if set) runs just before each conditional check: a test plays a rival there."""

    enabled = True

    def __init__(self) -> None:
        self.objects: dict[tuple[str | None, str], tuple[bytes, str]] = {}
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.before_write: Any = None
        self._atomic = threading.Lock()

    def read(self, bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        for shard in shards:
            self.reads.append(shard.name)
            found = self.objects.get((bucket, shard.name))
            yield Stored(Owners.from_bytes(found[0]), found[1]) if found else Stored(Owners.empty(), None)

    def write(self, bucket: str | None, shard: Shard, owners: Owners, expected: str | None) -> bool:
        if self.before_write is not None:
            rival, self.before_write = self.before_write, None
            rival()
        with self._atomic:
            found = self.objects.get((bucket, shard.name))
            if (found[1] if found else None) != expected:
                return False
            self.writes.append(shard.name)
            self.objects[(bucket, shard.name)] = (owners.to_bytes(), uuid.uuid4().hex)
            return True

    def write_many(self, bucket: str | None, writes: Iterable[tuple[Shard, Owners, str | None]]) -> Iterator[bool]:
        for shard, owners, expected in writes:
            yield self.write(bucket, shard, owners, expected)


#: Three partners in the generic format: strict (the default), skip_invalid, and full snapshots.
PARTNERS_YAML = """
partners:
  acme: {prefix: acme/, format: generic}
  lenient: {prefix: lenient/, format: generic, policy: skip_invalid}
  initech: {prefix: initech/, format: generic, snapshot: full}
"""


@dataclass
class Service:
    """The service wired to fakes, and the fakes, for a test to drive and inspect."""

    ingestor: Ingestor
    store: InMemoryObjectStore
    sink: RecordingSink
    ledger: InMemoryLedger
    quarantine: InMemoryQuarantine
    key_index: InMemoryKeyIndexStore
    lock: InMemoryLock
    snapshots: InMemorySnapshotStore
    ownership: InMemoryOwnershipStore
    bucket: str = BUCKET
    dropped: list[ObjectRef] = field(default_factory=list)

    def drop(self, key: str, body: str | bytes, **options: Any) -> ObjectRef:
        """Upload ``body`` at ``key`` in the drop bucket, as a partner's FTP upload would."""
        data = body.encode() if isinstance(body, str) else body
        ref = self.store.put(self.bucket, key, data, **options)
        self.dropped.append(ref)
        return ref

    def ingest(self, ref: ObjectRef, **options: Any) -> FileOutcome:
        options.setdefault("trigger", "test")
        return self.ingestor.ingest(ref, **options)

    def row(self, ref: ObjectRef) -> LedgerEntry:
        """The ledger row ``dropgate status`` would show for ``ref``."""
        entry = self.ledger.get(ref)
        assert entry is not None, f"no ledger row for {ref}"
        return entry


def make_service(partners_yaml: str = PARTNERS_YAML, *, settings: Settings | None = None) -> Service:
    """The service over fresh fakes and the real :class:`KeyIndexGuard`; parsing stays in-process."""
    settings = settings or Settings(parallel_parse_min_bytes=-1)
    store, sink, ledger = InMemoryObjectStore(), RecordingSink(), InMemoryLedger()
    quarantine, key_index, lock, snapshots, ownership = (
        InMemoryQuarantine(),
        InMemoryKeyIndexStore(),
        InMemoryLock(),
        InMemorySnapshotStore(),
        InMemoryOwnershipStore(),
    )
    ingestor = Ingestor(
        store=store,
        sink=sink,
        ledger=ledger,
        partners=PartnerDirectory.from_yaml(partners_yaml, origin="test partners"),
        settings=settings,
        quarantine=quarantine,
        guard=KeyIndexGuard(key_index, lock),
        snapshots=snapshots,
        ownership=ownership,
    )
    return Service(ingestor, store, sink, ledger, quarantine, key_index, lock, snapshots, ownership)


def inventory(products: dict[str, int | str | None], *, day: int = 16, partner: str | None = None) -> str:
    """A generic-format file generated 2026-11-<day>: product id → quantity (a string is sent as is,
    to make it invalid; ``None`` is a delete). One product per line: product N is on line N + 1."""
    lines = []
    for pid, qty in products.items():
        if qty is None:
            lines.append(f'<product id="{pid}" deleted="true"/>')
        else:
            lines.append(f'<product id="{pid}"><name>{pid} name</name><quantity>{qty}</quantity></product>')
    owner = f' partner="{partner}"' if partner else ""
    root = f'<inventory{owner} generatedAt="2026-11-{day:02d}T06:00:00Z">'
    return "\n".join([root, *lines, "</inventory>"])
