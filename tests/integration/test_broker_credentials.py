"""A refused broker login, against a real broker that requires SASL/SCRAM (tansu --authentication),
with the credentials in moto's Secrets Manager.

What this shows: librdkafka reports a refused login only through ``error_cb`` (``_AUTHENTICATION``;
the events themselves merely time out), the publisher notices it within about a second instead of
after the delivery timeout, says so, and reads the secret afresh for the next attempt, so a rotated
password is used by the retry. What it cannot show: tansu 0.6 refuses every SCRAM login in our
hands (``tansu user create`` needs an authenticated client when --authentication is on; users
created before are ``unknown-user``), so a login that SUCCEEDS with the rotated password is not
exercised here; nor is TLS (tansu listens in plain TCP, so the test uses SASL_PLAINTEXT where
dropgate asks for SASL_SSL).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.broker import tansu_binary
from devstack.ports import free_port, wait_for_listener
from dropgate.adapters import kafka_publisher
from dropgate.adapters.kafka_publisher import KafkaPublisher
from dropgate.broker_auth import BrokerCredentials
from dropgate.publishing import OutMessage, PublishError, TopicError

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def scram_broker() -> Iterator[str]:
    """tansu requiring client authentication, on a free loopback port."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{port}",
            "--storage-engine",
            "memory://tansu/",
            "--authentication",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_listener(port, alive=lambda: process.poll() is None)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Rotation:
    """The SCRAM secret in moto, and every read of it the publisher made: (refresh?, password)."""

    def __init__(self) -> None:
        self.client = boto3.client("secretsmanager")
        self.arn = self.client.create_secret(Name=f"dropgate/{uuid.uuid4().hex}", SecretString=self._value("old"))[
            "ARN"
        ]
        self.source = BrokerCredentials("scram-sha-512", secrets=lambda: self.client, secret_arn=self.arn)
        self.reads: list[tuple[bool, str]] = []

    @staticmethod
    def _value(password: str) -> str:
        return json.dumps({"username": "svc-dropgate", "password": password})

    def rotate(self, password: str) -> None:
        self.client.put_secret_value(SecretId=self.arn, SecretString=self._value(password))

    def credentials(self, *, refresh: bool = False) -> dict[str, Any]:
        settings = self.source.settings(refresh=refresh)
        self.reads.append((refresh, settings["sasl.password"]))
        return {**settings, "security.protocol": "SASL_PLAINTEXT"}  # tansu has no TLS listener here


@pytest.fixture
def rotation() -> Iterator[Rotation]:
    with mock_aws():
        yield Rotation()


def publisher(bootstrap: str, rotation: Rotation) -> KafkaPublisher:
    return KafkaPublisher(
        {"bootstrap.servers": bootstrap, "log_level": 0},
        f"test.scram.{uuid.uuid4().hex[:8]}",
        delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
        credentials=rotation.credentials,
    )


def test_a_refused_login_fails_the_topic_lookup_at_once_and_the_retry_reads_the_rotated_secret(
    scram_broker: str, rotation: Rotation
) -> None:
    target = publisher(scram_broker, rotation)
    started = time.monotonic()
    with pytest.raises(TopicError, match=r"refused dropgate's credentials: .*SASL"):
        target.publish([OutMessage(b"P1", b"{}", [])])
    assert time.monotonic() - started < 10  # the lookup alone would wait 15 s
    rotation.rotate("new")
    with pytest.raises(TopicError, match="refused dropgate's credentials"):
        target.publish([OutMessage(b"P1", b"{}", [])])
    assert rotation.reads[0] == (False, "old")
    assert (True, "new") in rotation.reads  # read afresh at once, not after the 300 s max age


def test_a_refused_login_fails_a_publish_before_the_delivery_timeout_and_makes_a_new_producer(
    scram_broker: str, rotation: Rotation
) -> None:
    """The warm-function case: the topic was looked up before the password changed, and the producer's
    next connection is refused. Before, the file waited the whole delivery timeout and the retry
    used the same password."""
    target = publisher(scram_broker, rotation)
    kafka_publisher._TOPICS_READY.add((target.bootstrap, target.topic))  # looked up while the password was good
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"refused dropgate's credentials: .*SASL"):
        target.publish([OutMessage(f"P{n}".encode(), b"{}", []) for n in range(10)])
    assert time.monotonic() - started < DELIVERY_TIMEOUT_MS / 1000 / 3
    refused_with_old = [key for key in kafka_publisher._PRODUCERS if ("sasl.password", "old") in key]
    assert refused_with_old == []  # the refused producer was dropped, its queued events purged
    rotation.rotate("new")
    kafka_publisher._TOPICS_READY.add((target.bootstrap, target.topic))
    with pytest.raises(PublishError, match="refused dropgate's credentials"):
        target.publish([OutMessage(b"P1", b"{}", [])])
    assert rotation.reads[-1] == (True, "new")
    assert [key for key in kafka_publisher._PRODUCERS if ("sasl.password", "new") in key] == []
