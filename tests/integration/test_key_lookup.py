"""``dropgate key`` on the local stack (moto, a real broker): a live key, a key deleted by an
explicit delete and by a snapshot, an unknown key; and the lookup reads one message per event it
shows, however many the topic holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from confluent_kafka import Consumer
from typer.testing import CliRunner

from dropgate.adapters import kafka_topic_reader
from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from tests.conftest import REPO
from tests.integration.test_stale_guard import BUCKET, put, snapshot

pytestmark = pytest.mark.integration
SCHEMA = json.loads((REPO / "schemas" / "cli" / "key.json").read_text(encoding="utf-8"))


def key(*args: str) -> Any:
    return CliRunner().invoke(app, ["key", *args])


def key_json(*args: str) -> dict[str, Any]:
    """``dropgate key --json``: exit 0 and one document valid against schemas/cli/key.json."""
    result = key(*args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)
    return document


def test_a_live_key_shows_its_value_the_file_and_record_it_came_from_and_the_file_before(
    aws: dict[str, Any], settings: Settings
) -> None:
    ingestor = build_ingestor(settings)
    monday = put(aws, snapshot(16, {"P1": 5, "P2": 3}), "acme/mon.xml")
    tuesday = put(aws, snapshot(17, {"P0": 1, "P1": 7}), "acme/tue.xml")
    for ref in (monday, tuesday):
        assert ingestor.ingest(ref, trigger="test").status == "published"

    document = key_json("P1")

    assert (document["key"], document["partner"], document["heldBy"], document["state"]) == (
        "P1",
        "acme",
        ["acme"],
        "live",
    )
    assert document["asOf"] == "2026-11-17T06:00:00.000Z"
    current = document["current"]
    assert current["onTopic"] and current["state"] == "live"
    assert current["value"]["quantity"] == 7 and current["value"]["productId"] == "P1"
    assert current["file"]["uri"] == f"s3://{BUCKET}/acme/tue.xml?versionId={tuesday.version_id}"
    assert (current["file"]["key"], current["file"]["versionId"], current["file"]["record"]) == (
        "acme/tue.xml",
        tuesday.version_id,
        2,  # records count from 1: P0 is the first
    )
    assert current["file"]["parser"] == current["headers"]["parser-version"]
    assert current["file"]["ledger"]["status"] == "published"
    assert current["headers"]["source-object"] == current["file"]["uri"]
    assert current["file"]["ingestedAt"] == current["headers"]["ingested-at"]
    [before] = document["history"]
    assert before["value"]["quantity"] == 5 and before["file"]["key"] == "acme/mon.xml"
    assert before["offset"] < current["offset"] and before["partition"] == current["partition"]

    human = key("P1")
    assert human.exit_code == 0
    assert "state    live, asOf 2026-11-17T06:00:00.000Z" in human.stdout
    assert f"file     s3://{BUCKET}/acme/tue.xml?versionId={tuesday.version_id}, record 2" in human.stdout
    assert "  quantity: 7" in human.stdout and "earlier events (newest first):" in human.stdout


def test_a_key_deleted_in_a_file_shows_the_tombstone_and_the_file_that_deleted_it(
    aws: dict[str, Any], settings: Settings
) -> None:
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, snapshot(16, {"P1": 5, "P2": 3}), "acme/mon.xml"), trigger="test")
    deleting = put(aws, snapshot(17, {"P2": None}), "acme/tue.xml")
    ingestor.ingest(deleting, trigger="test")

    document = key_json("P2")

    assert document["state"] == "deleted"
    current = document["current"]
    assert (current["state"], current["value"]) == ("deleted", None)
    assert current["file"]["uri"] == f"s3://{BUCKET}/acme/tue.xml?versionId={deleting.version_id}"
    assert current["file"]["record"] is None and current["file"]["ledger"]["tombstones"] == 1
    assert document["history"][0]["value"]["quantity"] == 3
    human = key("P2")
    assert "state    deleted (tombstone)" in human.stdout and "acme/tue.xml" in human.stdout


def test_a_key_a_full_snapshot_no_longer_holds_names_the_snapshot_that_deleted_it(
    aws: dict[str, Any], settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partners = tmp_path / "partners.yaml"
    partners.write_text(
        "partners:\n  initech: {prefix: initech/, format: generic, snapshot: full, "
        'key_template: "{partnerId}:{productId}"}\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DROPGATE_PARTNERS", str(partners))
    ingestor = build_ingestor(Settings())
    monday = "".join(f'<product id="{p}"><quantity>1</quantity></product>' for p in ("A", "B"))
    tuesday = '<product id="A"><quantity>2</quantity></product>'
    for day, body in ((16, monday), (17, tuesday)):
        xml = f'<inventory partner="initech" generatedAt="2026-11-{day}T06:00:00Z">{body}</inventory>'
        ingestor.ingest(put(aws, xml.encode(), f"initech/{day}.xml"), trigger="test")

    document = key_json("initech:B")

    assert (document["partner"], document["state"]) == ("initech", "deleted")
    assert document["current"]["file"]["key"] == "initech/17.xml"  # the snapshot that lacked it
    assert document["current"]["value"] is None
    assert key_json("initech:A")["current"]["value"]["quantity"] == 2


def test_an_unknown_key_exits_3_and_says_where_it_looked(aws: dict[str, Any], settings: Settings) -> None:
    build_ingestor(settings).ingest(put(aws, snapshot(16, {"P1": 5}), "acme/mon.xml"), trigger="test")

    unknown = key("globex:NOPE", "--json")
    assert unknown.exit_code == 3 and unknown.stdout == ""
    assert "no key index holds key 'globex:NOPE' (looked in: acme, globex)" in unknown.stderr
    assert key("P1", "--partner", "globex").exit_code == 3  # another partner's index does not hold it
    no_partner = key("P1", "--partner", "umbrella")
    assert no_partner.exit_code == 2 and "no partner 'umbrella'" in no_partner.stderr
    hostile = key("P\x1b[2J\n1")
    assert hostile.exit_code == 3 and "P\\x1b[2J\\n1" in hostile.stderr and "\x1b" not in hostile.stderr


class CountingConsumer(Consumer):
    """A consumer that counts the messages it hands out (not end-of-partition events)."""

    taken = 0

    def poll(self, timeout: float | None = None) -> Any:
        message = super().poll(timeout) if timeout is not None else super().poll()
        if message is not None and message.error() is None:
            CountingConsumer.taken += 1
        return message


def test_the_lookup_reads_one_message_per_event_however_many_the_topic_holds(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = build_ingestor(settings)
    many = snapshot(15, {f"N{i}": i for i in range(5_000)})
    ingestor.ingest(put(aws, many, "acme/many.xml"), trigger="test")
    ingestor.ingest(put(aws, snapshot(16, {"TARGET": 9}), "acme/target.xml"), trigger="test")
    ingestor.ingest(put(aws, many.replace(b"2026-11-15", b"2026-11-17"), "acme/more.xml"), trigger="test")
    monkeypatch.setattr(kafka_topic_reader, "Consumer", CountingConsumer)
    CountingConsumer.taken = 0

    document = key_json("TARGET")

    assert document["current"]["value"]["quantity"] == 9 and document["history"] == []
    assert CountingConsumer.taken == 1  # 10,001 messages on the topic; one read

    CountingConsumer.taken = 0  # a key inside large batches: the reported offsets are each message's own
    inside = key_json("N2500")
    assert [event["file"]["key"] for event in (inside["current"], *inside["history"])] == [
        "acme/more.xml",
        "acme/many.xml",
    ]
    assert inside["current"]["value"]["quantity"] == 2500 and CountingConsumer.taken == 2
