"""``make demo`` (``python -m devstack demo``): the whole product on one machine, on embedded defaults.

Starts a real Kafka-protocol broker (tansu) and moto's server on free loopback ports, wires the
drop bucket to an SQS queue with S3 notifications, uploads the sample drops under their
partners' prefixes, and drives the ingest handler from the queue with exactly the events Lambda
would deliver. Then it shows, per file, what landed on the topic; the file that was quarantined
and why; and its reprocess once the parser is fixed. Everything it starts, it stops.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from parsers.generic import GenericInventoryParser
from parsers.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from dropgate.config import Settings
    from dropgate.ledger import Ledger
    from dropgate.provision import Provisioned

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"

#: (fixture, key in the drop bucket): good drops of two partners (one gzipped); a Google Merchant
#: feed and an Amazon inventory feed; a declarative-format file dropped under no prefix (routed by
#: its root element); and one file that the current parser refuses.
DEMO_DROPS = [
    ("generic/good/acme-2026-11-20.xml", "acme/inventory-2026-11-20.xml"),
    ("generic/good/acme-2026-11-21.xml.gz", "acme/inventory 2026-11-21.xml.gz"),
    ("generic/good/globex-stock.xml", "globex/stock.xml"),
    ("google-merchant/good/merchant-feed.xml", "northwind/feeds/merchant-feed.xml"),
    ("amazon/good/inventory-update.xml", "tailspin/inventory-update.xml"),
    ("declarative/good/initech-stock.xml", "inbox/initech-stock.xml"),
    ("generic/bad/acme-thousands-separator.xml", "acme/erp-export-2026-11-22.xml"),
]
QUARANTINED_KEY = "acme/erp-export-2026-11-22.xml"
BUCKET = "dropgate-demo-drops"
#: Where the demo puts what the handler prints to stdout: in Lambda that is the log stream CloudWatch
#: reads EMF metrics from; here it would be JSON in the middle of the story (POWERTOOLS_METRICS_DISABLED
#: silences the handler's metrics but not Powertools' ColdStart metric, printed on its own).
HANDLER_STDOUT = Path(tempfile.gettempdir()) / "dropgate-demo-handler-stdout.jsonl"


class FixedGenericParser(GenericInventoryParser):
    """The demo's stand-in for a parser fix: Acme's ERP export writes ``1,250`` for 1250 units.

    In real life this is a change to ``parsers/generic.py`` with a version bump; the version is
    what tells ``reprocess`` that there is new work to do.
    """

    version = "2"

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Any:
        fixed = re.sub(
            rb"<quantity>(\d{1,3}(?:,\d{3})+)</quantity>",
            lambda m: b"<quantity>" + m.group(1).replace(b",", b"") + b"</quantity>",
            stream.read(),
        )
        return super().parse(io.BytesIO(fixed), limits)


def run_demo(console: Console | None = None) -> int:
    console = console or Console()
    # Piped, the story's lines are not wrapped at 80 columns (a URI stays whole for grep); its tables
    # become tab-separated lines (dropgate.render.Screen). On a terminal, rich wraps and folds.
    console.soft_wrap = not console.is_terminal
    from devstack.aws import LocalAws
    from devstack.broker import LocalBroker

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
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )
        import parsers

        original_generic = parsers.FORMATS["generic"]
        try:
            return _run(console)
        finally:
            from dropgate.adapters.kafka_publisher import close_producers
            from dropgate.app import lambda_ingestor

            parsers.FORMATS["generic"] = original_generic
            lambda_ingestor.cache_clear()
            close_producers()
            os.environ.clear()
            os.environ.update(saved)


def _run(console: Console) -> int:
    """The demo's steps in order; 1 when the quarantined file has no diagnostics or its reprocess fails."""
    from dropgate.adapters.kafka_topic_reader import read_topic
    from dropgate.app import build_ledger, kafka_config

    settings, clients, stack = _provision(console)

    console.print("[bold]1. Partners drop files[/]")
    _upload_drops(console, clients["s3"])
    _ftp_drop(console, settings, clients["s3"])

    console.print("\n[bold]2. The queue drives the ingest handler (SQS → Lambda event shape)[/]")
    _drive_handler(console, clients["sqs"], stack.queue_url)

    console.print("[bold]3. What landed on the topic, per file[/]")
    _show_topic(console, read_topic(kafka_config(settings), settings.topic))

    console.print("\n[bold]4. The ledger: one outcome per file[/]")
    ledger = build_ledger(settings)
    _show_ledger(console, ledger, [key for _fixture, key in DEMO_DROPS] + ["globex/nightly-update.xml"])

    console.print(f"\n[bold]5. Why {QUARANTINED_KEY} was quarantined[/]  (dropgate quarantine show)")
    if not _show_quarantined(console, settings, clients["s3"]):
        console.print("[red]expected a quarantined file with diagnostics[/]")
        return 1

    console.print("\n[bold]6. The parser is fixed (generic-xml 1 → 2); reprocess the file by its key[/]")
    published = _reprocess_fixed(console, settings, ledger)

    console.print("\n[bold]7. A broken full snapshot: its mass deletion is held, then approved[/]")
    held_ok = _held_mass_deletion(console, settings, clients, stack.queue_url)

    messages = read_topic(kafka_config(settings), settings.topic)
    still = ledger.with_status("quarantined")
    console.print(f"\n[bold green]{len(messages)} event(s) on the topic; {len(still)} file(s) still quarantined.[/]")
    return 0 if published and held_ok else 1


