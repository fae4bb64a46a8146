"""Mutation fuzzing of every fixture: whatever the bytes, the core answers with events or with
located problems; no exception escapes and nothing invalid is ever spooled for publishing.

`make test` runs a bounded number of examples; `make fuzz` (DROPGATE_FUZZ_EXAMPLES=5000) runs long.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.events import ProductState
from dropgate.storage import ObjectRef
from tests.conftest import FIXTURES

EXAMPLES = int(os.environ.get("DROPGATE_FUZZ_EXAMPLES", "150"))
SEEDS = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix in (".xml", ".gz"))
KINDS = {"xml_syntax", "validation", "unknown_format", "encoding", "security_limit", "empty"}


def plain(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(plain(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        operation = draw(st.sampled_from(["flip", "cut", "duplicate", "reorder", "insert", "truncate"]))
        at = draw(st.integers(0, max(size - 1, 0)))
        span = draw(st.integers(1, 64))
        if operation == "flip" and size:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "cut":
            del data[at : at + span]
        elif operation == "duplicate":
            data[at:at] = data[at : at + span]
        elif operation == "reorder" and size > 2 * span:
            other = draw(st.integers(0, size - span))
            piece = bytes(data[at : at + span])
            del data[at : at + span]
            data[other:other] = piece
        elif operation == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "truncate":
            del data[at:]
    raw = bytes(data)
    return gzip.compress(raw, mtime=0) if draw(st.booleans()) else raw


_INGESTOR = build_ingestor(Settings(partners=str(FIXTURES.parent / "partners.yaml")), local=True, publish=False)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_any_mutation_ends_in_events_or_located_problems(data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".xml") as handle:
        handle.write(data)
        handle.flush()
        prepared = _INGESTOR.prepare(ObjectRef(None, handle.name), partner_id="acme")
    with prepared.spool:
        assert prepared.problem_count >= len(prepared.problems)
        for problem in prepared.problems:
            assert problem.kind in KINDS
            assert problem.message
            assert problem.value is None or len(problem.value) < 200
        for entry in prepared.spool.replay(prepared.sha256 or "0" * 64):
            assert entry.key
            if entry.value is not None:  # every spooled value satisfies the contract
                ProductState.model_validate(orjson.loads(entry.value))
