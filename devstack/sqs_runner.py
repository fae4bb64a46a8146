"""Lambda's SQS event source mapping, in miniature: receive → invoke the handler → delete.

Messages are handed to the handler in exactly the shape Lambda sends, and deleted only when the
handler did not list them in ``batchItemFailures``; failed ones become visible again and are
retried, as on AWS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.lambda_context import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class RunStats:
    batches: int = 0
    messages: int = 0
    deleted: int = 0
    failed: int = 0
    responses: list[dict[str, Any]] = field(default_factory=list)


def lambda_sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """boto3 ``receive_message`` output → the event Lambda's SQS trigger delivers."""
    records = []
    for message in messages:
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def drain_queue(
    sqs: Any,
    queue_url: str,
    handler: Handler,
    *,
    batch_size: int = 10,
    wait_seconds: int = 1,
    idle_polls: int = 2,
    max_batches: int = 1000,
    visibility_timeout: int | None = None,
    between_batches: Callable[[RunStats], None] | None = None,
) -> RunStats:
    """Feed the queue to the handler until it has been empty for ``idle_polls`` receives."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    region = queue_arn.split(":")[3]
    stats = RunStats()
    idle = 0
    while idle < idle_polls and stats.batches < max_batches:
        receive: dict[str, Any] = {}
        if visibility_timeout is not None:  # how soon a failed message is retried
            receive["VisibilityTimeout"] = visibility_timeout
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            **receive,
        )
        messages = response.get("Messages", [])
        if not messages:
            idle += 1
            continue
        idle = 0
        stats.batches += 1
        stats.messages += len(messages)
        result = handler(lambda_sqs_event(messages, queue_arn, region), LocalLambdaContext())
        stats.responses.append(result)
        failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
        stats.failed += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
            stats.deleted += len(done)
        if between_batches is not None:
            between_batches(stats)
    return stats
