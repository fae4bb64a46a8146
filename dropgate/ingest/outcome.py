"""What one file came to: the parsed file waiting to be published, and the outcome of the path.

Result types only: rendering lives in :mod:`dropgate.render` and the handlers' logs, headers with
:mod:`dropgate.publishing`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from dropgate import events
from dropgate.guard import Verdicts
from dropgate.partners import Partner
from dropgate.publishing import DeletionReason, OutMessage, event_messages
from dropgate.spool import EventSpool, SpoolEntry
from dropgate.storage import ObjectMeta, ObjectRef
from dropgate.terminal import shown
from dropgate.wire import WireFormat
from parsers.base import Parser, Problem

Status = Literal["published", "quarantined", "duplicate", "ignored"]


@dataclass(slots=True)
class Prepared:
    """A file parsed and validated into a spool, not yet published."""

    ref: ObjectRef
    meta: ObjectMeta
    partner: Partner | None
    partner_id: str | None
    parser: Parser
    spool: EventSpool
    sha256: str
    size: int
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    records: int = 0
    #: Seen among all problems, also those past the cap.
    fatal: bool = False
    #: full: this file is the partner's whole catalogue (from the document, else the partner).
    snapshot: Literal["full", "delta"] = "delta"
    #: The document itself says full or delta (Amazon's PurgeAndReplace): its partner's key set is kept.
    snapshot_declared: bool = False
    as_of_ms: int = 0
    #: What the outcome should say of the file besides its problems (keys repeated identically).
    notes: list[str] = field(default_factory=list)
    #: What the deployment adds on the wire (CloudEvents headers, Glue framing); ``None``: the contract alone.
    wire: WireFormat | None = None

    @property
    def parser_label(self) -> str:
        return f"{self.parser.name}/{self.parser.version}"

    @property
    def policy(self) -> str:
        """strict unless the partner says skip_invalid (a file no partner claims is strict)."""
        return self.partner.policy if self.partner else "strict"

    @property
    def publishable(self) -> bool:
        """What the policy lets out: all of a clean file; the valid records of a skip_invalid
        partner's file without a fatal problem; nothing else."""
        return not self.problems or (self.policy == "skip_invalid" and not self.fatal)

    def first_problem(self) -> str:
        return f"{self.problem_count} problem(s); first: {self.problems[0].one_line()}"

    def messages(
        self,
        entries: Iterable[SpoolEntry] | None = None,
        *,
        ingested_at: str | None = None,
        deletion: DeletionReason = "explicit",
    ) -> Iterator[OutMessage]:
        """Spooled events (all, or the ``entries`` the guard selected) as Kafka messages with headers;
        ``deletion`` is why its tombstones delete (the file's own deletes: ``explicit``)."""
        return event_messages(
            entries if entries is not None else self.spool.replay(self.sha256),
            source=str(self.ref),
            parser_label=self.parser_label,
            ingested_at=ingested_at or events.format_timestamp(datetime.now(UTC)),
            dress=self.wire.for_file(self.ref) if self.wire is not None else None,
            deletion=deletion,
        )


@dataclass(slots=True)
class FileOutcome:
    ref: ObjectRef
    status: Status
    partner: str | None = None
    parser: str | None = None
    events: int = 0
    tombstones: int = 0
    #: Of the tombstones: products missing from this full snapshot that were in the previous one.
    snapshot_deletes: int = 0
    #: Tombstones of this full snapshot held for approval instead (a dry run: would hold), and where.
    held_deletes: int = 0
    held_at: str | None = None
    invalid: int = 0
    stale: int = 0
    unchanged: int = 0
    verdicts: Verdicts | None = None
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    sha256: str | None = None
    size: int | None = None
    seconds: float = 0.0
    reason: str | None = None
    diagnostics: str | None = None
    notes: list[str] = field(default_factory=list)
    #: A duplicate because another invocation holds the claim right now (not because it is done).
    in_progress: bool = False
    #: Ignored because the object does not exist (deleted before it was read, or never there): the
    #: handler must not retry it; a person who typed the name is told it is not found.
    missing: bool = False

    @classmethod
    def of(cls, prepared: Prepared) -> FileOutcome:
        """The outcome a parsed file starts from: published unless it has problems."""
        return cls(
            ref=prepared.ref,
            status="published" if not prepared.problems else "quarantined",
            partner=prepared.partner_id,
            parser=prepared.parser_label,
            problems=prepared.problems,
            problem_count=prepared.problem_count,
            invalid=len({p.record for p in prepared.problems if p.record is not None}),
            sha256=prepared.sha256,
            size=prepared.size,
            notes=list(prepared.notes),
        )

    def summary(self) -> str:
        parts = [
            f"{self.status}: {self.ref.shown}",
            f"partner={self.partner or '-'}",
            f"parser={self.parser or '-'}",
            f"events={self.events}",
        ]
        counts = (
            ("tombstones", self.tombstones),
            ("snapshot_deletes", self.snapshot_deletes),
            ("held_deletes", self.held_deletes),
            ("stale_skipped", self.stale),
            ("unchanged", self.unchanged),
            ("problems", self.problem_count),
        )
        parts += [f"{name}={count}" for name, count in counts if count]
        parts.append(f"seconds={self.seconds:.2f}")
        if self.diagnostics:
            parts.append(f"quarantined_copy={shown(self.diagnostics)}")
        if self.reason:
            parts.append(f"reason={shown(self.reason, limit=None)}")
        return " ".join(parts)
