"""The whole local path, as it runs on AWS in miniature.

moto's server (real HTTP) holds the versioned drop bucket, its S3 → SQS notifications and the
ledger; tansu is the broker. Files are uploaded with boto3, S3 notifies the queue, Lambda's SQS
event source is played by ``drain_queue``, and the topic is read back like a consumer would.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from devstack.sqs_runner import drain_queue
from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.storage import ObjectRef
from handlers.ingest import handler
from tests.conftest import REPO, TopicProbe, fixture_bytes
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
BUCKET = "dropgate-e2e-drops"


@pytest.fixture
def stack(local_stack: Stack) -> dict[str, Any]:
    return {"clients": local_stack.clients, "queue_url": local_stack.queue_url}


def test_upload_notification_queue_handler_topic(stack: dict[str, Any], topic_probe: TopicProbe) -> None:
    s3, sqs = stack["clients"]["s3"], stack["clients"]["sqs"]
    drops = {
        "acme/café inventory 2026-11-20.xml": "good/acme-2026-11-20.xml",  # space and non-ASCII in the key
        "acme/2026/11/21+update.xml.gz": "good/acme-2026-11-21.xml.gz",  # a literal '+', gzip
        "globex/stock.xml": "good/globex-stock.xml",
        "acme/inventory-2026-11-22.xml": "bad/acme-bad-values.xml",
        "acme/upload.xml.part": "good/acme-2026-11-20.xml",  # a temporary name: never triggers
    }
    versions = {
        key: s3.put_object(Bucket=BUCKET, Key=key, Body=fixture_bytes(f))["VersionId"] for key, f in drops.items()
    }
    # a duplicate notification of the same upload: S3 delivers at least once
    first_message = sqs.receive_message(QueueUrl=stack["queue_url"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    bodies = [m["Body"] for m in first_message.get("Messages", []) if "globex" in m["Body"]]
    assert bodies, "expected the globex notification on the queue"
    sqs.send_message(QueueUrl=stack["queue_url"], MessageBody=bodies[0])

    stats = drain_queue(sqs, stack["queue_url"], handler, wait_seconds=0)
    assert stats.failed == 0
    # s3:TestEvent + 4 uploads + 1 duplicate + the bad file's quarantine copy (ignored: not a drop);
    # the .part file never notified
    assert stats.messages == 7

    messages = topic_probe.messages()
    by_source: dict[str, list[bytes]] = {}
    for message in messages:
        by_source.setdefault(message.headers["source-object"].decode(), []).append(message.key or b"")
    assert {source: sorted(keys) for source, keys in by_source.items()} == {
        f"s3://{BUCKET}/acme/café inventory 2026-11-20.xml?versionId={versions['acme/café inventory 2026-11-20.xml']}": [
            b"P0000001",
            b"P0000002",
            b"P0000003",
            b"P0000004",
            b"P0000005",
        ],
        f"s3://{BUCKET}/acme/2026/11/21+update.xml.gz?versionId={versions['acme/2026/11/21+update.xml.gz']}": [
            b"P0000001",
            b"P0000002",
            b"P0000006",
        ],
        f"s3://{BUCKET}/globex/stock.xml?versionId={versions['globex/stock.xml']}": [b"globex:1001", b"globex:1002"],
    }
    # published once although notified twice
    assert sum(1 for m in messages if m.key == b"globex:1001") == 1

    state = {key: value for key, value in materialise(messages).items()}
    import orjson

    newest = orjson.loads(state[b"P0000001"])
    assert newest["quantity"] == 3 and newest["asOf"] == "2026-11-21T06:00:00Z"
    assert newest["source"]["sha256"] == hashlib.sha256(fixture_bytes("good/acme-2026-11-21.xml.gz")).hexdigest()
    assert b"P0000002" not in state and b"P0000005" not in state  # tombstoned

    ledger = DynamoLedger(stack["clients"]["dynamodb"], f"{BUCKET}-ledger")
    statuses = {key: ledger.get(ObjectRef(BUCKET, key, versions[key])) for key in drops if not key.endswith(".part")}
    assert {key: (row.status, row.event_count) for key, row in statuses.items() if row} == {
        "acme/café inventory 2026-11-20.xml": ("published", 5),
        "acme/2026/11/21+update.xml.gz": ("published", 3),
        "globex/stock.xml": ("published", 2),
        "acme/inventory-2026-11-22.xml": ("quarantined", 0),
    }


@pytest.mark.parametrize("where", ["piped", "terminal"])
def test_demo_runs_on_embedded_defaults(where: str) -> None:
    """`make demo` must keep working: run what it runs (`python -m devstack demo`) and read what it
    shows a person, piped and on an 80-column terminal: nothing cut, no metrics JSON in the story."""
    terminal = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1"} if where == "terminal" else {"TTY_COMPATIBLE": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "80", **terminal},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert '"_aws"' not in shown + done.stderr  # the handler's EMF metrics go to a file, named in the story
    assert "…" not in shown  # nothing cut to fit
    if where == "terminal":  # tables fit (or become one block per record); a line of text the terminal wraps
        assert max(len(line) for line in shown.splitlines() if "─" in line) <= 80
        shown = " ".join(shown.split())  # a value folded onto two lines is read as one
    assert "globex:1001" in shown and "tombstone" in shown
    assert "validation (2)" in shown  # the diagnostics, grouped by kind
    assert "quantity '1,250' is ambiguous" in shown
    assert "> 7 | <quantity>1,250</quantity>" in " ".join(shown.split())  # with the line it is on
    assert "dry run: would publish 3 event(s): new 3, changed 0, unchanged 0, stale 0" in shown
    assert "published: s3://dropgate-demo-drops/acme/erp-export-2026-11-22.xml" in shown
    assert "quarantined copy resolved: s3://dropgate-demo-drops/quarantine/resolved/files/" in shown
    assert "globex uploaded over FTP" in shown and "s3://dropgate-demo-drops/globex/nightly-update.xml" in shown
    assert "northwind:SKU-10042" in shown and "tailspin:ABC-125" in shown  # Google Merchant and Amazon feeds
    assert "initech:INI-1001" in shown  # a declarative format, dropped under no prefix, routed by its root
    # a broken full snapshot: 154 products, then 10; its 144 tombstones held, shown and approved
    assert "144 of 154 live key(s) (94%) held" in shown and "e.g. initech:INI-1001" in shown
    assert "dropgate deletions approve: 144 tombstone(s) published, 0 stale" in shown
    assert "on the topic: 144 tombstone(s) with deletion-reason approved-held, deletion-source " in shown
    assert "339 event(s) on the topic; 0 file(s) still quarantined." in shown
