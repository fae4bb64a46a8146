"""Composition root: the one place settings meet real adapters (boto3, confluent-kafka, DynamoDB).

Everything the handlers, the CLI and the devstack run is built here from :class:`Settings`, with
AWS clients made by :func:`aws_client`. The Lambda handlers' components are built once per
process, at the first invocation, and reused by warm ones; tests and the CLI build their own with
the ``build_*`` functions, so nothing global leaks between them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.dynamo_lock import DynamoPartnerLock
from dropgate.adapters.kafka_publisher import KafkaPublisher
from dropgate.adapters.object_stores import LocalFileStore, ObjectUnreadable, S3ObjectStore, read_s3_object
from dropgate.adapters.s3_ownership import S3OwnershipStore
from dropgate.adapters.s3_quarantine import S3Quarantine
from dropgate.adapters.s3_state import S3KeyIndexStore, S3SnapshotStore
from dropgate.broker_auth import BrokerCredentials, auth_config
from dropgate.config import Settings
from dropgate.guard import KeyIndexGuard, NullGuard, PublishGuard
from dropgate.ingest.service import Ingestor
from dropgate.key_ownership import NullOwnershipStore, OwnershipStore
from dropgate.lambda_runtime import delivery_timeout_ms
from dropgate.ledger import Ledger, NullLedger
from dropgate.lineage import Lineage, NullLineage
from dropgate.partners import PartnerConfigError, PartnerDirectory
from dropgate.quarantine import NullQuarantine, Quarantine
from dropgate.reprocess import Reprocessor
from dropgate.schema_registry import RegisteredSchema, SchemaRegistry, glue_frame_prefix, require_registered
from dropgate.snapshots import NullSnapshotStore, SnapshotStore
from dropgate.storage import ObjectStore
from dropgate.wire import WireFormat

if TYPE_CHECKING:
    from parsers.google.row_spill import RowSpill


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


def kafka_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings shared by the producer, the admin client and the topic reader: the
    configured ones plus authentication (SCRAM credentials are read from Secrets Manager here)."""
    config = settings.kafka_settings()
    config.update(
        auth_config(
            settings.broker_auth,
            secrets=lambda: aws_client("secretsmanager"),
            secret_arn=settings.broker_secret_arn,
            region=settings.aws_region,
        )
    )
    return config


def broker_credentials(settings: Settings) -> BrokerCredentials:
    """The publisher's credentials: a SCRAM secret is re-read after DROPGATE_BROKER_SECRET_MAX_AGE_S,
    and at once when the broker refuses it, so a rotated password needs no new execution environment."""
    return BrokerCredentials(
        settings.broker_auth,
        secrets=lambda: aws_client("secretsmanager"),
        secret_arn=settings.broker_secret_arn,
        region=settings.aws_region,
        max_age_s=settings.broker_secret_max_age_s,
    )


def build_publisher(settings: Settings) -> KafkaPublisher:
    return KafkaPublisher(
        settings.kafka_settings(),
        settings.topic,
        credentials=broker_credentials(settings).settings,
        delivery_timeout_ms=settings.delivery_timeout_ms,
        linger_ms=settings.linger_ms,
        compression=settings.compression,
        create_topic=settings.create_topic,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )


def row_spill() -> RowSpill:
    """Where the local inventory format groups its rows: a scratch SQLite file. Imported on first
    use, so a cold start that reads no local inventory feed loads no ``sqlite3``."""
    from dropgate.adapters.row_spill import SqliteRowSpill

    return SqliteRowSpill()


def load_partners(settings: Settings) -> PartnerDirectory:
    """The partner configuration: a local file, or an ``s3://bucket/key`` object (read once, at start-up)."""
    location = settings.partners
    if not location.startswith("s3://"):
        return PartnerDirectory.load(location, row_spill=row_spill)
    bucket, _, key = location.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise PartnerConfigError(f"DROPGATE_PARTNERS '{location}' is not an s3://BUCKET/KEY URL")
    try:
        body = read_s3_object(aws_client("s3"), bucket, key)
    except ObjectUnreadable as error:
        raise PartnerConfigError(f"cannot read the partner configuration at {location}: {error}") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PartnerConfigError(f"the partner configuration at {location} is not UTF-8 text") from None
    return PartnerDirectory.from_yaml(text, origin=location, row_spill=row_spill)


def build_object_store() -> S3ObjectStore:
    return S3ObjectStore(aws_client("s3"))


def build_ledger(settings: Settings) -> Ledger:
    return DynamoLedger(aws_client("dynamodb"), settings.ledger_table)


def build_quarantine(settings: Settings) -> S3Quarantine:
    return S3Quarantine(aws_client("s3"), settings.quarantine_bucket)


def build_ownership(settings: Settings) -> S3OwnershipStore:
    """The key ownership map, in the state bucket (else the drop bucket): ``dropgate keys`` reads it."""
    return S3OwnershipStore(aws_client("s3"), settings.state_bucket or settings.bucket)


