"""Snapshot deletes: tombstones for the products a partner's full snapshot no longer holds.

The key set holds every key this partner has live on the topic as far as dropgate knows: a full
snapshot replaces it (after publishing tombstones for what it lacks); any other file of a tracked
partner (a delta between snapshots, a partial or an older snapshot) adds the keys it made live, so
a product published by a delta is deleted by the next snapshot that lacks it; such a file reads and
writes only the key set shards its keys fall in (:mod:`dropgate.partner_keyset`). Runs inside the
guard session (the partner lock); the new set is written after the key index, and before
tombstones go out the stored set is widened to cover this file, so a crash at any point repeats
the same tombstones instead of losing them.

A snapshot that would delete too much (the partner's ``hold_deletions``: :func:`dropgate.held.holds`)
holds its tombstones instead: they are written down as a :class:`~dropgate.held.HeldDeletion`
before the key set moves on, and the key set keeps the held keys (they are live until approved),
so a crash at any point writes the same hold again. :mod:`dropgate.held_deletions` approves them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

from dropgate.guard import GuardedSession
from dropgate.held import HeldDeletion, holds
from dropgate.ingest.outcome import Prepared
from dropgate.key_index import key_hash
from dropgate.key_ownership import NullOwnershipStore, OwnershipStore, carries_partner, owned_by_others
from dropgate.ledger import now_iso
from dropgate.partner_keyset import PartnerKeySet
from dropgate.partners import Partner
from dropgate.publishing import EventSink
from dropgate.snapshots import SnapshotHeader, SnapshotKeys, SnapshotStore, plan, tombstone_entries
from dropgate.terminal import shell_command


@dataclass(frozen=True, slots=True)
class SnapshotStep:
    """How many tombstones the broker acknowledged (a dry run: would publish), and what was decided
    for the outcome's notes (``None``: the partner's snapshots are not tracked)."""

    deletes: int = 0
    note: str | None = None
    #: Tombstones held for approval instead of published (a dry run: would hold), and where.
    held: int = 0
    held_at: str | None = None


@dataclass(slots=True)
class SnapshotDeletes:
    snapshots: SnapshotStore
    sink: EventSink | None
    spool_dir: str | None
    #: Who owns each key: a snapshot never deletes a key another partner owns now (transferred away).
    ownership: OwnershipStore = field(default_factory=NullOwnershipStore)

    def run(
        self,
        prepared: Prepared,
        session: GuardedSession,
        *,
        stack: ExitStack,
        deadline: float | None,
        dry_run: bool = False,
    ) -> SnapshotStep:
        """Snapshot deletes, and the partner's key set that makes them possible (see the module)."""
        partner = prepared.partner
        if partner is None:
            return SnapshotStep()
        if not (prepared.snapshot == "full" or prepared.snapshot_declared or partner.snapshot == "full"):
            return SnapshotStep()  # before any work: a delta partner's file must not pay for sorting its keys
        if not self.snapshots.enabled:
            return SnapshotStep(note="snapshot: no state store is configured (local run): no deletes")
        keys = stack.enter_context(SnapshotKeys(self.spool_dir))
        keys.add_current(prepared.spool.replay(prepared.sha256))
        keyset = PartnerKeySet(self.snapshots, partner.id, prepared.ref.bucket)
        header, restarted = self._previous(partner, keyset)
        decision = plan(
            mode=prepared.snapshot,
            problems=prepared.problem_count,
            live=keys.live,
            as_of_ms=prepared.as_of_ms,
            previous=header,
        )
        if not decision.delete:
            if not dry_run:
                base = header or SnapshotHeader(partner.id, 0, str(prepared.ref), 0, partner.key_template)
                if restarted:  # the stored keys are not comparable: the set restarts from this file
                    session.on_commit(lambda: keyset.replace(keys.merged_by_cell(), base))
                else:  # only the shards this file's keys fall in
                    keyset.load_touched(keys)
                    session.on_commit(lambda: keyset.write_merged(keys, base))
            return SnapshotStep(note=f"snapshot: {decision.reason}{restarted}")
        if not restarted:
            keyset.load_all(keys)
        return self._delete(
            prepared, partner, session, keys, keyset, header, restarted, deadline=deadline, dry_run=dry_run
        )

    def _previous(self, partner: Partner, keyset: PartnerKeySet) -> tuple[SnapshotHeader | None, str]:
        """The stored key set's header, and a note if it is dropped (keys of another template)."""
        header = keyset.header
        if header is not None and header.key_template != partner.key_template:
            return None, (
                f"; the key template changed ({header.key_template} → {partner.key_template}) since the stored "
                "key set, so it restarts from this file"
            )
        return header, ""

    def _delete(
        self,
        prepared: Prepared,
        partner: Partner,
        session: GuardedSession,
        keys: SnapshotKeys,
        keyset: PartnerKeySet,
        header: SnapshotHeader | None,
        restarted: str,
        *,
        deadline: float | None,
        dry_run: bool,
    ) -> SnapshotStep:
        missing, kept = self._deletable(prepared, partner, keys)
        gone = keys.missing_count() - kept
        since = f"since {header.source}" if header is not None and header.as_of_ms else "from the tracked key set"
        if kept:
            since += f" ({kept} more now owned by another partner: not deleted)"
        policy = partner.hold_deletions
        if header is not None and holds(gone, header.count, fraction=policy.fraction, minimum=policy.minimum):
            return self._hold(prepared, partner, session, keys, keyset, header, gone, since, missing, dry_run=dry_run)
        tombstones = session.select(lambda: tombstone_entries(missing(), prepared.as_of_ms))
        if dry_run:
            would = sum(1 for _ in tombstones)
            return SnapshotStep(
                would, f"snapshot: {gone} product(s) missing {since}: would publish {would} tombstone(s)"
            )
        if gone and header is not None:  # widened first: a crash from here on repeats these tombstones
            keyset.write_merged(keys, header)
        if self.sink is None:
            raise RuntimeError("no event sink configured")
        report = self.sink.publish(
            prepared.messages(tombstones, deletion="absent-from-snapshot"),
            deadline=deadline,
            positions=session.positions,
        )
        new = SnapshotHeader(partner.id, prepared.as_of_ms, str(prepared.ref), keys.live, partner.key_template)
        session.on_commit(lambda: keyset.replace(keys.live_by_cell(), new))
        recorded = f"{keys.live} key(s) recorded as the partner's current snapshot{restarted}"
        if header is None:
            return SnapshotStep(report.acknowledged, f"snapshot: first snapshot recorded: {recorded}")
        return SnapshotStep(
            report.acknowledged,
            f"snapshot: {gone} product(s) missing {since}: {report.acknowledged} tombstone(s) published; {recorded}",
        )

    def _deletable(
        self, prepared: Prepared, partner: Partner, keys: SnapshotKeys
    ) -> tuple[Callable[[], Iterator[bytes]], int]:
        """The missing keys this snapshot may delete, and how many it may not: a key transferred to
        another partner (``dropgate keys transfer``) is that partner's to delete, not this one's."""
        if carries_partner(partner.key_template):  # its keys carry its id: no other partner has them
            return keys.missing_sorted, 0
        foreign = owned_by_others(self.ownership, prepared.ref.bucket, partner.id, keys.missing_sorted())
        if not foreign:
            return keys.missing_sorted, 0
        return (lambda: (key for key in keys.missing_sorted() if key_hash(key) not in foreign)), len(foreign)

    def _hold(
        self,
        prepared: Prepared,
        partner: Partner,
        session: GuardedSession,
        keys: SnapshotKeys,
        keyset: PartnerKeySet,
        header: SnapshotHeader,
        gone: int,
        since: str,
        missing: Callable[[], Iterator[bytes]],
        *,
        dry_run: bool,
    ) -> SnapshotStep:
        """Write the tombstones down instead of publishing them; the key set keeps the held keys."""
        share = f"{gone} of {header.count} live key(s), {gone / max(header.count, 1):.0%}"
        said = f"snapshot: {gone} product(s) missing {since} ({share}): more than the partner's hold_deletions"
        if dry_run:
            return SnapshotStep(0, f"{said}: the tombstones would be HELD for approval", held=gone)
        held = HeldDeletion(
            partner=partner.id,
            file=str(prepared.ref),
            bucket=prepared.ref.bucket or "",
            key=prepared.ref.key,
            version=prepared.ref.version_id,
            predecessor=header.source or None,
            as_of_ms=prepared.as_of_ms,
            count=gone,
            live=header.count,
            key_template=partner.key_template,
            parser=prepared.parser_label,
            held_at=now_iso(),
        )
        # Before the key set moves on to this file: a crash from here on writes the same hold again.
        where = self.snapshots.write_held(held, missing())
        new = SnapshotHeader(partner.id, prepared.as_of_ms, str(prepared.ref), 0, partner.key_template)
        # The held keys stay live until approved. Written as a new generation (the whole set was read):
        # a crash before its manifest leaves the set of before, whose count the hold rule reads.
        session.on_commit(lambda: keyset.replace(keys.merged_by_cell(), new))
        show = shell_command("dropgate", "deletions", "show", prepared.ref.uri)
        return SnapshotStep(
            0,
            f"{said}: {gone} tombstone(s) HELD; see {show}, then approve or reject",
            held=gone,
            held_at=where,
        )
