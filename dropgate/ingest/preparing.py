"""Parsing and validating a whole file into a spool: the path (parallel when it pays, else
streaming), a fresh pass when the parallel path gives up, and the :class:`Prepared` file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from dropgate.ingest import duplicates
from dropgate.ingest.event_builder import EventBuilder
from dropgate.ingest.outcome import Prepared
from dropgate.ingest.problems import ProblemCollector, too_large
from dropgate.ingest.reading import FileReader, Pacer, Read
from dropgate.ingest.routing import Route
from dropgate.ingest.source import open_object
from dropgate.partners import Partner, PartnerDirectory
from dropgate.spool import EventSpool
from dropgate.storage import ObjectMeta, ObjectRef, ObjectStore
from parsers.base import Parser
from parsers.limits import Limits
from parsers.segments import NotPlain

#: The service's logger (Powertools' in Lambda, which is the same standard logger by name).
_log = logging.getLogger("dropgate")


#: The partner id ``inspect`` shows for a file no partner claims.
PREVIEW_PARTNER = "unassigned"


@dataclass(frozen=True, slots=True)
class ReadPolicy:
    """The settings reading a file follows (from :class:`~dropgate.config.Settings`)."""

    limits: Limits
    spool_dir: str | None
    max_problems: int
    max_event_bytes: int
    #: Files from this size are parsed on every core (negative: never).
    parallel_min_bytes: int
    #: Worker processes for the parallel path (0: one per available core).
    processes: int
    #: Build each event's state and field hashes (the stale-overwrite guard reads them).
    state_hashes: bool


@dataclass(slots=True)
class Preparer:
    """Parses and validates a whole file into a spool, choosing the parallel path when it pays."""

    store: ObjectStore
    partners: PartnerDirectory
    policy: ReadPolicy
    #: Called with the number of products read so far, every 10,000 (a progress bar on a terminal).
    progress: Callable[[int], None] | None = None

    def prepare(
        self,
        ref: ObjectRef,
        meta: ObjectMeta,
        route: Route,
        *,
        read_from: ObjectRef | None = None,
        deadline: float | None = None,
        preview: bool = False,
    ) -> Prepared:
        """The caller closes ``prepared.spool``; ``preview`` keys a file no partner claims as a
        stand-in partner would (inspect), instead of reporting it."""
        limits = self.policy.limits.overridden(route.partner.limits if route.partner else None)
        segmented = self._segmented(route.parser, meta)
        while True:
            reader = self._reader(ref, meta, route, limits, read_from, deadline, preview)
            if meta.size > limits.max_object_bytes:
                reader.problems.add(too_large(meta.size, limits.max_object_bytes))
                return _prepared(reader, ref, meta, Read("", meta.size, 0))
            try:
                read = reader.in_parallel(self._processes()) if segmented else reader.stream()
            except NotPlain as reason:
                reader.spool.close()  # not a plain document after all: read it again, streaming
                if not segmented:
                    raise  # only the parallel path may give up on a file
                if reason.unexpected:
                    _log.warning("parallel parsing of %s failed (%s); reading it again in one process", ref, reason)
                segmented = False
                continue
            except BaseException:
                reader.spool.close()  # DeadlineReached, a read failure: the caller never gets the spool to close
                raise
            builder = reader.builder
            if builder.partner is None and builder.fallback is None and not reader.problems.fatal:
                builder.report_unrouted()  # also a file without records: it must not pass as published
            found = _check_duplicates(reader)
            prepared = _prepared(reader, ref, meta, read)
            if found.note:
                prepared.notes.append(found.note)
            return prepared

    def _reader(
        self,
        ref: ObjectRef,
        meta: ObjectMeta,
        route: Route,
        limits: Limits,
        read_from: ObjectRef | None,
        deadline: float | None,
        preview: bool,
    ) -> FileReader:
        policy = self.policy
        problems = ProblemCollector(policy.max_problems)
        builder = EventBuilder(
            ref,
            meta,
            route.partner,
            self.partners,
            route.parser,
            problems,
            max_event_bytes=policy.max_event_bytes,
            state_hashes=policy.state_hashes,
        )
        if preview:
            builder.fallback = Partner(id=PREVIEW_PARTNER, prefix=f"{PREVIEW_PARTNER}/", format=route.parser.name)
        return FileReader(
            open=lambda: open_object(self.store, ref, meta, read_from),
            meta=meta,
            parser=route.parser,
            builder=builder,
            spool=EventSpool(policy.spool_dir, index_rows=policy.state_hashes),
            problems=problems,
            limits=limits,
            pacer=Pacer(ref, deadline, self.progress),
        )

    def _segmented(self, parser: Parser, meta: ObjectMeta) -> bool:
        """Worth parsing in segments: the format can and the file is large. On one core too: the
        segments are then read in this process (a canonical one at about half the streaming cost)."""
        threshold = self.policy.parallel_min_bytes
        return hasattr(parser, "segment_records") and 0 <= threshold <= meta.size

    def _processes(self) -> int:
        from dropgate.parallel import available_cores  # multiprocessing: only for large files

        return self.policy.processes or available_cores()


def _check_duplicates(reader: FileReader) -> duplicates.Duplicates:
    """One state per key: what :mod:`dropgate.ingest.duplicates` finds, on either path's spool."""
    partner = reader.builder.partner or reader.builder.fallback
    if partner is None or reader.problems.fatal:
        return duplicates.Duplicates()  # nothing keyed, or nothing published: its duplicates would be noise
    return duplicates.check(reader.spool, reader.problems, key_template=partner.key_template, partner_id=partner.id)


def _prepared(reader: FileReader, ref: ObjectRef, meta: ObjectMeta, read: Read) -> Prepared:
    builder, problems = reader.builder, reader.problems
    partner = builder.partner
    return Prepared(
        ref=ref,
        meta=meta,
        partner=partner,
        partner_id=partner.id if partner else builder.declared_partner,
        parser=reader.parser,
        spool=reader.spool,
        sha256=read.sha256,
        size=read.size,
        problems=problems.kept,
        problem_count=problems.total,
        records=read.records,
        fatal=problems.fatal,
        snapshot=builder.snapshot or (partner.snapshot if partner else "delta"),
        snapshot_declared=builder.snapshot is not None,
        as_of_ms=builder.as_of_ms,
    )
