"""Hostile partner input on the S3 path: it ends as a quarantined file with a problem that says
why, nothing published, the ledger row written; never as an exception that SQS would retry."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe, fixture_bytes
from tests.integration.test_reprocess import ThousandsTolerantParser
from tests.security.test_doctype import REFUSED

pytestmark = pytest.mark.integration
BUCKET = "drops"


def ingest(aws: dict[str, Any], settings: Settings, key: str, body: bytes) -> tuple[ObjectRef, Any]:
    ref = ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])
    return ref, build_ingestor(settings).ingest(ref, trigger="sqs")


def sidecar(aws: dict[str, Any], key: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        aws["s3"].get_object(Bucket=BUCKET, Key=f"quarantine/diagnostics/{key}.diagnostics.json")["Body"].read()
    )
    return loaded


@pytest.mark.parametrize("name", ["default_deleted", "parameter_entity", "attlist_past_the_head"])
def test_a_doctype_that_would_change_the_document_is_quarantined_and_nothing_published(
    name: str, aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    text, message = REFUSED[name]
    key = f"acme/{name}.xml"
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()
    ref, outcome = ingest(aws, settings, key, body)
    assert outcome.status == "quarantined" and outcome.events == 0
    (problem,) = sidecar(aws, key)["problems"]
    assert (problem["kind"], problem["field"]) == ("security_limit", "DOCTYPE")
    assert problem["message"].startswith(message)
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None and row.status == "quarantined"
    assert topic_probe.published_nothing()


# -- keys: every printed command pastes back to the same key, nothing reaches the terminal raw --------

runner = CliRunner()
BAD = fixture_bytes("bad/acme-thousands-separator.xml")
RAW_CONTROLS = ("\x1b", "\r", "\x07", "\u202e")


def invoke(*argv: str) -> Any:
    return runner.invoke(app, list(argv))


def pasted_target(command: str) -> str:
    """What the shell hands dropgate when the printed command is pasted (bash, C locale)."""
    assert command.startswith("dropgate reprocess ")
    word = command.removeprefix("dropgate reprocess ")
    done = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, env={"LC_ALL": "C"}, check=True)
    return done.stdout.decode()


def test_a_key_with_shell_metacharacters_is_quoted_wherever_a_command_is_printed(
    aws: dict[str, Any], settings: Settings
) -> None:
    marker = Path(f"/tmp/dg-{os.getpid()}")  # short: the whole key must fit the 120 characters shown
    marker.unlink(missing_ok=True)
    key = f"acme/x'$(touch {marker})'.xml"
    ref, outcome = ingest(aws, settings, key, BAD)
    assert outcome.status == "quarantined"
    command = sidecar(aws, key)["reprocess"]
    assert shlex.split(command) == ["dropgate", "reprocess", f"s3://{BUCKET}/{key}"]
    subprocess.run(
        ["bash", "-c", command.replace("dropgate reprocess", "printf %s", 1)], check=True, capture_output=True
    )
    assert not marker.exists()

    shown_file = invoke("quarantine", "show", f"s3://{BUCKET}/{key}")
    assert shown_file.exit_code == 0, shown_file.output
    assert f"reprocess: {command}" in shown_file.stdout

    # ingesting the quarantine copy itself is refused with the command to use instead
    copy = ObjectRef(BUCKET, f"quarantine/files/{key}")
    ignored = build_ingestor(settings).ingest(copy, trigger="sqs")
    assert ignored.status == "ignored" and ignored.reason is not None
    assert ignored.reason.endswith(f"use {command}")

    dry = invoke("reprocess", "--dry-run", f"s3://{BUCKET}/{key}")
    assert f"s3://{BUCKET}/{key}?versionId={ref.version_id}" in dry.stdout


def test_control_characters_in_a_key_never_reach_the_terminal_raw(aws: dict[str, Any], settings: Settings) -> None:
    key = "acme/\x1b[2J\x1b[31mred\rfake: published\nx\u202elmx.xml"
    ref, outcome = ingest(aws, settings, key, BAD)
    assert outcome.status == "quarantined"
    assert not any(char in outcome.summary() for char in (*RAW_CONTROLS, "\n"))
    command = sidecar(aws, key)["reprocess"]
    assert not any(char in command for char in (*RAW_CONTROLS, "\n"))
    assert pasted_target(command) == f"s3://{BUCKET}/{key}"
    for argv in (
        ("quarantine", "show", f"s3://{BUCKET}/{key}"),
        ("quarantine", "list"),
        ("status", f"s3://{BUCKET}/{key}"),
        ("reprocess", "--dry-run", f"s3://{BUCKET}/{key}"),
    ):
        result = invoke(*argv)
        assert result.exit_code in (0, 1), (argv, result.output)
        assert not any(char in result.output for char in RAW_CONTROLS), argv
        assert "\\x1b[2J" in result.output, argv  # the key is there, escaped
    assert DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref) is not None


def test_rich_markup_in_a_key_is_shown_as_text(aws: dict[str, Any], settings: Settings) -> None:
    key = "acme/[/].xml"
    _, outcome = ingest(aws, settings, key, BAD)
    assert outcome.status == "quarantined"
    listed = invoke("quarantine", "list")
    assert listed.exit_code == 0, listed.output
    assert f"s3://{BUCKET}/{key}" in listed.stdout
    shown_file = invoke("quarantine", "show", f"s3://{BUCKET}/{key}")
    assert shown_file.exit_code == 0 and f"quarantined s3://{BUCKET}/{key}" in shown_file.stdout
    bulk = invoke("reprocess", "--quarantined", "--dry-run")
    assert bulk.exit_code == 1, bulk.output  # still quarantined: the parser has not changed
    assert f"s3://{BUCKET}/{key}" in bulk.stdout


PARTNER_KEYS = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=60
).map(lambda tail: f"acme/{tail}.xml")


@given(key=PARTNER_KEYS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_key_a_partner_can_upload_survives_quarantine_unchanged_and_harmless(aws: dict[str, Any], key: str) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=BAD)
    outcome = build_ingestor(Settings()).ingest(ObjectRef(BUCKET, key), trigger="sqs")
    assert outcome.status == "quarantined"
    diagnostics = sidecar(aws, key)
    assert diagnostics["file"]["key"] == key
    assert pasted_target(diagnostics["reprocess"]) == f"s3://{BUCKET}/{key}"
    for argv in (("quarantine", "show", f"s3://{BUCKET}/{key}"), ("status", f"s3://{BUCKET}/{key}")):
        result = invoke(*argv)
        assert result.exit_code == 0, (argv, result.output)
        assert not any(char in result.output for char in RAW_CONTROLS), argv


# -- s3:// arguments are read literally ----------------------------------------------------------------


def test_an_s3_uri_is_not_cut_at_a_hash_or_a_question_mark(aws: dict[str, Any], settings: Settings) -> None:
    for key in ("acme/x", "acme/x#frag.xml", "acme/y?versionId=1.xml"):
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=BAD)
    for key in ("acme/x#frag.xml", "acme/y?versionId=1.xml"):
        done = invoke("ingest", f"s3://{BUCKET}/{key}")
        assert done.exit_code == 1, done.output  # quarantined: the right object was read
        assert f"quarantined: s3://{BUCKET}/{key}?versionId=" in done.stdout
        assert sidecar(aws, key)["file"]["key"] == key
    rows = aws["dynamodb"].scan(TableName=settings.ledger_table)["Items"]
    assert sorted(row["pk"]["S"] for row in rows if row["pk"]["S"].startswith("s3://")) == [
        f"s3://{BUCKET}/acme/x#frag.xml",
        f"s3://{BUCKET}/acme/y?versionId=1.xml",
    ]


# -- poison files end in quarantine with a problem, never in a retry loop ------------------------------

OVERFLOWING = "0001-01-01T00:00:00+14:00"  # before year 1 once converted to UTC
TIMESTAMPED = {
    "acme/overflow.xml": fixture_bytes("good/acme-2026-11-20.xml").replace(
        b'generatedAt="2026-11-20T06:00:00Z"', f'generatedAt="{OVERFLOWING}"'.encode()
    ),
    "fabrikam/overflow.xml": fixture_bytes("good/product-activity.xml", "cxml").replace(
        b'creationDate="2026-11-20T08:00:00-05:00"', f'creationDate="{OVERFLOWING}"'.encode()
    ),
    "initech/overflow.xml": fixture_bytes("good/initech-stock.xml", "declarative").replace(
        b'generated="2026-11-20T07:30:00+01:00"', f'generated="{OVERFLOWING}"'.encode()
    ),
}


@pytest.mark.parametrize("key", sorted(TIMESTAMPED))
def test_a_timestamp_that_overflows_in_utc_is_a_problem_of_the_file(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, key: str
) -> None:
    assert OVERFLOWING.encode() in TIMESTAMPED[key]
    ref, outcome = ingest(aws, settings, key, TIMESTAMPED[key])
    assert outcome.status == "quarantined"
    (problem,) = [p for p in sidecar(aws, key)["problems"] if p["value"] == OVERFLOWING]
    assert problem["kind"] == "validation" and "out of range in UTC" in problem["message"]
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None and row.status == "quarantined"
    assert topic_probe.published_nothing()


def test_a_huge_product_id_on_an_invalid_product_is_stored_bounded(aws: dict[str, Any], settings: Settings) -> None:
    huge = "P" * 450_000
    body = f'<inventory><product id="{huge}"><quantity>x</quantity></product></inventory>'.encode()
    ref, outcome = ingest(aws, settings, "acme/huge-id.xml", body)
    assert outcome.status == "quarantined"
    (problem,) = sidecar(aws, "acme/huge-id.xml")["problems"]
    assert problem["productId"] == "P" * 120 + "… (450000 characters)"
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None and row.status == "quarantined"
    assert row.reason is not None and len(row.reason) <= 1_000


def test_a_parser_that_fails_on_a_record_quarantines_the_file_naming_record_and_field(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parsers.fields
    import parsers.generic

    real = parsers.fields.decimal_amount

    def broken(raw: Any) -> Any:
        if raw is not None and raw.strip() == "5.00":
            raise ZeroDivisionError("a bug in the price converter")
        return real(raw)

    monkeypatch.setattr(parsers.generic, "_plain_product", lambda *_: None)  # every product on the checked path
    monkeypatch.setattr(parsers.fields, "decimal_amount", broken)
    ref, outcome = ingest(aws, settings, "acme/bug.xml", fixture_bytes("good/acme-2026-11-20.xml"))
    assert outcome.status == "quarantined"
    (problem,) = sidecar(aws, "acme/bug.xml")["problems"]
    assert problem["kind"] == "parser_error"
    assert (problem["record"], problem["productId"], problem["field"]) == (2, "P0000002", "price")
    assert "ZeroDivisionError: a bug in the price converter" in problem["message"]
    assert "reprocess the file" in problem["message"]
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref)
    assert row is not None and row.status == "quarantined"
    assert topic_probe.published_nothing()  # strict or not: a parser bug publishes nothing of the file


def test_a_bug_outside_any_converter_still_names_the_record(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parsers.generic

    calls = {"n": 0}
    real = parsers.generic._plain_product

    def third_fails(element: Any, index: int, limits: Any) -> Any:
        calls["n"] += 1
        if index == 3:
            raise KeyError("unexpected")
        return real(element, index, limits)

    monkeypatch.setattr(parsers.generic, "_plain_product", third_fails)
    _, outcome = ingest(aws, settings, "acme/bug3.xml", fixture_bytes("good/acme-2026-11-20.xml"))
    assert outcome.status == "quarantined"
    (problem,) = sidecar(aws, "acme/bug3.xml")["problems"]
    assert (problem["kind"], problem["record"]) == ("parser_error", 3)


# -- derived numbers are bounded like the ones sent ----------------------------------------------------

BIG = "999999999999999999"  # 18 digits: the largest single quantity
TEN_LOCATIONS = "".join(f'<location id="W{i}" quantity="{BIG}"/>' for i in range(10))
OVERFLOWING_SUMS = {
    "acme/sum.xml": f'<inventory><product id="A"><locations>{TEN_LOCATIONS}</locations></product></inventory>'.encode(),
    "contoso/sum.xml": (
        '<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>'
        + "".join(
            f"<item><g:store_code>S{i}</g:store_code><g:id>A</g:id><g:quantity>{BIG}</g:quantity>"
            "<g:availability>in_stock</g:availability></item>"
            for i in range(10)
        )
        + "</channel></rss>"
    ).encode(),
    "initech/sum.xml": (
        '<s:StockReport xmlns:s="urn:initech:stock:1" generated="2026-11-20T07:30:00Z"><s:Items><s:Item>'
        "<s:Code>A</s:Code><s:Stores>"
        + "".join(f'<s:Store code="S{i}" qty="{BIG}"/>' for i in range(10))
        + "</s:Stores></s:Item></s:Items></s:StockReport>"
    ).encode(),
}


@pytest.mark.parametrize("key", sorted(OVERFLOWING_SUMS))
def test_a_sum_of_locations_or_stores_past_18_digits_is_a_problem(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, key: str
) -> None:
    _, outcome = ingest(aws, settings, key, OVERFLOWING_SUMS[key])
    assert outcome.status == "quarantined"
    (problem,) = sidecar(aws, key)["problems"]
    assert problem["kind"] == "validation" and problem["field"] == "quantity"
    assert "(9999999999999999990) has more than 18 digits" in problem["message"]
    assert topic_probe.published_nothing()


# -- messages that say what is really wrong ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind", "says"),
    [
        (
            '<?xml version="1.0" encoding="UTF-32"?><inventory><product id="A"><quantity>1</quantity></product></inventory>'.encode(
                "utf-32"
            ),
            "encoding",
            "the file is UTF-32 encoded",
        ),
        (
            b'<inventory><product id="A"><name>x&#x1b;y</name><quantity>1</quantity></product></inventory>',
            "xml_syntax",
            "a character reference names U+001B",
        ),
    ],
)
def test_the_s3_path_words_the_problem_for_what_it_is(
    aws: dict[str, Any], settings: Settings, body: bytes, kind: str, says: str
) -> None:
    _, outcome = ingest(aws, settings, "acme/worded.xml", body)
    assert outcome.status == "quarantined"
    (problem,) = sidecar(aws, "acme/worded.xml")["problems"]
    assert problem["kind"] == kind and problem["message"].startswith(says)


# -- the quarantine layout is unambiguous for any key --------------------------------------------------


def test_a_file_named_like_a_sidecar_has_its_own_copy_and_sidecar(aws: dict[str, Any], settings: Settings) -> None:
    for key in ("acme/a.xml", "acme/a.xml.diagnostics.json"):
        _, outcome = ingest(aws, settings, key, BAD)
        assert outcome.status == "quarantined", key
    for key in ("acme/a.xml", "acme/a.xml.diagnostics.json"):
        assert sidecar(aws, key)["file"]["key"] == key
        assert aws["s3"].get_object(Bucket=BUCKET, Key=f"quarantine/files/{key}")["Body"].read() == BAD
        shown_file = invoke("quarantine", "show", f"s3://{BUCKET}/{key}")
        assert shown_file.exit_code == 0, shown_file.output
        assert f"quarantined s3://{BUCKET}/{key}" in shown_file.stdout


def test_a_drop_under_resolved_never_lands_on_a_resolved_copy(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parsers

    _, first = ingest(aws, settings, "acme/v.xml", BAD)
    assert first.status == "quarantined"
    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)
    fixed = invoke("reprocess", f"s3://{BUCKET}/acme/v.xml")
    assert fixed.exit_code == 0, fixed.output
    resolved_copy = aws["s3"].get_object(Bucket=BUCKET, Key="quarantine/resolved/files/acme/v.xml")["Body"].read()
    _, other = ingest(
        aws, settings, "resolved/acme/v.xml", b"<inventory><product id='X'><quantity>x</quantity></product></inventory>"
    )
    assert other.status == "quarantined"
    assert (
        aws["s3"].get_object(Bucket=BUCKET, Key="quarantine/resolved/files/acme/v.xml")["Body"].read() == resolved_copy
    )
    assert sidecar(aws, "resolved/acme/v.xml")["file"]["key"] == "resolved/acme/v.xml"


def test_files_quarantined_in_the_first_layout_are_still_shown_reprocessed_and_resolved(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before copies and sidecars had prefixes of their own: quarantine/<key> and <key>.diagnostics.json."""
    import parsers

    ref, _ = ingest(aws, settings, "acme/old.xml", BAD)
    s3 = aws["s3"]
    for new, old in (
        ("quarantine/files/acme/old.xml", "quarantine/acme/old.xml"),
        ("quarantine/diagnostics/acme/old.xml.diagnostics.json", "quarantine/acme/old.xml.diagnostics.json"),
    ):
        s3.copy({"Bucket": BUCKET, "Key": new}, BUCKET, old)
        s3.delete_object(Bucket=BUCKET, Key=new)
    legacy = json.loads(s3.get_object(Bucket=BUCKET, Key="quarantine/acme/old.xml.diagnostics.json")["Body"].read())
    legacy["quarantineCopy"] = f"s3://{BUCKET}/quarantine/acme/old.xml"
    legacy["reprocess"] = f"dropgate reprocess 's3://{BUCKET}/acme/old.xml'"
    s3.put_object(Bucket=BUCKET, Key="quarantine/acme/old.xml.diagnostics.json", Body=json.dumps(legacy).encode())

    shown_file = invoke("quarantine", "show", f"s3://{BUCKET}/quarantine/acme/old.xml")
    assert shown_file.exit_code == 0, shown_file.output
    assert f"reprocess: dropgate reprocess s3://{BUCKET}/acme/old.xml" in shown_file.stdout
    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)
    done = invoke("reprocess", f"s3://{BUCKET}/quarantine/acme/old.xml")
    assert done.exit_code == 0, done.output
    assert f"quarantined copy resolved: s3://{BUCKET}/quarantine/resolved/files/acme/old.xml" in done.stdout
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["Contents"]}
    assert listed == {
        "quarantine/resolved/files/acme/old.xml",
        "quarantine/resolved/diagnostics/acme/old.xml.diagnostics.json",
    }
    assert DynamoLedger(aws["dynamodb"], settings.ledger_table).get(ref).status == "published"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("key", "body", "says"),
    [
        *[(key, body, "out of range in UTC") for key, body in sorted(TIMESTAMPED.items())],
        *[(key, body, "has more than 18 digits") for key, body in sorted(OVERFLOWING_SUMS.items())],
    ],
)
def test_inspect_says_the_same_for_poison_values(tmp_path: Path, key: str, body: bytes, says: str) -> None:
    path = tmp_path / key.replace("/", "-")
    path.write_bytes(body)
    result = runner.invoke(app, ["inspect", str(path), "--partner", key.split("/")[0]])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert says in result.stderr and "[validation]" in result.stderr


def test_a_first_layout_file_quarantined_again_leaves_nothing_behind_once_resolved(
    aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import parsers

    ingest(aws, settings, "acme/twice.xml", BAD)
    s3 = aws["s3"]
    for new, old in (
        ("quarantine/files/acme/twice.xml", "quarantine/acme/twice.xml"),
        ("quarantine/diagnostics/acme/twice.xml.diagnostics.json", "quarantine/acme/twice.xml.diagnostics.json"),
    ):
        s3.copy({"Bucket": BUCKET, "Key": new}, BUCKET, old)
        s3.delete_object(Bucket=BUCKET, Key=new)
    again = invoke("reprocess", "--force", f"s3://{BUCKET}/acme/twice.xml")  # same parser: quarantined again
    assert again.exit_code == 1, again.output
    monkeypatch.setitem(parsers.FORMATS, "generic", ThousandsTolerantParser)
    done = invoke("reprocess", f"s3://{BUCKET}/acme/twice.xml")
    assert done.exit_code == 0, done.output
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["Contents"]}
    assert listed == {
        "quarantine/resolved/files/acme/twice.xml",
        "quarantine/resolved/diagnostics/acme/twice.xml.diagnostics.json",
    }
