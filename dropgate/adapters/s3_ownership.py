"""The key ownership map in S3 (the :class:`~dropgate.key_ownership.OwnershipStore` port).

One object per shard under ``dropgate-state/key-owners/<lo>-<hi>.owners`` in the state bucket
(else the drop's), read and written :data:`_IN_FLIGHT` at a time. Writes are conditional on the ETag read
(``If-Match``) or on the object not existing yet (``If-None-Match: *``): S3 refuses a write that
lost a race with ``412 PreconditionFailed`` (``409 ConditionalRequestConflict`` when two land at
once), and a shard deleted meanwhile answers ``If-Match`` with ``404``; all three mean "read again".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dropgate.adapters.s3_state import in_flight
from dropgate.index_shards import Shard
from dropgate.key_ownership import Owners, Stored
from dropgate.state_objects import STATE_PREFIX, is_missing

#: Where the map lives under the state bucket.
PREFIX = STATE_PREFIX + "key-owners/"
_IN_FLIGHT = 8
#: What S3 answers a conditional write that lost (``NoSuchKey``: the shard was deleted meanwhile).
_LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class S3OwnershipStore:
    enabled = True

    def __init__(self, client: Any, bucket: str | None, prefix: str = PREFIX) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def _where(self, bucket: str | None, shard: Shard) -> tuple[str, str]:
        target = self._bucket or bucket
        if not target:
            raise ValueError("no bucket for key ownership: set DROPGATE_STATE_BUCKET or DROPGATE_BUCKET")
        return target, f"{self._prefix}{shard.name}.owners"

    def read(self, bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        from botocore.exceptions import ClientError

        def fetch(shard: Shard) -> Stored:
            target, key = self._where(bucket, shard)
            try:
                response = self._client.get_object(Bucket=target, Key=key)
            except ClientError as error:
                if is_missing(error):
                    return Stored(Owners.empty(), None)
                raise
            return Stored(Owners.from_bytes(response["Body"].read()), response["ETag"])

        return in_flight(fetch, shards, _IN_FLIGHT)

    def write(self, bucket: str | None, shard: Shard, owners: Owners, expected: str | None) -> bool:
        from botocore.exceptions import ClientError

        target, key = self._where(bucket, shard)
        condition = {"IfMatch": expected} if expected is not None else {"IfNoneMatch": "*"}
        try:
            self._client.put_object(Bucket=target, Key=key, Body=owners.to_bytes(), **condition)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in _LOST or (expected is not None and is_missing(error)):
                return False
            raise
        return True

    def write_many(self, bucket: str | None, writes: Iterable[tuple[Shard, Owners, str | None]]) -> Iterator[bool]:
        return in_flight(lambda each: self.write(bucket, *each), writes, _IN_FLIGHT)
