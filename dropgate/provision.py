"""``dropgate init``: create what dropgate needs, idempotently, against the configured endpoints.

Meant for local stacks (moto) and sandboxes; on AWS the SAM template owns these resources.
Every step tolerates "already exists", so running it twice is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dropgate.adapters.kafka_publisher import KafkaPublisher
from dropgate.app import kafka_config, load_partners
from dropgate.config import Settings
from dropgate.ledger import STATUS_INDEX

QUEUE_NAME = "dropgate-ingest"
DLQ_NAME = "dropgate-ingest-dlq"
#: File suffixes partners drop; temporary upload names (``.part``, ``.tmp``) never trigger.
DROP_SUFFIXES = (".xml", ".gz")


@dataclass
class Provisioned:
    bucket: str
    queue_url: str
    dlq_url: str
    table: str
    topic: str
    notes: list[str] = field(default_factory=list)


def ensure_bucket(s3: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    # Versioning: every upload is its own version, so the ledger can say what became of each.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def ensure_queues(sqs: Any) -> tuple[str, str, str]:
    dlq_url = sqs.create_queue(QueueName=DLQ_NAME, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME, Attributes={"VisibilityTimeout": "360"})["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"RedrivePolicy": redrive})
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return queue_url, queue_arn, dlq_url


def ensure_notifications(s3: Any, sqs: Any, bucket: str, queue_url: str, queue_arn: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    # By suffix only, as the SAM template does: a file under no partner prefix must still reach the
    # handler, which routes it by its root element (or quarantines it as unknown_format).
    configurations = [
        {
            "Id": f"dropgate-{suffix.strip('.').replace('.', '-')}",
            "QueueArn": queue_arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": suffix}]}},
        }
        for suffix in DROP_SUFFIXES
    ]
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configurations}
    )


def ensure_ledger_table(dynamodb: Any, table: str) -> None:
    from botocore.exceptions import ClientError

    try:
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "version", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
                {"AttributeName": "updatedAt", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "version", "KeyType": "RANGE"},
            ],
            # Sparse: only file rows have a status; `quarantine list` queries it instead of scanning.
            GlobalSecondaryIndexes=[
                {
                    "IndexName": STATUS_INDEX,
                    "KeySchema": [
                        {"AttributeName": "status", "KeyType": "HASH"},
                        {"AttributeName": "updatedAt", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def provision(settings: Settings, clients: dict[str, Any]) -> Provisioned:
    if not settings.bucket:
        raise ValueError("DROPGATE_BUCKET is not set; it names the drop bucket to create")
    load_partners(settings)  # a bad partner configuration fails here, before anything is created
    s3, sqs, dynamodb = clients["s3"], clients["sqs"], clients["dynamodb"]
    ensure_bucket(s3, settings.bucket)
    queue_url, queue_arn, dlq_url = ensure_queues(sqs)
    ensure_notifications(s3, sqs, settings.bucket, queue_url, queue_arn)
    ensure_ledger_table(dynamodb, settings.ledger_table)
    publisher = KafkaPublisher(
        kafka_config(settings),
        settings.topic,
        create_topic=True,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )
    publisher.ensure_topic()
    return Provisioned(settings.bucket, queue_url, dlq_url, settings.ledger_table, settings.topic)
