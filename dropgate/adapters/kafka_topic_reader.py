"""Reading a topic back, from the beginning to its current end, as a consumer would see it.

Uses ``assign()`` on every partition rather than a consumer group (no group join, no committed
offsets), and stops at end-of-partition. ``materialise`` applies compaction semantics (last
value per key, a tombstone deletes), which is what a compacted topic converges to.
"""

from __future__ import annotations

import uuid
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


def read_topic(kafka_config: dict[str, str], topic: str, *, timeout: float = 30.0) -> list[TopicMessage]:
    consumer = Consumer(
        {
            "log.connection.close": False,
            **kafka_config,
            "group.id": f"dropgate-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise KafkaException(metadata.error if metadata else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        done: set[int] = set()
        out: list[TopicMessage] = []
        import time

        deadline = time.monotonic() + timeout
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading '{topic}' did not reach the end of every partition in {timeout}s")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            partition, offset = message.partition() or 0, message.offset() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(partition)
                    continue
                raise KafkaException(error)
            raw_headers = cast(list[tuple[str, bytes | None]], message.headers() or [])
            headers = {name: _as_bytes(value) for name, value in raw_headers}
            key, value = message.key(), message.value()
            out.append(
                TopicMessage(
                    _as_bytes(key) if key is not None else None,
                    _as_bytes(value) if value is not None else None,
                    headers,
                    partition,
                    offset,
                )
            )
        return out
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
