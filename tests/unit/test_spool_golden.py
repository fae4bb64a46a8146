"""Every fixture's events, byte for byte, against a record taken before the ingest path was split.

``tests/golden/spools.json`` holds, per fixture, a digest of every message the file would publish
(key, value and headers, with ``ingested-at`` fixed), and what else a partner or operator sees of
the parse: counts, the sha256 and the problems in full. A refactor that changes one byte of one
event, or one word of one diagnostic, fails here. Regenerate only for an intended change:
``UPDATE_GOLDEN_SPOOLS=1 .venv/bin/pytest tests/unit/test_spool_golden.py`` and review the diff.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dropgate import parallel
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import FIXTURES, REPO

GOLDEN = REPO / "tests" / "golden" / "spools.json"
#: Fixture folder → the partner whose prefix its files are dropped under.
PARTNER_OF = {
    "generic": "acme",
    "google-merchant": "northwind",
    "google-local": "contoso",
    "amazon": "tailspin",
    "cxml": "fabrikam",
    "declarative": "initech",
}
UPLOADED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
INGESTED_AT = "2026-12-01T12:00:05.000Z"
FIXTURE_FILES = sorted(
    str(path.relative_to(FIXTURES)) for path in FIXTURES.glob("*/*/*") if path.parent.parent.name in PARTNER_OF
)


def _spool_record(prepared: Any) -> dict[str, Any]:
    digest = hashlib.sha256()
    count = 0
    for message in prepared.messages(ingested_at=INGESTED_AT):
        for part in (message.key, message.value or b"<tombstone>"):
            digest.update(len(part).to_bytes(8, "big") + part)
        for name, value in message.headers:
            digest.update(name.encode() + b"=" + value + b"\n")
        count += 1
    return {
        "partner": prepared.partner_id,
        "parser": prepared.parser_label,
        "sha256": prepared.sha256,
        "size": prepared.size,
        "records": prepared.records,
        "messages": count,
        "tombstones": prepared.spool.tombstones,
        "snapshot": prepared.snapshot,
        "as_of_ms": prepared.as_of_ms,
        "fatal": prepared.fatal,
        "problem_count": prepared.problem_count,
        "problems": [problem.as_dict() for problem in prepared.problems],
        "events_sha256": digest.hexdigest(),
    }


def _prepare(fixture: str, workdir: Path, **overrides: Any) -> dict[str, Any]:
    folder = fixture.split("/", 1)[0]
    key = f"{PARTNER_OF[folder]}/{Path(fixture).name}"
    target = workdir / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((FIXTURES / fixture).read_bytes())
    os.utime(target, (UPLOADED, UPLOADED))
    settings = Settings(partners=str(REPO / "partners.yaml"), spool_dir=str(workdir), **overrides)
    prepared = build_ingestor(settings, local=True, publish=False).prepare(ObjectRef(None, key))
    with prepared.spool:
        return _spool_record(prepared)


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if os.environ.get("UPDATE_GOLDEN_SPOOLS"):
        return {}
    return dict(json.loads(GOLDEN.read_text()))


@pytest.fixture(scope="module", autouse=True)
def golden_written(golden: dict[str, Any]) -> Any:
    written: dict[str, Any] = {}
    yield written
    if os.environ.get("UPDATE_GOLDEN_SPOOLS"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(dict(sorted(written.items())), indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("fixture", FIXTURE_FILES)
def test_a_fixture_spools_the_events_it_spooled_before(
    fixture: str,
    golden: dict[str, Any],
    golden_written: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # local keys are relative, so partner prefixes apply
    record = _prepare(fixture, tmp_path)
    if os.environ.get("UPDATE_GOLDEN_SPOOLS"):
        golden_written[fixture] = record
        return
    assert record == golden[fixture]


@pytest.mark.parametrize("fixture", [f for f in FIXTURE_FILES if f.startswith("generic/good/")])
def test_the_parallel_path_spools_the_same_events(
    fixture: str, golden: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.environ.get("UPDATE_GOLDEN_SPOOLS"):
        return
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []
    real = parallel.parse_into_spool

    def counted(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "parse_into_spool", counted)
    record = _prepare(fixture, tmp_path, parse_processes=2, parallel_parse_min_bytes=0)
    assert calls, "the parallel path was not taken"
    assert record == golden[fixture]


def test_every_fixture_folder_is_covered() -> None:
    folders = {path.name for path in FIXTURES.iterdir() if path.is_dir()}
    assert folders == set(PARTNER_OF)
    assert len(FIXTURE_FILES) >= 20
