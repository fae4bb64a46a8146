"""Hostile partner input on the S3 path: it ends as a quarantined file with a problem that says
why, nothing published, the ledger row written; never as an exception that SQS would retry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.ledger import DynamoLedger
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe
from tests.security.test_doctype import REFUSED

pytestmark = pytest.mark.integration
BUCKET = "drops"


def ingest(aws: dict[str, Any], settings: Settings, key: str, body: bytes) -> tuple[ObjectRef, Any]:
    ref = ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])
    return ref, build_ingestor(settings).ingest(ref, trigger="sqs")


def sidecar(aws: dict[str, Any], key: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        aws["s3"].get_object(Bucket=BUCKET, Key=f"quarantine/{key}.diagnostics.json")["Body"].read()
    )
    return loaded


@pytest.mark.parametrize("name", ["default_deleted", "parameter_entity", "attlist_past_the_head"])
def test_a_doctype_that_would_change_the_document_is_quarantined_and_nothing_published(
    name: str, aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    text, message = REFUSED[name]
    key = f"acme/{name}.xml"
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()
    ref, outcome = ingest(aws, settings, key, body)
    assert outcome.status == "quarantined" and outcome.events == 0
    (problem,) = sidecar(aws, key)["problems"]
    assert (problem["kind"], problem["field"]) == ("security_limit", "DOCTYPE")
    assert problem["message"].startswith(message)
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None and row.status == "quarantined"
    assert topic_probe.published_nothing()
