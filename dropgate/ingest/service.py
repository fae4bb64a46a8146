"""The one path: object → claim → read → events → publish → outcome.

This is the core every trigger shares (S3 notification, SQS, EventBridge, the CLI). It knows
nothing of trigger shapes, of a format's XML, or of AWS and Kafka: it talks to ports only
(:mod:`dropgate.storage`, :mod:`dropgate.ledger`, :mod:`dropgate.publishing`, :mod:`dropgate.guard`,
:mod:`dropgate.quarantine`, :mod:`dropgate.snapshots`), wired in :mod:`dropgate.app`. It owns the
rules that protect the state-event properties:

- one file, one outcome: *published* (every event acknowledged) or *quarantined*;
- under the ``strict`` policy the whole file is parsed and validated, into an on-disk spool,
  before the first event is produced, so a bad record late in a file publishes nothing;
- a file is never recorded as published before the broker acknowledged every event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

from dropgate.config import Settings
from dropgate.guard import GuardedSession, NullGuard, PublishGuard
from dropgate.ingest import ownership
from dropgate.ingest.bookkeeping import attempt_for, bare_entry, diagnostics_for, entry_for
from dropgate.ingest.outcome import FileOutcome, Prepared
from dropgate.ingest.preparing import Preparer, ReadPolicy
from dropgate.ingest.routing import Route, Router
from dropgate.ingest.snapshot_deletes import SnapshotDeletes, SnapshotStep
from dropgate.key_ownership import NullOwnershipStore, OwnershipStore
from dropgate.ledger import Attempt, Ledger
from dropgate.lineage import FileRuns, Lineage, NullLineage
from dropgate.memory import give_back
from dropgate.partners import PartnerDirectory
from dropgate.publishing import EventSink
from dropgate.quarantine import NullQuarantine, Quarantine, is_quarantine_key, original_key, reprocess_command
from dropgate.snapshots import NullSnapshotStore, SnapshotStore
from dropgate.storage import ObjectMeta, ObjectMissing, ObjectRef, ObjectStore
from dropgate.terminal import shown
from dropgate.wire import WireFormat

#: The guard session of a file no partner claims (it publishes nothing, but a dry run classifies it).
UNROUTED = "_unrouted"


class Ingestor:
    """Runs the one path for one file at a time. Built once per process (see ``dropgate.app``)."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        sink: EventSink | None,
        ledger: Ledger,
        partners: PartnerDirectory,
        settings: Settings,
        quarantine: Quarantine | None = None,
        guard: PublishGuard | None = None,
        snapshots: SnapshotStore | None = None,
        wire: WireFormat | None = None,
        lineage: Lineage | None = None,
        ownership: OwnershipStore | None = None,
    ) -> None:
        self.store = store
        #: Who owns which key, between partners (nobody, for local runs).
        self.ownership: OwnershipStore = ownership or NullOwnershipStore()
        #: What the deployment adds on the wire, and its lineage runs: both off unless configured.
        self.wire = wire
        self.runs = FileRuns(lineage or NullLineage(), settings, topic=sink.topic if sink else settings.topic)
        self.snapshots: SnapshotStore = snapshots or NullSnapshotStore()
        self.sink = sink
        self.ledger = ledger
        self.quarantine: Quarantine = quarantine or NullQuarantine()
        self.guard: PublishGuard = guard or NullGuard()
        #: Called with the number of products read so far, every 10,000 (a progress bar on a terminal).
        self.progress: Callable[[int], None] | None = None
        self.partners = partners
        self.settings = settings
        self._read_policy = ReadPolicy(
            limits=settings.limits(),
            spool_dir=settings.spool_dir,
            max_problems=settings.max_problems,
            max_event_bytes=settings.max_event_bytes,
            parallel_min_bytes=settings.parallel_parse_min_bytes,
            processes=settings.parse_processes,
            state_hashes=self.guard.reads_state,
        )

    def route(
        self, ref: ObjectRef, meta: ObjectMeta, *, partner_id: str | None = None, read_from: ObjectRef | None = None
    ) -> Route:
        """The partner and parser for a file (see :mod:`dropgate.ingest.routing`)."""
        return Router(self.partners, self.store, self._read_policy.limits).route(
            ref, meta, partner_id=partner_id, read_from=read_from
        )

    def prepare(
        self,
        ref: ObjectRef,
        *,
        partner_id: str | None = None,
        meta: ObjectMeta | None = None,
        read_from: ObjectRef | None = None,
        deadline: float | None = None,
        route: Route | None = None,
        preview: bool = False,
    ) -> Prepared:
        """Parse and validate the whole file into a spool. Publishes nothing. The caller closes
        ``prepared.spool``. ``read_from`` reads the bytes elsewhere (a byte-identical quarantine
        copy) while ``ref`` and ``meta`` still name the original version for lineage and the ledger.
        ``preview`` (inspect) keys a file no partner claims as a stand-in partner would, instead of
        reporting it."""
        meta = meta or self.store.head(ref)
        ref = ref.with_version(meta.version_id)
        route = route or self.route(ref, meta, partner_id=partner_id, read_from=read_from)
        preparer = Preparer(self.store, self.partners, self._read_policy, self.progress)
        prepared = preparer.prepare(ref, meta, route, read_from=read_from, deadline=deadline, preview=preview)
        prepared.wire = self.wire
        return prepared

    def ingest(
        self,
        ref: ObjectRef,
        *,
        trigger: str,
        partner_id: str | None = None,
        deadline: float | None = None,
        force: bool = False,
        changed_only: bool | None = None,
        read_from: tuple[ObjectRef, ObjectMeta] | None = None,
    ) -> FileOutcome:
        """The whole path for one object version. ``read_from`` = (copy, the original's metadata):
        reprocess from a quarantine copy when the original version no longer exists."""
        started = time.monotonic()
        if is_quarantine_key(ref.key):
            # Our own quarantine copies and sidecars: never drops. Reprocess goes by the original key.
            use = reprocess_command(ref.bucket, original_key(ref.key))
            return self._ignore(
                ref, trigger, started, f"'{shown(ref.key)}' is a quarantine copy, not a drop; use {use}"
            )
        copy_ref, meta = read_from if read_from is not None else (None, None)
        if meta is None:
            try:
                meta = self.store.head(ref)
            except ObjectMissing as missing:
                # Deleted before we got to it: retrying cannot help, so say so instead of failing forever.
                return self._ignore(ref, trigger, started, str(missing), missing=True)
        ref = ref.with_version(meta.version_id)
        route = self.route(ref, meta, partner_id=partner_id, read_from=copy_ref)
        duplicate = self._claim(ref, meta, route, deadline=deadline, force=force, started=started)
        if duplicate is not None:
            return duplicate
        run = self.runs.start(ref, partner=route.partner.id if route.partner else None, parser=_label(route))
        early: ownership.EarlyRead | None = None
        try:
            early = ownership.read_early(self.ownership, route, meta, ref.bucket)  # while the file is parsed
            prepared = self.prepare(ref, meta=meta, read_from=copy_ref, deadline=deadline, route=route)
        except Exception as error:
            if early is not None:
                early.stop()
            run.failed(error)
            self._failed(ref, route, trigger, started, error)
            raise
        with prepared.spool, run:  # the run ends with the outcome, or fails with what the rest raises
            try:
                return run.concluded(self._authorised(prepared, trigger, deadline, started, changed_only, early))
            finally:
                if early is not None:
                    early.stop()  # taken by the check by now, unless the file was not checked

    def _failed(self, ref: ObjectRef, route: Route, trigger: str, started: float, error: Exception) -> None:
        """Record the failure, which releases the claim, so the retry can do the work."""
        attempt = Attempt(
            trigger=trigger,
            parser=_label(route),
            outcome="failed",
            error=f"{type(error).__name__}: {error}",
            seconds=time.monotonic() - started,
        )
        partner = route.partner.id if route.partner else None
        self.ledger.record(ref, bare_entry(ref, "received", partner=partner), attempt)

    def _authorised(
        self,
        prepared: Prepared,
        trigger: str,
        deadline: float | None,
        started: float,
        changed_only: bool | None,
        early: ownership.EarlyRead | None,
    ) -> FileOutcome:
        """The records whose key another partner owns are problems; the rest is concluded."""
        give_back()  # what parsing freed, before the state stages' peaks (dropgate.memory)
        try:
            ownership.check(prepared, self.ownership, cap=self.settings.max_problems, claim_keys=True, early=early)
        except Exception as error:
            self._record(prepared, FileOutcome.of(prepared), trigger, started, status="received", error=str(error))
            raise
        only_changed = self.settings.changed_only if changed_only is None else changed_only
        return self._conclude(prepared, trigger=trigger, deadline=deadline, started=started, changed_only=only_changed)

    def _claim(
        self, ref: ObjectRef, meta: ObjectMeta, route: Route, *, deadline: float | None, force: bool, started: float
    ) -> FileOutcome | None:
        """Claim the version for this invocation; ``None`` if granted, else the duplicate's outcome."""
        # The claim lives as long as this invocation can (Lambda kills it at the deadline), so a
        # crashed holder never blocks the retry for long.
        ttl = (deadline - time.monotonic() + 15) if deadline else self.settings.claim_ttl_s
        partner = route.partner.id if route.partner else None
        claim = self.ledger.claim(
            ref, partner=partner, parser_label=_label(route), ttl_s=ttl, force=force, etag=meta.etag
        )
        if claim.granted:
            return None
        previous = claim.entry
        return FileOutcome(
            ref=ref,
            status="duplicate",
            partner=previous.partner if previous else None,
            parser=_label(route),
            events=previous.event_count if previous else 0,
            seconds=time.monotonic() - started,
            reason=claim.reason,
            in_progress=claim.in_progress,
        )

    def dry_run(
        self,
        ref: ObjectRef,
        *,
        partner_id: str | None = None,
        read_from: tuple[ObjectRef, ObjectMeta] | None = None,
        changed_only: bool | None = None,
    ) -> FileOutcome:
        """What ingesting would do now: per key new / changed / unchanged / stale. Publishes nothing."""
        started = time.monotonic()
        if read_from is not None:
            prepared = self.prepare(ref, partner_id=partner_id, meta=read_from[1], read_from=read_from[0])
        else:
            prepared = self.prepare(ref, partner_id=partner_id)
        only_changed = self.settings.changed_only if changed_only is None else changed_only
        with prepared.spool:
            ownership.check(prepared, self.ownership, cap=self.settings.max_problems, claim_keys=False)
            outcome = FileOutcome.of(prepared)
            if not prepared.fatal:
                self._classify(prepared, outcome, changed_only=only_changed)
            outcome.tombstones = prepared.spool.tombstones
            if prepared.problems:
                outcome.reason = prepared.first_problem()
        outcome.seconds = time.monotonic() - started
        return outcome

    def _classify(self, prepared: Prepared, outcome: FileOutcome, *, changed_only: bool) -> None:
        """The dry run's verdicts: what the guard would select, what the snapshot would delete."""
        with (
            ExitStack() as stack,
            self.guard.session(
                prepared.partner_id or UNROUTED, bucket=prepared.ref.bucket, write=False, changed_only=changed_only
            ) as session,
        ):
            for _entry in session.select(lambda: prepared.spool.replay(prepared.sha256), spool=prepared.spool):
                pass
            step = SnapshotStep(note="snapshot: a file with problems never deletes")
            if not prepared.problems:
                step = self._snapshot_deletes().run(prepared, session, stack=stack, deadline=None, dry_run=True)
                outcome.snapshot_deletes, outcome.held_deletes = step.deletes, step.held
        if prepared.snapshot == "full" and step.note:
            outcome.notes.append(step.note)
        outcome.verdicts = session.verdicts
        outcome.events = session.verdicts.published
        outcome.stale = session.verdicts.stale
        outcome.unchanged = session.verdicts.unchanged

    def _ignore(
        self, ref: ObjectRef, trigger: str, started: float, reason: str, *, missing: bool = False
    ) -> FileOutcome:
        attempt = Attempt(trigger=trigger, parser="-", outcome="ignored", error=reason)
        self.ledger.record(ref, bare_entry(ref, "ignored", reason=reason), attempt)
        seconds = time.monotonic() - started
        return FileOutcome(ref=ref, status="ignored", reason=reason, seconds=seconds, missing=missing)

    def _conclude(
        self, prepared: Prepared, *, trigger: str, deadline: float | None, started: float, changed_only: bool
    ) -> FileOutcome:
        """Publish what the policy allows, quarantine a file with problems, record the outcome."""
        outcome = FileOutcome.of(prepared)
        if prepared.publishable and prepared.spool.count:
            if self.sink is None:
                raise RuntimeError("no event sink configured")
            try:
                self._publish(prepared, outcome, deadline=deadline, changed_only=changed_only)
            except Exception as error:
                self._record(prepared, outcome, trigger, started, status="received", error=str(error))
                raise
        elif prepared.snapshot == "full":
            outcome.notes.insert(
                0,
                "snapshot: a file with problems never deletes"
                if prepared.problems
                else "snapshot: full snapshot with no products: refusing to delete the whole catalogue",
            )
        if prepared.problems:
            outcome.reason = prepared.first_problem()
            try:
                outcome.diagnostics = self.quarantine.put(
                    diagnostics_for(
                        prepared,
                        policy=prepared.policy,
                        published=outcome.events,
                        problem_cap=self.settings.max_problems,
                    )
                )
            except Exception as error:
                # Nothing is lost: the original stays, the ledger does not say quarantined, the trigger retries.
                self._record(
                    prepared, outcome, trigger, started, status="received", error=f"quarantine failed: {error}"
                )
                raise
        outcome.seconds = time.monotonic() - started
        self._record(prepared, outcome, trigger, started, status=outcome.status)
        return outcome

    def _publish(self, prepared: Prepared, outcome: FileOutcome, *, deadline: float | None, changed_only: bool) -> None:
        """The guard's selection of the spool, then the snapshot's tombstones, under the partner's lock."""
        assert self.sink is not None  # checked by the caller, before anything is recorded
        with (
            ExitStack() as stack,  # closed after the session has committed
            self.guard.session(
                prepared.partner_id or UNROUTED,
                bucket=prepared.ref.bucket,
                deadline=deadline,
                changed_only=changed_only,
            ) as session,
        ):
            give_back()
            selected = session.select(lambda: prepared.spool.replay(prepared.sha256), spool=prepared.spool)
            report = self.sink.publish(prepared.messages(selected), deadline=deadline, positions=session.positions)
            give_back()  # a delivery report per event, before the index is written back
            step = self._snapshot_deletes().run(prepared, session, stack=stack, deadline=deadline)
        outcome.events = report.acknowledged + step.deletes
        outcome.tombstones = prepared.spool.tombstones + step.deletes
        outcome.snapshot_deletes = step.deletes
        outcome.held_deletes, outcome.held_at = step.held, step.held_at
        if prepared.snapshot == "full" and step.note:
            outcome.notes.insert(0, step.note)
        _note_verdicts(outcome, session, changed_only=changed_only)

    def _snapshot_deletes(self) -> SnapshotDeletes:
        return SnapshotDeletes(self.snapshots, self.sink, self.settings.spool_dir, self.ownership)

    def _record(
        self,
        prepared: Prepared,
        outcome: FileOutcome,
        trigger: str,
        started: float,
        *,
        status: str,
        error: str | None = None,
    ) -> None:
        entry = entry_for(prepared, outcome, status, error)  # type: ignore[arg-type]
        self.ledger.record(prepared.ref, entry, attempt_for(prepared, outcome, trigger, started, error))


def _label(route: Route) -> str:
    return f"{route.parser.name}/{route.parser.version}"


def _note_verdicts(outcome: FileOutcome, session: GuardedSession, *, changed_only: bool) -> None:
    verdicts = session.verdicts
    outcome.verdicts = verdicts
    outcome.stale = verdicts.stale
    outcome.unchanged = verdicts.unchanged if changed_only else 0
    if outcome.stale:
        stale_keys = ", ".join(verdicts.samples.get("stale", []))
        outcome.notes.append(
            f"skipped {outcome.stale} stale event(s) older than the newest published for their key (e.g. {stale_keys})"
        )
