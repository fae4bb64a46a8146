"""``make soak``: many small files through the local S3 → SQS → handler path, with duplicate
notifications and a broker outage in the middle; then the topic is materialised and checked
against what the files say.

    python -m devstack soak --files 1000

Prints files received, published, quarantined; events expected and on the topic; keys whose final
state differs from the expected state and lost files (both must be 0). Exit 1 if either is not.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from dropgate.config import Settings
    from dropgate.ledger import Ledger
    from dropgate.provision import Provisioned

PARTNERS = ("acme", "globex")
BUCKET = "dropgate-soak-drops"


@dataclass
class SoakReport:
    files: int = 0
    published: int = 0
    quarantined: int = 0
    other: int = 0
    duplicates_injected: int = 0
    events_in_valid_files: int = 0
    events_acknowledged: int = 0
    events_on_topic: int = 0
    keys_expected: int = 0
    keys_wrong: int = 0
    lost_files: int = 0
    outage_at_batch: int | None = None
    failed_deliveries: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # Every event the ledger counts as acknowledged must be on the topic (retries may add copies).
        return self.keys_wrong == 0 and self.lost_files == 0 and self.events_on_topic >= self.events_acknowledged

    def lines(self) -> list[str]:
        return [
            f"files received         {self.files}",
            f"  published            {self.published}",
            f"  quarantined          {self.quarantined}",
            f"  other                {self.other}",
            f"duplicate notifications injected {self.duplicates_injected}",
            f"broker outage at batch {self.outage_at_batch}; deliveries retried after it: {self.failed_deliveries}",
            f"events in valid files  {self.events_in_valid_files} (older ones skipped as stale: files arrive shuffled)",
            f"events acknowledged    {self.events_acknowledged} (ledger)",
            f"events on the topic    {self.events_on_topic}",
            f"keys expected          {self.keys_expected}",
            f"keys with a wrong final state {self.keys_wrong}",
            f"lost files             {self.lost_files}",
            f"seconds                {self.seconds:.1f}",
        ]


def _file(rng: random.Random, partner: str, index: int, at: datetime, keys: int) -> tuple[bytes, dict[str, int | None]]:
    """A small generic-format file; returns its bytes and what it says per product id."""
    says: dict[str, int | None] = {}
    parts = []
    for pid in rng.sample(range(keys), rng.randint(3, 12)):
        product = f"{partner[0].upper()}{pid:04d}"
        if rng.random() < 0.1:
            says[product] = None
            parts.append(f'<product id="{product}" deleted="true"/>')
        else:
            quantity = rng.randint(0, 500)
            says[product] = quantity
            parts.append(f'<product id="{product}"><name>item {pid}</name><quantity>{quantity}</quantity></product>')
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = f'<inventory partner="{partner}" generatedAt="{stamp}">{"".join(parts)}</inventory>'
    return body.encode(), says


def run_soak(files: int = 1000, *, seed: int = 7, keys: int = 150, bad_every: int = 25) -> SoakReport:
    from devstack.aws import LocalAws
    from devstack.broker import LocalBroker
    from devstack.fault_proxy import FaultProxy
    from devstack.ports import free_port

    proxy_port = free_port()
    with LocalBroker(advertised_port=proxy_port) as broker, LocalAws() as aws:
        proxy = FaultProxy(broker.port, port=proxy_port).start()
        saved = dict(os.environ)
        os.environ.update(aws.environment())
        os.environ.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": proxy.bootstrap,
                "DROPGATE_BUCKET": BUCKET,
                "DROPGATE_LEDGER_TABLE": "dropgate-soak-ledger",
                "DROPGATE_TOPIC": "soak.product-state.v1",
                "DROPGATE_DELIVERY_TIMEOUT_MS": "2000",
                "POWERTOOLS_LOG_LEVEL": "CRITICAL",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )
        try:
            return _soak(files, seed=seed, keys=keys, bad_every=bad_every, proxy=proxy)
        finally:
            from dropgate.adapters.kafka_publisher import close_producers
            from dropgate.app import lambda_ingestor

            proxy.stop()
            lambda_ingestor.cache_clear()
            close_producers(timeout=0)
            os.environ.clear()
            os.environ.update(saved)


def _soak(files: int, *, seed: int, keys: int, bad_every: int, proxy: Any) -> SoakReport:
    """Upload, notify (with duplicates), drain through a broker outage, then check ledger and topic."""
    from dropgate.app import build_ledger

    started = time.monotonic()
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    settings, clients, stack = _provision()
    report = SoakReport(files=files)

    uploads, expected = _make_uploads(rng, files, keys=keys, bad_every=bad_every, report=report)
    for object_key, body in uploads:
        clients["s3"].put_object(Bucket=BUCKET, Key=object_key, Body=body)
    _inject_duplicates(clients["sqs"], stack.queue_url, files, report)
    _drain_through_outage(clients["sqs"], stack.queue_url, files, proxy, report)

    _count_outcomes(build_ledger(settings), [object_key for object_key, _body in uploads], report)
    _check_topic(settings, expected, report)
    report.seconds = time.monotonic() - started
    return report


def _provision() -> tuple[Settings, dict[str, Any], Provisioned]:
    """The bucket, queue, ledger and topic for this run, and the AWS clients that reach them."""
    from dropgate.app import aws_client, lambda_ingestor
    from dropgate.config import Settings
    from dropgate.provision import provision
    from handlers.observability import logger

    logger.setLevel("CRITICAL")
    settings = Settings()
    clients = {name: aws_client(name) for name in ("s3", "sqs", "dynamodb")}
    stack = provision(settings, clients)
    lambda_ingestor.cache_clear()
    return settings, clients, stack


def _make_uploads(
    rng: random.Random, files: int, *, keys: int, bad_every: int, report: SoakReport
) -> tuple[list[tuple[str, bytes]], dict[bytes, tuple[datetime, int | None]]]:
    """The files to upload, shuffled, and the final state per event key that the valid ones imply.

    Files are made in time order and uploaded shuffled: the stale guard must keep the newest state
    on top. Every ``bad_every``-th file is made unparseable (quarantined: nothing from it counts).
    """
    base = datetime(2026, 11, 1, tzinfo=UTC)
    expected: dict[bytes, tuple[datetime, int | None]] = {}
    uploads = []
    for index in range(files):
        partner = PARTNERS[index % len(PARTNERS)]
        at = base + timedelta(minutes=index)
        body, says = _file(rng, partner, index, at, keys)
        bad = bad_every and index % bad_every == bad_every - 1
        if bad:
            body = body.replace(b"<quantity>", b"<quantity>1,", 1)  # quarantined: nothing from it counts
        else:
            for product, quantity in says.items():
                event_key = f"{partner}:{product}".encode() if partner == "globex" else product.encode()
                if event_key not in expected or expected[event_key][0] <= at:
                    expected[event_key] = (at, quantity)
            report.events_in_valid_files += len(says)
        uploads.append((f"{partner}/drop-{index:05d}.xml", body))
    rng.shuffle(uploads)
    return uploads, expected


def _inject_duplicates(sqs: Any, queue_url: str, files: int, report: SoakReport) -> None:
    """At-least-once: re-send some notifications (each twice more), as S3 sometimes does."""
    wanted = max(1, files // 20)
    sent_bodies = []
    seen: set[str] = set()
    for _ in range(wanted):  # peek (visibility 0: the messages stay) until enough distinct notifications
        peek = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        for message in peek.get("Messages", []):
            if "Records" in message["Body"] and message["Body"] not in seen:
                seen.add(message["Body"])
                sent_bodies.append(message["Body"])
        if len(sent_bodies) >= wanted:
            break
    for body in sent_bodies[:wanted]:
        for _ in range(2):
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
            report.duplicates_injected += 1


def _drain_through_outage(sqs: Any, queue_url: str, files: int, proxy: Any, report: SoakReport) -> None:
    """Drive the handler from the queue; the broker is cut for one batch partway through, then restored."""
    from devstack.sqs_runner import RunStats, drain_queue
    from handlers.ingest import handler

    outage_batch = max(2, files // 20)
    state = {"cut": False, "restored": False}

    def outage(stats: RunStats) -> None:
        if not state["cut"] and stats.batches >= outage_batch:
            proxy.cut()  # the broker "restarts": connections drop, new ones are refused
            state["cut"] = True
            report.outage_at_batch = stats.batches
        elif state["cut"] and not state["restored"] and stats.batches >= outage_batch + 1:
            proxy.restore()
            state["restored"] = True

    stats = drain_queue(
        sqs,
        queue_url,
        handler,
        wait_seconds=1,
        idle_polls=6,
        max_batches=100_000,
        visibility_timeout=3,
        between_batches=outage,
    )
    if not state["restored"]:
        proxy.restore()
    report.failed_deliveries = stats.failed


def _count_outcomes(ledger: Ledger, object_keys: list[str], report: SoakReport) -> None:
    """Each uploaded file's latest outcome in the ledger; one that is neither published nor quarantined is lost."""
    from dropgate.storage import ObjectRef

    for object_key in object_keys:
        entries = ledger.history(ObjectRef(BUCKET, object_key))
        status = entries[0].status if entries else "missing"
        if status == "published":
            report.published += 1
            report.events_acknowledged += entries[0].event_count
        elif status == "quarantined":
            report.quarantined += 1
        else:
            report.other += 1
            report.lost_files += 1
            report.examples.append(f"{object_key}: {status}")


def _check_topic(settings: Settings, expected: dict[bytes, tuple[datetime, int | None]], report: SoakReport) -> None:
    """Materialise the topic and compare each expected key's final quantity with what it holds."""
    from dropgate.adapters.kafka_topic_reader import materialise, read_topic
    from dropgate.app import kafka_config

    messages = read_topic(kafka_config(settings), settings.topic)
    report.events_on_topic = len(messages)
    final = materialise(messages)
    report.keys_expected = len(expected)
    for key, (_at, quantity) in expected.items():
        actual = final.get(key)
        actual_quantity = orjson.loads(actual)["quantity"] if actual is not None else None
        if actual_quantity != quantity:
            report.keys_wrong += 1
            if len(report.examples) < 10:
                report.examples.append(f"{key.decode()}: expected {quantity}, topic has {actual_quantity}")
