"""The ledger: one row per object version, the record of what became of every file.

It is the idempotency record (a duplicate S3 notification for a version already published with
the same parser version does no work) and what ``dropgate status`` reads. A file is only ever
marked ``published`` after the broker acknowledged every one of its events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from dropgate.storage import ObjectRef

Status = Literal["received", "published", "quarantined", "ignored"]
#: A published full snapshot's tombstones: held for approval, then approved (published) or rejected.
Deletions = Literal["held", "approved", "rejected"]
#: Attempts kept per object version (the oldest are dropped; ``attemptCount`` counts every one).
MAX_ATTEMPTS = 50
#: How much of a reason or an error one ledger row keeps.
MAX_TEXT_CHARS = 1_000
#: Global secondary index on (status, updatedAt): `dropgate quarantine list` reads it.
STATUS_INDEX = "by-status"


def now_iso() -> str:
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
    at: str = field(default_factory=now_iso)

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
    updated_at: str = field(default_factory=now_iso)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    attempt_count: int = 0
    claim_until: float | None = None
    #: Set on a full snapshot whose tombstones were held (dropgate.held): how many, where, what became of them.
    deletions: Deletions | None = None
    held_deletes: int = 0
    held_at: str | None = None

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


@dataclass(frozen=True, slots=True)
class KeyTransfer:
    """A key handed from one partner to another by an operator (``dropgate keys transfer``): a
    ledger row of its own kind, under the key's hash, so ``dropgate keys owner`` shows the history."""

    key: str
    key_hash: str
    source: str
    target: str
    by: str
    at: str = field(default_factory=now_iso)


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

    def decide_deletions(self, ref: ObjectRef, decision: Deletions, *, tombstones: int, attempt: Attempt) -> None:
        """Record what became of a file's held tombstones: ``tombstones`` published now (added to its
        event and tombstone counts), the decision, and the attempt that made it."""
        ...

    def history(self, ref: ObjectRef) -> list[LedgerEntry]:
        """Every recorded version of one key, newest update first."""
        ...

    def with_status(self, status: str, *, partner: str | None = None, since: str | None = None) -> list[LedgerEntry]:
        """Rows in a status (newest first), optionally of one partner and updated since an ISO date."""
        ...

    def record_transfer(self, transfer: KeyTransfer) -> None: ...

    def transfers(self, key_hash: str) -> list[KeyTransfer]:
        """The key's transfers, oldest first."""
        ...


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

    def decide_deletions(self, ref: ObjectRef, decision: Deletions, *, tombstones: int, attempt: Attempt) -> None:
        return None

    def history(self, ref: ObjectRef) -> list[LedgerEntry]:
        return []

    def with_status(self, status: str, *, partner: str | None = None, since: str | None = None) -> list[LedgerEntry]:
        return []

    def record_transfer(self, transfer: KeyTransfer) -> None:
        return None

    def transfers(self, key_hash: str) -> list[KeyTransfer]:
        return []
