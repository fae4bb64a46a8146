"""Lineage: one run per file, so a catalogue (Marquez, DataHub, Dataplex) shows which partner file fed the topic.

A run starts when a file's claim is granted and ends when the file has an outcome: COMPLETE when it
was published, FAIL when it was quarantined or the attempt failed (and will be retried). Its input
is the S3 object (namespace ``s3://bucket``, name the key; a local file: namespace ``file``), its
output the topic (namespace ``kafka://host:port`` of the first bootstrap server, name the topic),
as OpenLineage's dataset naming has them.

The port (:class:`Lineage`) is implemented with the openlineage-python client by
:mod:`dropgate.adapters.openlineage_emitter`; :class:`NullLineage` (the default) sends nothing.
Lineage never fails or holds up an ingest: the adapter bounds each send, and whatever it raises
is logged here and dropped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from dropgate.storage import ObjectRef

if TYPE_CHECKING:
    from dropgate.config import Settings
    from dropgate.ingest.outcome import FileOutcome

_log = logging.getLogger("dropgate")


@dataclass(frozen=True, slots=True)
class Dataset:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class FileRun:
    """One file's run: the job (namespace, name), what it read and what it wrote to."""

    run_id: str
    namespace: str
    job: str
    input: Dataset
    output: Dataset
    #: The parser's label (``generic-xml/1``): which version read the file.
    parser: str


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended. ``outcome``: published | quarantined | failed (an error; the file is retried)."""

    outcome: str
    partner: str | None = None
    events: int = 0
    tombstones: int = 0
    problems: int = 0
    #: The first problem of a quarantined file, or the error of a failed attempt.
    error: str | None = None
    diagnostics: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "published"

    @classmethod
    def of(cls, outcome: FileOutcome) -> RunEnd:
        return cls(
            outcome=outcome.status,
            partner=outcome.partner,
            events=outcome.events,
            tombstones=outcome.tombstones,
            problems=outcome.problem_count,
            error=outcome.reason if outcome.status != "published" else None,
            diagnostics=outcome.diagnostics,
        )


class Lineage(Protocol):
    """Where run events go (an OpenLineage transport in production)."""

    def start(self, run: FileRun) -> None: ...

    def end(self, run: FileRun, end: RunEnd) -> None: ...


class NullLineage:
    """No lineage (the default)."""

    def start(self, run: FileRun) -> None:
        pass

    def end(self, run: FileRun, end: RunEnd) -> None:
        pass


class FileRuns:
    """The ingest service's side of lineage: names a file's datasets, never lets lineage fail it."""

    def __init__(self, lineage: Lineage, settings: Settings, *, topic: str) -> None:
        self.lineage = lineage
        self.namespace = settings.lineage_namespace
        self.output = Dataset(kafka_namespace(settings.kafka_bootstrap_servers), topic)

    def start(self, ref: ObjectRef, *, partner: str | None, parser: str) -> OpenRun:
        """START a file's run (once its claim is granted)."""
        job = f"ingest.{partner}" if partner else "ingest"
        run = FileRun(str(uuid.uuid4()), self.namespace, job, input_dataset(ref), self.output, parser)
        _safely(self.lineage.start, run)
        return OpenRun(self.lineage, run, partner)


class OpenRun:
    """A started run: ended once, by :meth:`concluded` (the file's outcome) or :meth:`failed` (an error).
    As a context manager, an error leaving the block fails it."""

    def __init__(self, lineage: Lineage, run: FileRun, partner: str | None) -> None:
        self.lineage = lineage
        self.run = run
        self.partner = partner
        self.ended = False

    def concluded(self, outcome: FileOutcome) -> FileOutcome:
        self._end(RunEnd.of(outcome))
        return outcome

    def failed(self, error: BaseException) -> None:
        self._end(RunEnd("failed", partner=self.partner, error=f"{type(error).__name__}: {error}"))

    def _end(self, end: RunEnd) -> None:
        if not self.ended:
            self.ended = True
            _safely(self.lineage.end, self.run, end)

    def __enter__(self) -> OpenRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is not None:
            self.failed(error)


def input_dataset(ref: ObjectRef) -> Dataset:
    if ref.bucket is None:
        return Dataset("file", str(Path(ref.key).resolve()))
    return Dataset(f"s3://{ref.bucket}", ref.key)


def kafka_namespace(bootstrap: str) -> str:
    """``kafka://host:port`` of the first bootstrap server (OpenLineage's naming for Kafka)."""
    first = bootstrap.split(",")[0].strip()
    return "kafka://" + first.rpartition("://")[2]


def _safely(send: Callable[..., None], *arguments: object) -> None:
    try:
        send(*arguments)
    except Exception as error:
        _log.warning("lineage event not sent: %s: %s", type(error).__name__, str(error)[:300])
