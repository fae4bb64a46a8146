"""Per-partner state objects in S3: the stale guard's key index and the snapshot key set.

Where they live is decided in :mod:`dropgate.state_objects`; what they hold in
:mod:`dropgate.key_index` and :mod:`dropgate.snapshots`.
"""

from __future__ import annotations

import io
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from dropgate.held import HeldDeletion, read_keys, write_keys
from dropgate.index_shards import Shard, ShardLayout
from dropgate.key_index import KeyIndex
from dropgate.snapshots import KeySetManifest, StoredKeys, read_shard, write_shard
from dropgate.state_objects import STATE_PREFIX, PartnerStateLocation, is_missing

T = TypeVar("T")
R = TypeVar("R")


class S3KeyIndexStore:
    """Each partner's key index as shards under ``dropgate-state/key-index/<partner>/``: a
    ``layout.json`` naming them and one ``<lo>-<hi>.keyindex`` per shard (see
    :mod:`dropgate.index_shards`). Shards are read and written :data:`_IN_FLIGHT` at a time.
    ``dropgate-state/key-index/<partner>.keyindex`` is the single object of before, read once to
    migrate it."""

    def __init__(self, client: Any, bucket: str | None, prefix: str = STATE_PREFIX + "key-index/") -> None:
        self._client = client
        self._legacy = PartnerStateLocation(bucket, prefix, ".keyindex", "the key index")
        self._shards = PartnerStateLocation(bucket, prefix, "/", "the key index")

    def layout(self, partner: str, bucket: str | None) -> ShardLayout | None:
        target, folder = self._shards.where(partner, bucket)
        body = _get(self._client, target, folder + "layout.json")
        return ShardLayout.from_bytes(body) if body is not None else None

    def legacy(self, partner: str, bucket: str | None) -> KeyIndex | None:
        body = _get(self._client, *self._legacy.where(partner, bucket))
        return KeyIndex.from_bytes(body) if body is not None else None

    def read(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> Iterator[KeyIndex]:
        target, folder = self._shards.where(partner, bucket)

        def fetch(shard: Shard) -> KeyIndex:
            body = _get(self._client, target, f"{folder}{shard.name}.keyindex")
            return KeyIndex.from_bytes(body) if body is not None else KeyIndex.empty()

        return in_flight(fetch, shards, _IN_FLIGHT)

    def write(self, partner: str, bucket: str | None, shards: Iterable[tuple[Shard, KeyIndex]]) -> None:
        target, folder = self._shards.where(partner, bucket)

        def put(item: tuple[Shard, KeyIndex]) -> None:
            shard, index = item
            self._client.put_object(Bucket=target, Key=f"{folder}{shard.name}.keyindex", Body=index.to_bytes())

        for _done in in_flight(put, shards, _WRITES_IN_FLIGHT):
            pass

    def write_layout(self, partner: str, bucket: str | None, layout: ShardLayout) -> None:
        target, folder = self._shards.where(partner, bucket)
        self._client.put_object(Bucket=target, Key=folder + "layout.json", Body=layout.to_bytes())

    def delete(self, partner: str, bucket: str | None, shards: Sequence[Shard]) -> None:
        target, folder = self._shards.where(partner, bucket)
        _delete_all(self._client, target, [f"{folder}{shard.name}.keyindex" for shard in shards])

    def drop_legacy(self, partner: str, bucket: str | None) -> None:
        target, key = self._legacy.where(partner, bucket)
        self._client.delete_object(Bucket=target, Key=key)


#: Shard requests in flight at once: enough to hide S3's latency, few enough to bound memory.
_IN_FLIGHT = 8
#: Fewer writes: each holds its shard and its body (measured: eight in flight added ~30 MB to the
#: peak of a new partner's million-product file, whose thirty shards are all written at the end).
_WRITES_IN_FLIGHT = 4


def in_flight(work: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``work`` on each item on a thread pool, at most ``window`` at a time, results in order.

    (``Executor.map`` would submit every item at once, holding every result in memory.)
    """
    with ThreadPoolExecutor(max_workers=window) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class S3SnapshotStore:
    """Each partner's key set as shards under ``dropgate-state/snapshots/<partner>/``: a
    ``manifest.json`` (the set's header, its shards and their generation) and one
    ``<generation>/<lo>-<hi>.keyset`` per shard
    (see :mod:`dropgate.partner_keyset`), :data:`_IN_FLIGHT` requests at a time.
    ``dropgate-state/snapshots/<partner>.keyset`` is the single object of before, read to migrate."""

    enabled = True

    def __init__(self, client: Any, bucket: str | None, prefix: str = STATE_PREFIX + "snapshots/") -> None:
        self._client = client
        self._legacy = PartnerStateLocation(bucket, prefix, ".keyset", "snapshot key sets")
        self._shards = PartnerStateLocation(bucket, prefix, "/", "snapshot key sets")
        self._held = PartnerStateLocation(bucket, HELD_PREFIX, "/", "held deletions")

    def manifest(self, partner: str, bucket: str | None) -> KeySetManifest | None:
        target, folder = self._shards.where(partner, bucket)
        body = _get(self._client, target, folder + "manifest.json")
        return KeySetManifest.from_bytes(body) if body is not None else None

    @contextmanager
    def _open(self, partner: str, bucket: str | None) -> Iterator[StoredKeys | None]:
        from botocore.exceptions import ClientError

        target, key = self._legacy.where(partner, bucket)
        try:
            body = self._client.get_object(Bucket=target, Key=key)["Body"]
        except ClientError as error:
            if is_missing(error):
                yield None
                return
            raise
        try:
            yield StoredKeys(body)
        finally:
            body.close()

    def legacy(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]:
        return self._open(partner, bucket)

    def read(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> Iterator[list[bytes]]:
        target, folder = self._shards.where(partner, bucket)

        def fetch(shard: Shard) -> list[bytes]:
            body = _get(self._client, target, f"{folder}{generation}/{shard.name}.keyset")
            return read_shard(body) if body is not None else []

        return in_flight(fetch, shards, _IN_FLIGHT)

    def write(
        self, partner: str, bucket: str | None, generation: int, shards: Iterable[tuple[Shard, list[bytes]]]
    ) -> None:
        target, folder = self._shards.where(partner, bucket)

        def put(item: tuple[Shard, list[bytes]]) -> None:
            shard, keys = item
            buffer = io.BytesIO()
            write_shard(buffer, keys)
            key = f"{folder}{generation}/{shard.name}.keyset"
            self._client.put_object(Bucket=target, Key=key, Body=buffer.getvalue())

        for _done in in_flight(put, shards, _WRITES_IN_FLIGHT):
            pass

    def write_manifest(self, partner: str, bucket: str | None, manifest: KeySetManifest) -> None:
        target, folder = self._shards.where(partner, bucket)
        self._client.put_object(Bucket=target, Key=folder + "manifest.json", Body=manifest.to_bytes())

    def delete(self, partner: str, bucket: str | None, generation: int, shards: Sequence[Shard]) -> None:
        target, folder = self._shards.where(partner, bucket)
        _delete_all(self._client, target, [f"{folder}{generation}/{shard.name}.keyset" for shard in shards])

    def drop_legacy(self, partner: str, bucket: str | None) -> None:
        target, key = self._legacy.where(partner, bucket)
        self._client.delete_object(Bucket=target, Key=key)

    # -- held deletions: dropgate-state/held-deletions/<partner>/<id>.keys, then <id>.json --------
    def _held_names(self, held: HeldDeletion) -> tuple[str, str, str]:
        target, folder = self._held.where(held.partner, held.bucket)
        return target, f"{folder}{held.id}.keys", f"{folder}{held.id}.json"

    def write_held(self, held: HeldDeletion, keys: Iterable[bytes]) -> str:
        target, keys_name, record_name = self._held_names(held)
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as body:  # a million keys stay off the heap
            write_keys(body, keys)
            body.seek(0)
            self._client.put_object(Bucket=target, Key=keys_name, Body=body)
        self._client.put_object(Bucket=target, Key=record_name, Body=held.to_bytes())
        return f"s3://{target}/{keys_name}"

    def held(self, partner: str | None, bucket: str | None) -> list[HeldDeletion]:
        target, folder = self._held.where(partner or "", bucket)
        if partner is None:
            folder = HELD_PREFIX
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=target, Prefix=folder):
            for item in page.get("Contents", []):
                if item["Key"].endswith(".json"):
                    body = _get(self._client, target, item["Key"])
                    if body is not None:  # decided meanwhile
                        found.append(HeldDeletion.from_bytes(body))
        return sorted(found, key=lambda held: (held.held_at, held.file))

    @contextmanager
    def _held_keys(self, held: HeldDeletion) -> Iterator[Iterator[bytes]]:
        target, keys_name, _record = self._held_names(held)
        body = self._client.get_object(Bucket=target, Key=keys_name)["Body"]
        try:
            yield read_keys(body)
        finally:
            body.close()

    def held_keys(self, held: HeldDeletion) -> AbstractContextManager[Iterator[bytes]]:
        return self._held_keys(held)

    def drop_held(self, held: HeldDeletion) -> None:
        target, keys_name, record_name = self._held_names(held)
        self._client.delete_object(Bucket=target, Key=record_name)
        self._client.delete_object(Bucket=target, Key=keys_name)


#: Where held deletions are kept in the state bucket (dropgate.held).
HELD_PREFIX = STATE_PREFIX + "held-deletions/"


def _get(client: Any, target: str, key: str) -> bytes | None:
    from botocore.exceptions import ClientError

    try:
        return bytes(client.get_object(Bucket=target, Key=key)["Body"].read())
    except ClientError as error:
        if is_missing(error):
            return None
        raise


def _delete_all(client: Any, target: str, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        chunk = [{"Key": key} for key in keys[start : start + 1000]]
        client.delete_objects(Bucket=target, Delete={"Objects": chunk, "Quiet": True})
