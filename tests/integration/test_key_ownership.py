"""Key ownership between partners (issue 17, part 2), through the S3 path: moto, the ledger, the
quarantine, the real broker, and the ``dropgate keys`` commands.

A second partner sending a key the first owns gets an ``authorization`` problem (strict: in the
quarantine diagnostics; skip_invalid: the rest published) and the first partner's state on the
topic is unchanged; a transfer lets the second partner publish it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from typer.testing import CliRunner

from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from dropgate.ingest import ownership
from dropgate.key_ownership import LAYOUT
from dropgate.storage import ObjectRef
from tests.conftest import REPO, TopicProbe
from tests.integration.test_duplicate_keys import sidecar

pytestmark = pytest.mark.integration
BUCKET = "drops"
runner = CliRunner()
PARTNERS = """
partners:
  acme: {prefix: acme/, format: generic}
  beta: {prefix: beta/, format: generic}
  lenient: {prefix: lenient/, format: generic, policy: skip_invalid}
  globex: {prefix: globex/, format: generic, key_template: "{partnerId}:{productId}"}
"""


@pytest.fixture
def settings(kafka_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    partners = tmp_path / "partners.yaml"
    partners.write_text(PARTNERS)
    monkeypatch.setenv("DROPGATE_PARTNERS", str(partners))
    return Settings()


def inventory(day: int, products: dict[str, int | None]) -> bytes:
    """Generic format; product N is on line N + 1; ``None`` is a delete."""
    lines = [
        f'<product id="{pid}" deleted="true"/>'
        if qty is None
        else f'<product id="{pid}"><name>{pid}</name><quantity>{qty}</quantity></product>'
        for pid, qty in products.items()
    ]
    return "\n".join([f'<inventory generatedAt="2026-11-{day:02d}T06:00:00Z">', *lines, "</inventory>"]).encode()


def put(aws: dict[str, Any], key: str, body: bytes) -> ObjectRef:
    return ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def state(probe: TopicProbe) -> dict[bytes, tuple[str, int]]:
    """Each key's (partner, quantity) on the compacted topic."""
    values = materialise(probe.messages())
    return {key: (orjson.loads(v)["partnerId"], orjson.loads(v)["quantity"]) for key, v in values.items()}


def test_a_strict_partner_sending_anothers_key_is_quarantined_and_the_topic_keeps_the_owners_state(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ingestor = build_ingestor(settings)
    first = ingestor.ingest(put(aws, "acme/mon.xml", inventory(16, {"P1": 1, "P2": 2})), trigger="s3")
    assert (first.status, first.events) == ("published", 2)
    owned = state(topic_probe)
    assert owned == {b"P1": ("acme", 1), b"P2": ("acme", 2)}

    second = ingestor.ingest(put(aws, "beta/tue.xml", inventory(17, {"B1": 5, "P2": 9})), trigger="s3")
    assert (second.status, second.events) == ("quarantined", 0)
    diagnostics = sidecar(aws, "beta/tue.xml")
    assert [(p["kind"], p["line"], p["record"], p["productId"]) for p in diagnostics["problems"]] == [
        ("authorization", 3, 2, "P2")
    ]
    message = diagnostics["problems"][0]["message"]
    assert "belongs to partner 'acme'" in message and "{partnerId}:{productId}" in message
    assert "dropgate keys transfer P2 --from acme --to beta" in message
    assert state(topic_probe) == owned  # nothing of beta's reached the topic


def test_a_large_file_has_the_map_read_while_it_is_parsed_and_is_checked_the_same(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of a megabyte has the 64 shards read on a thread while its workers parse it: another
    partner's key at its end is still found, on its line."""
    started: list[ownership.EarlyRead | None] = []
    read_early = ownership.read_early
    monkeypatch.setattr(ownership, "read_early", lambda *args: started.append(read_early(*args)) or started[-1])
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, "acme/mon.xml", inventory(16, {"P1": 1, "P2": 2})), trigger="s3")
    products: dict[str, int | None] = {f"B{i:06d}": 1 for i in range(15_000)}
    products["P2"] = 9
    body = inventory(17, products)
    assert len(body) >= max(ownership.EARLY_READ_BYTES, settings.parallel_parse_min_bytes)
    outcome = ingestor.ingest(put(aws, "beta/big.xml", body), trigger="s3")
    assert (outcome.status, outcome.events) == ("quarantined", 0)
    assert [(p["kind"], p["line"], p["record"], p["productId"]) for p in sidecar(aws, "beta/big.xml")["problems"]] == [
        ("authorization", 15_002, 15_001, "P2")
    ]
    early = started[-1]
    assert early is not None and early.reads == len(LAYOUT)  # the big file's map was read early, whole
    assert state(topic_probe) == {b"P1": ("acme", 1), b"P2": ("acme", 2)}


