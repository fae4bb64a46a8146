"""The ledger: one row per object version, the record of what became of every file.

It is the idempotency record (a duplicate S3 notification for a version already published with
the same parser version does no work) and what ``dropgate status`` reads. A file is only ever
marked ``published`` after the broker acknowledged every one of its events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from dropgate.storage import ObjectRef

Status = Literal["received", "published", "quarantined", "ignored"]
#: Attempts kept per object version (the oldest are dropped; ``attemptCount`` counts every one).
MAX_ATTEMPTS = 50
#: How much of a reason or an error one ledger row keeps.
MAX_TEXT_CHARS = 1_000
#: Global secondary index on (status, updatedAt): `dropgate quarantine list` reads it.
STATUS_INDEX = "by-status"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Attempt:
    trigger: str
    parser: str
    outcome: str
    events: int = 0
    invalid: int = 0
    stale: int = 0
    seconds: float = 0.0
    error: str | None = None
    at: str = field(default_factory=_now)

    def as_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "at": self.at,
            "trigger": self.trigger,
            "parser": self.parser,
            "outcome": self.outcome,
            "events": self.events,
            "invalid": self.invalid,
            "stale": self.stale,
            "seconds": str(round(self.seconds, 3)),
        }
        if self.error:
            item["error"] = self.error[:MAX_TEXT_CHARS]
        return item


@dataclass(slots=True)
class LedgerEntry:
    bucket: str
    key: str
    version: str
    status: Status
    partner: str | None = None
    parser_name: str | None = None
    parser_version: str | None = None
    event_count: int = 0
    tombstones: int = 0
    problem_count: int = 0
    sha256: str | None = None
    size: int | None = None
    reason: str | None = None
    diagnostics: str | None = None
    etag: str | None = None
    last_error: str | None = None
    updated_at: str = field(default_factory=_now)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    attempt_count: int = 0
    claim_until: float | None = None

    @property
    def parser_label(self) -> str:
        return f"{self.parser_name}/{self.parser_version}"


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to "may I process this version?"."""

    granted: bool
    #: When not granted: the row as it stands (already done, or claimed by another invocation).
    entry: LedgerEntry | None = None

    @property
    def in_progress(self) -> bool:
        return not self.granted and (self.entry is None or self.entry.status not in ("published", "quarantined"))

    @property
    def reason(self) -> str:
        if self.granted:
            return ""
        if self.in_progress or self.entry is None:
            return "another invocation is processing this version right now"
        return f"already {self.entry.status} with parser {self.entry.parser_label}"


def version_of(ref: ObjectRef) -> str:
    """The ledger's sort key: S3's version id, or ``null`` as S3 itself says for unversioned."""
    return ref.version_id or "null"


class Ledger(Protocol):
    def get(self, ref: ObjectRef) -> LedgerEntry | None: ...

    def claim(
        self,
        ref: ObjectRef,
        *,
        partner: str | None,
        parser_label: str,
        ttl_s: float,
        force: bool = False,
        etag: str | None = None,
    ) -> Claim: ...

    def record(self, ref: ObjectRef, entry: LedgerEntry, attempt: Attempt) -> None: ...


