"""A product id given two states in one file, through the S3 path: moto, the ledger, the real broker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe

pytestmark = pytest.mark.integration
BUCKET = "drops"

#: P2 twice with different quantities (a feed reusing one id for two products); P3 twice, identical.
BODY = b"""<inventory partner="acme" generatedAt="2026-11-20T06:00:00Z">
<product id="P1"><quantity>1</quantity></product>
<product id="P2"><name>Red mug</name><quantity>5</quantity></product>
<product id="P3"><quantity>3</quantity></product>
<product id="P2"><name>Blue mug</name><quantity>9</quantity></product>
<product id="P3"><quantity>3</quantity></product>
</inventory>"""


def put(aws: dict[str, Any], body: bytes, key: str) -> ObjectRef:
    return ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def sidecar(aws: dict[str, Any], key: str) -> dict[str, Any]:
    path = f"quarantine/diagnostics/{key}.diagnostics.json"
    return dict(json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=path)["Body"].read()))


def test_strict_a_repeated_id_with_two_states_quarantines_the_file_naming_both_records(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ref = put(aws, BODY, "acme/dupes.xml")
    outcome = build_ingestor(settings).ingest(ref, trigger="sqs")

    assert (outcome.status, outcome.events, outcome.problem_count) == ("quarantined", 0, 1)
    assert topic_probe.published_nothing()
    diagnostics = sidecar(aws, "acme/dupes.xml")
    assert (diagnostics["policy"], diagnostics["publishedEvents"], diagnostics["problemCount"]) == ("strict", 0, 1)
    assert diagnostics["problems"] == [
        {
            "kind": "validation",
            "message": (
                "product id 'P2' is given two different states, by record 2 (line 3) and record 4 (line 5): "
                "a file may give one state per product (the topic would keep whichever came last); remove or "
                "merge the duplicates, or give each product its own id"
            ),
            "line": 5,
            "column": None,
            "record": 4,
            "productId": "P2",
            "path": None,
            "field": "productId",
            "value": "P2",
        }
    ]


def test_skip_invalid_publishes_neither_state_and_the_identical_repeat_once(
    aws: dict[str, Any], settings: Settings, tmp_path: Any, topic_probe: TopicProbe
) -> None:
    lenient = tmp_path / "partners.yaml"
    lenient.write_text("partners:\n  acme: {prefix: acme/, format: generic, policy: skip_invalid}\n")
    ingestor = build_ingestor(settings.model_copy(update={"partners": str(lenient)}))
    outcome = ingestor.ingest(put(aws, BODY, "acme/dupes.xml"), trigger="sqs")

    assert (outcome.status, outcome.events, outcome.problem_count) == ("quarantined", 2, 1)
    messages = topic_probe.messages()
    assert [(m.key, json.loads(m.value or b"{}")["source"]["record"]) for m in messages] == [(b"P1", 1), (b"P3", 3)]
    assert outcome.notes == [
        "1 product id(s) appear more than once with identical states (e.g. product id 'P3' in records 3 and 5); "
        "each is published once, from its first record"
    ]
    diagnostics = sidecar(aws, "acme/dupes.xml")
    assert (diagnostics["policy"], diagnostics["publishedEvents"]) == ("skip_invalid", 2)
    assert [(p["record"], p["productId"]) for p in diagnostics["problems"]] == [(4, "P2")]
