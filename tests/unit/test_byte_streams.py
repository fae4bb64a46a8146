import gzip
import hashlib
import io
import zlib

import pytest

from dropgate.byte_streams import Payload
from parsers.base import InputRejected, LimitExceeded

XML = b'<inventory><product id="A"><quantity>1</quantity></product></inventory>'


def open_payload(data: bytes, **limits: int) -> Payload:
    return Payload(
        io.BytesIO(data),
        max_object_bytes=limits.get("max_object_bytes", 10**9),
        max_decompressed_bytes=limits.get("max_decompressed_bytes", 10**9),
    )


def test_gzip_is_detected_by_magic_and_hash_covers_stored_bytes() -> None:
    stored = gzip.compress(XML, mtime=0)
    payload = open_payload(stored)
    assert payload.gzip
    assert payload.stream.read() == XML
    assert payload.finish() == hashlib.sha256(stored).hexdigest()
    assert payload.size == len(stored)


def test_plain_xml_passes_through() -> None:
    payload = open_payload(XML)
    assert not payload.gzip and not payload.empty
    assert payload.stream.read() == XML
    assert payload.finish() == hashlib.sha256(XML).hexdigest()


def test_multi_member_gzip_is_read_whole() -> None:
    stored = gzip.compress(XML[:20], mtime=0) + gzip.compress(XML[20:], mtime=0)
    assert open_payload(stored).stream.read() == XML


def test_empty_object_is_recognised() -> None:
    assert open_payload(b"").empty


def test_gzip_bomb_is_refused_at_the_cap() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000, mtime=0, compresslevel=9)
    assert len(bomb) < 100_000
    payload = open_payload(bomb, max_decompressed_bytes=1_000_000)
    with pytest.raises(LimitExceeded) as raised:
        payload.stream.read()
    assert raised.value.limit == "max_decompressed_bytes"
    assert "1,000,000" in raised.value.message


def test_cut_off_gzip_upload_is_rejected_not_taken_as_complete() -> None:
    stored = gzip.compress(XML * 100, mtime=0)
    payload = open_payload(stored[: len(stored) // 2])
    with pytest.raises(InputRejected, match="cut off"):
        payload.stream.read()


def test_corrupt_gzip_is_rejected() -> None:
    stored = bytearray(gzip.compress(XML * 100, mtime=0))
    stored[20:40] = b"\xff" * 20
    payload = open_payload(bytes(stored))
    with pytest.raises((InputRejected, zlib.error)):
        payload.stream.read()


def test_object_size_limit() -> None:
    with pytest.raises(LimitExceeded) as raised:
        open_payload(XML * 100, max_object_bytes=len(XML)).stream.read()
    assert raised.value.limit == "max_object_bytes"
