"""Shared by the integration tests: moto's in-process AWS with the drop bucket and the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from dropgate.config import Settings
from dropgate.provision import ensure_bucket, ensure_ledger_table

BUCKET = "drops"


@pytest.fixture
def aws(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A versioned drop bucket and the ledger table, in moto; ``DROPGATE_BUCKET`` points at it."""
    monkeypatch.setenv("DROPGATE_BUCKET", BUCKET)
    with mock_aws():
        clients = {name: boto3.client(name) for name in ("s3", "dynamodb")}
        ensure_bucket(clients["s3"], BUCKET)
        ensure_ledger_table(clients["dynamodb"], settings.ledger_table)
        yield clients
