"""After a parser fix, an engineer reprocesses a quarantined file by its key."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from typer.testing import CliRunner

import parsers
from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from parsers.generic import GenericInventoryParser
from parsers.limits import DEFAULT_LIMITS, Limits
from tests.conftest import TopicProbe, fixture_bytes, values_by_key

pytestmark = pytest.mark.integration
BUCKET = "drops"
KEY = "acme/erp-export.xml"
runner = CliRunner()


class ThousandsTolerantParser(GenericInventoryParser):
    """The "fixed" parser: Acme's documented export uses ',' as a thousands separator."""

    version = "2"

    def parse(self, stream: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
        text = stream.read()
        fixed = re.sub(
            rb"<quantity>(\d{1,3}(?:,\d{3})+)</quantity>",
            lambda m: b"<quantity>" + m.group(1).replace(b",", b"") + b"</quantity>",
            text,
        )
        import io

        return super().parse(io.BytesIO(fixed), limits)


def quarantine(aws: dict[str, Any], settings: Settings, key: str = KEY) -> ObjectRef:
    version = aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=fixture_bytes("bad/acme-thousands-separator.xml"))
    outcome = build_ingestor(settings).ingest(ObjectRef(BUCKET, key), trigger="sqs")
    assert outcome.status == "quarantined"
    return ObjectRef(BUCKET, key, version["VersionId"])


def exists(aws: dict[str, Any], key: str) -> bool:
    return aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def test_fix_the_parser_then_reprocess_by_key(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = quarantine(aws, settings)

    # Same parser version: nothing to do, and the operator is told why.
    same = runner.invoke(app, ["reprocess", f"s3://{BUCKET}/quarantine/files/{KEY}"])
    assert same.exit_code == 1
    assert "already quarantined with parser generic-xml/1" in same.stdout
    assert "fix the parser (and bump its version) or use --force" in same.stdout

    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)

    dry = runner.invoke(app, ["reprocess", "--dry-run", f"s3://{BUCKET}/{KEY}"])
    assert dry.exit_code == 0, dry.stdout + dry.stderr
    assert "would publish 3 event(s): new 3, changed 0, unchanged 0, stale 0" in dry.stdout
    assert topic_probe.published_nothing()  # a dry run publishes nothing
    assert exists(aws, f"quarantine/files/{KEY}")  # a dry run changes nothing

    done = runner.invoke(app, ["reprocess", f"s3://{BUCKET}/quarantine/files/{KEY}"])
    assert done.exit_code == 0, done.stdout + done.stderr
    assert f"published: s3://{BUCKET}/{KEY}?versionId={ref.version_id}" in done.stdout
    assert f"quarantined copy resolved: s3://{BUCKET}/quarantine/resolved/files/{KEY}" in done.stdout

    values = values_by_key(topic_probe.messages())
    assert {k: v["quantity"] for k, v in values.items()} == {"P0000007": 1250, "P0000008": 980, "P0000009": 12000}
    assert all(v["parser"] == {"name": "generic-xml", "version": "2"} for v in values.values())

    assert not exists(aws, f"quarantine/files/{KEY}")
    assert exists(aws, f"quarantine/resolved/files/{KEY}")
    assert exists(aws, f"quarantine/resolved/diagnostics/{KEY}.diagnostics.json")
    original = aws["s3"].get_object(Bucket=BUCKET, Key=KEY, VersionId=ref.version_id)["Body"].read()
    assert original == fixture_bytes("bad/acme-thousands-separator.xml")  # never altered

    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None
    assert (row.status, row.parser_version, row.event_count) == ("published", "2", 3)
    assert [(a["trigger"], a["parser"], a["outcome"]) for a in row.attempts] == [
        ("sqs", "generic-xml/1", "quarantined"),
        ("reprocess", "generic-xml/2", "published"),
    ]

    status = runner.invoke(app, ["status", f"s3://{BUCKET}/{KEY}"])
    assert status.exit_code == 0
    assert "published" in status.stdout and "generic-xml/1" in status.stdout and "generic-xml/2" in status.stdout

    again = runner.invoke(app, ["reprocess", "--force", f"s3://{BUCKET}/{KEY}"])
    assert again.exit_code == 0
    messages = topic_probe.messages()
    for key in (b"P0000007", b"P0000008", b"P0000009"):
        published = [m.value for m in messages if m.key == key]
        assert len(published) == 2 and published[0] == published[1]  # byte-identical republish


