"""The ledger in DynamoDB (the :class:`~dropgate.ledger.Ledger` port): one item per object version."""

from __future__ import annotations

import time
from typing import Any

from dropgate.adapters.dynamo_update import UpdateExpression, from_attr, to_attr_map
from dropgate.ledger import (
    MAX_ATTEMPTS,
    MAX_TEXT_CHARS,
    STATUS_INDEX,
    Attempt,
    Claim,
    Deletions,
    KeyTransfer,
    LedgerEntry,
    now_iso,
    version_of,
)
from dropgate.storage import ObjectRef


class DynamoLedger:
    """The ledger in DynamoDB: partition key ``pk`` = ``s3://bucket/key``, sort key ``version``."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @staticmethod
    def key_of(ref: ObjectRef) -> dict[str, Any]:
        return {"pk": {"S": ref.uri}, "version": {"S": version_of(ref)}}

    def get(self, ref: ObjectRef) -> LedgerEntry | None:
        response = self._client.get_item(TableName=self._table, Key=self.key_of(ref), ConsistentRead=True)
        item = response.get("Item")
        return _entry_from_item(item) if item else None

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
        """Atomically take this version for processing, or learn why not.

        Granted when no live claim exists and (unless ``force``) the version is not already
        published or quarantined by the same parser version. A claim expires after ``ttl_s``, so
        one left by a crashed invocation does not block the retry for long.
        """
        from botocore.exceptions import ClientError

        now = time.time()
        update = UpdateExpression()
        update.set_if_absent("status", {"S": "received"})
        update.set("updatedAt", {"S": now_iso()})
        update.set("claimUntil", {"N": f"{now + ttl_s:.3f}"})
        if ref.bucket is not None:
            update.set("bucket", {"S": ref.bucket})
            update.set("objectKey", {"S": ref.key})
        if partner:
            update.set_if_absent("partner", {"S": partner})
        names, values = update.names_for("claimUntil")
        values[":now"] = {"N": f"{now:.3f}"}
        condition = f"(attribute_not_exists({names['claimUntil']}) OR {names['claimUntil']} < :now)"
        if not force:  # ... and not already done by this parser version (for these bytes)
            names, _ = update.names_for("status", "parserLabel")
            values.update(
                {":published": {"S": "published"}, ":quarantined": {"S": "quarantined"}, ":label": {"S": parser_label}}
            )
            done = f"{names['status']} IN (:published, :quarantined) AND {names['parserLabel']} = :label"
            if etag:
                # An unversioned bucket gives every overwrite the version "null": the ETag tells them apart.
                names, _ = update.names_for("etag")
                values[":etag"] = {"S": etag}
                done += f" AND {names['etag']} = :etag"
            condition += f" AND NOT ({done})"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self.key_of(ref),
                ConditionExpression=condition,
                **update.build(extra_values=values),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return Claim(granted=False, entry=self.get(ref))
        return Claim(granted=True)

    def with_status(self, status: str, *, partner: str | None = None, since: str | None = None) -> list[LedgerEntry]:
        """Rows in a status (newest first), optionally of one partner and updated since an ISO date."""
        values: dict[str, Any] = {":status": {"S": status}}
        condition = "#status = :status"
        if since:
            values[":since"] = {"S": since}
            condition += " AND updatedAt >= :since"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if partner:
            kwargs["FilterExpression"] = "partner = :partner"
            values[":partner"] = {"S": partner}
        entries: list[LedgerEntry] = []
        while True:
            response = self._client.query(**kwargs)
            entries.extend(_entry_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return entries
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def history(self, ref: ObjectRef) -> list[LedgerEntry]:
        """Every recorded version of one key, newest update first."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": ref.uri}},
            "ConsistentRead": True,
        }
        entries: list[LedgerEntry] = []
        while True:
            response = self._client.query(**kwargs)
            entries.extend(_entry_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return sorted(entries, key=lambda e: e.updated_at, reverse=True)

    def record(self, ref: ObjectRef, entry: LedgerEntry, attempt: Attempt) -> None:
        """Record an attempt and release the claim. A failed attempt (status ``received``) never
        overwrites a final status or its diagnostics: a quarantined file whose reprocess hit a broker
        outage stays quarantined, listed and retryable."""
        failed = entry.status == "received"
        update = UpdateExpression()
        if failed:
            update.set_if_absent("status", {"S": entry.status})
        else:
            update.set("status", {"S": entry.status})
        update.set("updatedAt", {"S": entry.updated_at})
        if not failed:
            update.set("eventCount", {"N": str(entry.event_count)})
            update.set("tombstones", {"N": str(entry.tombstones)})
            update.set("problemCount", {"N": str(entry.problem_count)})
        update.append("attempts", {"M": to_attr_map(attempt.as_item())})
        update.add("attemptCount", 1)
        optional = {
            "partner": entry.partner,
            "parserName": entry.parser_name,
            "parserVersion": entry.parser_version,
            "sha256": entry.sha256,
            "bucket": entry.bucket or None,
            "objectKey": entry.key,
        }
        for name, value in optional.items():
            if value is not None:
                update.set(name, {"S": value})
        if failed:
            if attempt.error:
                update.set("lastError", {"S": attempt.error[:MAX_TEXT_CHARS]})
        else:
            # These describe the current outcome only: a file published by a reprocess has no reason
            # and no diagnostics any more (its attempts keep the history).
            for name, current in (
                ("reason", entry.reason),
                ("diagnostics", entry.diagnostics),
                ("lastError", None),
                ("deletions", entry.deletions),
                ("heldKeys", entry.held_at),
            ):
                if current is None:
                    update.remove(name)
                else:  # bounded: an item must stay far below DynamoDB's 400 KB whatever a file held
                    update.set(name, {"S": current[:MAX_TEXT_CHARS]})
            if entry.etag:
                update.set("etag", {"S": entry.etag})
            if entry.held_deletes:
                update.set("heldDeletes", {"N": str(entry.held_deletes)})
            else:
                update.remove("heldDeletes")
        if entry.size is not None:
            update.set("objectSize", {"N": str(entry.size)})
        if entry.parser_name and entry.parser_version:
            update.set("parserLabel", {"S": entry.parser_label})
        update.remove("claimUntil")  # the outcome is recorded: the version is free again
        self._update_keeping_attempts(ref, update)

    def decide_deletions(self, ref: ObjectRef, decision: Deletions, *, tombstones: int, attempt: Attempt) -> None:
        update = UpdateExpression()
        update.set_if_absent("status", {"S": "received"})
        update.set("deletions", {"S": decision})
        update.set("updatedAt", {"S": attempt.at})
        update.add("eventCount", tombstones)
        update.add("tombstones", tombstones)
        update.append("attempts", {"M": to_attr_map(attempt.as_item())})
        update.add("attemptCount", 1)
        self._update_keeping_attempts(ref, update)

    def _update_keeping_attempts(self, ref: ObjectRef, update: UpdateExpression) -> None:
        response = self._client.update_item(
            TableName=self._table, Key=self.key_of(ref), ReturnValues="UPDATED_NEW", **update.build()
        )
        kept = len(response.get("Attributes", {}).get("attempts", {}).get("L", []))
        if kept > MAX_ATTEMPTS:
            # An item may not exceed 400 KB: keep the newest attempts (attemptCount counts them all).
            drop = ", ".join(f"attempts[{i}]" for i in range(kept - MAX_ATTEMPTS))
            self._client.update_item(TableName=self._table, Key=self.key_of(ref), UpdateExpression=f"REMOVE {drop}")

    def record_transfer(self, transfer: KeyTransfer) -> None:
        """A row of kind ``key-transfer`` under ``key#<hash>`` (no status: it is in no status listing)."""
        import uuid

        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": f"key#{transfer.key_hash}"},
                "version": {"S": f"transfer#{transfer.at}#{uuid.uuid4().hex[:8]}"},
                "kind": {"S": "key-transfer"},
                "key": {"S": transfer.key[:MAX_TEXT_CHARS]},
                "from": {"S": transfer.source},
                "to": {"S": transfer.target},
                "by": {"S": transfer.by[:MAX_TEXT_CHARS]},
                "at": {"S": transfer.at},
            },
        )

    def transfers(self, key_hash: str) -> list[KeyTransfer]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(version, :transfer)",
            "ExpressionAttributeValues": {":pk": {"S": f"key#{key_hash}"}, ":transfer": {"S": "transfer#"}},
            "ConsistentRead": True,
        }
        found: list[KeyTransfer] = []
        while True:
            response = self._client.query(**kwargs)
            for item in response.get("Items", []):
                data = {name: from_attr(value) for name, value in item.items()}
                found.append(KeyTransfer(data["key"], key_hash, data["from"], data["to"], data["by"], data["at"]))
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _entry_from_item(item: dict[str, Any]) -> LedgerEntry:
    data = {name: from_attr(value) for name, value in item.items()}
    pk: str = data["pk"]
    bucket, _, key = pk.removeprefix("s3://").partition("/")
    return LedgerEntry(
        bucket=bucket,
        key=key,
        version=data["version"],
        status=data["status"],
        partner=data.get("partner"),
        parser_name=data.get("parserName"),
        parser_version=data.get("parserVersion"),
        event_count=data.get("eventCount", 0),
        tombstones=data.get("tombstones", 0),
        problem_count=data.get("problemCount", 0),
        sha256=data.get("sha256"),
        size=data.get("objectSize"),
        reason=data.get("reason"),
        diagnostics=data.get("diagnostics"),
        etag=data.get("etag"),
        last_error=data.get("lastError"),
        updated_at=data.get("updatedAt", ""),
        attempts=data.get("attempts", []),
        attempt_count=data.get("attemptCount", len(data.get("attempts", []))),
        claim_until=data.get("claimUntil"),
        deletions=data.get("deletions"),
        held_deletes=data.get("heldDeletes", 0),
        held_at=data.get("heldKeys"),
    )
