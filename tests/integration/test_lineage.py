"""OpenLineage (DROPGATE_LINEAGE=true) through the openlineage-python client's file transport: a run per
file, START then COMPLETE or FAIL, naming the S3 object it read and the topic it wrote."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from dropgate.adapters.openlineage_emitter import OpenLineageEmitter
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.lineage import Dataset, FileRun, RunEnd
from tests.conftest import TopicProbe
from tests.integration.test_ingest_s3 import BUCKET, upload

pytestmark = pytest.mark.integration


@pytest.fixture
def lineage_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """openlineage-python's own configuration: a file transport, one event per line."""
    path = tmp_path / "lineage.jsonl"
    monkeypatch.setenv("DROPGATE_LINEAGE", "true")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(path))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    return path


def runs(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The events written, by run id, in the order they were written."""
    found: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        found.setdefault(event["run"]["runId"], []).append(event)
    return found


def test_a_published_and_a_quarantined_file_each_write_a_run(
    aws: dict[str, Any], lineage_file: Path, settings: Settings, kafka_bootstrap: str, topic: str
) -> None:
    ingestor = build_ingestor(Settings())
    good = ingestor.ingest(upload(aws, "good/acme-2026-11-20.xml", "acme/good.xml"), trigger="test")
    bad = ingestor.ingest(upload(aws, "bad/acme-bad-values.xml", "acme/bad.xml"), trigger="test")
    assert (good.status, bad.status) == ("published", "quarantined")

    published, quarantined = runs(lineage_file).values()
    assert [event["eventType"] for event in published] == ["START", "COMPLETE"]
    assert [event["eventType"] for event in quarantined] == ["START", "FAIL"]
    for run, key in ((published, "acme/good.xml"), (quarantined, "acme/bad.xml")):
        for event in run:
            assert event["job"] == {"namespace": "dropgate", "name": "ingest.acme", "facets": {}}
            assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [(f"s3://{BUCKET}", key)]
            assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [(f"kafka://{kafka_bootstrap}", topic)]
            parser = event["run"]["facets"]["dropgate_parser"]
            assert (parser["name"], parser["version"]) == ("generic-xml", "1")

    complete, fail = published[-1], quarantined[-1]
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 5
    outcome = complete["run"]["facets"]["dropgate_quarantine"]
    assert (outcome["outcome"], outcome["quarantined"], outcome["events"], outcome["tombstones"]) == (
        "published",
        False,
        5,
        1,
    )
    assert fail["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 0
    outcome = fail["run"]["facets"]["dropgate_quarantine"]
    assert (outcome["outcome"], outcome["quarantined"], outcome["problems"]) == ("quarantined", True, 6)
    assert outcome["diagnostics"] == bad.diagnostics
    assert fail["run"]["facets"]["errorMessage"]["message"].startswith("6 problem(s); first: [validation]")


def test_a_failed_attempt_fails_its_run_and_still_raises(
    aws: dict[str, Any], lineage_file: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = build_ingestor(Settings())
    ref = upload(aws, "good/acme-2026-11-20.xml", "acme/broker-gone.xml")
    assert ingestor.sink is not None

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the broker is gone")

    monkeypatch.setattr(ingestor.sink, "publish", unreachable)
    with pytest.raises(RuntimeError, match="the broker is gone"):
        ingestor.ingest(ref, trigger="test")
    ((start, fail),) = runs(lineage_file).values()
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert fail["run"]["facets"]["errorMessage"]["message"] == "RuntimeError: the broker is gone"
    assert fail["run"]["facets"]["dropgate_quarantine"]["outcome"] == "failed"


def test_an_unreachable_lineage_backend_never_fails_an_ingest(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch, topic_probe: TopicProbe
) -> None:
    from devstack.ports import free_port

    monkeypatch.setenv("DROPGATE_LINEAGE", "true")
    monkeypatch.setenv("DROPGATE_LINEAGE_TIMEOUT_S", "0.5")  # the client retries: this bounds what a file waits
    monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    outcome = build_ingestor(Settings()).ingest(upload(aws, "good/acme-2026-11-20.xml", "acme/x.xml"), trigger="test")
    assert (outcome.status, outcome.events) == ("published", 5)
    assert len(topic_probe.messages()) == 5


def test_a_backend_that_never_answers_holds_a_file_no_longer_than_the_timeout() -> None:
    """The client's emit blocks until released; the emitter returns after its timeout all the same."""
    release = threading.Event()
    sent: list[Any] = []

    class Stuck:
        def emit(self, event: Any) -> None:
            release.wait()
            sent.append(event)

    emitter = OpenLineageEmitter(Stuck(), timeout_s=0.2)
    run = FileRun(
        "0190c3f1-7b1e-7c1a-9d2e-1234567890ab",
        "dropgate",
        "ingest",
        Dataset("s3://b", "k"),
        Dataset("kafka://h:1", "t"),
        "generic-xml/1",
    )
    emitter.start(run)
    emitter.end(run, RunEnd("published", events=1))
    assert sent == []  # both calls came back while the backend still held the events
    release.set()
