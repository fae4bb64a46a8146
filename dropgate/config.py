"""Deployment settings, from the environment (pydantic-settings).

Everything dropgate reads from the environment is declared here, so the template, the README
and a test can all check against one list. AWS endpoints are boto3's own business
(``AWS_ENDPOINT_URL``, ``AWS_REGION``), which is how moto is reached locally.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dropgate.broker_auth import SECRET_MAX_AGE_S, BrokerAuth
from parsers.limits import DEFAULT_LIMITS, Limits

#: Any ``DROPGATE_KAFKA_<PROPERTY>`` variable is passed to librdkafka as ``<property>`` with
#: underscores turned into dots, e.g. ``DROPGATE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` →
#: ``security.protocol``; that is how MSK or Confluent Cloud are reached without code changes.
KAFKA_PASSTHROUGH_PREFIX = "DROPGATE_KAFKA_"

#: The partners.yaml shipped with the code: in a checkout a symlink to the one at the root, in the
#: wheel a copy of it.
_SHIPPED_PARTNERS = Path(__file__).resolve().parent / "partners.yaml"

#: What Glue accepts as a registry or schema name; anything else is refused at start-up, before it
#: reaches an API call or a message.
GLUE_NAME = r"^[A-Za-z0-9_$#.-]{1,255}$"


def default_partners_path() -> str:
    """The partners.yaml shipped with the code, when DROPGATE_PARTNERS names none.

    Never one that happens to sit in the working directory: configuration is read only from where
    it is configured, so running dropgate in another folder cannot swap the partners silently.
    """
    return str(_SHIPPED_PARTNERS)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DROPGATE_", extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    #: none | scram-sha-512 (credentials from DROPGATE_BROKER_SECRET_ARN) | msk-iam (dropgate[msk])
    broker_auth: BrokerAuth = "none"
    broker_secret_arn: str | None = None
    #: How long the functions use a read of that secret before reading it again (a rotated password
    #: is also picked up at once when the broker refuses the old one).
    broker_secret_max_age_s: int = Field(default=SECRET_MAX_AGE_S, ge=0, le=86_400)
    topic: str = "inventory.product-state.v1"
    #: Create the topic (compacted) when it is missing; turn off where the platform team owns topics.
    create_topic: bool = True
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(default=-1, description="-1: the broker's default")
    bucket: str | None = None
    ledger_table: str = "dropgate-ledger"
    partners: str = Field(default_factory=default_partners_path)
    #: Must stay below the function timeout so an unacknowledged event fails the invocation
    #: (and the file is retried) instead of Lambda killing it mid-flight.
    delivery_timeout_ms: int = Field(default=120_000, ge=1_000)
    linger_ms: int = Field(default=20, ge=0)
    compression: str = "lz4"
    # Safety limits (see parsers/limits.py); partners.yaml may override them per partner.
    max_object_bytes: int = Field(default=DEFAULT_LIMITS.max_object_bytes, ge=1)
    max_decompressed_bytes: int = Field(default=DEFAULT_LIMITS.max_decompressed_bytes, ge=1)
    max_compression_ratio: int = Field(default=DEFAULT_LIMITS.max_compression_ratio, ge=2)
    max_records: int = Field(default=DEFAULT_LIMITS.max_records, ge=1)
    max_depth: int = Field(default=DEFAULT_LIMITS.max_depth, ge=3)
    max_text_chars: int = Field(default=DEFAULT_LIMITS.max_text_chars, ge=16)
    max_attributes: int = Field(default=DEFAULT_LIMITS.max_attributes, ge=4)
    max_record_bytes: int = Field(default=DEFAULT_LIMITS.max_record_bytes, ge=64 * 1024)
    #: Problems kept in full per file; the total is always counted.
    max_problems: int = Field(default=1_000, ge=1)
    #: Largest event (key + value) accepted; Kafka's default message.max.bytes is 1,000,000.
    max_event_bytes: int = Field(default=900_000, ge=1_000)
    spool_dir: str | None = None
    #: Files at least this large (as stored) are parsed in several processes when the format
    #: allows it and there is more than one core (see dropgate/parallel.py); -1 turns that off.
    parallel_parse_min_bytes: int = Field(default=1024 * 1024, ge=-1)
    #: Parsing processes for such a file; 0: one per core.
    parse_processes: int = Field(default=0, ge=0)
    #: Where quarantined copies go; the drop bucket itself (under quarantine/) when unset.
    quarantine_bucket: str | None = None
    #: How long a processing claim lives when the caller has no deadline (CLI); Lambda uses its own.
    claim_ttl_s: float = Field(default=900.0, gt=0)
    #: Where per-partner key indexes live (stale guard); the drop bucket when unset.
    state_bucket: str | None = None
    #: X-Ray tracing of the Lambda handlers (read by handlers/observability.py at import).
    tracing: bool = False
    #: Publish only keys whose state changed since the last publish (the stale check always applies).
    changed_only: bool = False
    #: How long a file waits for another file of the same partner to finish publishing.
    partner_lock_wait_s: float = Field(default=60.0, ge=0)
    #: The region MSK IAM tokens are signed for (Lambda sets AWS_REGION).
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region")
    )
    #: The CLI prints the traceback of an unexpected error.
    debug: bool = False
    #: The Glue Schema Registry holding the value schema (``dropgate schema register``). When set, the
    #: functions check at cold start that the schema they publish is a registered version.
    schema_registry: str | None = Field(default=None, pattern=GLUE_NAME)
    #: The value schema's name in that registry.
    schema_name: str = Field(default="inventory.product-state.v1", pattern=GLUE_NAME)
    #: ``json``: values as they are; ``glue``: framed like the Glue serializer (needs ``schema_registry``).
    wire_format: Literal["json", "glue"] = "json"
    #: CloudEvents headers (Kafka binary binding) on every event and tombstone.
    cloudevents: bool = False
    #: An OpenLineage run per file, sent by the openlineage-python client as it is configured
    #: (OPENLINEAGE_URL, openlineage.yml, OPENLINEAGE__TRANSPORT__*); needs ``dropgate[lineage]``.
    lineage: bool = False
    #: The OpenLineage job namespace of the ingest jobs.
    lineage_namespace: str = Field(default="dropgate", min_length=1, max_length=200)
    #: The longest a file waits for one lineage event to be sent; a slower one is logged and dropped.
    lineage_timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("schema_registry", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # the template sets the variable empty when there is no registry

    @model_validator(mode="after")
    def _framing_needs_a_registry(self) -> Settings:
        if self.wire_format == "glue" and not self.schema_registry:
            raise ValueError(
                "DROPGATE_WIRE_FORMAT=glue frames values with the registered schema version: "
                "set DROPGATE_SCHEMA_REGISTRY to the Glue registry that holds it"
            )
        return self

    def limits(self) -> Limits:
        return Limits(**{name: getattr(self, name) for name in Limits.names()})

    def kafka_settings(self) -> dict[str, Any]:
        """librdkafka settings from configuration alone: the bootstrap servers, and every
        ``DROPGATE_KAFKA_*`` variable (authentication is added by :func:`dropgate.app.kafka_config`)."""
        config: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap_servers}
        for name, value in os.environ.items():
            if name.startswith(KAFKA_PASSTHROUGH_PREFIX) and len(name) > len(KAFKA_PASSTHROUGH_PREFIX):
                config[name[len(KAFKA_PASSTHROUGH_PREFIX) :].lower().replace("_", ".")] = value
        return config
