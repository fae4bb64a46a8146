"""Held mass deletions against moto (S3, DynamoDB) and a Kafka-protocol broker, through the CLI and
the reprocess function: what is on the topic, in the ledger, and what an operator reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.adapters.s3_state import S3SnapshotStore
from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from dropgate.ingest.service import Ingestor
from dropgate.storage import ObjectRef
from tests.conftest import REPO, TopicProbe
from tests.integration.test_snapshot_deletes import catalogue

pytestmark = pytest.mark.integration
BUCKET = "drops"
runner = CliRunner()
THOUSAND = {f"P{i:04d}": 1 for i in range(1000)}
TEN = {f"P{i:04d}": 2 for i in range(10)}
GONE = {f"P{i:04d}".encode() for i in range(10, 1000)}


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "schemas" / "cli" / f"deletions-{name}.schema.json").read_text())
    return loaded


def conforming(output: str, name: str) -> list[dict[str, Any]]:
    """Each JSON line of ``output``, validated against its schema in schemas/cli/."""
    documents = [json.loads(line) for line in output.splitlines() if line.strip()]
    for document in documents:
        jsonschema.validate(document, schema(name))
    return documents


@pytest.fixture
def ingestor(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: dict[str, Any]) -> Ingestor:
    """initech sends full snapshots and keeps the default hold (more than 10 % and more than 100 keys)."""
    config = tmp_path / "partners.yaml"
    config.write_text(
        "partners:\n"
        "  initech: {prefix: initech/, format: generic, snapshot: full}\n"
        "  small: {prefix: small/, format: generic, snapshot: full, hold_deletions: {minimum: 2}}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("DROPGATE_PARTNERS", str(config))  # the CLI's and the functions' settings too
    return build_ingestor(settings.model_copy(update={"partners": str(config)}))


def put(aws: dict[str, Any], body: bytes, key: str) -> ObjectRef:
    return ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def tombstones(probe: TopicProbe) -> list[Any]:
    return [m for m in probe.messages() if m.value is None]


def stored_count(aws: dict[str, Any], partner: str = "initech") -> int:
    manifest = S3SnapshotStore(aws["s3"], BUCKET).manifest(partner, BUCKET)
    assert manifest is not None
    return manifest.header.count


def test_a_ten_product_snapshot_after_a_thousand_holds_990_deletions_and_approve_publishes_them(
    aws: dict[str, Any], settings: Settings, ingestor: Ingestor, topic_probe: TopicProbe
) -> None:
    monday = ingestor.ingest(put(aws, catalogue(16, THOUSAND), "initech/mon.xml"), trigger="test")
    assert (monday.events, monday.held_deletes) == (1000, 0)
    tuesday = ingestor.ingest(put(aws, catalogue(17, TEN), "initech/tue.xml"), trigger="test")

    assert (tuesday.status, tuesday.events, tuesday.tombstones, tuesday.held_deletes) == ("published", 10, 0, 990)
    assert len(topic_probe.messages()) == 1010 and tombstones(topic_probe) == []
    ledger = DynamoLedger(aws["dynamodb"], settings.ledger_table)
    row = ledger.get(tuesday.ref)
    assert row is not None and (row.status, row.deletions, row.held_deletes) == ("published", "held", 990)
    assert row.held_at is not None and row.held_at.startswith(f"s3://{BUCKET}/dropgate-state/held-deletions/initech/")
    assert stored_count(aws) == 1000  # the held keys are live until approved

    listed = runner.invoke(app, ["deletions", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [held] = conforming(listed.stdout, "held")
    assert (held["file"], held["partner"], held["held"], held["live"]) == (str(tuesday.ref), "initech", 990, 1000)
    assert held["predecessor"] == str(monday.ref) and held["asOf"] == "2026-11-17T06:00:00.000Z"
    text = runner.invoke(app, ["deletions", "list", "--partner", "initech"]).stdout
    assert "initech/tue.xml" in text and "held=990 of 1000 live key(s) (99%)" in text

    shown = runner.invoke(app, ["deletions", "show", f"s3://{BUCKET}/initech/tue.xml", "--json"])
    [detail] = conforming(shown.stdout, "show")
    assert detail["sample"] == [f"P{i:04d}" for i in range(10, 20)]
    person = runner.invoke(app, ["deletions", "show", f"s3://{BUCKET}/initech/tue.xml"]).stdout
    assert "990 of 1000 live key(s) (99.0%) would be deleted" in person
    assert (
        f"predecessor: {monday.ref}" in person
        and "approve: dropgate deletions approve s3://drops/initech/tue.xml" in person
    )

    # A newer snapshot re-adds two of the held products (and is held itself: 988 of 1000 missing).
    wednesday = ingestor.ingest(
        put(aws, catalogue(18, {**TEN, "P0500": 3, "P0501": 3}), "initech/wed.xml"), trigger="test"
    )
    assert (wednesday.held_deletes, wednesday.tombstones) == (988, 0)

    approved = runner.invoke(app, ["deletions", "approve", f"s3://{BUCKET}/initech/tue.xml", "--json"])
    assert approved.exit_code == 0, approved.output
    [decision] = conforming(approved.stdout, "decision")
    assert (decision["decision"], decision["published"], decision["skippedStale"]) == ("approved", 988, 2)

    deleted = tombstones(topic_probe)
    assert {m.key for m in deleted} == GONE - {b"P0500", b"P0501"} and len(deleted) == 988
    assert {m.headers["deletion-reason"] for m in deleted} == {b"approved-held"}
    assert {m.headers["deletion-source"] for m in deleted} == {str(tuesday.ref).encode()}
    live = materialise(topic_probe.messages())
    assert sorted(live) == sorted([k.encode() for k in TEN] + [b"P0500", b"P0501"])
    row = ledger.get(tuesday.ref)
    assert row is not None and (row.deletions, row.tombstones, row.event_count) == ("approved", 988, 998)
    assert stored_count(aws) == 12
    status = runner.invoke(app, ["status", f"s3://{BUCKET}/initech/tue.xml"], terminal_width=250).stdout
    assert "deletions: 990 held, approved" in status and "deletions-approved" in status
    remaining = conforming(runner.invoke(app, ["deletions", "list", "--json"]).stdout, "held")
    assert [h["key"] for h in remaining] == ["initech/wed.xml"]
    again = runner.invoke(app, ["deletions", "approve", f"s3://{BUCKET}/initech/tue.xml"])
    assert again.exit_code == 3 and "no held deletions are pending" in again.stderr


def test_reject_through_the_reprocess_function_publishes_nothing_and_dry_run_says_held(
    aws: dict[str, Any], settings: Settings, ingestor: Ingestor, topic_probe: TopicProbe
) -> None:
    from devstack.lambda_context import LocalLambdaContext
    from dropgate.app import lambda_ingestor, lambda_reprocessor
    from handlers import reprocess

    ingestor.ingest(put(aws, catalogue(16, THOUSAND), "initech/mon.xml"), trigger="test")
    tuesday_ref = put(aws, catalogue(17, TEN), "initech/tue.xml")
    dry = runner.invoke(app, ["reprocess", "--dry-run", f"s3://{BUCKET}/initech/tue.xml"])
    assert "990 product(s) missing" in dry.stdout and "the tombstones would be HELD for approval" in dry.stdout
    tuesday = ingestor.ingest(tuesday_ref, trigger="test")
    assert tuesday.held_deletes == 990

    lambda_ingestor.cache_clear()
    lambda_reprocessor.cache_clear()
    try:
        payload = json.loads((REPO / "events" / "reprocess" / "reject-held-deletions.json").read_text())
        payload.update(bucket=BUCKET, key="initech/tue.xml")
        response = reprocess.handler(payload, LocalLambdaContext())
    finally:
        lambda_ingestor.cache_clear()
        lambda_reprocessor.cache_clear()
    assert response["deletions"]["deletions"] == "rejected" and response["deletions"]["published"] == 0
    assert tombstones(topic_probe) == []
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(tuesday.ref)
    assert row is not None and (row.deletions, row.tombstones, row.attempts[-1]["outcome"]) == (
        "rejected",
        0,
        "deletions-rejected",
    )
    assert stored_count(aws) == 1000  # every key stays live
    assert runner.invoke(app, ["deletions", "list", "--json"]).stdout == ""


def test_a_hostile_file_key_is_shown_safely_and_kept_exactly_in_json(
    aws: dict[str, Any], ingestor: Ingestor, topic_probe: TopicProbe
) -> None:
    key = "small/tue\x1b[31m'$(touch x)\"\r.xml"
    ingestor.ingest(put(aws, catalogue(16, {"A": 1, "B": 1, "C": 1, "D": 1}, "small"), "small/mon.xml"), trigger="t")
    outcome = ingestor.ingest(put(aws, catalogue(17, {"A": 2}, "small"), key), trigger="test")
    assert outcome.held_deletes == 3

    text = runner.invoke(app, ["deletions", "list"]).stdout
    person = runner.invoke(app, ["deletions", "show", f"s3://{BUCKET}/{key}"]).stdout
    for output in (text, person):
        assert "\x1b" not in output and "\r" not in output
        assert "\\x1b[31m" in output
    assert "approve: dropgate deletions approve $'s3://drops/small/tue\\x1b[31m\\'$(touch x)\"\\r.xml'" in person
    [held] = conforming(runner.invoke(app, ["deletions", "list", "--json"]).stdout, "held")
    assert held["key"] == key  # exact, for a script
    rejected = runner.invoke(app, ["deletions", "reject", f"s3://{BUCKET}/{key}"])
    assert rejected.exit_code == 0 and "\x1b" not in rejected.stdout and "3 key(s) stay live" in rejected.stdout
