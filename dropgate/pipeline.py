"""The one path: object → claim → stream → parser → records → events → publish → outcome.

This is the core every trigger shares (S3 notification, SQS, EventBridge, the CLI). It knows
nothing of trigger shapes and nothing of a format's XML; it owns the rules that protect the
state-event properties:

- one file, one outcome: *published* (every event acknowledged) or *quarantined*;
- under the ``strict`` policy the whole file is parsed and validated, into an on-disk spool,
  before the first event is produced, so a bad record late in a file publishes nothing;
- a file is never recorded as published before the broker acknowledged every event.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Literal, Protocol, cast

from pydantic import ValidationError

from dropgate import events
from dropgate.byte_streams import Payload
from dropgate.config import Settings
from dropgate.events import SplitValue
from dropgate.guard import NullGuard, PublishGuard, Verdicts
from dropgate.ledger import Attempt, Ledger, LedgerEntry
from dropgate.partners import Partner, PartnerDirectory
from dropgate.publisher import Header, OutMessage, PublishReport
from dropgate.quarantine import (
    Diagnostics,
    NullQuarantine,
    Quarantine,
    is_quarantine_key,
    original_key,
    reprocess_command,
)
from dropgate.snapshots import NullSnapshotStore, SnapshotHeader, SnapshotKeys, SnapshotStore, plan, tombstone_entries
from dropgate.spool import EventSpool, SpoolEntry
from dropgate.storage import ObjectMeta, ObjectMissing, ObjectRef, ObjectStore
from dropgate.terminal import shown
from parsers.base import (
    Document,
    InputRejected,
    Item,
    LimitExceeded,
    Parser,
    ParserFailed,
    Problem,
    Record,
    SegmentedParser,
    truncate,
)
from parsers.limits import Limits
from parsers.segments import NotPlain
from parsers.unknown import UnknownFormat
from parsers.xml_stream import sniff, sniff_root

#: Problems that make a file unusable as a whole, whatever the partner's policy.
FATAL_KINDS = frozenset({"xml_syntax", "unknown_format", "encoding", "security_limit", "empty", "parser_error"})
#: A snapshot time this far past the upload time is a typo, and would block every later real snapshot.
FUTURE_TOLERANCE = timedelta(days=1)


def is_fatal(problem: Problem) -> bool:
    """Fatal: the kinds above, and any problem about the document rather than one record (wrong
    partner, unusable snapshot time): skipping records cannot make such a file right."""
    return problem.kind in FATAL_KINDS or problem.record is None


#: Parses a file under no prefix whose head cannot be read (not XML, UTF-16, …): its problems say why.
DEFAULT_FORMAT = "generic"

Status = Literal["published", "quarantined", "duplicate", "ignored"]
#: The partner id ``inspect`` shows for a file no partner claims.
PREVIEW_PARTNER = "unassigned"


#: The service's logger (Powertools' in Lambda, which is the same standard logger by name).
_log = logging.getLogger("dropgate")


class DeadlineReached(RuntimeError):
    """The invocation is about to time out; give up cleanly (the trigger retries the file)."""


def _payload(raw: BinaryIO, limits: Limits) -> Payload:
    return Payload(
        raw,
        max_object_bytes=limits.max_object_bytes,
        max_decompressed_bytes=limits.max_decompressed_bytes,
        max_compression_ratio=limits.max_compression_ratio,
    )


class _DeadlineStream(io.RawIOBase):
    """Raises :class:`DeadlineReached` on the first read past the deadline."""

    def __init__(self, stream: BinaryIO, deadline: float, where: Callable[[], str]) -> None:
        self._stream = stream
        self._deadline = deadline
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if time.monotonic() > self._deadline:
            raise DeadlineReached(
                f"stopped reading {self._where()}: the invocation is about to time out; the retry will start over"
            )
        data = self._stream.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)


class _SourceStream(io.RawIOBase):
    """Remembers an error raised while reading the object, so that it can be told from a parser's.

    A read that fails (S3 drops the connection, the deadline, a gzip stream refused) is the
    source's: it keeps its meaning (retry, or a problem of the bytes). Anything else a parser
    raises is a bug in dropgate: the file is quarantined as ``parser_error``, never retried.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.failed: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._stream.read(len(buffer))
        except BaseException as error:
            self.failed = error
            raise
        memoryview(buffer)[: len(data)] = data
        return len(data)


