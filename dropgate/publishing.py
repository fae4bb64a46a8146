"""What the core hands a publisher, and the headers every state event carries.

The port (:class:`EventSink`) and its message types live here, apart from the Kafka adapter
(:mod:`dropgate.adapters.kafka_publisher`), so the ingest service and its tests import no Kafka
client. The headers are the event contract's (``shared/design.md``): built here, once, for every
publisher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from dropgate import events
from dropgate.spool import SpoolEntry

Header = tuple[str, str | bytes | None]
#: Why a tombstone was published (its ``deletion-reason`` header): a delete in the file itself, a key
#: a full snapshot no longer holds, or held tombstones an operator approved (docs/contract.md "Event contract").
DeletionReason = Literal["explicit", "absent-from-snapshot", "approved-held"]
#: An opt-in convention on the wire (CloudEvents headers, Glue framing: :mod:`dropgate.wire`): given a
#: spooled event and the contract's headers, the value and headers it goes out with.
Dress = Callable[[SpoolEntry, list[Header]], tuple[bytes | None, list[Header]]]


class PublishError(RuntimeError):
    """Not every event was acknowledged; nothing may be recorded as published."""


class TopicError(RuntimeError):
    """The topic is missing and cannot be created, or the broker cannot be reached."""


@dataclass(slots=True)
class OutMessage:
    key: bytes
    value: bytes | None
    headers: list[Header]


@dataclass(slots=True)
class PublishReport:
    sent: int
    acknowledged: int
    seconds: float


class PositionSink(Protocol):
    """Told where each acknowledged event landed (the key index keeps it: ``dropgate key``)."""

    def delivered(self, key: bytes, partition: int, offset: int) -> None: ...


class EventSink(Protocol):
    """Where events go (Kafka in production): every message acknowledged, or an exception.

    With ``positions``, every acknowledged event's partition and offset is reported to it before
    ``publish`` returns (costs a delivery report per event, so only a kept key index asks)."""

    topic: str

    def publish(
        self, messages: Iterable[OutMessage], *, deadline: float | None = None, positions: PositionSink | None = None
    ) -> PublishReport: ...


def event_messages(
    entries: Iterable[SpoolEntry],
    *,
    source: str,
    parser_label: str,
    ingested_at: str,
    dress: Dress | None = None,
    deletion: DeletionReason = "explicit",
) -> Iterator[OutMessage]:
    """Spooled events as Kafka messages with the contract's headers (``event-id`` per event); a
    tombstone also says why (``deletion-reason``) and which file deleted the key (``deletion-source``)."""
    same_for_every_event: list[Header] = [
        ("content-type", events.CONTENT_TYPE.encode()),
        ("schema", events.SCHEMA_NAME.encode()),
        ("source-object", source.encode()),
        ("parser-version", parser_label.encode()),
        ("ingested-at", ingested_at.encode()),
    ]
    why: list[Header] = [("deletion-reason", deletion.encode()), ("deletion-source", source.encode())]
    event_id = events.event_id
    for entry in entries:
        key, value = entry.key, entry.value
        headers: list[Header] = [("event-id", event_id(key, value).encode()), *same_for_every_event]
        if value is None:
            headers += why
        if dress is not None:
            value, headers = dress(entry, headers)
        yield OutMessage(key=key, value=value, headers=headers)
