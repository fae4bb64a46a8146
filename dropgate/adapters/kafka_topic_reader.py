"""Reading a topic back, from the beginning to its current end, as a consumer would see it; and
reading one event at a known offset (``dropgate key``).

Uses ``assign()`` rather than a consumer group (no group join, no committed offsets), and stops
at end-of-partition. ``materialise`` applies compaction semantics (last value per key, a
tombstone deletes), which is what a compacted topic converges to.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


@dataclass(frozen=True, slots=True)
class TopicMessage:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int


def _consumer(kafka_config: dict[str, str], **extra: Any) -> Consumer:
    return Consumer(
        {
            "log.connection.close": False,
            **kafka_config,
            "group.id": f"dropgate-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **extra,
        }
    )


def read_topic(kafka_config: dict[str, str], topic: str, *, timeout: float = 30.0) -> list[TopicMessage]:
    consumer = _consumer(kafka_config)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise KafkaException(metadata.error if metadata else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        done: set[int] = set()
        out: list[TopicMessage] = []
        deadline = time.monotonic() + timeout
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading '{topic}' did not reach the end of every partition in {timeout}s")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            partition = message.partition() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(partition)
                    continue
                raise KafkaException(error)
            out.append(_topic_message(message))
        return out
    finally:
        consumer.close()


def _topic_message(message: Any) -> TopicMessage:
    raw_headers = cast(list[tuple[str, bytes | None]], message.headers() or [])
    headers = {name: _as_bytes(value) for name, value in raw_headers}
    key, value = message.key(), message.value()
    return TopicMessage(
        _as_bytes(key) if key is not None else None,
        _as_bytes(value) if value is not None else None,
        headers,
        message.partition() or 0,
        message.offset() or 0,
    )


class EventsAt:
    """Reads single events by (partition, offset): one assign and one fetch each, whatever the
    topic holds (the fetch returns the batch holding the offset, bounded by the broker's batch
    size; nothing is prefetched past it). ``read`` counts the messages taken from the topic."""

    def __init__(self, consumer: Consumer, topic: str, timeout: float) -> None:
        self._consumer = consumer
        self.topic = topic
        self.timeout = timeout
        self.read = 0

    def event_at(self, partition: int, offset: int) -> TopicMessage | None:
        """The event at exactly ``offset``; ``None`` when it is gone (compaction left a later one
        or none there)."""
        consumer = self._consumer
        consumer.assign([TopicPartition(self.topic, partition, offset)])
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return None  # nothing at or after the offset any more
                    raise KafkaException(error)
                self.read += 1
                return _topic_message(message) if message.offset() == offset else None
        finally:
            consumer.unassign()
        raise TimeoutError(f"no answer from '{self.topic}' partition {partition} at offset {offset} in {self.timeout}s")


@contextmanager
def events_at(kafka_config: dict[str, str], topic: str, *, timeout: float = 15.0) -> Iterator[EventsAt]:
    """A reader of single events; the consumer fetches at most one batch ahead (not megabytes)."""
    consumer = _consumer(kafka_config, **{"queued.max.messages.kbytes": 1024, "fetch.wait.max.ms": 100})
    try:
        yield EventsAt(consumer, topic, timeout)
    finally:
        consumer.close()


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def materialise(messages: list[TopicMessage]) -> dict[bytes, Any]:
    """Last value per key in partition order (the order a key's events were written)."""
    state: dict[bytes, Any] = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        if message.key is None:
            continue
        if message.value is None:
            state.pop(message.key, None)
        else:
            state[message.key] = message.value
    return state
