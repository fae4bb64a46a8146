"""What the opt-in wire conventions cost per event: CloudEvents headers, Glue framing.

``python -m bench.wire_cost`` times :func:`dropgate.publishing.event_messages` over a file's worth
of events (a typical generic value, repeated) without a convention, with CloudEvents headers, and
with both, in one process, interleaved round by round so each sees the same machine: the cost of
building the messages alone.

``python -m bench.wire_cost --ingest FILE --pairs N`` measures the whole process: ``dropgate ingest
FILE --partner acme`` against a fresh local broker, with and without ``DROPGATE_CLOUDEVENTS``, in
pairs (the order alternating), so what librdkafka pays for six more headers per event counts too.
Make a file with ``python -m bench.generate --products 100000 --out FILE``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from dropgate.publishing import Dress, event_messages
from dropgate.schema_registry import glue_frame_prefix
from dropgate.spool import SpoolEntry
from dropgate.storage import ObjectRef
from dropgate.wire import WireFormat

REF = ObjectRef("drops", "acme/inventory-2026-11-20.xml", "3HL4kqtJlcpXroDTDmJ")
VALUE = (
    b'{"schemaVersion":1,"productId":"P0000001","partnerId":"acme","sku":"ACME-0000001","name":"Widget 1",'
    b'"quantity":12,"availability":"in_stock","price":{"amount":"19.99","currency":"USD"},'
    b'"locations":[{"locationId":"WH1","quantity":7},{"locationId":"WH2","quantity":5}],'
    b'"asOf":"2026-11-20T06:00:00Z","source":{"bucket":"drops","key":"acme/inventory-2026-11-20.xml",'
    b'"versionId":"3HL4kqtJlcpXroDTDmJ","sha256":"' + b"9f2c" * 16 + b'","record":1},'
    b'"parser":{"name":"generic-xml","version":"1"}}'
)
AS_OF_MS = 1_795_154_400_000  # 2026-11-20T06:00:00Z


def entries(count: int) -> list[SpoolEntry]:
    return [SpoolEntry(f"P{i:07d}".encode(), VALUE, i + 1, AS_OF_MS, 0, ()) for i in range(count)]


def build_all(spooled: list[SpoolEntry], dress: Dress | None) -> float:
    started = time.perf_counter()
    for _message in event_messages(
        spooled, source=str(REF), parser_label="generic-xml/1", ingested_at="2026-11-20T06:01:00Z", dress=dress
    ):
        pass
    return time.perf_counter() - started


def message_building(events: int, rounds: int) -> None:
    spooled = entries(events)
    frame = glue_frame_prefix(str(uuid.uuid4()))
    variants: dict[str, Callable[[], Dress | None]] = {
        "contract only": lambda: None,
        "CloudEvents": lambda: WireFormat(cloudevents=True).for_file(REF),
        "CloudEvents + Glue framing": lambda: WireFormat(cloudevents=True, frame=frame).for_file(REF),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    build_all(spooled, None)  # warm-up
    for _round in range(rounds):
        for name, dress in variants.items():
            seconds[name].append(build_all(spooled, dress()))
    base = statistics.median(seconds["contract only"]) / events
    print(f"{events:,} events, median of {rounds} interleaved rounds, message building only")
    for name, times in seconds.items():
        per_event = statistics.median(times) / events
        print(f"  {name:28s} {per_event * 1e9:7.0f} ns/event  (+{(per_event - base) * 1e9:5.0f} ns)")


def ingest_once(file: Path, bootstrap: str, extra: dict[str, str]) -> float:
    """CPU seconds (user + system) of one ``dropgate ingest`` of ``file`` into a new topic."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DROPGATE_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, DROPGATE_TOPIC=f"bench.wire.{uuid.uuid4().hex[:8]}", **extra)
    env["DROPGATE_PARALLEL_PARSE_MIN_BYTES"] = "-1"  # one process: its CPU is the whole cost
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", "dropgate.cli", "ingest", str(file), "--partner", "acme"]
    subprocess.run(command, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(file: Path, pairs: int, products: int) -> None:
    from devstack.broker import LocalBroker

    variants = {"off": {}, "on": {"DROPGATE_CLOUDEVENTS": "true"}}
    ratios, extra_us = [], []
    with LocalBroker() as broker:
        ingest_once(file, broker.bootstrap, {})  # warm-up: the page cache, the broker
        for number in range(pairs):
            order = ["off", "on"] if number % 2 == 0 else ["on", "off"]
            cpu = {name: ingest_once(file, broker.bootstrap, variants[name]) for name in order}
            ratios.append(cpu["on"] / cpu["off"])
            extra_us.append((cpu["on"] - cpu["off"]) / products * 1e6)
    print(f"{pairs} pairs, dropgate ingest of {products:,} products, CloudEvents on / off:")
    print(f"  CPU ratio median {statistics.median(ratios):.3f} (range {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"  CPU per event +{statistics.median(extra_us):.1f} us (median of the pairs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ingest", type=Path, help="a generated drop: measure whole ingests instead")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--products", type=int, default=100_000, help="how many products --ingest's file holds")
    options = parser.parse_args()
    if options.ingest:
        whole_process(options.ingest, options.pairs, options.products)
    else:
        message_building(options.events, options.rounds)


if __name__ == "__main__":
    main()
