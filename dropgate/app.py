"""Composition root: wires settings to real adapters (boto3, confluent-kafka, DynamoDB).

Built once per process and reused by warm Lambda invocations; tests and the CLI build their own
with :func:`build_ingestor` so nothing global leaks between them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.dynamo_lock import DynamoPartnerLock
from dropgate.adapters.kafka_publisher import KafkaPublisher
from dropgate.adapters.object_stores import LocalFileStore, S3ObjectStore
from dropgate.adapters.s3_quarantine import S3Quarantine
from dropgate.adapters.s3_state import S3KeyIndexStore, S3SnapshotStore
from dropgate.config import Settings
from dropgate.guard import KeyIndexGuard, NullGuard, PublishGuard
from dropgate.ingest.service import Ingestor
from dropgate.ledger import Ledger, NullLedger
from dropgate.partners import PartnerDirectory
from dropgate.quarantine import NullQuarantine, Quarantine
from dropgate.snapshots import NullSnapshotStore, SnapshotStore
from dropgate.storage import ObjectStore

#: botocore waits 60 s to connect and 60 s per read by default, each retried: a stalled S3 or
#: DynamoDB call could outlast the function's whole timeout. These fail fast enough that the
#: invocation ends with a retryable error (and the file's claim released) instead of being killed.
AWS_CONNECT_TIMEOUT_S = 5
AWS_READ_TIMEOUT_S = 30
#: botocore's "standard" retry mode: exponential backoff with jitter, throttling errors included.
AWS_RETRIES = {"mode": "standard", "total_max_attempts": 4}  # the first call and three retries


def aws_client(service: str) -> Any:
    """A boto3 client; ``AWS_ENDPOINT_URL`` (moto locally) and the region come from the environment."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=AWS_CONNECT_TIMEOUT_S,
        read_timeout=AWS_READ_TIMEOUT_S,
        retries=AWS_RETRIES,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(service, config=config)


def build_publisher(settings: Settings) -> KafkaPublisher:
    return KafkaPublisher(
        settings.kafka_config(),
        settings.topic,
        delivery_timeout_ms=settings.delivery_timeout_ms,
        linger_ms=settings.linger_ms,
        compression=settings.compression,
        create_topic=settings.create_topic,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )


def build_ingestor(settings: Settings, *, local: bool = False, publish: bool = True) -> Ingestor:
    """An ingestor for S3 objects (with the DynamoDB ledger) or for local files (no AWS at all)."""
    store: ObjectStore
    ledger: Ledger
    quarantine: Quarantine
    guard: PublishGuard
    snapshots: SnapshotStore
    if local:
        store, ledger, quarantine, guard = LocalFileStore(), NullLedger(), NullQuarantine(), NullGuard()
        snapshots = NullSnapshotStore()
    else:
        s3 = aws_client("s3")
        store = S3ObjectStore(s3)
        ledger = DynamoLedger(aws_client("dynamodb"), settings.ledger_table)
        quarantine = S3Quarantine(s3, settings.quarantine_bucket)
        guard = KeyIndexGuard(
            S3KeyIndexStore(s3, settings.state_bucket or settings.bucket),
            DynamoPartnerLock(aws_client("dynamodb"), settings.ledger_table),
            lock_ttl_s=settings.claim_ttl_s,
            lock_wait_s=settings.partner_lock_wait_s,
        )
        snapshots = S3SnapshotStore(s3, settings.state_bucket or settings.bucket)
    return Ingestor(
        store=store,
        sink=build_publisher(settings) if publish else None,
        ledger=ledger,
        partners=PartnerDirectory.load(settings.partners),
        settings=settings,
        quarantine=quarantine,
        guard=guard,
        snapshots=snapshots,
    )


@lru_cache(maxsize=1)
def lambda_ingestor() -> Ingestor:
    """The process-wide ingestor of the Lambda handlers (settings read once, at cold start)."""
    return build_ingestor(Settings())
