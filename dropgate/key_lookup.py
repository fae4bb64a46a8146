"""``dropgate key``: a key's state as published, the file it came from, and its recent history.

Cheap whatever the topic holds: the partner's key index (:mod:`dropgate.partner_index`) says
where the key's newest events are (partition, offsets, from the broker's delivery reports), so
the answer is the layout and one shard from S3, then one fetch per event at its offset, never a
scan of the topic. The events' headers and values say which file and record made them; the
ledger row of that file says when and with which parser.

Where a key lives: partners share the topic. ``--partner`` reads that partner's index; otherwise
every partner whose key template could have made the key is asked (a ``{partnerId}:{productId}``
template names one partner; ``{productId}`` could be anyone's), and the answer says which hold it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from dropgate.events import render_key
from dropgate.key_index import POSITIONS
from dropgate.ledger import Ledger
from dropgate.partner_index import KeyIndexStore, PartnerIndex
from dropgate.partners import Partner
from dropgate.storage import ObjectRef

#: Headers of the event contract that say where an event came from (shown apart from the rest).
SOURCE_HEADER = "source-object"


class PublishedEvent(Protocol):
    """One message as the topic holds it."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Mapping[str, bytes]: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class EventReader(Protocol):
    """Reads single events by position (Kafka: :mod:`dropgate.adapters.kafka_topic_reader`)."""

    def event_at(self, partition: int, offset: int) -> PublishedEvent | None:
        """The event at exactly this offset; ``None`` when compaction has removed it."""


@dataclass(frozen=True, slots=True)
class Placement:
    """What one partner's key index says about the key."""

    partner: str
    as_of_ms: int
    deleted: bool
    partition: int | None
    #: The offsets of the key's newest published events, newest first (empty: none recorded).
    offsets: tuple[int, ...]


@dataclass(slots=True)
class Origin:
    """The file an event came from: its headers and value, and the file's ledger row."""

    uri: str
    bucket: str | None
    key: str
    version_id: str | None
    record: int | None = None
    parser: str | None = None
    ingested_at: str | None = None
    ledger: dict[str, Any] | None = None


@dataclass(slots=True)
class Event:
    """One of the key's events, read at its offset (``on_topic`` false: compacted away since)."""

    partition: int
    offset: int
    on_topic: bool
    deleted: bool | None = None
    value: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    origin: Origin | None = None


@dataclass(slots=True)
class KeyReport:
    key: bytes
    partner: str
    holders: list[str]
    as_of_ms: int
    deleted: bool
    current: Event | None
    history: list[Event]
    notes: list[str]

    def as_document(self) -> dict[str, Any]:
        """The ``--json`` shape (``schemas/cli/key.json``)."""
        return {
            "key": self.key.decode("utf-8", errors="replace"),
            "partner": self.partner,
            "heldBy": self.holders,
            "state": "deleted" if self.deleted else "live",
            "asOf": iso_ms(self.as_of_ms),
            "current": _event_document(self.current) if self.current is not None else None,
            "history": [_event_document(event) for event in self.history],
            "notes": self.notes,
        }


def candidates(key: bytes, partners: Iterable[Partner]) -> list[Partner]:
    """The partners whose key template could have made ``key`` (its fixed text around ``{productId}``)."""
    text = key.decode("utf-8", errors="replace")
    found = []
    for partner in partners:
        rendered = render_key(partner.key_template, product_id="\x00", partner_id=partner.id).decode()
        before, _, after = rendered.partition("\x00")
        if len(text) > len(before) + len(after) and text.startswith(before) and text.endswith(after):
            found.append(partner)
    return found


def place(key: bytes, partners: Sequence[str], store: KeyIndexStore, bucket: str | None) -> list[Placement]:
    """Every partner (of ``partners``) whose key index holds ``key``; one layout and one shard each."""
    found = []
    for partner in partners:
        row = PartnerIndex(store, partner, bucket).entry(key)
        if row is None:
            continue
        ends = [int(end) for end in row["ends"][:POSITIONS]]
        newest = ends[0] > 0
        offsets = tuple(end - 1 for end in ends if end > 0) if newest else ()
        found.append(
            Placement(
                partner=partner,
                as_of_ms=int(row["as_of"]),
                deleted=int(row["state"]) == 0,
                partition=int(row["partition"]) if newest else None,
                offsets=offsets,
            )
        )
    return found


def newest(placements: Sequence[Placement]) -> Placement:
    """The placement of the topic's last write: the highest offset (one key: one partition), else the newest asOf."""
    return max(placements, key=lambda p: (p.offsets[0] if p.offsets else -1, p.as_of_ms))


