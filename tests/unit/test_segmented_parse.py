"""Large plain generic drops are parsed in several processes, a segment each; the outcome must be
exactly what streaming gives.

Anything the segmented path cannot read exactly like the streaming parser must raise ``NotPlain``
before a single problem comes out, so the ingest path starts over with the streaming parser and its
diagnostics; and the ingest path must then give the same outcome as if it had streamed at once.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dropgate import parallel
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.events import FileSerializer
from dropgate.spool import EventSpool
from dropgate.storage import ObjectRef
from parsers.base import Document, InputRejected, Item, LimitExceeded, Record
from parsers.generic import GenericInventoryParser
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.segments import NotPlain, parse_segment, parser, segments
from tests.conftest import GENERIC

PARSER = GenericInventoryParser()


def _document(
    products: int,
    *,
    header: str = "",
    root_attributes: str = ' generatedAt="2026-11-20T06:00:00Z"',
    name: str = "Thing &amp; more",
) -> bytes:
    lines = [f'{header}<inventory{root_attributes} partner="acme">']
    for n in range(1, products + 1):
        if n % 17 == 0:
            lines.append(f'  <product id="P{n:07d}" deleted="true"/>')
            continue
        stores = "".join(f'<location id="S{s}" quantity="{n % 5 + s}"/>' for s in range(1, n % 3 + 2))
        lines.append(
            f'  <product id="P{n:07d}">\n    <sku>SKU-{n}</sku>\n    <name>{name} {n}</name>\n'
            f'    <price currency="EUR">{n}.50</price>\n    <locations>{stores}</locations>\n  </product>'
        )
    lines.append("</inventory>\n")
    return "\n".join(lines).encode()


def _streamed(data: bytes) -> list[Item]:
    return list(PARSER.parse(io.BytesIO(data)))


def _segmented(data: bytes, segment_bytes: int = 700, limits: Limits = DEFAULT_LIMITS) -> list[Item]:
    """What the workers read, segment by segment, in one process (the items, not the spool)."""
    items: list[Item] = []
    xml_parser = parser()
    for segment in segments(
        io.BytesIO(data),
        root="inventory",
        record="product",
        max_record_bytes=limits.max_record_bytes,
        segment_bytes=segment_bytes,
    ):
        if segment.first:
            items.append(PARSER.segment_document(parse_segment(segment.text, xml_parser), limits))
        items.extend(PARSER.segment_records(segment, xml_parser, limits))
    return items


@pytest.mark.parametrize("segment_bytes", [64, 700, 5_000, 1 << 20])
@pytest.mark.parametrize("name", ["Thing &amp; more", "Thing ☃"], ids=["walked", "canonical"])
def test_a_plain_document_gives_the_same_items_in_segments(segment_bytes: int, name: str) -> None:
    """A reference in a name sends every segment to lxml and the element walk; without one, the
    products are canonical and read from the bytes (``parsers/generic_bytes.py``)."""
    data = _document(400, name=name)
    streamed = _streamed(data)
    assert _segmented(data, segment_bytes) == streamed
    records = [item for item in streamed if isinstance(item, Record)]
    assert len(records) == 400
    assert records[-1].line == data[: data.index(b'id="P0000400"')].count(b"\n") + 1  # the file's own lines


def test_a_document_with_a_declaration_and_a_bom_is_still_plain() -> None:
    data = b"\xef\xbb\xbf" + _document(50, header='<?xml version="1.0" encoding="UTF-8"?>\n')
    assert _segmented(data) == _streamed(data)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        (
            "a comment between products",
            _document(30).replace(b'  <product id="P0000020">', b'<!-- x -->\n  <product id="P0000020">'),
        ),
        ("an end tag inside CDATA", _document(30).replace(b"<sku>SKU-20</sku>", b"<sku><![CDATA[</product>]]></sku>")),
        ("a DOCTYPE", b"<!DOCTYPE inventory>\n" + _document(30)),
        ("another encoding", _document(30, header='<?xml version="1.0" encoding="ISO-8859-1"?>\n')),
        ("a namespace on the root", _document(30, root_attributes=' xmlns:x="urn:x"')),
        ("a product in a product", _document(30).replace(b"<sku>SKU-20</sku>", b'<product id="IN"/>')),
        ("a bad value in the last product", _document(30).replace(b"<sku>SKU-29</sku>", b"<quantity>x</quantity>")),
        ("a missing end", _document(30).removesuffix(b"</inventory>\n")),
        ("junk after the root", _document(30) + b"<inventory/>"),
        ("a bad snapshot time", _document(30, root_attributes=' generatedAt="yesterday"')),
        (
            "another element between products",
            _document(30).replace(b'  <product id="P0000020">', b'<note/><product id="P0000020">'),
        ),
    ],
)
def test_anything_but_a_plain_document_is_left_to_the_streaming_parser(name: str, data: bytes) -> None:
    seen: list[Item] = []

    def read_all() -> None:
        seen.extend(_segmented(data))

    with pytest.raises(NotPlain):
        read_all()
    assert all(isinstance(item, (Document, Record)) for item in seen)  # never a problem: streaming words them


def test_a_record_longer_than_the_record_limit_stops_the_cutting() -> None:
    data = _document(5).replace(b"<sku>SKU-2</sku>", b"<sku>" + b"a" * 200_000 + b"</sku>")
    limits = DEFAULT_LIMITS.overridden({"max_record_bytes": 65_536})
    with pytest.raises(NotPlain):
        _segmented(data, limits=limits)


def _spec() -> parallel.EncodeSpec:
    return parallel.EncodeSpec(
        parser=PARSER,
        limits=DEFAULT_LIMITS,
        key_template="{productId}",
        serializer=FileSerializer(
            partner_id="acme",
            as_of=datetime(2026, 11, 20, 6, tzinfo=UTC),
            bucket=None,
            key="drop.xml",
            version_id=None,
            parser_name=PARSER.name,
            parser_version=PARSER.version,
        ),
        max_event_bytes=900_000,
    )


def _into_spool(stream: Any, processes: int = 2, spec: parallel.EncodeSpec | None = None) -> Iterator[Any]:
    with EventSpool() as spool:
        count = parallel.parse_into_spool(
            stream,
            PARSER,
            spool,
            limits=DEFAULT_LIMITS,
            processes=processes,
            spec_for=lambda _document: spec or _spec(),
            on_progress=lambda _records: None,
            segment_bytes=2_000,
        )
        yield count, [(e.key, e.value, e.record, e.as_of_ms, e.state, e.fields) for e in spool.replay("0" * 64)]


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_workers_fill_the_spool_in_file_order(processes: int) -> None:
    data = _document(1_000)
    [(count, entries)] = list(_into_spool(io.BytesIO(data), processes))
    serializer = _spec().serializer
    expected = []
    for record in [item for item in _streamed(data) if isinstance(item, Record)]:
        key = record.product_id.encode()
        if record.fields is None:
            expected.append((key, None, record.index, serializer.as_of_ms, 0, (0,) * 6))
            continue
        value = serializer.serialize(record.product_id, record.fields, record.index)
        expected.append((key, value.complete("0" * 64), record.index, value.as_of_ms, value.state, value.fields))
    assert count == 1_000 and entries == expected


def test_a_worker_that_meets_a_problem_stops_the_file() -> None:
    data = _document(1_000).replace(b"<sku>SKU-900</sku>", b"<quantity>x</quantity>")
    with pytest.raises(NotPlain, match="product 900"):
        list(_into_spool(io.BytesIO(data)))


def test_a_contract_violation_in_a_worker_stops_the_file() -> None:
    """The worker validates like the builder; an event over the size limit is one example."""
    small = dataclasses.replace(_spec(), max_event_bytes=300)  # every event here is larger
    with pytest.raises(NotPlain, match="over the size limit"):
        list(_into_spool(io.BytesIO(_document(50)), spec=small))


class _Failing(io.RawIOBase):
    """Gives some of a document, then fails as a decompression or size limit would."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._data.tell() > 30_000:
            raise LimitExceeded("max_decompressed_bytes", 30_000, "the file unpacks to more than 30,000 bytes")
        chunk = self._data.read(min(len(buffer), 1_000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_failing_read_stops_the_workers_and_is_raised() -> None:
    with pytest.raises(InputRejected, match="unpacks to more than"):
        list(_into_spool(io.BufferedReader(_Failing(_document(1_000)))))


def _count_processes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``processes`` of every parse_into_spool call, in order."""
    calls: list[int] = []
    original = parallel.parse_into_spool

    def spy(*args: Any, **kwargs: Any) -> int:
        calls.append(kwargs["processes"])
        return original(*args, **kwargs)

    monkeypatch.setattr(parallel, "parse_into_spool", spy)
    return calls


def _prepared(path: Path, threshold: int) -> tuple[list[Any], list[tuple[bytes, bytes | None]], str, int]:
    settings = Settings(parallel_parse_min_bytes=threshold)
    ingestor = build_ingestor(settings, local=True)
    prepared = ingestor.prepare(ObjectRef(bucket=None, key=str(path)), partner_id="acme")
    with prepared.spool:
        entries = [(entry.key, entry.value) for entry in prepared.spool.replay(prepared.sha256)]
    return prepared.problems, entries, prepared.sha256, prepared.records


@pytest.mark.parametrize(
    "path",
    [
        *sorted(GENERIC.rglob("*.xml*")),
        "generated",
        "generated-bad",
        "generated.gz",
        "generated-canonical",
        "generated-canonical-bad",
    ],
    ids=str,
)
@pytest.mark.parametrize("cores", [1, 2], ids=["one-core", "two-cores"])
def test_the_pipeline_gives_the_same_outcome_either_way(
    path: Any, cores: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments read in worker processes, or on one core in the ingest process itself (a small
    Lambda function), give exactly what streaming gives."""
    if isinstance(path, str):
        data = _document(3_000, name="Thing ☃" if "canonical" in path else "Thing &amp; more")
        if path.endswith("-bad"):
            data = data.replace(b"<sku>SKU-2900</sku>", b"<quantity>1,5</quantity>")
        target = tmp_path / ("drop.xml.gz" if path.endswith(".gz") else "drop.xml")
        target.write_bytes(gzip.compress(data) if path.endswith(".gz") else data)
        path = target
    streamed = _prepared(path, -1)
    calls = _count_processes(monkeypatch)
    monkeypatch.setattr(parallel, "available_cores", lambda: cores)
    in_parallel = _prepared(path, 0)
    assert in_parallel == streamed
    assert calls == [cores]  # tried once; a file that is not plain was then streamed
    if "bad" in str(path):
        assert streamed[0], "a bad file must show its problems"


def test_the_deadline_stops_a_parallel_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dropgate.ingest.reading import DeadlineReached

    target = tmp_path / "drop.xml"
    target.write_bytes(_document(3_000))
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    ingestor = build_ingestor(Settings(parallel_parse_min_bytes=0), local=True)
    with pytest.raises(DeadlineReached, match="about to time out"):
        ingestor.prepare(ObjectRef(bucket=None, key=str(target)), partner_id="acme", deadline=time.monotonic() - 1)


@pytest.mark.parametrize("cores", [1, 2], ids=["one-core", "two-cores"])
def test_a_failing_worker_is_logged_and_the_file_streamed(
    cores: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the parallel path must cost speed, never a file: it is read again in one process."""
    target = tmp_path / "drop.xml"
    target.write_bytes(_document(3_000))
    streamed = _prepared(target, -1)

    def broken(*_args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(parallel, "encode_segment", broken)  # the forked workers inherit it
    monkeypatch.setattr(parallel, "available_cores", lambda: cores)
    with caplog.at_level("WARNING", logger="dropgate"):
        assert _prepared(target, 0) == streamed
    assert "RuntimeError: boom" in caplog.text and "reading it again in one process" in caplog.text


def test_only_the_parallel_path_may_give_up_on_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NotPlain from the streaming path is a bug to surface, not a reason to read the file forever."""
    target = tmp_path / "drop.xml"
    target.write_bytes(_document(10))

    def confused(*_args: Any) -> Any:
        raise NotPlain("the streaming parser never says this")

    monkeypatch.setattr(GenericInventoryParser, "parse", confused)
    ingestor = build_ingestor(Settings(parallel_parse_min_bytes=-1), local=True)
    with pytest.raises(NotPlain):
        ingestor.prepare(ObjectRef(bucket=None, key=str(target)), partner_id="acme")


@pytest.mark.parametrize(
    ("cpus", "cpu_max", "lambda_memory_mb", "expected"),
    [
        (6, None, None, 6),  # a laptop: every CPU it may run on
        (6, "200000 100000", None, 2),  # a container with a two-CPU quota
        (6, "max 100000", None, 6),  # a cgroup without a quota
        (6, "garbage", None, 6),  # an unreadable quota is no quota
        (2, None, "1024", 1),  # Lambda's default size: about 0.6 vCPU, whatever it sees
        (2, None, "1769", 1),
        (2, None, "3538", 2),  # two vCPUs' worth
        (6, None, "10240", 5),  # the largest size: 5.8 vCPUs' worth, and the caller's process needs some
        (6, "100000 100000", "10240", 1),  # the tightest limit wins
        (6, None, "not-a-number", 6),
    ],
)
def test_cores_are_counted_from_affinity_quota_and_lambda_memory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cpus: int,
    cpu_max: str | None,
    lambda_memory_mb: str | None,
    expected: int,
) -> None:
    """On Lambda the memory size buys the CPU share (one vCPU per 1,769 MB): a default-sized function
    must parse in one process rather than fork workers onto a fraction of a CPU."""
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    quota = tmp_path / "cpu.max"
    if cpu_max is not None:
        quota.write_text(cpu_max + "\n")
    if lambda_memory_mb is None:
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", lambda_memory_mb)
    assert parallel.available_cores(str(quota)) == expected


@pytest.mark.parametrize("name", ["Thing ☃", "Thing &amp; more"], ids=["canonical", "walked"])
def test_a_default_sized_lambda_reads_segments_in_its_own_process(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1,024 MB no worker is forked, however many CPUs the function sees: the segments are read
    in the ingest process, and give what streaming gives."""
    target = tmp_path / "drop.xml"
    target.write_bytes(_document(3_000, name=name))
    streamed = _prepared(target, -1)

    def forbidden(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a 1,024 MB function must not fork parsing workers")

    calls = _count_processes(monkeypatch)
    monkeypatch.setattr(parallel, "_Workers", forbidden)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    assert _prepared(target, 0) == streamed
    assert calls == [1]