def _provision(console: Console) -> tuple[Settings, dict[str, Any], Provisioned]:
    """The bucket, queue, ledger and topic for this run, and the AWS clients that reach them."""
    from dropgate.app import aws_client, lambda_ingestor
    from dropgate.config import Settings
    from dropgate.provision import provision
    from handlers.observability import logger

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
    return settings, clients, stack


def _upload_drops(console: Console, s3: Any) -> None:
    for fixture, key in DEMO_DROPS:
        s3.put_object(Bucket=BUCKET, Key=key, Body=(FIXTURES / fixture).read_bytes())
        console.print(f"   uploaded s3://{BUCKET}/{key}")


def _drive_handler(console: Console, sqs: Any, queue_url: str) -> None:
    from devstack.sqs_runner import drain_queue
    from handlers.ingest import handler

    with HANDLER_STDOUT.open("w", encoding="utf-8") as lambda_stdout, contextlib.redirect_stdout(lambda_stdout):
        stats = drain_queue(sqs, queue_url, handler)
    console.print(
        f"   {stats.messages} notification(s) in {stats.batches} batch(es); {stats.deleted} done, "
        f"{stats.failed} left for retry (S3's own s3:TestEvent and our quarantine copies are ignored)"
    )
    console.print(f"   what the handler printed for CloudWatch (EMF metrics): {HANDLER_STDOUT}\n", highlight=False)


def _show_quarantined(console: Console, settings: Settings, s3: Any) -> bool:
    """What ``dropgate quarantine show`` prints for the refused file; False if it has no diagnostics."""
    from dropgate.app import build_quarantine
    from dropgate.render import Screen, file_context, print_diagnostics

    diagnostics = build_quarantine(settings).load(BUCKET, QUARANTINED_KEY)
    if diagnostics is None:
        return False
    copy = s3.get_object(Bucket=BUCKET, Key=f"quarantine/files/{QUARANTINED_KEY}")["Body"]
    context = file_context(copy, diagnostics["problems"])
    print_diagnostics(Screen(console), diagnostics, context)
    return True


def _reprocess_fixed(console: Console, settings: Settings, ledger: Ledger) -> bool:
    """Swap in the fixed parser, dry-run then reprocess the quarantined copy; True if it published."""
    import parsers
    from dropgate.app import build_reprocessor
    from dropgate.render import Screen, print_history
    from dropgate.storage import ObjectRef

    parsers.FORMATS["generic"] = FixedGenericParser  # run_demo puts the original back
    reprocessor = build_reprocessor(settings)
    dry = reprocessor.one(ObjectRef(BUCKET, f"quarantine/files/{QUARANTINED_KEY}"), dry_run=True)
    verdicts = dry.outcome.verdicts
    if verdicts is not None:
        console.print(
            f"   dry run: would publish {dry.outcome.events} event(s): new {verdicts.new}, changed "
            f"{verdicts.changed}, unchanged {verdicts.unchanged}, stale {verdicts.stale}"
        )
    done = reprocessor.one(ObjectRef(BUCKET, f"quarantine/files/{QUARANTINED_KEY}"))
    console.print(f"   {escape(done.outcome.summary())}", highlight=False)
    if done.resolved:
        console.print(f"   quarantined copy resolved: {done.resolved}")
    print_history(Screen(console), ledger.history(ObjectRef(BUCKET, QUARANTINED_KEY)))
    return done.outcome.status == "published"


def _ftp_drop(console: Console, settings: Any, s3: Any) -> None:
    """Globex uses FTP: its upload lands in globex/ once complete, and notifies like any drop."""
    import ftplib

    from devstack.ftp_drop import partner_passwords, start_ftp_drop
    from dropgate.partners import PartnerDirectory

    partners = PartnerDirectory.load(settings.partners)
    passwords, _ = partner_passwords(partners)  # made up for this run: a throwaway server on loopback
    password = passwords["globex"]
    drop = start_ftp_drop(partners, s3, BUCKET, passwords=passwords, port=0)
    try:
        client = ftplib.FTP()  # noqa: S321 - a local, loopback-only stand-in for the partner's SFTP
        client.connect(drop.host, drop.port, timeout=10)
        client.login("globex", password)
        with (FIXTURES / "generic/good/globex-ftp-update.xml").open("rb") as handle:
            client.storbinary("STOR nightly-update.xml", handle)
        client.voidcmd("NOOP")  # answered only after the upload reached the bucket
        client.quit()
    finally:
        drop.stop()
    for key in drop.landed:
        console.print(f"   globex uploaded over FTP (ftp://{drop.host}:{drop.port}/) → s3://{BUCKET}/{key}")


