"""``dropgate demo``: the whole product on one machine, on embedded defaults.

Starts a real Kafka-protocol broker (tansu) and moto's server on free loopback ports, wires the
drop bucket to an SQS queue with S3 notifications, uploads the sample drops under their
partners' prefixes, and drives the ingest handler from the queue with exactly the events Lambda
would deliver. Then it reads the topic back and shows, per file, what landed, and what was
quarantined and why. Everything it starts, it stops.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "generic"

#: (fixture, key in the drop bucket): good drops of two partners, a gzip one, and a broken one.
DEMO_DROPS = [
    ("good/acme-2026-11-20.xml", "acme/inventory-2026-11-20.xml"),
    ("good/acme-2026-11-21.xml.gz", "acme/inventory 2026-11-21.xml.gz"),
    ("good/globex-stock.xml", "globex/stock.xml"),
    ("bad/acme-bad-values.xml", "acme/inventory-2026-11-22.xml"),
]
BUCKET = "dropgate-demo-drops"


def run_demo(console: Console | None = None) -> int:
    console = console or Console()
    from dropgate.local.aws import LocalAws
    from dropgate.local.broker import LocalBroker

    console.rule("[bold]dropgate demo")
    with LocalBroker() as broker, LocalAws() as aws:
        console.print(f"Kafka-protocol broker (tansu) on [cyan]{broker.bootstrap}[/], moto on [cyan]{aws.endpoint}[/]")
        saved = dict(os.environ)
        os.environ.update(aws.environment())
        os.environ.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "DROPGATE_BUCKET": BUCKET,
                "DROPGATE_LEDGER_TABLE": "dropgate-demo-ledger",
                "DROPGATE_PARTNERS": str(REPO / "partners.yaml"),
                # The handler's JSON logs are for CloudWatch; the demo shows tables instead.
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            }
        )
        try:
            return _run(console)
        finally:
            from dropgate.publisher import close_producers

            close_producers()
            os.environ.clear()
            os.environ.update(saved)


def _run(console: Console) -> int:
    from dropgate.app import aws_client, lambda_ingestor
    from dropgate.config import Settings
    from dropgate.ledger import DynamoLedger
    from dropgate.local.sqs_runner import drain_queue
    from dropgate.provision import provision
    from dropgate.storage import ObjectRef
    from dropgate.topic_reader import read_topic
    from handlers.ingest import handler, logger

    logger.setLevel("WARNING")  # the handler's JSON logs are for CloudWatch; the demo shows tables
    settings = Settings()
    clients = {name: aws_client(name) for name in ("s3", "sqs", "dynamodb")}
    stack = provision(settings, clients)
    console.print(
        f"Provisioned bucket [cyan]{stack.bucket}[/] → S3 notifications → "
        f"queue [cyan]{stack.queue_url.rsplit('/', 1)[-1]}[/]"
        f", ledger [cyan]{stack.table}[/], compacted topic [cyan]{stack.topic}[/]\n"
    )
    lambda_ingestor.cache_clear()  # the handler must see this demo's settings

    console.print("[bold]1. Partners drop files[/]")
    for fixture, key in DEMO_DROPS:
        clients["s3"].put_object(Bucket=BUCKET, Key=key, Body=(FIXTURES / fixture).read_bytes())
        console.print(f"   uploaded s3://{BUCKET}/{key}")

    console.print("\n[bold]2. The queue drives the ingest handler (SQS → Lambda event shape)[/]")
    stats = drain_queue(clients["sqs"], stack.queue_url, handler)
    console.print(
        f"   {stats.messages} notification(s) in {stats.batches} batch(es); {stats.deleted} done, "
        f"{stats.failed} left for retry (the first is S3's own s3:TestEvent, ignored)\n"
    )

    console.print("[bold]3. What landed on the topic, per file[/]")
    messages = read_topic(settings.kafka_config(), settings.topic)
    by_file: dict[str, list[tuple[bytes, bytes | None]]] = {}
    for message in messages:
        title = message.headers.get("source-object", b"?").decode()
        by_file.setdefault(title, []).append((message.key or b"", message.value))
    for title, items in by_file.items():
        table = Table(title=title, title_justify="left", show_lines=False)
        for column in ("key", "availability", "quantity", "price", "locations", "asOf"):
            table.add_column(column)
        for event_key, value in sorted(items):
            if value is None:
                table.add_row(event_key.decode(), "[red]tombstone (deleted)[/]", "", "", "", "")
                continue
            state = orjson.loads(value)
            price = state["price"]
            table.add_row(
                event_key.decode(),
                state["availability"],
                str(state["quantity"]),
                f"{price['amount']} {price['currency']}" if price else "-",
                ", ".join(f"{loc['locationId']}={loc['quantity']}" for loc in state["locations"]) or "-",
                state["asOf"],
            )
        console.print(table)

    console.print("\n[bold]4. The ledger: one outcome per file[/]")
    ledger = DynamoLedger(clients["dynamodb"], settings.ledger_table)
    outcomes = Table(show_lines=False)
    outcomes.add_column("file", no_wrap=True)
    for column in ("status", "parser", "events", "tombstones", "problems"):
        outcomes.add_column(column)
    quarantined: list[tuple[str, str]] = []
    for _fixture, key in DEMO_DROPS:
        for entry in ledger.history(ObjectRef(bucket=BUCKET, key=key)):
            color = {"published": "green", "quarantined": "red"}.get(entry.status, "yellow")
            if entry.status == "quarantined":
                quarantined.append((key, entry.reason or ""))
            outcomes.add_row(
                key,
                f"[{color}]{entry.status}[/]",
                f"{entry.parser_name}/{entry.parser_version}",
                str(entry.event_count),
                str(entry.tombstones),
                str(entry.problem_count),
            )
    console.print(outcomes)
    for key, reason in quarantined:
        console.print(f"[red]quarantined[/] {escape(key)}: {escape(reason)}", soft_wrap=True, highlight=False)
    published = len(messages)
    console.print(f"\n[bold green]{published} event(s) on the topic; {len(quarantined)} file(s) quarantined.[/]")
    return 0