def test_a_failed_reprocess_rewrites_the_diagnostics(aws: dict[str, Any], settings: Settings) -> None:
    quarantine(aws, settings)
    result = runner.invoke(app, ["reprocess", "--force", f"s3://{BUCKET}/{KEY}"])
    assert result.exit_code == 1
    sidecar = json.loads(
        aws["s3"].get_object(Bucket=BUCKET, Key=f"quarantine/diagnostics/{KEY}.diagnostics.json")["Body"].read()
    )
    assert sidecar["problemCount"] == 2
    rows = DynamoLedger(aws["dynamodb"], settings.ledger_table).history(ObjectRef(BUCKET, KEY))
    assert [a["outcome"] for a in rows[0].attempts] == ["quarantined", "quarantined"]


def test_quarantine_list_and_show_for_a_person(aws: dict[str, Any], settings: Settings) -> None:
    quarantine(aws, settings)
    listed = runner.invoke(app, ["quarantine", "list", "--partner", "acme"])
    assert listed.exit_code == 0
    assert f"s3://{BUCKET}/{KEY}" in listed.stdout and "generic-xml/1" in listed.stdout
    assert KEY not in runner.invoke(app, ["quarantine", "list", "--partner", "globex"]).stdout

    shown = runner.invoke(app, ["quarantine", "show", f"s3://{BUCKET}/{KEY}"])
    assert shown.exit_code == 0, shown.stdout
    out = shown.stdout
    assert "validation (2)" in out
    assert "P0000007" in out and "P0000009" in out
    assert "quantity '1,250' is ambiguous" in out
    assert ">      7 |     <quantity>1,250</quantity>" in out  # the offending line, with its neighbours
    assert "      6 |     <name>Bolt M6 (box)</name>" in out
    assert f"dropgate reprocess s3://{BUCKET}/{KEY}" in out