def _show_topic(console: Console, messages: list[Any]) -> None:
    from dropgate.render import Screen
    from dropgate.terminal import shown

    screen = Screen(console)
    by_file: dict[str, list[tuple[bytes, bytes | None]]] = {}
    for message in messages:
        title = message.headers.get("source-object", b"?").decode(errors="replace")
        by_file.setdefault(title, []).append((message.key or b"", message.value))
    for title, items in by_file.items():
        rows: list[tuple[Text | str, ...]] = []
        as_of: set[str] = set()
        for event_key, value in sorted(items):
            key = Text(shown(event_key.decode(errors="replace"), limit=None))
            if value is None:
                rows.append((key, Text("tombstone", style="red"), "", ""))
                continue
            state = orjson.loads(value)
            price = state["price"]
            as_of.add(state["asOf"])
            rows.append(
                (
                    key,
                    f"{state['availability']} {state['quantity'] if state['quantity'] is not None else ''}".strip(),
                    f"{price['amount']} {price['currency']}" if price else "-",
                    Text(
                        shown(", ".join(f"{loc['locationId']}={loc['quantity']}" for loc in state["locations"]) or "-")
                    ),
                )
            )
        # asOf: the document's own time, the same for every event of a file (the title says it once)
        screen.rows(
            ("key", "state", "price", "locations"),
            rows,
            title=f"{shown(title, limit=None)}  asOf {', '.join(sorted(as_of))}",
        )


def _show_ledger(console: Console, ledger: Any, keys: list[str]) -> None:
    from dropgate.render import Screen, status_text
    from dropgate.storage import ObjectRef

    rows = [
        (
            key,
            status_text(entry.status),
            f"{entry.parser_name}/{entry.parser_version}",
            str(entry.event_count),
            str(entry.tombstones),
            str(entry.problem_count),
        )
        for key in keys
        for entry in ledger.history(ObjectRef(bucket=BUCKET, key=key))
    ]
    Screen(console).rows(("file", "status", "parser", "events", "tombstones", "problems"), rows)


def _initech_snapshot(day: int, codes: list[str]) -> bytes:
    """A full initech stock report (the declarative format) of ``codes``, generated 2026-11-<day>."""
    items = "".join(f"<s:Item><s:Code>{code}</s:Code><s:OnHand>1</s:OnHand></s:Item>" for code in codes)
    head = f'<s:StockReport xmlns:s="urn:initech:stock:1" generated="2026-11-{day:02d}T06:00:00Z">'
    return f"{head}<s:Items>{items}</s:Items></s:StockReport>".encode()


def _held_mass_deletion(console: Console, settings: Settings, clients: dict[str, Any], queue_url: str) -> bool:
    """Initech sends 154 products, then an export cut after 10: its 144 tombstones are held (more than
    10 % and 100 keys), shown, and approved. True if exactly those 144 went out, saying why."""
    from devstack.sqs_runner import drain_queue
    from dropgate.adapters.kafka_topic_reader import read_topic
    from dropgate.app import build_reprocessor, kafka_config
    from dropgate.storage import ObjectRef
    from handlers.ingest import handler

    catalogue = ["INI-1001", "INI-1002", "INI-1003", "INI-1005", *(f"INI-{n}" for n in range(2000, 2150))]
    for day, key, codes in ((21, "initech/stock-mon.xml", catalogue), (22, "initech/stock-tue.xml", catalogue[4:14])):
        clients["s3"].put_object(Bucket=BUCKET, Key=key, Body=_initech_snapshot(day, codes))
        drain_queue(clients["sqs"], queue_url, handler)
        console.print(f"   initech uploaded s3://{BUCKET}/{key}: {len(codes)} product(s), a full snapshot")
    held = build_reprocessor(settings).held
    pending = held.pending("initech")
    if len(pending) != 1:
        console.print("[red]expected initech/stock-tue.xml's deletions to be held[/]")
        return False
    hold = pending[0]
    sample = ", ".join(key.decode() for key in held.sample(hold, 3))
    console.print(
        f"   dropgate deletions list: {escape(hold.file)}: {hold.count} of {hold.live} live key(s) "
        f"({hold.fraction:.0%}) held; predecessor {escape(hold.predecessor or '-')}; e.g. {sample}",
        highlight=False,
    )
    decided = held.approve(ObjectRef(BUCKET, "initech/stock-tue.xml"))
    console.print(f"   dropgate deletions approve: {decided.published} tombstone(s) published, {decided.skipped} stale")
    tombstones = [m for m in read_topic(kafka_config(settings), settings.topic) if m.value is None]
    approved = [m for m in tombstones if m.headers.get("deletion-reason") == b"approved-held"]
    console.print(
        f"   on the topic: {len(approved)} tombstone(s) with deletion-reason approved-held, "
        f"deletion-source {escape(approved[0].headers.get('deletion-source', b'-').decode()) if approved else '-'}",
        highlight=False,
    )
    return decided.published == hold.count == len(approved) == 144
