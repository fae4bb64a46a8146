"""The local stack every end-to-end test runs against: moto's server and a real broker.

moto's server (real HTTP) holds the versioned drop bucket, its S3 → SQS notifications and the
ledger; the broker comes from the session's ``kafka_bootstrap``. The Lambda handlers' process-wide
ingestor is rebuilt per test, so each sees its own bucket, table and topic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from devstack.aws import LocalAws
from dropgate.app import lambda_ingestor
from dropgate.config import Settings
from dropgate.provision import provision


@dataclass
class Stack:
    bucket: str
    ledger_table: str
    settings: Settings
    clients: dict[str, Any]
    queue_url: str


@pytest.fixture
def local_stack(kafka_env: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Provisioned like ``make demo`` does; the test module's ``BUCKET`` names the drop bucket."""
    bucket = getattr(request.module, "BUCKET", "dropgate-e2e-drops")
    table = f"{bucket}-ledger"
    with LocalAws() as aws:
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DROPGATE_BUCKET", bucket)
        monkeypatch.setenv("DROPGATE_LEDGER_TABLE", table)
        for name, value in getattr(request.module, "ENVIRONMENT", {}).items():
            monkeypatch.setenv(name, value)
        lambda_ingestor.cache_clear()
        settings = Settings()
        clients = {name: boto3.client(name) for name in ("s3", "sqs", "dynamodb")}
        queue_url = provision(settings, clients).queue_url
        yield Stack(bucket, table, settings, clients, queue_url)
        lambda_ingestor.cache_clear()
