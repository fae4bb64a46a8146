"""CloudEvents headers (Kafka protocol binding, binary content mode) for one file's events.

Binary mode leaves the value alone (the contract's JSON, or null for a tombstone, which binary mode
allows) and adds the attributes as ``ce_`` headers; ``datacontenttype`` is the ``content-type``
header every event already carries. Generic tooling can then route by ``ce_type`` and deduplicate
by ``ce_id``:

- ``ce_id`` is the ``event-id`` header: a hash of key and value, so a republish of the same state
  has the same id, and a different state a different one (a tombstone: the key alone);
- ``ce_source`` is the object version the event came from, as a URI;
- ``ce_subject`` is the Kafka key;
- ``ce_time`` is the state's ``asOf`` at millisecond precision (UTC). A tombstone has no value to
  carry an ``asOf``: its time is the one the guard keeps for it, the ``asOf`` of the file that
  deleted the product (an explicit delete, or the full snapshot it was missing from);
- ``ce_dataschema`` is the JSON Schema's ``$id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from dropgate import events
from dropgate.publishing import Header
from dropgate.spool import SpoolEntry
from dropgate.storage import ObjectRef

SPECVERSION = b"1.0"
#: One type for upserts and tombstones: a null value says "deleted", as it does to Kafka itself.
EVENT_TYPE = f"dropgate.{events.SCHEMA_NAME}"


def source_uri(ref: ObjectRef) -> str:
    """The object version as a URI: ``s3://bucket/key?versionId=…`` percent-encoded, or a local file's ``file:`` URI."""
    if ref.bucket is None:
        return Path(ref.key).resolve().as_uri()
    uri = f"s3://{quote(ref.bucket, safe='')}/{quote(ref.key, safe='/')}"
    return uri + (f"?versionId={quote(ref.version_id, safe='')}" if ref.version_id else "")


class CloudEventHeaders:
    """The ``ce_`` headers of one file's events: built once per file, a few tuples per event."""

    __slots__ = ("_constant", "_time", "_time_ms")

    def __init__(self, ref: ObjectRef) -> None:
        self._constant: list[Header] = [
            ("ce_specversion", SPECVERSION),
            ("ce_type", EVENT_TYPE.encode()),
            ("ce_source", source_uri(ref).encode()),
            ("ce_dataschema", events.SCHEMA_ID.encode()),
        ]
        # A file's events share their asOf (tombstones included): format it once, not per event.
        self._time_ms = -1
        self._time = b""

    def __call__(self, entry: SpoolEntry, event_id: str | bytes | None) -> list[Header]:
        headers: list[Header] = [("ce_id", event_id), *self._constant, ("ce_subject", entry.key)]
        if entry.as_of_ms:  # 0: no time known, and the attribute is optional
            headers.append(("ce_time", self._time_of(entry.as_of_ms)))
        return headers

    def _time_of(self, as_of_ms: int) -> bytes:
        if as_of_ms != self._time_ms:
            seconds, millis = divmod(as_of_ms, 1000)  # integers: a float would round .123 to .122999
            moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
            text = moment.isoformat(timespec="milliseconds" if millis else "seconds")
            self._time, self._time_ms = (text.removesuffix("+00:00") + "Z").encode(), as_of_ms
        return self._time
