"""What a deployment adds to the contract's messages on the wire, each opt-in and off by default.

- CloudEvents headers (``DROPGATE_CLOUDEVENTS``, :mod:`dropgate.cloud_events`);
- Glue framing (``DROPGATE_WIRE_FORMAT=glue``): the value behind the Glue serializer's header and
  the registered schema version's UUID (:func:`dropgate.schema_registry.glue_frame_prefix`), so
  Glue-aware consumers and MSK Connect sinks deserialize without configuration. A tombstone stays
  null. Framing is a fixed prefix per schema version: values stay byte-identical per version.

With neither, :meth:`WireFormat.for_file` is ``None`` and the messages are exactly the contract's.
``event-id`` is always the hash of the unframed value: the same state has the same id either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from dropgate.cloud_events import CloudEventHeaders
from dropgate.publishing import Dress, Header
from dropgate.spool import SpoolEntry
from dropgate.storage import ObjectRef


@dataclass(frozen=True, slots=True)
class WireFormat:
    cloudevents: bool = False
    #: The bytes before every value (Glue framing), or ``None``.
    frame: bytes | None = None

    def for_file(self, ref: ObjectRef) -> Dress | None:
        if not self.cloudevents and self.frame is None:
            return None
        return _Dress(CloudEventHeaders(ref) if self.cloudevents else None, self.frame)


class _Dress:
    """One file's messages dressed as configured (see :data:`dropgate.publishing.Dress`)."""

    __slots__ = ("_cloud_events", "_frame")

    def __init__(self, cloud_events: CloudEventHeaders | None, frame: bytes | None) -> None:
        self._cloud_events = cloud_events
        self._frame = frame

    def __call__(self, entry: SpoolEntry, headers: list[Header]) -> tuple[bytes | None, list[Header]]:
        value = entry.value
        if self._frame is not None and value is not None:
            value = self._frame + value
        if self._cloud_events is not None:
            event_id = next(value for name, value in headers if name == "event-id")  # the first, in fact
            headers += self._cloud_events(entry, event_id)
        return value, headers
