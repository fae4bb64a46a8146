"""Parse and validate a large plain drop in several processes, into the one spool.

One Python process reads, checks and serializes a product in tens of microseconds however lean
the code; the interpreter lock keeps threads from sharing that work. So for a large file the
caller's process reads the bytes (hashing them, applying the size and decompression limits) and
cuts them into segments (``parsers.segments``), and worker processes forked for the file turn each
segment into spool entries: parse, read every product exactly as the streaming parser would,
validate and serialize it against the contract. The caller appends their output to the spool in
file order, so what gets published, and in what order, is what the streaming path would publish.
With the entries come their keys' hashes, so the duplicate check (:mod:`dropgate.ingest.duplicates`)
sees a key repeated across segments as it would in one stream.

The workers accept plain documents only. Anything that would need a diagnostic (a product the
plain path declines, a contract violation, an event too large, a document-level problem) raises
:class:`~parsers.segments.NotPlain`, and the caller reads the file again with the streaming
parser, which words every problem. So a file with problems costs a second read; a clean one is
read once, on every core.

Workers are forked, not spawned: they start in milliseconds with everything imported, and share the
caller's memory pages until they write to them. They run nothing but parsing and serialization, and
never touch the Kafka client a warm process holds. One segment is outstanding per worker at a time,
so neither side ever blocks sending while the other is blocked sending back.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, BinaryIO

from dropgate import events
from dropgate.key_ownership import Namespace, namespace_owner
from dropgate.spool import EventSpool, encode, hash_probe, index_row, key_hash
from parsers.base import Document, SegmentedParser
from parsers.limits import Limits
from parsers.segments import NotPlain, Segment, parse_segment, parser, segments


@dataclass(frozen=True, slots=True)
class EncodeSpec:
    """Everything a worker needs to turn a file's records into spool entries, fixed per file.

    The serializer is the one the streaming path would use for this file (the caller's
    :class:`~dropgate.ingest.event_builder.EventBuilder` builds it); workers are forked, so they
    get it as it is, nothing pickled."""

    parser: SegmentedParser
    limits: Limits
    key_template: str
    serializer: events.FileSerializer
    max_event_bytes: int
    #: The caller's :func:`~dropgate.spool.hash_probe`: a worker's key hashes must be the caller's.
    hash_probe: int = field(default_factory=hash_probe)
    #: Whether the spool keeps each entry's index row (the stale guard's): built here, in parallel.
    index_rows: bool = False
    #: Keys other partners' templates reserve (``key_ownership.namespaces``): one is a problem the
    #: streaming path words.
    reserved: tuple[Namespace, ...] = ()


def encode_segment(spec: EncodeSpec, xml_parser: Any, segment: Segment) -> tuple[int, int, bytes, bytes, bytes]:
    """(entries, tombstones, their spool bytes, their keys' hashes, their index rows) for one
    segment, or :class:`NotPlain`."""
    parts: list[bytes] = []
    rows: list[bytes] | None = [] if spec.index_rows else None
    hashes = array("q")
    note_key = hashes.append
    count = tombstones = 0
    serializer = spec.serializer
    render_key, partner_id, template = events.render_key, serializer.partner_id, spec.key_template
    as_of_ms = serializer.as_of_ms
    serialize = serializer.serialize_plain  # segment_records gives plain records only
    reserved = spec.reserved
    for record in spec.parser.segment_records(segment, xml_parser, spec.limits):
        key = render_key(template, product_id=record.product_id, partner_id=partner_id)
        if reserved and namespace_owner(key, reserved) is not None:
            raise NotPlain(f"product {record.index}'s key is one another partner's template reserves")
        note_key(key_hash(key))
        if record.fields is None:
            parts += encode(key, None, record.index, tombstone_as_of_ms=as_of_ms, line=record.line)
            if rows is not None:
                rows.append(index_row(key, None, record.index, as_of_ms))
            tombstones += 1
        else:
            value = serialize(record.product_id, record.fields, record.index)
            if len(key) + len(value.head) + 64 + len(value.tail) > spec.max_event_bytes:
                raise NotPlain(f"product {record.index} makes an event over the size limit")
            parts += encode(key, value, record.index, line=record.line)
            if rows is not None:
                rows.append(index_row(key, value, record.index, 0))
        count += 1
    return count, tombstones, b"".join(parts), hashes.tobytes(), b"".join(rows or ())


def _serve(conn: Connection, spec: EncodeSpec) -> None:
    """A worker: segments in, spool entries out, until the caller sends ``None`` (or goes away)."""
    xml_parser = parser()
    if hash_probe() != spec.hash_probe:  # not forked after all: its key hashes would not be the caller's
        with contextlib.suppress(OSError):
            conn.recv()
            conn.send(("error", "a parsing process hashes keys unlike its parent (not forked)"))
        return
    while True:
        try:
            segment = conn.recv()
        except EOFError:
            return
        if segment is None:
            return
        try:
            reply: tuple[Any, ...] = ("ok", *encode_segment(spec, xml_parser, segment))
        except NotPlain as error:
            reply = ("not-plain", str(error))
        except Exception as error:  # reported, and the caller falls back to streaming
            reply = ("error", f"{type(error).__name__}: {error}")
        try:
            conn.send(reply)
        except OSError:  # the caller gave up on this file and closed the pipe
            return


#: AWS Lambda gives a function the equivalent of one vCPU at 1,769 MB, in proportion to its memory
#: (up to 6 vCPUs at 10,240 MB), though it may see more CPUs than that share.
LAMBDA_MB_PER_VCPU = 1769


def available_cores(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers) and,
    on Lambda, by the CPU share its memory size buys. A 1,024 MB function owns about 0.6 of a vCPU
    however many CPUs it sees: forking workers there would only add work, so it reads the segments
    in its own process (:class:`_InProcess`)."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open(cgroup_cpu_max) as handle:  # cgroup v2: "<quota> <period>" or "max <period>"
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) // int(period))
    except (OSError, ValueError):
        pass
    memory_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory_mb.isdigit():
        cores = min(cores, int(memory_mb) // LAMBDA_MB_PER_VCPU)
    return max(1, cores)


class WorkerFailed(NotPlain):
    """A worker failed unexpectedly (a bug, not the file): the file is streamed, and this is logged."""

    unexpected = True


class _Workers:
    def __init__(self, spec: EncodeSpec, processes: int) -> None:
        context = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.processes: list[Any] = []
        try:
            for _ in range(processes):
                ours, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(theirs, spec), name="dropgate-parse", daemon=True)
                process.start()
                theirs.close()
                self.conns.append(ours)
                self.processes.append(process)
        except BaseException:
            self.close(finished=False)
            raise

    def result(self, worker: int) -> tuple[int, int, bytes, bytes, bytes]:
        try:
            status, *payload = self.conns[worker].recv()
        except (EOFError, OSError):
            raise WorkerFailed("a parsing process stopped") from None
        if status == "error":
            raise WorkerFailed(str(payload[0]))
        if status != "ok":
            raise NotPlain(str(payload[0]))
        count, tombstones, entries, key_hashes, rows = payload
        return count, tombstones, entries, key_hashes, rows  # the entries as unpickled: no second copy of them

    def send(self, worker: int, segment: Segment) -> None:
        try:
            self.conns[worker].send(segment)
        except OSError:
            raise WorkerFailed("a parsing process stopped") from None

    def close(self, *, finished: bool) -> None:
        """Let idle workers exit; a worker still busy with a file given up on is killed.

        (A worker learns the end from a message, not from its pipe closing: workers forked later
        hold copies of the earlier workers' pipe ends.)"""
        for conn in self.conns:
            if finished:
                with contextlib.suppress(OSError):  # it stopped already
                    conn.send(None)
            conn.close()
        for process in self.processes:
            if not finished:
                process.kill()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


class _InProcess:
    """One core (a Lambda function under 1,769 MB): the segments are encoded here, one at a time, with
    no process and no pipe. Worth it even then: a canonical segment is read from its bytes
    (``parsers.generic_bytes``) in about half the CPU the streaming parser takes for it."""

    def __init__(self, spec: EncodeSpec) -> None:
        self.spec = spec
        self.xml_parser = parser()
        self.pending: Segment | None = None

    def send(self, _worker: int, segment: Segment) -> None:
        self.pending = segment

    def result(self, _worker: int) -> tuple[int, int, bytes, bytes, bytes]:
        segment, self.pending = self.pending, None
        assert segment is not None  # parse_into_spool sends before it collects
        try:
            return encode_segment(self.spec, self.xml_parser, segment)
        except NotPlain:
            raise
        except Exception as error:  # as a worker reports it: the file is streamed, and this is logged
            raise WorkerFailed(f"{type(error).__name__}: {error}") from None

    def close(self, *, finished: bool) -> None:
        self.pending = None


def parse_into_spool(
    stream: BinaryIO,
    parser_: SegmentedParser,
    spool: EventSpool,
    *,
    limits: Limits,
    processes: int,
    spec_for: Callable[[Document], EncodeSpec],
    on_progress: Callable[[int], None],
    segment_bytes: int | None = None,
) -> int:
    """Read ``stream`` into ``spool`` with ``processes`` workers; returns the number of records.

    ``spec_for`` is called with the document (from the first segment, read here) and returns what
    the workers need, or raises :class:`NotPlain` when the document itself has problems.
    ``on_progress`` gets the running record count after each segment (progress, deadline, limits).
    """
    xml_parser = parser()
    workers: _Workers | _InProcess | None = None
    waiting: deque[int] = deque()
    records = 0
    finished = False
    try:
        cut = segments(
            stream,
            root=parser_.root_tag,
            record=parser_.record_tag,
            max_record_bytes=limits.max_record_bytes,
            segment_bytes=segment_bytes,
        )
        next_worker = 0
        for segment in cut:
            if workers is None:
                document = parser_.segment_document(parse_segment(segment.text, xml_parser), limits)
                spec = spec_for(document)
                workers = _Workers(spec, processes) if processes > 1 else _InProcess(spec)
            if len(waiting) == processes:
                records += _collect(workers, waiting.popleft(), spool)
                on_progress(records)
            workers.send(next_worker, segment)
            waiting.append(next_worker)
            next_worker = (next_worker + 1) % processes
        while workers is not None and waiting:
            records += _collect(workers, waiting.popleft(), spool)
            on_progress(records)
        finished = True
    finally:
        if workers is not None:
            workers.close(finished=finished)
    return records


def _collect(workers: _Workers | _InProcess, worker: int, spool: EventSpool) -> int:
    count, tombstones, entries, key_hashes, rows = workers.result(worker)
    spool.append_encoded(entries, count, tombstones, key_hashes, rows)
    return count