def test_skip_invalid_publishes_the_rest_and_leaves_the_owners_keys_alone(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, "acme/mon.xml", inventory(16, {"P1": 1, "P2": 2})), trigger="s3")
    outcome = ingestor.ingest(put(aws, "lenient/tue.xml", inventory(17, {"P1": 7, "L1": 3, "P2": None})), trigger="s3")
    assert (outcome.status, outcome.events, outcome.tombstones, outcome.problem_count) == ("quarantined", 1, 0, 2)
    assert [(p["kind"], p["line"]) for p in sidecar(aws, "lenient/tue.xml")["problems"]] == [
        ("authorization", 2),
        ("authorization", 4),
    ]
    assert state(topic_probe) == {b"P1": ("acme", 1), b"P2": ("acme", 2), b"L1": ("lenient", 3)}


def test_a_key_another_partners_template_reserves_cannot_be_made_by_a_product_id(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    """globex's keys carry its id and are never in the map; acme's product id 'globex:G1' would make
    one, and its tombstone would delete globex's product."""
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, "globex/mon.xml", inventory(16, {"G1": 1, "G2": 2})), trigger="s3")
    before = state(topic_probe)
    assert before == {b"globex:G1": ("globex", 1), b"globex:G2": ("globex", 2)}
    spoof = ingestor.ingest(put(aws, "acme/tue.xml", inventory(17, {"globex:G1": 0, "globex:G2": None})), trigger="s3")
    assert spoof.status == "quarantined"
    problems = sidecar(aws, "acme/tue.xml")["problems"]
    assert [(p["kind"], p["line"], p["productId"]) for p in problems] == [
        ("authorization", 2, "globex:G1"),
        ("authorization", 3, "globex:G2"),
    ]
    assert "partner 'globex' holds by its key template" in problems[0]["message"]
    assert state(topic_probe) == before


def test_a_transfer_recorded_in_the_ledger_lets_the_new_owner_publish(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, "acme/mon.xml", inventory(16, {"P1": 1})), trigger="s3")

    wrong = runner.invoke(app, ["keys", "transfer", "P1", "--from", "beta", "--to", "lenient"])
    assert wrong.exit_code == 2 and "owned by 'acme', not 'beta'" in wrong.output
    nobody = runner.invoke(app, ["keys", "owner", "N1", "--json"])
    assert nobody.exit_code == 3 and json.loads(nobody.stdout)["owner"] is None
    moved = runner.invoke(app, ["keys", "transfer", "P1", "--from", "acme", "--to", "beta"])
    assert moved.exit_code == 0, moved.output
    assert "now belongs to partner 'beta'" in moved.output

    shown = runner.invoke(app, ["keys", "owner", "P1", "--json"])
    assert shown.exit_code == 0
    document = json.loads(shown.stdout)
    jsonschema.validate(document, json.loads((REPO / "schemas/cli/keys-owner.json").read_text()))
    assert (document["owner"], [(t["from"], t["to"]) for t in document["transfers"]]) == ("beta", [("acme", "beta")])

    outcome = ingestor.ingest(put(aws, "beta/tue.xml", inventory(17, {"P1": 9})), trigger="s3")
    assert (outcome.status, outcome.events) == ("published", 1)
    assert state(topic_probe) == {b"P1": ("beta", 9)}
    assert ingestor.ingest(put(aws, "acme/wed.xml", inventory(18, {"P1": 2})), trigger="s3").status == "quarantined"


def test_hostile_keys_are_escaped_in_the_commands_output(aws: dict[str, Any], settings: Settings) -> None:
    hostile = "P'$(rm -rf x)\u202e\x7f\""  # quotes, a shell substitution, a bidi override, DEL: XML carries them
    sent = hostile.replace('"', "&quot;")
    ingestor = build_ingestor(settings)
    assert ingestor.ingest(put(aws, "acme/mon.xml", inventory(16, {sent: 1})), trigger="s3").status == "published"

    owner = runner.invoke(app, ["keys", "owner", hostile])
    assert owner.exit_code == 0
    assert "\u202e" not in owner.output and "\x7f" not in owner.output
    assert "key 'P'$(rm -rf x)\\u202e\\x7f\"' is owned by partner 'acme'" in owner.output
    as_json = runner.invoke(app, ["keys", "owner", hostile, "--json"])
    assert json.loads(as_json.stdout)["key"] == hostile  # exact for a script (JSON escapes what it must)

    control = "P\x1b[31m\n"  # from an operator's paste: never written raw
    for argv in (["keys", "owner", control], ["keys", "transfer", control, "--from", "acme", "--to", "beta"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 3 and "\x1b" not in result.output and "P\\x1b[31m\\n" in result.output

    outcome = ingestor.ingest(put(aws, "beta/tue.xml", inventory(17, {sent: 2})), trigger="s3")
    message = outcome.problems[0].message
    assert outcome.problems[0].kind == "authorization" and "\u202e" not in message
