"""Where one ingest's time goes, stage by stage, measured inside the ingest process (bench only).

:func:`install` wraps the functions that carry the ingest path's stages (the ones
``dropgate/ingest/service.py`` names) so that each call is timed: its wall time, the CPU of the
ingest process's threads (the publishing thread and librdkafka's), and the CPU of the processes it
reaped meanwhile (the parsing workers, joined when the read ends). At exit the process writes one
line to stderr, ``bench-stages <json>``, which :func:`parse` reads back.

Wrapping costs a few microseconds per stage, not per product: every function wrapped here runs
once per file. This is a profiler for ``bench.s3_bounds``, not part of the product; the product has
no timing hooks on purpose (its logs give the whole file's seconds).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

#: (stage name, module, attribute path): in the order a file meets them.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("whole ingest", "dropgate.ingest.service", "Ingestor.ingest"),
    ("read, parse, spool", "dropgate.ingest.reading", "FileReader.in_parallel"),
    ("duplicate check", "dropgate.ingest.preparing", "_check_duplicates"),
    ("key ownership", "dropgate.ingest.ownership", "check"),
    ("publish (with the guard's decision)", "dropgate.adapters.kafka_publisher", "KafkaPublisher.publish"),
    ("index write-back", "dropgate.guard", "GuardSession.write_back"),
    ("ledger record", "dropgate.ingest.service", "Ingestor._record"),
)
MARKER = "bench-stages "


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def install() -> None:
    """Time every stage of this process's ingest; report at exit (see the module's docstring)."""
    started = time.perf_counter()
    timed: list[dict[str, Any]] = []
    for name, module, path in STAGES:
        owner: Any = importlib.import_module(module)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, attribute, _timed(name, getattr(owner, attribute), started, timed))
    pid = os.getpid()

    def report() -> None:
        if os.getpid() == pid:  # not in a forked parsing worker
            sys.stderr.write(MARKER + json.dumps({"process_s": time.perf_counter() - started, "stages": timed}) + "\n")

    atexit.register(report)


def _timed(name: str, function: Callable[..., Any], started: float, timed: list[dict[str, Any]]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        at, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        try:
            return function(*args, **kwargs)
        finally:
            timed.append(
                {
                    "stage": name,
                    "at_s": at - started,
                    "wall_s": time.perf_counter() - at,
                    "cpu_s": time.process_time() - cpu,
                    "workers_cpu_s": _children_cpu() - children,
                }
            )

    return wrapper


def parse(stderr: str) -> dict[str, Any] | None:
    """The report a process wrote (the last one), or ``None`` if it wrote none."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(MARKER):
            report: dict[str, Any] = json.loads(line[len(MARKER) :])
            return report
    return None