class NullLedger:
    """No ledger: local-file ingest and ``inspect`` keep no history."""

    def get(self, ref: ObjectRef) -> LedgerEntry | None:
        return None

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
        return Claim(granted=True)

    def record(self, ref: ObjectRef, entry: LedgerEntry, attempt: Attempt) -> None:
        return None


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
        update = _Update()
        update.set_if_absent("status", {"S": "received"})
        update.set("updatedAt", {"S": _now()})
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
        update = _Update()
        if failed:
            update.set_if_absent("status", {"S": entry.status})
        else:
            update.set("status", {"S": entry.status})
        update.set("updatedAt", {"S": entry.updated_at})
        if not failed:
            update.set("eventCount", {"N": str(entry.event_count)})
            update.set("tombstones", {"N": str(entry.tombstones)})
            update.set("problemCount", {"N": str(entry.problem_count)})
        update.append("attempts", {"M": _to_attr_map(attempt.as_item())})
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
            ):
                if current is None:
                    update.remove(name)
                else:  # bounded: an item must stay far below DynamoDB's 400 KB whatever a file held
                    update.set(name, {"S": current[:MAX_TEXT_CHARS]})
            if entry.etag:
                update.set("etag", {"S": entry.etag})
        if entry.size is not None:
            update.set("objectSize", {"N": str(entry.size)})
        if entry.parser_name and entry.parser_version:
            update.set("parserLabel", {"S": entry.parser_label})
        update.remove("claimUntil")  # the outcome is recorded: the version is free again
        response = self._client.update_item(
            TableName=self._table, Key=self.key_of(ref), ReturnValues="UPDATED_NEW", **update.build()
        )
        kept = len(response.get("Attributes", {}).get("attempts", {}).get("L", []))
        if kept > MAX_ATTEMPTS:
            # An item may not exceed 400 KB: keep the newest attempts (attemptCount counts them all).
            drop = ", ".join(f"attempts[{i}]" for i in range(kept - MAX_ATTEMPTS))
            self._client.update_item(TableName=self._table, Key=self.key_of(ref), UpdateExpression=f"REMOVE {drop}")


class _Update:
    """Builds a DynamoDB ``SET`` expression with every attribute name aliased (``bucket``,
    ``status`` and many ordinary words are reserved)."""

    def __init__(self) -> None:
        self._clauses: list[str] = []
        self._removals: list[str] = []
        self._adds: list[str] = []
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}

    def _name(self, name: str) -> str:
        for alias, existing in self._names.items():
            if existing == name:
                return alias
        alias = f"#n{len(self._names)}"
        self._names[alias] = name
        return alias

    def names_for(self, *names: str) -> tuple[dict[str, str], dict[str, Any]]:
        """Aliases for attributes used in a condition, and a values dict to extend."""
        return {name: self._name(name) for name in names}, {}

    def add(self, name: str, amount: int) -> None:
        n, v = self._alias(name, {"N": str(amount)})
        self._adds.append(f"{n} {v}")

    def remove(self, name: str) -> None:
        self._removals.append(self._name(name))

    def _alias(self, name: str, value: Any) -> tuple[str, str]:
        alias = self._name(name)
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = value
        return alias, placeholder

    def set(self, name: str, value: Any) -> None:
        n, v = self._alias(name, value)
        self._clauses.append(f"{n} = {v}")

    def set_if_absent(self, name: str, value: Any) -> None:
        n, v = self._alias(name, value)
        self._clauses.append(f"{n} = if_not_exists({n}, {v})")

    def append(self, name: str, item: Any) -> None:
        n, v = self._alias(name, {"L": [item]})
        self._values[":empty"] = {"L": []}
        self._clauses.append(f"{n} = list_append(if_not_exists({n}, :empty), {v})")

    def build(self, extra_values: dict[str, Any] | None = None) -> dict[str, Any]:
        expression = "SET " + ", ".join(self._clauses)
        if self._adds:
            expression += " ADD " + ", ".join(self._adds)
        if self._removals:
            expression += " REMOVE " + ", ".join(self._removals)
        return {
            "UpdateExpression": expression,
            "ExpressionAttributeNames": self._names,
            "ExpressionAttributeValues": {**self._values, **(extra_values or {})},
        }


def _to_attr_map(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, bool):
            out[name] = {"BOOL": value}
        elif isinstance(value, int | float):
            out[name] = {"N": str(value)}
        elif value is None:
            out[name] = {"NULL": True}
        else:
            out[name] = {"S": str(value)}
    return out


def _from_attr(value: dict[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        return int(inner) if inner.lstrip("-").isdigit() else float(inner)
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "L":
        return [_from_attr(v) for v in inner]
    if kind == "M":
        return {k: _from_attr(v) for k, v in inner.items()}
    return inner


def _entry_from_item(item: dict[str, Any]) -> LedgerEntry:
    data = {name: _from_attr(value) for name, value in item.items()}
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
    )
