"""Per-partner state objects in S3: the stale guard's key index and the snapshot key set.

Where they live is decided in :mod:`dropgate.state_objects`; what they hold in
:mod:`dropgate.key_index` and :mod:`dropgate.snapshots`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from dropgate.key_index import KeyIndex
from dropgate.snapshots import SnapshotHeader, StoredKeys, write_keyset
from dropgate.state_objects import STATE_PREFIX, PartnerStateLocation, is_missing


class S3KeyIndexStore:
    """One object per partner: ``dropgate-state/key-index/<partner>.keyindex`` (see
    :mod:`dropgate.state_objects`)."""

    def __init__(self, client: Any, bucket: str | None, prefix: str = STATE_PREFIX + "key-index/") -> None:
        self._client = client
        self._location = PartnerStateLocation(bucket, prefix, ".keyindex", "the key index")

    def load(self, partner: str, bucket: str | None) -> KeyIndex:
        from botocore.exceptions import ClientError

        target, key = self._location.where(partner, bucket)
        try:
            body = self._client.get_object(Bucket=target, Key=key)["Body"].read()
        except ClientError as error:
            if is_missing(error):
                return KeyIndex.empty()
            raise
        return KeyIndex.from_bytes(body)

    def save(self, partner: str, bucket: str | None, index: KeyIndex) -> None:
        target, key = self._location.where(partner, bucket)
        self._client.put_object(Bucket=target, Key=key, Body=index.to_bytes())


class S3SnapshotStore:
    """One object per partner: ``dropgate-state/snapshots/<partner>.keyset`` (see
    :mod:`dropgate.state_objects`)."""

    enabled = True

    def __init__(self, client: Any, bucket: str | None, prefix: str = STATE_PREFIX + "snapshots/") -> None:
        self._client = client
        self._location = PartnerStateLocation(bucket, prefix, ".keyset", "snapshot key sets")

    @contextmanager
    def _open(self, partner: str, bucket: str | None) -> Iterator[StoredKeys | None]:
        from botocore.exceptions import ClientError

        target, key = self._location.where(partner, bucket)
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

    def load(self, partner: str, bucket: str | None) -> AbstractContextManager[StoredKeys | None]:
        return self._open(partner, bucket)

    def save(self, partner: str, bucket: str | None, header: SnapshotHeader, keys: Iterable[bytes]) -> None:
        target, key = self._location.where(partner, bucket)
        with tempfile.TemporaryFile() as buffer:
            write_keyset(buffer, header, keys)
            buffer.seek(0)
            self._client.upload_fileobj(buffer, target, key)
