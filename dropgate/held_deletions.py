"""Held deletions, acted on: list them, show one, approve (publish its tombstones) or reject it.

A hold is written by :mod:`dropgate.ingest.snapshot_deletes` and kept as :mod:`dropgate.held`
says. Approving publishes the held tombstones now, stamped with the snapshot's ``asOf`` and
through the stale guard, so a key a newer file re-added meanwhile is skipped (stale), not
deleted; the keys deleted leave the partner's key set. Rejecting publishes nothing: the keys stay
live. Both run under the partner lock and act only on a file the ledger records with deletions
``held``; the decision is recorded in the ledger before the hold is forgotten, so a crash repeats
the work (the same tombstones, harmless) instead of losing it, and a repeat after the decision only
finishes forgetting it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from dropgate import events
from dropgate.guard import GuardedSession, PublishGuard
from dropgate.held import HeldDeletion
from dropgate.ledger import Attempt, Deletions, Ledger
from dropgate.partner_keyset import PartnerKeySet
from dropgate.publishing import EventSink, event_messages
from dropgate.snapshots import SnapshotKeys, SnapshotStore, tombstone_entries
from dropgate.spool import SpoolEntry
from dropgate.storage import ObjectRef
from dropgate.terminal import shown
from dropgate.wire import WireFormat

if TYPE_CHECKING:
    from dropgate.ingest.service import Ingestor

#: Keys ``show`` gives as a sample.
SAMPLE_KEYS = 10


class NoSuchHold(LookupError):
    """No pending held deletion for the file asked about."""


class NotHeld(RuntimeError):
    """The ledger does not record this file's deletions as held (yet): nothing may be decided."""


@dataclass(slots=True)
class Decided:
    """What approving or rejecting did."""

    held: HeldDeletion
    decision: Deletions
    #: Tombstones the broker acknowledged (approve), and those the stale guard skipped.
    published: int = 0
    skipped: int = 0
    #: A few skipped keys, each shown safely, with why.
    skipped_samples: list[str] = field(default_factory=list)
    #: The ledger had recorded this decision already: a repeat only forgot the hold.
    already: bool = False

    def summary(self) -> dict[str, Any]:
        """What the reprocess function returns and logs for the decision."""
        return {
            "object": self.held.file,
            "partner": self.held.partner,
            "deletions": self.decision,
            "held": self.held.count,
            "published": self.published,
            "skippedStale": self.skipped,
            "already": self.already,
        }


