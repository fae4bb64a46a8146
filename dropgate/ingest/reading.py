"""Reading one file into a spool of validated events: one driver for the streaming and the
parallel path, one pacer for the deadline, progress and the record limit.

The streaming path feeds the parser's items through the :class:`EventBuilder` one at a time; the
parallel path (:mod:`dropgate.parallel`) has worker processes do the same for a plain document.
Both open the object the same way, apply the same size and decompression limits, hash every byte
and stop at the same deadline. The parallel path reports no problem itself: anything that would
be one raises :class:`NotPlain`, and the file is read again, streaming, so every diagnostic comes
from the one streaming path.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from dropgate.ingest.event_builder import EventBuilder
from dropgate.ingest.problems import EMPTY, ProblemCollector
from dropgate.ingest.source import payload_of
from dropgate.spool import EventSpool
from dropgate.storage import ObjectMeta, ObjectRef
from parsers.base import (
    Document,
    InputRejected,
    Item,
    LimitExceeded,
    Parser,
    ParserFailed,
    Record,
    SegmentedParser,
    truncate,
)
from parsers.limits import Limits
from parsers.segments import NotPlain

if TYPE_CHECKING:
    from dropgate import parallel

#: Progress is reported, and the deadline checked, every this many products.
PROGRESS_STEP = 10_000


class DeadlineReached(RuntimeError):
    """The invocation is about to time out; give up cleanly (the trigger retries the file)."""


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


@dataclass(slots=True)
class Pacer:
    """Every :data:`PROGRESS_STEP` products: report progress, and stop past the deadline."""

    ref: ObjectRef
    deadline: float | None
    progress: Callable[[int], None] | None

    def step(self, records: int) -> None:
        if self.progress is not None:
            self.progress(records)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineReached(
                f"stopped reading {self.ref} after {records:,} products: the invocation is about to "
                "time out; the retry will start over"
            )

    def watch(self, stream: BinaryIO, where: Callable[[], str]) -> BinaryIO:
        """``stream``, stopping at the deadline also while a parser reads without yielding (a local
        inventory feed groups its rows before the first record comes out)."""
        if self.deadline is None:
            return stream
        return cast(BinaryIO, _DeadlineStream(stream, self.deadline, where))


@dataclass(frozen=True, slots=True)
class Read:
    """What reading the whole object gave: its sha256 ("" when it could not be read to the end),
    its size in bytes and how many records the parser gave."""

    sha256: str
    size: int
    records: int


@dataclass(slots=True)
class FileReader:
    """One pass over one object into one spool (a fresh reader, spool and builder per pass)."""

    open: Callable[[], BinaryIO]
    meta: ObjectMeta
    parser: Parser
    builder: EventBuilder
    spool: EventSpool
    problems: ProblemCollector
    limits: Limits
    pacer: Pacer
    #: Records the parser has given so far.
    records: int = 0

    def stream(self) -> Read:
        """Stream the object through the parser into the spool; the bytes' problems are collected."""
        with self.open() as raw:
            try:
                payload = payload_of(raw, self.limits)
                if payload.empty:
                    self.problems.add(EMPTY)
                else:
                    stream = self.pacer.watch(
                        payload.stream, lambda: f"{self.pacer.ref} after {self.records:,} products"
                    )
                    source = _SourceStream(stream)
                    self._spool(_parsed(self.parser.parse(cast(BinaryIO, source), self.limits), source))
            except InputRejected as rejected:
                self.problems.add(rejected.problem())
                return Read("", self.meta.size, self.records)
            try:
                sha256 = payload.finish()  # the rest of the object, so the hash covers all of it
            except InputRejected as rejected:
                self.problems.add(rejected.problem())
                sha256 = ""
        return Read(sha256, payload.size, self.records)

    def _spool(self, items: Iterator[Item]) -> None:
        """The hot loop: every item of the parser into the spool, the builder or the problems."""
        records, max_records, step = 0, self.limits.max_records, PROGRESS_STEP
        build, append, add_problem = self.builder.build, self.spool.append, self.problems.add
        for item in items:
            if isinstance(item, Record):
                records += 1
                self.records = records  # for the deadline's message, which may come from inside the parser
                if records > max_records:
                    raise LimitExceeded(
                        "max_records",
                        max_records,
                        f"the file holds more than {max_records:,} products; split it or raise "
                        "the partner's max_records",
                        line=item.line,
                        record=item.index,
                    )
                if records % step == 0:
                    self.pacer.step(records)
                try:
                    built = build(item)
                except Exception as error:  # content that broke the builder: a bug, not a retry
                    raise ParserFailed(error, record=item.index, product_id=truncate(item.product_id)) from error
                if built is not None:
                    key, value = built
                    if value is None:
                        append(key, None, item.index, tombstone_as_of_ms=self.builder.as_of_ms, line=item.line)
                    else:
                        append(key, value, item.index, line=item.line)
            elif isinstance(item, Document):
                self.builder.document(item)
            else:
                add_problem(item)

    def in_parallel(self, processes: int) -> Read:
        """What :meth:`stream` does, for a plain document, on ``processes`` cores; :class:`NotPlain`
        for anything else (the caller streams the file instead)."""
        from dropgate import parallel  # multiprocessing: only for large files

        with self.open() as raw:
            try:
                payload = payload_of(raw, self.limits)
                if payload.empty:
                    raise NotPlain("empty")
                stream = self.pacer.watch(payload.stream, lambda: f"{self.pacer.ref} while reading")
                records = parallel.parse_into_spool(
                    stream,
                    cast(SegmentedParser, self.parser),
                    self.spool,
                    limits=self.limits,
                    processes=processes,
                    spec_for=self._encode_spec,
                    on_progress=self._parallel_progress(),
                )
                sha256 = payload.finish()
            except InputRejected as rejected:
                raise NotPlain(f"the bytes were refused: {rejected}") from None
        return Read(sha256, payload.size, records)

    def _encode_spec(self, document: Document) -> parallel.EncodeSpec:
        from dropgate import parallel

        builder = self.builder
        builder.document(document)
        partner = builder.partner or builder.fallback
        if partner is None or self.problems.total:
            raise NotPlain("the document has problems, or no partner")
        return parallel.EncodeSpec(
            parser=cast(SegmentedParser, self.parser),
            limits=self.limits,
            key_template=partner.key_template,
            serializer=builder.serializer_for(partner),
            max_event_bytes=builder.max_event_bytes,
            index_rows=self.spool.index_rows,
            reserved=builder.reserved_for(partner),
        )

    def _parallel_progress(self) -> Callable[[int], None]:
        reported = [0]

        def on_progress(records: int) -> None:
            if records > self.limits.max_records:
                raise NotPlain("over max_records")  # the streaming parser says where
            if records // PROGRESS_STEP > reported[0]:
                reported[0] = records // PROGRESS_STEP
                self.pacer.step(records)

        return on_progress