def report(key: bytes, placements: Sequence[Placement], reader: EventReader, ledger: Ledger) -> KeyReport:
    """The key's answer from the partners that hold it (at least one)."""
    chosen = newest(placements)
    notes = []
    if len(placements) > 1:
        others = ", ".join(p.partner for p in placements if p is not chosen)
        notes.append(f"also in the key index of {others}: the topic's newest event is {chosen.partner}'s")
    events = [read_event(reader, ledger, key, chosen.partition, offset) for offset in chosen.offsets]
    if not chosen.offsets:
        notes.append(
            "the key index has no topic position for this key yet (it predates positions, or its publisher "
            "reported none): the next file that publishes the key records it"
        )
    elif not events[0].on_topic:
        notes.append(
            "the newest event is no longer on the topic at its offset (a tombstone compacted away after its "
            "retention, or the topic was recreated since)"
        )
    return KeyReport(
        key=key,
        partner=chosen.partner,
        holders=[p.partner for p in placements],
        as_of_ms=chosen.as_of_ms,
        deleted=chosen.deleted,
        current=events[0] if events else None,
        history=events[1:],
        notes=notes,
    )


def read_event(reader: EventReader, ledger: Ledger, key: bytes, partition: int | None, offset: int) -> Event:
    """The key's event at ``offset``; not on the topic when it is gone, or when the offset holds
    another key's event (a topic deleted and recreated since: offsets start again)."""
    at = partition or 0
    message = reader.event_at(at, offset)
    if message is None or message.key != key:
        return Event(partition=at, offset=offset, on_topic=False)
    headers = {name: value.decode("utf-8", errors="replace") for name, value in message.headers.items()}
    value = _json(message.value) if message.value is not None else None
    return Event(
        partition=at,
        offset=offset,
        on_topic=True,
        deleted=message.value is None,
        value=value,
        headers=headers,
        origin=origin(headers, value, ledger),
    )


def origin(headers: Mapping[str, str], value: Any, ledger: Ledger) -> Origin | None:
    """Which file made the event: the value's ``source`` (a live event), else the ``source-object``
    header (a tombstone); with the file's ledger row."""
    source = value.get("source") if isinstance(value, dict) else None
    if isinstance(source, dict) and isinstance(source.get("key"), str):
        bucket, key, version = source.get("bucket"), source["key"], source.get("versionId")
        ref = ObjectRef(bucket if isinstance(bucket, str) else None, key, version if isinstance(version, str) else None)
        record = source.get("record")
        found = Origin(str(ref), ref.bucket, ref.key, ref.version_id, record if isinstance(record, int) else None)
    elif SOURCE_HEADER in headers:
        ref = parse_source_object(headers[SOURCE_HEADER])
        found = Origin(headers[SOURCE_HEADER], ref.bucket, ref.key, ref.version_id)
    else:
        return None
    found.parser = headers.get("parser-version")
    found.ingested_at = headers.get("ingested-at")
    if found.bucket is not None:
        entry = ledger.get(ObjectRef(found.bucket, found.key, found.version_id))
        if entry is not None:
            found.ledger = {
                "status": entry.status,
                "updatedAt": entry.updated_at,
                "parser": entry.parser_label,
                "events": entry.event_count,
                "tombstones": entry.tombstones,
            }
    return found


def parse_source_object(text: str) -> ObjectRef:
    """The ``source-object`` header: ``s3://bucket/key?versionId=V`` (:class:`ObjectRef`'s ``str``), or a local path."""
    uri, marker, version = text.rpartition("?versionId=")
    if not marker:
        uri, version = text, ""
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return ObjectRef(bucket, key, version or None)
    return ObjectRef(None, uri, version or None)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(value: bytes) -> Any:
    """The value as JSON; a value that is not (Glue framing, another convention) as text."""
    try:
        return json.loads(value)
    except ValueError:
        return value.decode("utf-8", errors="replace")


def _event_document(event: Event) -> dict[str, Any]:
    found = event.origin
    return {
        "partition": event.partition,
        "offset": event.offset,
        "onTopic": event.on_topic,
        "state": None if event.deleted is None else ("deleted" if event.deleted else "live"),
        "value": event.value,
        "headers": event.headers,
        "file": None
        if found is None
        else {
            "uri": found.uri,
            "bucket": found.bucket,
            "key": found.key,
            "versionId": found.version_id,
            "record": found.record,
            "parser": found.parser,
            "ingestedAt": found.ingested_at,
            "ledger": found.ledger,
        },
    }
