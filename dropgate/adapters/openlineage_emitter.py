"""OpenLineage run events through the openlineage-python client, behind :class:`dropgate.lineage.Lineage`.

The client is configured the way openlineage-python configures itself, never by dropgate:
``OPENLINEAGE_URL`` (HTTP, e.g. Marquez), an ``openlineage.yml`` (``OPENLINEAGE_CONFIG``, the
working directory, ``~/.openlineage``), or ``OPENLINEAGE__TRANSPORT__*`` variables (a ``file`` or
``console`` transport locally); ``OPENLINEAGE_DISABLED=true`` turns it off.

Each event is sent on a daemon thread that the file waits for at most ``timeout_s``: a slow or
unreachable backend costs a file that long and a log line, never its outcome.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    error_message_run,
    output_statistics_output_dataset,
)

from dropgate.lineage import Dataset, FileRun, RunEnd

_log = logging.getLogger("dropgate")
PRODUCER = "urn:dropgate"
_FACETS = "urn:dropgate:openlineage:facet"


@attr.define
class ParserRunFacet(RunFacet):
    """Which parser (name/version) read the file: a new version is what makes reprocess redo a file."""

    name: str
    version: str

    @staticmethod
    def _get_schema() -> str:
        return f"{_FACETS}:ParserRunFacet:1"


@attr.define
class QuarantineRunFacet(RunFacet):
    """What became of the file: published, quarantined (with its problems and diagnostics) or failed."""

    outcome: str
    quarantined: bool
    problems: int
    events: int
    tombstones: int
    partner: str | None = None
    diagnostics: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{_FACETS}:QuarantineRunFacet:1"


class OpenLineageEmitter:
    def __init__(self, client: Any, *, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    @classmethod
    def configured(cls, *, timeout_s: float) -> OpenLineageEmitter:
        """A client from openlineage-python's own configuration (see the module)."""
        return cls(OpenLineageClient(), timeout_s=timeout_s)

    def start(self, run: FileRun) -> None:
        self._send(self._event(run, RunState.START, {}, events=None))

    def end(self, run: FileRun, end: RunEnd) -> None:
        facets: dict[str, RunFacet] = {
            "dropgate_quarantine": QuarantineRunFacet(
                outcome=end.outcome,
                quarantined=end.outcome == "quarantined",
                problems=end.problems,
                events=end.events,
                tombstones=end.tombstones,
                partner=end.partner,
                diagnostics=end.diagnostics,
            )
        }
        if end.error:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=end.error[:2000], programmingLanguage="python"
            )
        state = RunState.COMPLETE if end.succeeded else RunState.FAIL
        self._send(self._event(run, state, facets, events=end.events))

    def _event(self, run: FileRun, state: RunState, facets: dict[str, RunFacet], *, events: int | None) -> RunEvent:
        output_facets = (
            {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=events)}
            if events is not None
            else {}
        )
        if run.parser:
            name, _, version = run.parser.rpartition("/")
            facets["dropgate_parser"] = ParserRunFacet(name=name, version=version)
        return RunEvent(
            eventType=state,
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=run.run_id, facets=facets),
            job=Job(namespace=run.namespace, name=run.job),
            inputs=[InputDataset(namespace=run.input.namespace, name=run.input.name)],
            outputs=[_output(run.output, output_facets)],
            producer=PRODUCER,
        )

    def _send(self, event: RunEvent) -> None:
        """Emit on a daemon thread and wait at most ``timeout_s``: lineage never holds up a file for long."""
        failures: list[BaseException] = []

        def emit() -> None:
            try:
                self.client.emit(event)
            except Exception as error:
                failures.append(error)

        sender = threading.Thread(target=emit, name="dropgate-lineage", daemon=True)
        sender.start()
        sender.join(self.timeout_s)
        if sender.is_alive():
            _log.warning("lineage %s event not sent within %.1f s; left behind", _state(event), self.timeout_s)
        elif failures:
            error = failures[0]
            _log.warning("lineage %s event not sent: %s: %s", _state(event), type(error).__name__, str(error)[:300])


def _output(dataset: Dataset, facets: dict[str, Any]) -> OutputDataset:
    return OutputDataset(namespace=dataset.namespace, name=dataset.name, outputFacets=facets)


def _state(event: RunEvent) -> str:
    return event.eventType.value if event.eventType is not None else "?"
