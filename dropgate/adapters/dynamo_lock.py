"""The partner lock in DynamoDB: a lease item in the ledger table (the guard's ``PartnerLock`` port)."""

from __future__ import annotations

import time
from typing import Any

from dropgate.guard import LockBusy


class DynamoPartnerLock:
    """A lease in the ledger table (``pk = lock#<partner>``): conditional put, expiring, owner-checked."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def _key(self, partner: str) -> dict[str, Any]:
        return {"pk": {"S": f"lock#{partner}"}, "version": {"S": "lock"}}

    def acquire(self, partner: str, owner: str, *, ttl_s: float, wait_until: float) -> None:
        from botocore.exceptions import ClientError

        delay = 0.05
        while True:
            now = time.time()
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        **self._key(partner),
                        "owner": {"S": owner},
                        "until": {"N": f"{now + ttl_s:.3f}"},
                        # DynamoDB TTL sweeps abandoned leases later; `until` is what decides.
                        "expiresAt": {"N": str(int(now + ttl_s) + 3600)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR #until < :now",
                    ExpressionAttributeNames={"#until": "until"},
                    ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
                )
                return
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
            if time.monotonic() + delay > wait_until:
                raise LockBusy(f"another file of partner '{partner}' is being published; this one will be retried")
            time.sleep(delay)  # back off while the other file of this partner finishes
            delay = min(delay * 2, 1.0)

    def release(self, partner: str, owner: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.delete_item(
                TableName=self._table,
                Key=self._key(partner),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise  # (a lease that expired and was taken over is not ours to delete)
