"""Trigger shapes → object versions. The only place that knows what S3, SQS and EventBridge send.

S3 URL-encodes keys in notifications (``+`` for a space, ``%XX`` for the rest, UTF-8), so every
key is decoded here, once; the core only ever sees real keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, S3Event

from dropgate.storage import ObjectRef


@dataclass(frozen=True, slots=True)
class Ignored:
    """A notification that carries no new object (a test event, a delete, …) and why."""

    reason: str


def is_s3_test_event(body: dict[str, Any]) -> bool:
    return body.get("Event") == "s3:TestEvent"


def from_s3_notification(body: dict[str, Any]) -> list[ObjectRef | Ignored]:
    """An S3 event notification (direct, or the body of an SQS message)."""
    if is_s3_test_event(body):
        return [Ignored(f"s3:TestEvent for bucket {body.get('Bucket')}")]
    if "Records" not in body:
        return [Ignored("not an S3 event notification")]
    found: list[ObjectRef | Ignored] = []
    for record in S3Event(body).records:
        name = record.event_name
        if not name.startswith("ObjectCreated:"):
            found.append(Ignored(f"{name} for {record.s3.bucket.name}/{record.s3.get_object.key}"))
            continue
        obj = record.s3.get_object
        found.append(
            ObjectRef(bucket=record.s3.bucket.name, key=unquote_plus(obj.key), version_id=obj.version_id or None)
        )
    return found


def from_eventbridge(event: dict[str, Any]) -> ObjectRef | Ignored:
    """An EventBridge event from S3 ("Object Created"); Powertools decodes the key."""
    wrapped = EventBridgeEvent(event)
    if wrapped.source != "aws.s3" or wrapped.detail_type != "Object Created":
        return Ignored(f"EventBridge {wrapped.source}/{wrapped.detail_type} is not an S3 Object Created event")
    detail = wrapped.detail
    key = unquote_plus(detail["object"]["key"])
    return ObjectRef(bucket=detail["bucket"]["name"], key=key, version_id=detail["object"].get("version-id") or None)


def from_sqs_body(body: str) -> list[ObjectRef | Ignored]:
    """The body of an SQS message: an S3 notification, or EventBridge delivered through SQS."""
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return [Ignored("SQS message body is not JSON")]
    if not isinstance(parsed, dict):
        return [Ignored("SQS message body is not a JSON object")]
    if "detail-type" in parsed:
        return [from_eventbridge(parsed)]
    return from_s3_notification(parsed)


def kind_of(event: dict[str, Any]) -> str:
    """``sqs``, ``s3``, ``eventbridge`` or ``unknown``."""
    records = event.get("Records")
    if isinstance(records, list) and records:
        source = records[0].get("eventSource")
        if source == "aws:sqs":
            return "sqs"
        if source == "aws:s3":
            return "s3"
    if "detail-type" in event and "detail" in event:
        return "eventbridge"
    if is_s3_test_event(event):
        return "s3"
    return "unknown"
