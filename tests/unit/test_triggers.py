"""Trigger shapes → object versions, with S3's URL-encoding undone exactly once."""

from __future__ import annotations

import json
from typing import Any

from dropgate.storage import ObjectRef
from handlers.triggers import Ignored, from_eventbridge, from_s3_notification, from_sqs_body, kind_of


def s3_record(key: str, event_name: str = "ObjectCreated:Put", version: str | None = "v1") -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "size": 10, "eTag": "e", "sequencer": "01"}
    if version:
        obj["versionId"] = version
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T10:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "c",
            "bucket": {"name": "drops", "arn": "arn"},
            "object": obj,
        },
    }


def test_keys_are_url_decoded_once() -> None:
    event = {"Records": [s3_record("acme/my+file%2B1.xml"), s3_record("acme%2Fcaf%C3%A9+inventory.xml")]}
    assert from_s3_notification(event) == [
        ObjectRef("drops", "acme/my file+1.xml", "v1"),
        ObjectRef("drops", "acme/café inventory.xml", "v1"),
    ]


def test_missing_version_is_left_for_the_core_to_resolve() -> None:
    (ref,) = from_s3_notification({"Records": [s3_record("acme/a.xml", version=None)]})
    assert ref == ObjectRef("drops", "acme/a.xml", None)


def test_test_events_and_deletes_are_ignored_with_a_reason() -> None:
    (test,) = from_s3_notification({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "drops"})
    assert isinstance(test, Ignored) and "s3:TestEvent" in test.reason
    (deleted,) = from_s3_notification({"Records": [s3_record("acme/a.xml", "ObjectRemoved:Delete")]})
    assert isinstance(deleted, Ignored) and "ObjectRemoved:Delete" in deleted.reason


def test_sqs_body_may_be_s3_or_eventbridge_or_garbage() -> None:
    assert from_sqs_body(json.dumps({"Records": [s3_record("acme/a.xml")]})) == [ObjectRef("drops", "acme/a.xml", "v1")]
    (garbage,) = from_sqs_body("not json")
    assert isinstance(garbage, Ignored)


def test_eventbridge_object_created() -> None:
    event = {
        "version": "0",
        "id": "1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "1",
        "time": "2026-11-22T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "version": "0",
            "bucket": {"name": "drops"},
            "object": {"key": "acme/new+file.xml", "size": 5, "etag": "e", "version-id": "v9"},
        },
    }
    assert kind_of(event) == "eventbridge"
    assert from_eventbridge(event) == ObjectRef("drops", "acme/new file.xml", "v9")
    other = {**event, "detail-type": "Object Deleted"}
    assert isinstance(from_eventbridge(other), Ignored)


def test_kind_of() -> None:
    assert kind_of({"Records": [{"eventSource": "aws:sqs"}]}) == "sqs"
    assert kind_of({"Records": [s3_record("k")]}) == "s3"
    assert kind_of({"hello": 1}) == "unknown"
