"""CloudEvents on the topic (DROPGATE_CLOUDEVENTS=true): every event and tombstone the real broker holds
decodes with the CloudEvents SDK's Kafka binding, and says what the contract says."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from dropgate import events
from dropgate.adapters.kafka_topic_reader import TopicMessage
from dropgate.app import build_ingestor
from dropgate.config import Settings
from tests.conftest import TopicProbe
from tests.integration.test_ingest_s3 import BUCKET, upload
from tests.integration.test_snapshot_deletes import MONDAY, TUESDAY, ingestor_for, put

pytestmark = pytest.mark.integration


def decoded(message: TopicMessage) -> Any:
    """The SDK's reading of a message: it refuses one without id, source, type or specversion 1.0."""
    kafka = KafkaMessage(headers=dict(message.headers), key=message.key, value=message.value)  # type: ignore[arg-type]
    return from_binary(kafka, JSONFormat())


@pytest.fixture
def cloud_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPGATE_CLOUDEVENTS", "true")


def test_every_event_and_tombstone_decodes_with_the_sdk(
    aws: dict[str, Any], cloud_events: None, topic_probe: TopicProbe
) -> None:
    ref = upload(aws, "good/acme-2026-11-20.xml", "acme/café inventory.xml")
    outcome = build_ingestor(Settings()).ingest(ref, trigger="test")
    assert (outcome.events, outcome.tombstones) == (5, 1)
    messages = topic_probe.messages()
    assert len(messages) == 5
    source = f"s3://{BUCKET}/acme/caf%C3%A9%20inventory.xml?versionId={ref.version_id}"
    for message in messages:
        event = decoded(message)
        assert event.get_specversion() == "1.0"
        assert event.get_id() == message.headers["event-id"].decode()
        assert event.get_source() == source
        assert event.get_type() == "dropgate.inventory.product-state.v1"
        assert event.get_subject() == message.key.decode()
        assert event.get_dataschema() == events.SCHEMA_ID
        assert event.get_datacontenttype() == "application/json"
        assert event.get_time() == datetime(2026, 11, 20, 6, tzinfo=UTC)  # asOf, a tombstone's too
        if message.value is None:
            assert event.get_data() is None
        else:
            assert event.get_data() == json.loads(message.value)
            assert event.get_time().isoformat().replace("+00:00", "Z") == event.get_data()["asOf"]
    assert sum(message.value is None for message in messages) == 1


def test_ids_are_stable_across_a_republish_and_the_contract_headers_stay(
    aws: dict[str, Any], cloud_events: None, topic_probe: TopicProbe
) -> None:
    ref = upload(aws, "good/acme-2026-11-20.xml", "acme/inventory.xml")
    ingestor = build_ingestor(Settings())
    ingestor.ingest(ref, trigger="test")
    ingestor.ingest(ref, trigger="test", force=True)
    ids: dict[bytes | None, set[str]] = {}
    for message in topic_probe.messages():
        ids.setdefault(message.key, set()).add(decoded(message).get_id())
        assert {"event-id", "content-type", "schema", "source-object", "parser-version", "ingested-at"} <= set(
            message.headers
        )
    assert len(ids) == 5 and all(len(same) == 1 for same in ids.values())


def test_snapshot_deletes_carry_the_headers_too(
    aws: dict[str, Any], cloud_events: None, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    ingestor = ingestor_for(Settings(), tmp_path, snapshot="full")
    ingestor.ingest(put(aws, MONDAY, "initech/mon.xml"), trigger="test")
    second = ingestor.ingest(put(aws, TUESDAY, "initech/tue.xml"), trigger="test")
    assert second.snapshot_deletes == 3
    deleted = [decoded(m) for m in topic_probe.messages() if m.value is None]
    assert sorted(event.get_subject() for event in deleted) == ["B", "C", "D"]
    assert {event.get_time() for event in deleted} == {datetime(2026, 11, 17, 6, tzinfo=UTC)}  # the snapshot's asOf
    assert all(event.get_source().startswith(f"s3://{BUCKET}/initech/tue.xml?versionId=") for event in deleted)


def test_without_the_setting_no_cloud_events_header_is_sent(aws: dict[str, Any], topic_probe: TopicProbe) -> None:
    build_ingestor(Settings()).ingest(upload(aws, "good/acme-2026-11-20.xml", "acme/plain.xml"), trigger="test")
    for message in topic_probe.messages():
        assert not [name for name in message.headers if name.startswith("ce_")]
