"""The value schema in the Glue Schema Registry (moto's Glue): registered once, checked at cold start,
and, opt-in, in front of every value on the topic (the real broker)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from dropgate import events
from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from dropgate.schema_registry import SchemaNotRegistered
from tests.conftest import REPO, TopicProbe
from tests.integration.test_ingest_s3 import upload

pytestmark = pytest.mark.integration
REGISTRY = "dropgate-contracts"


@pytest.fixture
def glue(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DROPGATE_SCHEMA_REGISTRY", REGISTRY)
    return boto3.client("glue")


def register() -> Any:
    return CliRunner().invoke(app, ["schema", "register"])


def versions(glue: Any) -> list[dict[str, Any]]:
    """Every version of the schema, by number (moto has no ListSchemaVersions: the schema counts them)."""
    schema_id = {"RegistryName": REGISTRY, "SchemaName": events.SCHEMA_NAME}
    schema = glue.get_schema(SchemaId=schema_id)
    assert schema["NextSchemaVersion"] == schema["LatestSchemaVersion"] + 1
    return [
        glue.get_schema_version(SchemaId=schema_id, SchemaVersionNumber={"VersionNumber": number})
        for number in range(1, schema["LatestSchemaVersion"] + 1)
    ]


def test_registering_twice_yields_one_version_holding_the_checked_in_schema(glue: Any) -> None:
    first, second = register(), register()
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    (only,) = versions(glue)
    assert first.output.strip() == f"{REGISTRY}/{events.SCHEMA_NAME} version 1 ({only['SchemaVersionId']}): registered"
    assert second.output.strip() == first.output.strip().replace("registered", "already registered")
    schema = glue.get_schema(SchemaId={"RegistryName": REGISTRY, "SchemaName": events.SCHEMA_NAME})
    assert (schema["DataFormat"], schema["Compatibility"]) == ("JSON", "BACKWARD")
    stored = glue.get_schema_version(SchemaVersionId=only["SchemaVersionId"])["SchemaDefinition"]
    assert stored + "\n" == (REPO / "schemas" / "inventory.product-state.v1.json").read_text(encoding="utf-8")


def test_a_changed_model_is_a_new_version_and_the_old_one_stays_itself(
    glue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert register().exit_code == 0
    original = events.json_schema
    wider = original()
    wider["properties"]["warehouse"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    monkeypatch.setattr(events, "json_schema", lambda: wider)
    assert "version 2" in register().output
    monkeypatch.setattr(events, "json_schema", original)
    again = register()
    assert "version 1" in again.output and "already registered" in again.output
    assert [version["VersionNumber"] for version in versions(glue)] == [1, 2]


def test_register_needs_a_registry_and_refuses_a_hostile_name(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from dropgate.cli import main

    result = register()
    assert result.exit_code == 2 and "set DROPGATE_SCHEMA_REGISTRY" in result.output
    monkeypatch.setenv("DROPGATE_SCHEMA_REGISTRY", "reg\x1b[2Jistry")
    monkeypatch.setattr("sys.argv", ["dropgate", "schema", "register"])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("dropgate: ValidationError:")
    assert "\x1b" not in err  # refused by the settings before any call or message could carry it


def test_the_ingest_function_refuses_to_start_on_an_unregistered_schema(glue: Any, settings: Settings) -> None:
    with pytest.raises(SchemaNotRegistered) as refused:
        build_ingestor(Settings())
    assert "run `dropgate schema register`" in str(refused.value)
    assert f"schema '{events.SCHEMA_NAME}' in Glue registry '{REGISTRY}'" in str(refused.value)
    assert register().exit_code == 0
    build_ingestor(Settings())  # registered now: the check passes


def test_glue_framing_puts_the_version_id_before_each_value_and_leaves_the_json_alone(
    glue: Any, monkeypatch: pytest.MonkeyPatch, topic_probe: TopicProbe, aws: dict[str, Any]
) -> None:
    """The Glue serializer's layout: header version 3, compression 0 (none), the version's 16 bytes."""
    assert register().exit_code == 0
    version_id = versions(glue)[0]["SchemaVersionId"]
    ref = upload(aws, "good/acme-2026-11-20.xml", "acme/framed.xml")
    plain = build_ingestor(Settings()).ingest(ref, trigger="test")
    monkeypatch.setenv("DROPGATE_WIRE_FORMAT", "glue")
    framed = build_ingestor(Settings()).ingest(ref, trigger="test", force=True)
    assert plain.events == framed.events == 5
    by_key: dict[bytes | None, list[Any]] = {}
    for message in topic_probe.messages():  # a key's messages keep their order (one partition)
        by_key.setdefault(message.key, []).append(message)
    prefix = bytes([3, 0]) + uuid.UUID(version_id).bytes
    assert len(by_key) == 5
    for before, after in by_key.values():
        assert after.headers["event-id"] == before.headers["event-id"]  # the hash of the JSON itself
        if before.value is None:
            assert after.value is None  # a tombstone stays null
        else:
            assert after.value == prefix + before.value
