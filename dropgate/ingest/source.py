"""An object's bytes as the ingest path reads them: the pinned version (or a byte-identical copy),
under the size and decompression limits."""

from __future__ import annotations

from dataclasses import replace
from typing import BinaryIO

from dropgate.byte_streams import Payload
from dropgate.storage import ObjectMeta, ObjectRef, ObjectStore
from parsers.limits import Limits


def open_object(store: ObjectStore, ref: ObjectRef, meta: ObjectMeta, read_from: ObjectRef | None) -> BinaryIO:
    """The object's bytes: the pinned version, or a byte-identical copy (``read_from``)."""
    if read_from is None:
        return store.open(ref, meta)
    return store.open(read_from, replace(meta, version_id=None, etag=None))


def payload_of(raw: BinaryIO, limits: Limits) -> Payload:
    return Payload(
        raw,
        max_object_bytes=limits.max_object_bytes,
        max_decompressed_bytes=limits.max_decompressed_bytes,
        max_compression_ratio=limits.max_compression_ratio,
    )