def test_bulk_reprocess_of_a_partners_quarantined_files(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    quarantine(aws, settings, "acme/one.xml")
    quarantine(aws, settings, "acme/two.xml")
    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)
    result = runner.invoke(app, ["reprocess", "--quarantined", "--partner", "acme", "--since", "2000-01-01"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "reprocessed 2 quarantined file(s)" in result.stdout
    assert result.stdout.count("published") == 2
    assert runner.invoke(app, ["quarantine", "list"]).stdout.count("acme/") == 0


def test_reprocess_handler_payloads(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devstack.lambda_context import LocalLambdaContext
    from dropgate.app import lambda_ingestor, lambda_reprocessor
    from handlers import reprocess

    quarantine(aws, settings)
    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)
    lambda_ingestor.cache_clear()
    lambda_reprocessor.cache_clear()
    try:
        dry = reprocess.handler({"bucket": BUCKET, "key": KEY, "dryRun": True}, LocalLambdaContext())
        assert dry["results"][0]["status"] == "dry-run" and dry["results"][0]["verdicts"]["new"] == 3
        bulk = reprocess.handler({"partner": "acme", "since": "2000-01-01"}, LocalLambdaContext())
        assert [r["status"] for r in bulk["results"]] == ["published"]
        assert bulk["results"][0]["resolved"] == f"s3://{BUCKET}/quarantine/resolved/files/{KEY}"
        with pytest.raises(ValueError, match="payload must be"):
            reprocess.handler({"hello": 1}, LocalLambdaContext())
    finally:
        lambda_ingestor.cache_clear()
        lambda_reprocessor.cache_clear()


def test_near_the_timeout_the_reprocess_function_stops_cleanly_and_its_retry_completes(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function passes its remaining time on, as the ingest function does: a file it cannot
    finish fails before Lambda would kill it, with nothing published or recorded as done."""
    import time

    from devstack.lambda_context import LocalLambdaContext
    from dropgate.app import lambda_ingestor, lambda_reprocessor
    from dropgate.ingest.reading import DeadlineReached
    from handlers import reprocess
    from tests.integration.test_stale_guard import snapshot

    key = "acme/slow.xml"
    body = snapshot(20, {f"P{i:06d}": i % 50 for i in range(60_000)})
    ref = ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])
    lambda_ingestor.cache_clear()
    lambda_reprocessor.cache_clear()
    try:
        with monkeypatch.context() as patched:
            patched.setattr(reprocess, "deadline", lambda _context: time.monotonic() + 0.05)
            with pytest.raises(DeadlineReached):
                reprocess.handler({"bucket": BUCKET, "key": key}, LocalLambdaContext(timeout_s=60))
        row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
        assert row is not None and (row.status, row.event_count) == ("received", 0)
        assert topic_probe.published_nothing()
        done = reprocess.handler({"bucket": BUCKET, "key": key}, LocalLambdaContext(timeout_s=60))
        assert [(r["status"], r["events"]) for r in done["results"]] == [("published", 60_000)]
    finally:
        lambda_ingestor.cache_clear()
        lambda_reprocessor.cache_clear()


def test_reprocess_reads_the_quarantine_copy_when_the_original_version_is_gone(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = quarantine(aws, settings)
    aws["s3"].delete_object(Bucket=BUCKET, Key=KEY, VersionId=ref.version_id)  # e.g. a lifecycle rule
    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)
    done = runner.invoke(app, ["reprocess", f"s3://{BUCKET}/{KEY}"])
    assert done.exit_code == 0, done.stdout + done.stderr
    assert (
        f"the original version is gone; read the quarantined copy s3://{BUCKET}/quarantine/files/{KEY}" in done.stdout
    )
    values = values_by_key(topic_probe.messages())
    assert values["P0000007"]["quantity"] == 1250
    import hashlib

    source = values["P0000007"]["source"]
    assert source["key"] == KEY and source["versionId"] == ref.version_id  # lineage names the original
    assert source["sha256"] == hashlib.sha256(fixture_bytes("bad/acme-thousands-separator.xml")).hexdigest()
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None and row.status == "published"
    assert exists(aws, f"quarantine/resolved/files/{KEY}")


def test_a_new_declarative_format_version_makes_reprocess_republish(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The version in partners.yaml goes into events and the ledger; bumping it is a parser fix."""
    from tests.conftest import REPO

    config = tmp_path / "partners.yaml"
    original = (REPO / "partners.yaml").read_text(encoding="utf-8")
    config.write_text(original, encoding="utf-8")
    monkeypatch.setenv("DROPGATE_PARTNERS", str(config))
    key = "initech/stock.xml"
    version = aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=fixture_bytes("good/initech-stock.xml", "declarative"))
    first = runner.invoke(app, ["ingest", f"s3://{BUCKET}/{key}"])
    assert first.exit_code == 0, first.output
    assert "parser=initech-stock/1 events=5" in first.stdout

    same = runner.invoke(app, ["reprocess", f"s3://{BUCKET}/{key}"])
    assert same.exit_code == 0, same.output
    assert "duplicate" in same.stdout and "initech-stock/1" in same.stdout

    assert '    version: "1"\n    root: StockReport' in original
    config.write_text(
        original.replace('    version: "1"\n    root: StockReport', '    version: "2"\n    root: StockReport')
    )
    again = runner.invoke(app, ["reprocess", f"s3://{BUCKET}/{key}"])
    assert again.exit_code == 0, again.output
    assert "published" in again.stdout and "parser=initech-stock/2 events=5" in again.stdout

    values = [v for v in values_by_key(topic_probe.messages()).values() if v is not None]
    assert {v["parser"]["version"] for v in values} == {"2"}
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ObjectRef(BUCKET, key, version["VersionId"]))
    assert row is not None and (row.status, row.parser_name, row.parser_version) == ("published", "initech-stock", "2")