def _parsed(items: Iterator[Item], source: _SourceStream) -> Iterator[Item]:
    """The parser's items; an unexpected exception inside the parser becomes :class:`ParserFailed`
    naming the record after the last one it gave."""
    last = 0
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except (InputRejected, DeadlineReached, MemoryError, OSError):
            raise  # the bytes' own problem, or the function's resources (memory, /tmp): not a parser bug
        except Exception as error:
            if source.failed is not None:
                raise  # reading the object failed: the source's error, not the parser's
            raise ParserFailed(error, record=last + 1) from error
        if isinstance(item, Record):
            last = item.index
        yield item


class EventSink(Protocol):
    topic: str

    def publish(self, messages: Iterator[OutMessage], *, deadline: float | None = None) -> PublishReport: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Which partner a file belongs to and which parser reads it, and how that was decided."""

    partner: Partner | None
    parser: Parser
    #: given (--partner), prefix, detected (root element and namespace), unknown (no format matched)
    how: Literal["given", "prefix", "detected", "unknown"]


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

    @property
    def parser_label(self) -> str:
        return f"{self.parser.name}/{self.parser.version}"

    def messages(
        self, entries: Iterable[SpoolEntry] | None = None, *, ingested_at: str | None = None
    ) -> Iterator[OutMessage]:
        """Spooled events (all, or the ``entries`` the guard selected) as Kafka messages with headers."""
        stamp = (ingested_at or events.format_timestamp(datetime.now(UTC))).encode()
        same_for_every_event: list[Header] = [
            ("content-type", events.CONTENT_TYPE.encode()),
            ("schema", events.SCHEMA_NAME.encode()),
            ("source-object", str(self.ref).encode()),
            ("parser-version", self.parser_label.encode()),
            ("ingested-at", stamp),
        ]
        event_id = events.event_id
        for entry in entries if entries is not None else self.spool.replay(self.sha256):
            key, value = entry.key, entry.value
            headers: list[Header] = [("event-id", event_id(key, value).encode()), *same_for_every_event]
            yield OutMessage(key=key, value=value, headers=headers)


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

    def summary(self) -> str:
        parts = [
            f"{self.status}: {self.ref.shown}",
            f"partner={self.partner or '-'}",
            f"parser={self.parser or '-'}",
        ]
        parts.append(f"events={self.events}")
        if self.tombstones:
            parts.append(f"tombstones={self.tombstones}")
        if self.snapshot_deletes:
            parts.append(f"snapshot_deletes={self.snapshot_deletes}")
        if self.stale:
            parts.append(f"stale_skipped={self.stale}")
        if self.unchanged:
            parts.append(f"unchanged={self.unchanged}")
        if self.problem_count:
            parts.append(f"problems={self.problem_count}")
        parts.append(f"seconds={self.seconds:.2f}")
        if self.diagnostics:
            parts.append(f"quarantined_copy={shown(self.diagnostics)}")
        if self.reason:
            parts.append(f"reason={shown(self.reason, limit=None)}")
        return " ".join(parts)


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
    ) -> None:
        self.store = store
        self.snapshots: SnapshotStore = snapshots or NullSnapshotStore()
        self.sink = sink
        self.ledger = ledger
        self.quarantine: Quarantine = quarantine or NullQuarantine()
        self.guard: PublishGuard = guard or NullGuard()
        #: Called with the number of products read so far, every 10,000 (a progress bar on a terminal).
        self.progress: Callable[[int], None] | None = None
        self.partners = partners
        self.settings = settings

    # -- routing -------------------------------------------------------------------------------
    def route(
        self, ref: ObjectRef, meta: ObjectMeta, *, partner_id: str | None = None, read_from: ObjectRef | None = None
    ) -> Route:
        """The partner and parser for a file: ``--partner``, else the key prefix, else the format its
        root element and namespace match (reading only the file's head), else ``unknown_format``."""
        if partner_id is not None:
            partner = self.partners.get(partner_id)
            return Route(partner, self.partners.parser(partner.format), "given")
        owner = self.partners.for_key(ref.key)
        if owner is not None:
            return Route(owner, self.partners.parser(owner.format), "prefix")
        try:
            with self._open(ref, meta, read_from) as raw:
                stream, sniffed = sniff(_payload(raw, self.settings.limits()).stream)
                if sniffed.root is None:
                    sniffed = sniff_root(stream)
        except InputRejected:
            sniffed = None  # the parse proper reports what is wrong with the bytes
        if sniffed is None or sniffed.root is None:
            return Route(None, self.partners.parser(DEFAULT_FORMAT), "unknown")
        found = self.partners.detect(sniffed)
        if found is None:
            return Route(None, UnknownFormat(sniffed, self.partners.known_formats()), "unknown")
        _, parser, detected_owner = found
        return Route(detected_owner, parser, "detected")

    def _open(self, ref: ObjectRef, meta: ObjectMeta, read_from: ObjectRef | None) -> BinaryIO:
        """The object's bytes: the pinned version, or a byte-identical copy (``read_from``)."""
        if read_from is None:
            return self.store.open(ref, meta)
        return self.store.open(read_from, replace(meta, version_id=None, etag=None))

    # -- parse + validate ----------------------------------------------------------------------
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
        partner, parser = route.partner, route.parser
        limits = self.settings.limits().overridden(partner.limits if partner else None)
        segmented = self._segmented(parser, meta)
        while True:
            spool = EventSpool(self.settings.spool_dir)
            collector = _Problems(self.settings.max_problems)
            records = 0
            builder = _EventBuilder(
                ref,
                meta,
                partner,
                self.partners,
                parser,
                collector,
                max_event_bytes=self.settings.max_event_bytes,
                state_hashes=self.guard.reads_state,
            )
            if preview:
                builder.fallback = Partner(id=PREVIEW_PARTNER, prefix=f"{PREVIEW_PARTNER}/", format=parser.name)
            limit = limits.max_object_bytes
            if meta.size > limit:
                # Refused before a byte is read: the declared size is authoritative for a pinned version.
                collector.add(
                    Problem(
                        kind="security_limit",
                        message=f"the file is {meta.size:,} bytes, over the limit of {limit:,}; "
                        "split it or raise the limit",
                        field="max_object_bytes",
                        value=str(limit),
                    )
                )
                sha256, size = "", meta.size
                break
            try:
                read = self._parse_parallel if segmented else self._parse_into
                sha256, size, records = read(
                    ref, meta, parser, builder, spool, collector, read_from, limits=limits, deadline=deadline
                )
            except NotPlain as reason:
                # Not a plain document after all: read it again, streaming, for the diagnostics.
                spool.close()
                if not segmented:
                    raise  # only the parallel path may give up on a file
                if reason.unexpected:
                    _log.warning("parallel parsing of %s failed (%s); reading it again in one process", ref, reason)
                segmented = False
                continue
            except BaseException:
                spool.close()  # DeadlineReached, a read failure: the caller never gets the spool to close
                raise
            if builder.partner is None and builder.fallback is None and not collector.fatal:
                builder.report_unrouted()  # also a file without records: it must not pass as published
            break
        return Prepared(
            ref=ref,
            meta=meta,
            partner=builder.partner,
            partner_id=builder.partner.id if builder.partner else builder.declared_partner,
            parser=parser,
            spool=spool,
            sha256=sha256,
            size=size,
            problems=collector.kept,
            problem_count=collector.total,
            records=records,
            fatal=collector.fatal,
            snapshot=builder.snapshot or (builder.partner.snapshot if builder.partner else "delta"),
            snapshot_declared=builder.snapshot is not None,
            as_of_ms=builder.as_of_ms,
        )

    def _segmented(self, parser: Parser, meta: ObjectMeta) -> bool:
        """Worth parsing in several processes: the format can, the file is large, there are cores."""
        threshold = self.settings.parallel_parse_min_bytes
        return hasattr(parser, "segment_records") and 0 <= threshold <= meta.size and self._processes() > 1

    def _processes(self) -> int:
        from dropgate.parallel import available_cores  # multiprocessing: only for large files

        return self.settings.parse_processes or available_cores()

    def _parse_parallel(
        self,
        ref: ObjectRef,
        meta: ObjectMeta,
        parser: Parser,
        builder: _EventBuilder,
        spool: EventSpool,
        collector: _Problems,
        read_from: ObjectRef | None = None,
        *,
        limits: Limits,
        deadline: float | None = None,
    ) -> tuple[str, int, int]:
        """What :meth:`_parse_into` does, for a plain document, on every core (``dropgate.parallel``).

        Reports no problem itself: anything that would be one raises :class:`NotPlain`, and the
        caller streams the file instead, so every diagnostic comes from the one streaming path.
        """
        from dropgate import parallel

        segmented = cast(SegmentedParser, parser)
        reported = [0]

        def spec_for(document: Document) -> parallel.EncodeSpec:
            builder.document(document)
            partner = builder.partner or builder.fallback
            if partner is None or collector.total:
                raise NotPlain("the document has problems, or no partner")
            return parallel.EncodeSpec(
                parser=segmented,
                limits=limits,
                key_template=partner.key_template,
                serializer=builder.serializer_for(partner),
                max_event_bytes=builder.max_event_bytes,
            )

        def on_progress(records: int) -> None:
            if records > limits.max_records:
                raise NotPlain("over max_records")  # the streaming parser says where
            if records // 10_000 > reported[0]:
                reported[0] = records // 10_000
                if self.progress is not None:
                    self.progress(records)
                if deadline is not None and time.monotonic() > deadline:
                    raise DeadlineReached(
                        f"stopped reading {ref} after {records:,} products: the invocation is about to "
                        "time out; the retry will start over"
                    )

        with self._open(ref, meta, read_from) as raw:
            try:
                payload = _payload(raw, limits)
                if payload.empty:
                    raise NotPlain("empty")
                stream = payload.stream
                if deadline is not None:
                    stream = cast(BinaryIO, _DeadlineStream(stream, deadline, lambda: f"{ref} while reading"))
                records = parallel.parse_into_spool(
                    stream,
                    segmented,
                    spool,
                    limits=limits,
                    processes=self._processes(),
                    spec_for=spec_for,
                    on_progress=on_progress,
                )
                sha256 = payload.finish()
            except InputRejected as rejected:
                raise NotPlain(f"the bytes were refused: {rejected}") from None
        return sha256, payload.size, records

    def _parse_into(
        self,
        ref: ObjectRef,
        meta: ObjectMeta,
        parser: Parser,
        builder: _EventBuilder,
        spool: EventSpool,
        collector: _Problems,
        read_from: ObjectRef | None = None,
        *,
        limits: Limits,
        deadline: float | None = None,
    ) -> tuple[str, int, int]:
        """Stream the object through the parser into the spool; returns (sha256, size, records)."""
        records = 0
        with self._open(ref, meta, read_from) as raw:
            try:
                payload = _payload(raw, limits)
                if payload.empty:
                    collector.add(Problem(kind="empty", message="the file is empty (0 bytes); send the complete file"))
                else:
                    stream = payload.stream
                    if deadline is not None:
                        # Also while a parser reads without yielding (a local inventory feed groups its
                        # rows before the first record comes out).
                        stream = cast(
                            BinaryIO, _DeadlineStream(stream, deadline, lambda: f"{ref} after {records:,} products")
                        )
                    source = _SourceStream(stream)
                    for item in _parsed(parser.parse(cast(BinaryIO, source), limits), source):
                        if isinstance(item, Record):
                            records += 1
                            if records > limits.max_records:
                                raise LimitExceeded(
                                    "max_records",
                                    limits.max_records,
                                    f"the file holds more than {limits.max_records:,} products; split it or raise "
                                    "the partner's max_records",
                                    line=item.line,
                                    record=item.index,
                                )
                            if records % 10_000 == 0 and self.progress is not None:
                                self.progress(records)
                            if deadline is not None and records % 10_000 == 0 and time.monotonic() > deadline:
                                raise DeadlineReached(
                                    f"stopped reading {ref} after {records:,} products: the invocation is about to "
                                    "time out; the retry will start over"
                                )
                            try:
                                built = builder.build(item)
                            except Exception as error:  # content that broke the builder: a bug, not a retry
                                raise ParserFailed(
                                    error, record=item.index, product_id=truncate(item.product_id)
                                ) from error
                            if built is not None:
                                key, value = built
                                if value is None:
                                    spool.append(key, None, item.index, tombstone_as_of_ms=builder.as_of_ms)
                                else:
                                    spool.append(key, value, item.index)
                        elif isinstance(item, Problem):
                            collector.add(item)
                        else:
                            builder.document(item)
            except InputRejected as rejected:
                collector.add(rejected.problem())
                return "", meta.size, records
            try:
                sha256 = payload.finish()  # the rest of the object, so the hash covers all of it
            except InputRejected as rejected:
                collector.add(rejected.problem())
                sha256 = ""
        return sha256, payload.size, records

    # -- the whole path ------------------------------------------------------------------------
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
            return self._ignore(
                ref,
                trigger,
                started,
                f"'{shown(ref.key)}' is a quarantine copy, not a drop; "
                f"use {reprocess_command(ref.bucket, original_key(ref.key))}",
            )
        if read_from is not None:
            copy_ref, meta = read_from
        else:
            copy_ref = None
            try:
                meta = self.store.head(ref)
            except ObjectMissing as missing:
                # Deleted before we got to it: retrying cannot help, so say so instead of failing forever.
                return self._ignore(ref, trigger, started, str(missing))
        ref = ref.with_version(meta.version_id)
        route = self.route(ref, meta, partner_id=partner_id, read_from=copy_ref)
        partner, parser = route.partner, route.parser
        label = f"{parser.name}/{parser.version}"
        # The claim lives as long as this invocation can (Lambda kills it at the deadline), so a
        # crashed holder never blocks the retry for long.
        ttl = (deadline - time.monotonic() + 15) if deadline else self.settings.claim_ttl_s
        claim = self.ledger.claim(
            ref,
            partner=partner.id if partner else None,
            parser_label=label,
            ttl_s=ttl,
            force=force,
            etag=meta.etag,
        )
        if not claim.granted:
            previous = claim.entry
            return FileOutcome(
                ref=ref,
                status="duplicate",
                partner=previous.partner if previous else None,
                parser=label,
                events=previous.event_count if previous else 0,
                seconds=time.monotonic() - started,
                reason=claim.reason,
                in_progress=claim.in_progress,
            )
        try:
            prepared = self.prepare(ref, meta=meta, read_from=copy_ref, deadline=deadline, route=route)
        except Exception as error:
            # Record the failure, which releases the claim, so the retry can do the work.
            failed = LedgerEntry(
                bucket=ref.bucket or "",
                key=ref.key,
                version=ref.version_id or "null",
                status="received",
                partner=partner.id if partner else None,
            )
            attempt = Attempt(
                trigger=trigger,
                parser=label,
                outcome="failed",
                error=f"{type(error).__name__}: {error}",
                seconds=time.monotonic() - started,
            )
            self.ledger.record(ref, failed, attempt)
            raise
        only_changed = self.settings.changed_only if changed_only is None else changed_only
        with prepared.spool:
            return self._conclude(
                prepared, trigger=trigger, deadline=deadline, started=started, changed_only=only_changed
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
        with prepared.spool:
            outcome = self._outcome(prepared)
            if not prepared.problems or not prepared.fatal:
                only_changed = self.settings.changed_only if changed_only is None else changed_only
                with (
                    ExitStack() as stack,
                    self.guard.session(
                        prepared.partner_id or "_unrouted",
                        bucket=prepared.ref.bucket,
                        write=False,
                        changed_only=only_changed,
                    ) as session,
                ):
                    for _entry in session.select(prepared.spool.replay(prepared.sha256)):
                        pass
                    note: str | None = "snapshot: a file with problems never deletes"
                    if not prepared.problems:
                        outcome.snapshot_deletes, note = self._snapshot_step(
                            prepared, session, stack=stack, deadline=None, dry_run=True
                        )
                if prepared.snapshot == "full" and note:
                    outcome.notes.append(note)
                outcome.verdicts = session.verdicts
                outcome.events = session.verdicts.published
                outcome.stale = session.verdicts.stale
                outcome.unchanged = session.verdicts.unchanged
            outcome.tombstones = prepared.spool.tombstones
            if prepared.problems:
                outcome.reason = f"{prepared.problem_count} problem(s); first: {prepared.problems[0].one_line()}"
        outcome.seconds = time.monotonic() - started
        return outcome

    def _ignore(self, ref: ObjectRef, trigger: str, started: float, reason: str) -> FileOutcome:
        entry = LedgerEntry(
            bucket=ref.bucket or "", key=ref.key, version=ref.version_id or "null", status="ignored", reason=reason
        )
        self.ledger.record(ref, entry, Attempt(trigger=trigger, parser="-", outcome="ignored", error=reason))
        return FileOutcome(ref=ref, status="ignored", reason=reason, seconds=time.monotonic() - started)

    def _outcome(self, prepared: Prepared) -> FileOutcome:
        return FileOutcome(
            ref=prepared.ref,
            status="published" if not prepared.problems else "quarantined",
            partner=prepared.partner_id,
            parser=prepared.parser_label,
            problems=prepared.problems,
            problem_count=prepared.problem_count,
            invalid=len({p.record for p in prepared.problems if p.record is not None}),
            sha256=prepared.sha256,
            size=prepared.size,
        )

    def _conclude(
        self, prepared: Prepared, *, trigger: str, deadline: float | None, started: float, changed_only: bool
    ) -> FileOutcome:
        policy = prepared.partner.policy if prepared.partner else "strict"
        publish = not prepared.problems or (policy == "skip_invalid" and not prepared.fatal)
        outcome = self._outcome(prepared)
        if publish and prepared.spool.count:
            if self.sink is None:
                raise RuntimeError("no event sink configured")
            try:
                with (
                    ExitStack() as stack,  # closed after the session has committed
                    self.guard.session(
                        prepared.partner_id or "_unrouted",
                        bucket=prepared.ref.bucket,
                        deadline=deadline,
                        changed_only=changed_only,
                    ) as session,
                ):
                    selected = session.select(prepared.spool.replay(prepared.sha256))
                    report = self.sink.publish(prepared.messages(selected), deadline=deadline)
                    deletes, note = self._snapshot_step(prepared, session, stack=stack, deadline=deadline)
            except Exception as error:
                self._record(prepared, outcome, trigger, started, status="received", error=str(error))
                raise
            outcome.events = report.acknowledged + deletes
            outcome.tombstones = prepared.spool.tombstones + deletes
            outcome.snapshot_deletes = deletes
            if prepared.snapshot == "full" and note:
                outcome.notes.insert(0, note)
            outcome.verdicts = session.verdicts
            outcome.stale = session.verdicts.stale
            outcome.unchanged = session.verdicts.unchanged if changed_only else 0
            if outcome.stale:
                stale_keys = ", ".join(session.verdicts.samples.get("stale", []))
                outcome.notes.append(
                    f"skipped {outcome.stale} stale event(s) older than the newest published for their key "
                    f"(e.g. {stale_keys})"
                )
        elif prepared.snapshot == "full":
            outcome.notes.insert(
                0,
                "snapshot: a file with problems never deletes"
                if prepared.problems
                else "snapshot: full snapshot with no products: refusing to delete the whole catalogue",
            )
        if prepared.problems:
            outcome.reason = f"{prepared.problem_count} problem(s); first: {prepared.problems[0].one_line()}"
            try:
                outcome.diagnostics = self.quarantine.put(self._diagnostics(prepared, policy, outcome.events))
            except Exception as error:
                # Nothing is lost: the original stays, the ledger does not say quarantined, the trigger retries.
                self._record(
                    prepared, outcome, trigger, started, status="received", error=f"quarantine failed: {error}"
                )
                raise
        outcome.seconds = time.monotonic() - started
        self._record(prepared, outcome, trigger, started, status=outcome.status)
        return outcome

    def _snapshot_step(
        self,
        prepared: Prepared,
        session: Any,
        *,
        stack: ExitStack,
        deadline: float | None,
        dry_run: bool = False,
    ) -> tuple[int, str | None]:
        """Snapshot deletes, and the partner's key set that makes them possible.

        The key set holds every key this partner has live on the topic as far as dropgate knows:
        a full snapshot replaces it (after publishing tombstones for what it lacks); any other
        file of a tracked partner (a delta between snapshots, a partial or an older snapshot) adds
        the keys it made live, so a product published by a delta is deleted by the next snapshot
        that lacks it. Runs inside the guard session (the partner lock); the new set is written
        after the key index, and before tombstones go out the stored set is widened to cover this
        file, so a crash at any point repeats the same tombstones instead of losing them.
        Returns how many tombstones the broker acknowledged (``dry_run``: would publish) and what
        was decided, for the outcome's notes (``None``: the partner's snapshots are not tracked).
        """
        partner = prepared.partner
        if partner is None:
            return 0, None
        if not (prepared.snapshot == "full" or prepared.snapshot_declared or partner.snapshot == "full"):
            return 0, None  # before any work: a delta partner's file must not pay for sorting its keys
        if not self.snapshots.enabled:
            return 0, "snapshot: no state store is configured (local run): no deletes"
        bucket = prepared.ref.bucket
        keys = stack.enter_context(SnapshotKeys(self.settings.spool_dir))
        keys.add_current(prepared.spool.replay(prepared.sha256))
        restarted = ""
        with self.snapshots.load(partner.id, bucket) as stored:
            header = stored.header if stored is not None else None
            if header is not None and header.key_template != partner.key_template:
                restarted = (
                    f"; the key template changed ({header.key_template} → {partner.key_template}) since the stored "
                    "key set, so it restarts from this file"
                )
                header = None
            elif stored is not None:
                keys.add_previous(stored.keys())
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
                session.on_commit(
                    lambda: self.snapshots.save(
                        partner.id, bucket, replace(base, count=keys.merged_count()), keys.merged_sorted()
                    )
                )
            return 0, f"snapshot: {decision.reason}{restarted}"
        gone = keys.missing_count()
        since = f"since {header.source}" if header is not None and header.as_of_ms else "from the tracked key set"
        tombstones = session.select(tombstone_entries(keys.missing_sorted(), prepared.as_of_ms))
        if dry_run:
            would = sum(1 for _ in tombstones)
            return would, f"snapshot: {gone} product(s) missing {since}: would publish {would} tombstone(s)"
        if gone and header is not None:
            self.snapshots.save(partner.id, bucket, replace(header, count=keys.merged_count()), keys.merged_sorted())
        assert self.sink is not None
        report = self.sink.publish(prepared.messages(tombstones), deadline=deadline)
        new = SnapshotHeader(partner.id, prepared.as_of_ms, str(prepared.ref), keys.live, partner.key_template)
        session.on_commit(lambda: self.snapshots.save(partner.id, bucket, new, keys.live_sorted()))
        recorded = f"{keys.live} key(s) recorded as the partner's current snapshot{restarted}"
        if header is None:
            return report.acknowledged, f"snapshot: first snapshot recorded: {recorded}"
        return report.acknowledged, (
            f"snapshot: {gone} product(s) missing {since}: {report.acknowledged} tombstone(s) published; {recorded}"
        )

    def _diagnostics(self, prepared: Prepared, policy: str, published: int) -> Diagnostics:
        return Diagnostics(
            bucket=prepared.ref.bucket,
            key=prepared.ref.key,
            version_id=prepared.ref.version_id,
            size=prepared.size,
            sha256=prepared.sha256,
            uploaded_at=prepared.meta.last_modified,
            partner=prepared.partner_id,
            parser_name=prepared.parser.name,
            parser_version=prepared.parser.version,
            policy=policy,
            problems=prepared.problems,
            problem_count=prepared.problem_count,
            problem_cap=self.settings.max_problems,
            published=published,
        )

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
        ref = prepared.ref
        entry = LedgerEntry(
            bucket=ref.bucket or "",
            key=ref.key,
            version=ref.version_id or "null",
            status=status,  # type: ignore[arg-type]
            partner=prepared.partner_id,
            parser_name=prepared.parser.name,
            parser_version=prepared.parser.version,
            event_count=outcome.events,
            tombstones=outcome.tombstones,
            problem_count=prepared.problem_count,
            sha256=prepared.sha256,
            size=prepared.size,
            reason=error or outcome.reason,
            diagnostics=outcome.diagnostics,
            etag=prepared.meta.etag,
        )
        attempt = Attempt(
            trigger=trigger,
            parser=prepared.parser_label,
            outcome="failed" if error else outcome.status,
            events=outcome.events,
            invalid=outcome.invalid,
            stale=outcome.stale,
            seconds=time.monotonic() - started,
            error=error,
        )
        self.ledger.record(ref, entry, attempt)


class _Problems:
    """Keeps the first ``cap`` problems and counts them all; a fatal problem is always kept
    (there are few: parsing stops at the first), so the cap can never hide why a file failed."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept: list[Problem] = []
        self.total = 0
        self.fatal = False

    def add(self, problem: Problem) -> None:
        problem = problem.bounded()  # kept problems go to the sidecar and the ledger: bounded whatever the file
        self.total += 1
        fatal = is_fatal(problem)
        self.fatal = self.fatal or fatal
        if len(self.kept) < self.cap or fatal:
            self.kept.append(problem)


class _EventBuilder:
    """Turns parser records into validated, serialized events for one file."""

    def __init__(
        self,
        ref: ObjectRef,
        meta: ObjectMeta,
        partner: Partner | None,
        partners: PartnerDirectory,
        parser: Parser,
        problems: _Problems,
        max_event_bytes: int = 900_000,
        *,
        state_hashes: bool = True,
    ) -> None:
        self.ref = ref
        self.state_hashes = state_hashes
        self.partner = partner
        self.partners = partners
        self.declared_partner: str | None = None
        self.problems = problems
        self.as_of = meta.last_modified
        self.uploaded = meta.last_modified
        self.max_event_bytes = max_event_bytes
        self.parser_ref = {"name": parser.name, "version": parser.version}
        self.source = {"bucket": ref.bucket, "key": ref.key, "versionId": ref.version_id}
        self._unknown_partner_reported = False
        self._serializer: events.FileSerializer | None = None
        #: Keys a file no partner claims (inspect's preview) instead of reporting it.
        self.fallback: Partner | None = None
        #: What the document says it is (Amazon's PurgeAndReplace); None: the partner decides.
        self.snapshot: Literal["full", "delta"] | None = None

    @property
    def as_of_ms(self) -> int:
        return events.epoch_ms(self.as_of)

    def document(self, doc: Document) -> None:
        self.snapshot = doc.snapshot
        if doc.as_of is not None:
            self.as_of = doc.as_of
            if doc.as_of > self.uploaded + FUTURE_TOLERANCE:
                self.problems.add(
                    Problem(
                        kind="validation",
                        message=(
                            f"the snapshot time {events.format_timestamp(doc.as_of)} is after the upload time "
                            f"{events.format_timestamp(self.uploaded)}; a future snapshot time would make every "
                            "later real snapshot look stale: send the time the inventory was taken"
                        ),
                        path=f"/{doc.root}",
                        field="asOf",
                        value=events.format_timestamp(doc.as_of),
                    )
                )
        self.declared_partner = doc.partner
        if self.partner is not None:
            if doc.partner is not None and doc.partner != self.partner.id:
                self.problems.add(
                    Problem(
                        kind="validation",
                        message=(
                            f"the document says partner '{doc.partner}' but was dropped under "
                            f"'{self.partner.prefix}', which belongs to partner '{self.partner.id}'; "
                            "drop it in the right folder or correct the partner attribute"
                        ),
                        path=f"/{doc.root}/@partner",
                        field="partner",
                        value=truncate(doc.partner),
                    )
                )
            return
        if doc.partner is not None:
            try:
                named = self.partners.get(doc.partner)
            except ValueError:
                return
            expected = self.partners.parser(named.format).name
            if expected != self.parser_ref["name"]:
                # Otherwise any file under no prefix could publish (and, in full mode, delete) as any partner.
                self.problems.add(
                    Problem(
                        kind="validation",
                        message=(
                            f"the document says partner '{named.id}', whose format is '{named.format}' "
                            f"({expected}), but it was read as {self.parser_ref['name']}; drop the partner's "
                            f"files under '{named.prefix}' in its own format"
                        ),
                        path=f"/{doc.root}/@partner",
                        field="partner",
                        value=truncate(doc.partner),
                    )
                )
                self._unknown_partner_reported = True  # this problem already says where the file belongs
                return
            self.partner = named

    def report_unrouted(self) -> None:
        """The file belongs to no partner: one problem saying how to fix that (once per file)."""
        if self._unknown_partner_reported:
            return
        self._unknown_partner_reported = True
        prefixes = ", ".join(self.partners.prefixes()) or "none"
        named = (
            f"names partner '{self.declared_partner}', which is not configured or not in this format"
            if self.declared_partner
            else ("names no partner")
        )
        self.problems.add(
            Problem(
                kind="validation",
                message=(
                    f"no partner for this file: '{shown(self.ref.key)}' is under no partner prefix ({prefixes}) "
                    f"and the document {named}; add the partner to partners.yaml or drop it under its prefix"
                ),
                field="partner",
                value=truncate(self.declared_partner),
            )
        )

    def serializer_for(self, partner: Partner) -> events.FileSerializer:
        """This file's serializer for ``partner`` (built once; the parallel path's workers use it too)."""
        if self._serializer is None or self._serializer.partner_id != partner.id:
            self._serializer = events.FileSerializer(
                partner_id=partner.id,
                as_of=self.as_of,
                bucket=self.source["bucket"],
                key=str(self.source["key"]),
                version_id=self.source["versionId"],
                parser_name=self.parser_ref["name"],
                parser_version=self.parser_ref["version"],
                state_hashes=self.state_hashes,
            )
        return self._serializer

    def build(self, record: Record) -> tuple[bytes, SplitValue | None] | None:
        partner = self.partner or self.fallback
        if partner is None:
            self.report_unrouted()
            return None
        key = events.render_key(partner.key_template, product_id=record.product_id, partner_id=partner.id)
        if record.fields is None:
            return key, None
        try:
            value = self.serializer_for(partner).serialize(record.product_id, record.fields, record.index)
        except ValidationError as error:
            for err in error.errors():
                loc = ".".join(str(part) for part in err["loc"])
                self._invalid(
                    record,
                    f"{loc or 'product'}: {err['msg']}",
                    field=loc or None,
                    value=truncate(err.get("input")) if loc else None,
                )
            return None
        except ValueError as error:  # the contract's cross-field rules (locations, productId)
            self._invalid(record, f"product: {error}")
            return None
        size = len(key) + len(value.head) + 64 + len(value.tail)
        if size > self.max_event_bytes:
            self._invalid(
                record,
                f"this product's event would be {size:,} bytes, over the limit of {self.max_event_bytes:,} "
                "a Kafka message may carry; shorten its longest fields (name, sku) or split its locations",
            )
            return None
        return key, value

    def _invalid(self, record: Record, message: str, *, field: str | None = None, value: str | None = None) -> None:
        self.problems.add(
            Problem(
                kind="validation",
                message=message,
                line=record.line,
                record=record.index,
                product_id=record.product_id,
                path=record.path,
                field=field,
                value=value,
            )
        )