def build_schema_registry(registry: str, settings: Settings) -> SchemaRegistry:
    """The Glue Schema Registry (botocore is imported only where a registry is configured)."""
    from dropgate.adapters.glue_registry import GlueSchemaRegistry

    return GlueSchemaRegistry(aws_client("glue"), registry, settings.schema_name)


def registered_version(settings: Settings) -> RegisteredSchema | None:
    """The cold-start check, when a registry is configured: the registered version of the schema this
    code publishes, or an error naming the command that registers it."""
    if not settings.schema_registry:
        return None
    return require_registered(build_schema_registry(settings.schema_registry, settings))


def build_wire_format(settings: Settings, version: RegisteredSchema | None) -> WireFormat:
    """What a publisher adds on the wire: CloudEvents headers, Glue framing with ``version``'s id."""
    frame = glue_frame_prefix(version.version_id) if version is not None and settings.wire_format == "glue" else None
    return WireFormat(cloudevents=settings.cloudevents, frame=frame)


def build_lineage(settings: Settings) -> Lineage:
    """OpenLineage through the openlineage-python client, configured its own way (OPENLINEAGE_URL,
    openlineage.yml, OPENLINEAGE__TRANSPORT__*), when DROPGATE_LINEAGE is on; else nothing."""
    if not settings.lineage:
        return NullLineage()
    from dropgate.adapters.openlineage_emitter import OpenLineageEmitter

    return OpenLineageEmitter.configured(timeout_s=settings.lineage_timeout_s)


def build_ingestor(settings: Settings, *, local: bool = False, publish: bool = True) -> Ingestor:
    """An ingestor for S3 objects (with the DynamoDB ledger) or for local files (no AWS at all)."""
    store: ObjectStore
    ledger: Ledger
    quarantine: Quarantine
    guard: PublishGuard
    snapshots: SnapshotStore
    ownership: OwnershipStore
    if local:
        store, ledger, quarantine, guard = LocalFileStore(), NullLedger(), NullQuarantine(), NullGuard()
        snapshots, ownership = NullSnapshotStore(), NullOwnershipStore()
    else:
        s3, dynamodb = aws_client("s3"), aws_client("dynamodb")
        state_bucket = settings.state_bucket or settings.bucket
        store = S3ObjectStore(s3)
        ledger = DynamoLedger(dynamodb, settings.ledger_table)
        quarantine = S3Quarantine(s3, settings.quarantine_bucket)
        guard = KeyIndexGuard(
            S3KeyIndexStore(s3, state_bucket),
            DynamoPartnerLock(dynamodb, settings.ledger_table),
            lock_ttl_s=settings.claim_ttl_s,
            lock_wait_s=settings.partner_lock_wait_s,
            directory=settings.spool_dir,  # its scratch files beside the spool's
        )
        snapshots = S3SnapshotStore(s3, state_bucket)
        ownership = S3OwnershipStore(s3, state_bucket)
    version = registered_version(settings) if publish else None
    return Ingestor(
        store=store,
        sink=build_publisher(settings) if publish else None,
        ledger=ledger,
        partners=load_partners(settings),
        settings=settings,
        quarantine=quarantine,
        guard=guard,
        snapshots=snapshots,
        wire=build_wire_format(settings, version) if publish else None,
        lineage=build_lineage(settings) if publish else None,
        ownership=ownership,
    )


def build_reprocessor(settings: Settings, *, publish: bool = True, ingestor: Ingestor | None = None) -> Reprocessor:
    """Reprocess by key (S3, the ledger, the quarantine); ``publish=False`` for dry runs only."""
    ingestor = ingestor or build_ingestor(settings, publish=publish)
    return Reprocessor(ingestor, ingestor.ledger, ingestor.quarantine)


def lambda_settings(context: Any) -> Settings:
    """The functions' settings: from the environment, with the delivery timeout kept inside the
    function's own (``context``: the first invocation's Lambda context, or ``None``)."""
    settings = Settings()
    ceiling = delivery_timeout_ms(context, settings.delivery_timeout_ms)
    return (
        settings
        if ceiling == settings.delivery_timeout_ms
        else settings.model_copy(update={"delivery_timeout_ms": ceiling})
    )


T = TypeVar("T")


class PerProcess(Generic[T]):
    """Built at the first invocation (from its context) and reused by warm ones; ``cache_clear``
    makes the next call build anew (tests and the devstack change settings between runs)."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self._built: T | None = None

    def __call__(self, context: Any = None) -> T:
        if self._built is None:
            self._built = self._build(context)
        return self._built

    def cache_clear(self) -> None:
        self._built = None


#: The ingest function's ingestor.
lambda_ingestor: PerProcess[Ingestor] = PerProcess(lambda context: build_ingestor(lambda_settings(context)))
#: The reprocess function's reprocessor (its own ingestor: the functions are separate processes).
lambda_reprocessor: PerProcess[Reprocessor] = PerProcess(lambda context: build_reprocessor(lambda_settings(context)))
