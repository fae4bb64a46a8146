"""Pieces the contestants share: the tuned producer, the produce loop, the summary line.

Kept free of dropgate imports: the contestants are what one would write without the product.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

#: Started as early as possible (module import); contestants report phases relative to it.
T0 = time.perf_counter()

#: The tuned idempotent producer every floor and peer uses: the same guarantees as the product
#: (idempotence, acks=all, lz4, the Java partitioner) with generous local queue limits, so a
#: contestant almost never blocks on a full queue. Delivery reports only for errors (cheap) and
#: the final flush() must leave nothing queued, so "no error callback and flush() == 0" means every
#: message was acknowledged.
PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "compression.type": "lz4",
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "partitioner": "murmur2_random",
    "delivery.report.only.error": True,
    "log.connection.close": False,
}


def arguments(description: str, *, needs_broker: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("file", help="the drop (plain XML, or gzip when it ends in .gz)")
    if needs_broker:
        parser.add_argument("--bootstrap", required=True)
        parser.add_argument("--topic", required=True)
    parser.add_argument("--products", type=int, default=None, help="produce floor: how many values")
    return parser.parse_args()


class Producing:
    """A producer plus the loop that feeds it, counting what it sent and what failed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.errors = 0
        self.first_error: str | None = None
        self.sent = 0
        self.tombstones = 0
        self.topic = topic
        self.producer = Producer({**PRODUCER_CONFIG, "bootstrap.servers": bootstrap, "on_delivery": self._on_delivery})

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(error)

    def send(self, key: str | bytes, value: str | bytes | None) -> None:
        producer = self.producer
        while True:
            try:
                producer.produce(self.topic, value, key)
                break
            except BufferError:  # local queue full: serve delivery reports until there is room
                producer.poll(0.05)
        self.sent += 1
        if value is None:
            self.tombstones += 1
        if not self.sent % 10_000:
            producer.poll(0)

    def send_all(self, items: Iterable[tuple[str | bytes, str | bytes | None]]) -> None:
        # The same loop as send(), inlined: the floors should not pay for a method call per record.
        producer = self.producer
        produce = producer.produce
        poll = producer.poll
        topic = self.topic
        sent = tombstones = 0
        for key, value in items:
            try:
                produce(topic, value, key)
            except BufferError:
                while True:
                    poll(0.05)
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        continue
            sent += 1
            if value is None:
                tombstones += 1
            if not sent % 10_000:
                poll(0)
        self.sent += sent
        self.tombstones += tombstones

    def finish(self, timeout: float = 600.0) -> int:
        """flush(); the number of messages still queued (0 when everything was acknowledged)."""
        remaining: int = self.producer.flush(timeout)
        return remaining


def done(summary: dict[str, Any], *, ok: bool = True) -> None:
    """Print the summary line and exit (1 when something failed)."""
    summary["seconds"] = round(time.perf_counter() - T0, 3)
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    sys.exit(0 if ok else 1)


def producing_summary(producing: Producing, remaining: int, **extra: Any) -> None:
    ok = producing.errors == 0 and remaining == 0
    done(
        {
            **extra,
            "produced": producing.sent,
            "tombstones": producing.tombstones,
            "delivery_errors": producing.errors,
            "first_error": producing.first_error,
            "unflushed": remaining,
        },
        ok=ok,
    )