@dataclass(slots=True)
class HeldDeletions:
    snapshots: SnapshotStore
    ledger: Ledger
    guard: PublishGuard
    sink: EventSink | None
    #: Where holds are listed when no file names its bucket (the state bucket's fallback).
    bucket: str | None = None
    spool_dir: str | None = None
    wire: WireFormat | None = None

    @classmethod
    def of(cls, ingestor: Ingestor) -> HeldDeletions:
        """The same state, ledger, guard and broker as the ingestor's (one composition root)."""
        return cls(
            snapshots=ingestor.snapshots,
            ledger=ingestor.ledger,
            guard=ingestor.guard,
            sink=ingestor.sink,
            bucket=ingestor.settings.bucket,
            spool_dir=ingestor.settings.spool_dir,
            wire=ingestor.wire,
        )

    def pending(self, partner: str | None = None) -> list[HeldDeletion]:
        """Every pending hold (of one partner), oldest first."""
        return self.snapshots.held(partner, self.bucket)

    def find(self, ref: ObjectRef) -> HeldDeletion:
        """The pending hold of this file (of this version, when given)."""
        found = [
            held
            for held in self.snapshots.held(None, ref.bucket or self.bucket)
            if (held.bucket, held.key) == (ref.bucket, ref.key) and ref.version_id in (None, held.version)
        ]
        if not found:
            raise NoSuchHold(f"no held deletions are pending for {ref.shown}")
        if len(found) > 1:
            versions = ", ".join(shown(held.version) for held in found)
            raise ValueError(f"{len(found)} versions of {ref.shown} have held deletions ({versions}); name one")
        return found[0]

    def sample(self, held: HeldDeletion, count: int = SAMPLE_KEYS) -> list[bytes]:
        """The first ``count`` held keys, in key order."""
        with self.snapshots.held_keys(held) as keys:
            return list(islice(keys, count))

    def approve(self, ref: ObjectRef, *, deadline: float | None = None) -> Decided:
        held = self.find(ref)
        with ExitStack() as stack, self.guard.session(held.partner, bucket=held.bucket, deadline=deadline) as session:
            already = self._already(held, "approved")
            if already is not None:
                return already
            done = _Deleted(stack.enter_context(SnapshotKeys(self.spool_dir)))
            published = self._publish(held, session, stack, done, deadline=deadline)
            keyset = PartnerKeySet(self.snapshots, held.partner, held.bucket)
            header = keyset.header
            if header is not None:  # the deleted keys leave the key set (a re-added one stays: it is live)
                # Written anew, as a new generation: shards rewritten in place would hold fewer keys than
                # the manifest says if a crash came before it; this way the set of before stays whole.
                keyset.load_all(done.keys)
                session.on_commit(lambda: keyset.replace(done.keys.merged_by_cell(), header))
            verdicts = session.verdicts
            attempt = _attempt(held, "deletions-approved", events=published, stale=verdicts.stale)
            session.on_commit(lambda: self._decide(held, "approved", published, attempt))
        return Decided(held, "approved", published, verdicts.stale, verdicts.samples.get("stale", []))

    def reject(self, ref: ObjectRef) -> Decided:
        held = self.find(ref)
        with self.guard.session(held.partner, bucket=held.bucket):  # the lock: never beside an approval
            already = self._already(held, "rejected")
            if already is not None:
                return already
            self._decide(held, "rejected", 0, _attempt(held, "deletions-rejected"))
        return Decided(held, "rejected")

    def _publish(
        self, held: HeldDeletion, session: GuardedSession, stack: ExitStack, done: _Deleted, *, deadline: float | None
    ) -> int:
        """The held tombstones through the stale guard, with the snapshot's asOf; returns how many
        the broker acknowledged."""
        if self.sink is None:
            raise RuntimeError("no event sink configured")
        keys = stack.enter_context(SnapshotKeys(self.spool_dir))
        with self.snapshots.held_keys(held) as stored:  # onto local disk: the guard reads them twice
            keys.add_current(tombstone_entries(stored, held.as_of_ms))
        selected = session.select(lambda: tombstone_entries(keys.all_sorted(), held.as_of_ms))
        ref = held_ref(held)
        messages = event_messages(
            done.noting(selected),
            source=held.file,
            parser_label=held.parser,
            ingested_at=events.format_timestamp(datetime.now(UTC)),
            dress=self.wire.for_file(ref) if self.wire is not None else None,
            deletion="approved-held",
        )
        return self.sink.publish(messages, deadline=deadline, positions=session.positions).acknowledged

    def _already(self, held: HeldDeletion, asked: Deletions) -> Decided | None:
        """``None`` when the ledger records the deletions as held; the earlier decision when one was
        recorded (the hold is forgotten now); else :class:`NotHeld`."""
        row = self.ledger.get(held_ref(held))
        decision = row.deletions if row is not None else None
        if decision == "held":
            return None
        if decision is None:
            raise NotHeld(
                f"the ledger does not record held deletions for {shown(held.file)}: its ingest has not finished "
                "(it is retried); decide once `dropgate status` shows it published"
            )
        self.snapshots.drop_held(held)
        if decision != asked:
            raise NotHeld(f"the deletions of {shown(held.file)} were already {decision}")
        return Decided(held, decision, already=True)

    def _decide(self, held: HeldDeletion, decision: Deletions, published: int, attempt: Attempt) -> None:
        """The ledger first, then the hold is forgotten: a crash between them repeats the decision."""
        self.ledger.decide_deletions(held_ref(held), decision, tombstones=published, attempt=attempt)
        self.snapshots.drop_held(held)


class _Deleted:
    """The tombstones published, kept on disk as they stream by (the key set loses these keys)."""

    _BATCH = 10_000

    def __init__(self, keys: SnapshotKeys) -> None:
        self.keys = keys

    def noting(self, entries: Iterable[SpoolEntry]) -> Iterator[SpoolEntry]:
        batch: list[SpoolEntry] = []
        for entry in entries:
            batch.append(entry)
            yield entry
            if len(batch) == self._BATCH:
                self.keys.add_current(batch)
                batch = []
        self.keys.add_current(batch)


def held_ref(held: HeldDeletion) -> ObjectRef:
    return ObjectRef(held.bucket, held.key, held.version)


def _attempt(held: HeldDeletion, outcome: str, *, events: int = 0, stale: int = 0) -> Attempt:
    return Attempt(trigger="deletions", parser=held.parser, outcome=outcome, events=events, stale=stale)
