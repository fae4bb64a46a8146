"""The command line's contract, as a script and an operator meet it: exit codes command by command,
every ``--json`` output against its schema in ``schemas/cli/``, and human output that stays whole
at 80 columns, piped or on a terminal (moto in-process, the real broker)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from typer.testing import CliRunner, Result

from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import GENERIC, REPO, fixture_bytes

pytestmark = pytest.mark.integration
BUCKET = "drops"
#: Longer than any column an 80-column table gives a file: it must still come out whole.
QUARANTINED = "acme/exports/2026/12/06/erp-nightly-export-with-a-long-name-0001.xml"
PUBLISHED = "acme/inventory-2026-11-20.xml"
SCHEMAS = REPO / "schemas" / "cli"
runner = CliRunner()


@dataclass
class Drops:
    quarantined: ObjectRef
    published: ObjectRef


@pytest.fixture
def drops(aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Drops:
    """One published file and one quarantined file, through the real core; output at 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    refs = {}
    for key, body in ((PUBLISHED, "good/acme-2026-11-20.xml"), (QUARANTINED, "bad/acme-thousands-separator.xml")):
        version = aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=fixture_bytes(body))["VersionId"]
        build_ingestor(settings).ingest(ObjectRef(BUCKET, key), trigger="sqs")
        refs[key] = ObjectRef(BUCKET, key, version)
    return Drops(quarantined=refs[QUARANTINED], published=refs[PUBLISHED])


def invoke(*argv: str) -> Result:
    return runner.invoke(app, list(argv))


def validator(name: str) -> Draft202012Validator:
    """The schema ``name`` with every other schema of schemas/cli/ resolvable by its ``$ref``."""
    resources = [Resource.from_contents(json.loads(path.read_text())) for path in sorted(SCHEMAS.glob("*.json"))]
    registry: Registry[Any] = Registry().with_resources((r.id(), r) for r in resources if r.id())
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


def documents(result: Result, schema: str) -> list[dict[str, Any]]:
    """Every line of stdout, parsed and valid against ``schema`` (the errors say which field)."""
    check = validator(schema)
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    for document in parsed:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(document)]
        assert not errors, errors
    return parsed


# (argv, expected exit code, text the output holds): the contract of cli/output.py, command by command.
EXIT_CODES: list[tuple[list[str], int, str]] = [
    (["status", f"s3://{BUCKET}/{PUBLISHED}"], 0, "published"),
    (["status", f"s3://{BUCKET}/acme/never-dropped.xml"], 3, "the ledger has no record of"),
    (["status", "acme/never-dropped.xml"], 3, "the ledger has no record of"),
    (["status", "s3://Not A Bucket/x"], 2, "is not an S3 URI"),
    (["status"], 2, "Missing argument"),
    (["files"], 0, QUARANTINED),
    (["files", "--status", "quarantined", "--partner", "acme"], 0, QUARANTINED),
    (["files", "--status", "lost"], 2, "unknown status 'lost'"),
    (["files", "--since", "last tuesday"], 2, "is not a date"),
    (["quarantine", "list"], 0, QUARANTINED),
    (["quarantine", "list", "--since", "2026-13-45"], 2, "is not a date"),
    (["quarantine", "show", f"s3://{BUCKET}/{QUARANTINED}"], 0, "quarantined"),
    (["quarantine", "show", f"s3://{BUCKET}/quarantine/files/{QUARANTINED}"], 0, "quarantined"),
    (["quarantine", "show", f"s3://{BUCKET}/{PUBLISHED}"], 3, "not (or no longer) quarantined"),
    (["ingest", f"s3://{BUCKET}/{PUBLISHED}"], 0, "duplicate"),
    (["ingest", f"s3://{BUCKET}/quarantine/files/{QUARANTINED}"], 0, "ignored"),
    (["ingest", f"s3://{BUCKET}/{QUARANTINED}", "--force"], 1, "quarantined"),
    (["ingest", "s3://drops"], 2, "is not an S3 URI"),
    (["ingest", f"s3://{BUCKET}/acme/never-dropped.xml"], 3, "does not exist"),
    (["ingest", "no/such/file.xml", "--partner", "acme"], 3, "is not a file"),
    (["inspect", str(GENERIC / "good/acme-2026-11-20.xml")], 0, "ok, 5 event(s)"),
    (["inspect", str(GENERIC / "bad/acme-bad-values.xml")], 1, "would be quarantined"),
    (["inspect", "no/such/file.xml"], 3, "is not a file"),
    (["reprocess", f"s3://{BUCKET}/{QUARANTINED}", "--dry-run"], 1, "would still be quarantined"),
    (["reprocess", f"s3://{BUCKET}/{QUARANTINED}"], 1, "already quarantined"),
    (["reprocess", "--quarantined", "--dry-run"], 1, "reprocessed 1 quarantined file(s) (dry run)"),
    (["reprocess", "--quarantined", "--since", "tomorrow-ish"], 2, "is not a date"),
    (["reprocess"], 2, "give one file"),
    (["partners"], 0, "initech-stock/1"),
    (["no-such-command"], 2, "No such command"),
    (["status", "--no-such-option", "x"], 2, "No such option"),
    (["--version"], 0, "dropgate 0.1.0"),
]


def test_every_command_keeps_the_exit_code_contract(drops: Drops) -> None:
    """One setup, the whole table: every row that does not hold is named."""
    broken = []
    for argv, code, text in EXIT_CODES:
        result = invoke(*argv)
        if result.exit_code != code or text not in result.output:
            broken.append((argv, code, result.exit_code, result.output[-400:]))
    assert not broken, broken


def test_ingest_of_an_ignored_file_exits_0_and_says_why(drops: Drops) -> None:
    result = invoke("ingest", f"s3://{BUCKET}/quarantine/files/{QUARANTINED}")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ignored: s3://{BUCKET}/quarantine/files/{QUARANTINED}")
    assert (
        f"reason='quarantine/files/{QUARANTINED}' is a quarantine copy, not a drop; "
        f"use dropgate reprocess s3://{BUCKET}/{QUARANTINED}" in result.stdout
    )
    [document] = documents(invoke("ingest", f"s3://{BUCKET}/quarantine/files/{QUARANTINED}", "--json"), "outcome.json")
    assert document["status"] == "ignored" and document["reason"]


def test_status_json_has_every_version_and_attempt(drops: Drops) -> None:
    result = invoke("status", f"s3://{BUCKET}/{QUARANTINED}", "--json")
    assert result.exit_code == 0, result.output
    [document] = documents(result, "status.json")
    assert document["file"] == f"s3://{BUCKET}/{QUARANTINED}"
    [version] = document["versions"]
    assert version["status"] == "quarantined" and version["version"] == drops.quarantined.version_id
    assert version["key"] == QUARANTINED and version["parser"] == "generic-xml/1" and version["problems"] == 2
    [attempt] = version["attempts"]
    assert attempt["outcome"] == "quarantined" and attempt["trigger"] == "sqs" and isinstance(attempt["seconds"], float)


def test_files_and_quarantine_list_json_are_lines_of_ledger_rows(drops: Drops) -> None:
    every = documents(invoke("files", "--json"), "file.json")
    assert [row["key"] for row in every] == [QUARANTINED, PUBLISHED]  # newest update first
    assert [row["status"] for row in every] == ["quarantined", "published"]
    published = documents(invoke("files", "--status", "published", "--json"), "file.json")
    assert [(row["key"], row["events"], row["partner"]) for row in published] == [(PUBLISHED, 5, "acme")]
    assert invoke("files", "--partner", "globex", "--json").stdout == ""
    listed = documents(invoke("quarantine", "list", "--json"), "file.json")
    assert [row["file"] for row in listed] == [f"s3://{BUCKET}/{QUARANTINED}"]
    assert listed[0]["diagnostics"] and "first:" in listed[0]["reason"]


def test_since_is_a_moment_not_a_string(drops: Drops) -> None:
    """``--since yesterday`` used to be compared with the ledger's ISO times as a string: nothing matched."""
    for since in ("yesterday", "today", "1d", "90m"):
        rows = documents(invoke("files", "--since", since, "--json"), "file.json")
        assert {row["key"] for row in rows} == {QUARANTINED, PUBLISHED}, since
        listed = documents(invoke("quarantine", "list", "--since", since, "--json"), "file.json")
        assert [row["key"] for row in listed] == [QUARANTINED], since
    assert invoke("files", "--since", "2999-01-01", "--json").stdout == ""
    # an instant in another zone is compared in UTC: an hour from now, written as UTC+14, is still ahead
    assert invoke("files", "--since", "2999-01-01T00:00+14:00", "--json").stdout == ""
    refused = invoke("quarantine", "list", "--since", "yesterdy")
    assert refused.exit_code == 2 and "'yesterdy' is not a date" in refused.output


def test_quarantine_show_json_is_the_sidecar(drops: Drops) -> None:
    [sidecar] = documents(
        invoke("quarantine", "show", f"s3://{BUCKET}/{QUARANTINED}", "--json"), "quarantine-show.json"
    )
    assert sidecar["file"]["key"] == QUARANTINED and sidecar["problemCount"] == 2
    assert sidecar["problems"][0]["kind"] == "validation" and sidecar["problems"][0]["line"]


def test_reprocess_json_single_dry_run_and_bulk(drops: Drops) -> None:
    one = invoke("reprocess", f"s3://{BUCKET}/{QUARANTINED}", "--json")
    assert one.exit_code == 1
    [document] = documents(one, "reprocess.json")
    assert document["stillQuarantined"] and document["outcome"]["status"] == "duplicate"
    dry = invoke("reprocess", f"s3://{BUCKET}/{PUBLISHED}", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    [document] = documents(dry, "reprocess.json")
    assert document["dryRun"] and not document["stillQuarantined"]
    assert document["verdicts"]["unchanged"] == 5 and document["outcome"]["file"] == f"s3://{BUCKET}/{PUBLISHED}"
    bulk = invoke("reprocess", "--quarantined", "--dry-run", "--json")
    assert bulk.exit_code == 1
    [line] = documents(bulk, "reprocess.json")
    assert line["outcome"]["key"] == QUARANTINED and line["outcome"]["problemCount"] == 2


def test_ingest_inspect_and_partners_json(drops: Drops, tmp_path: Path) -> None:
    [ingested] = documents(invoke("ingest", f"s3://{BUCKET}/{QUARANTINED}", "--force", "--json"), "outcome.json")
    assert ingested["status"] == "quarantined" and ingested["problemCount"] == 2
    assert ingested["problems"][0]["productId"] and ingested["quarantineCopy"]
    [clean] = documents(invoke("inspect", str(GENERIC / "good/acme-2026-11-20.xml"), "--json"), "inspect.json")
    assert clean["verdict"] == "ok" and clean["events"] == 5 and clean["parser"] == "generic-xml/1"
    bad = invoke("inspect", str(GENERIC / "bad/acme-bad-values.xml"), "--json")
    assert bad.exit_code == 1
    [verdict] = documents(bad, "inspect.json")
    assert verdict["verdict"] == "would be quarantined" and verdict["problemCount"] == 6
    events = documents(invoke("inspect", str(GENERIC / "good/acme-2026-11-20.xml")), "inspect-event.json")
    assert len(events) == 5
    [partners] = documents(invoke("partners", "--json"), "partners.json")
    assert {"id": "initech", "prefix": "initech/", "format": "initech-stock", "parser": "initech-stock/1"}.items() <= (
        next(p for p in partners["partners"] if p["id"] == "initech").items()
    )


def test_json_writes_partner_text_exactly(aws: dict[str, Any], settings: Settings) -> None:
    """JSON escapes control characters itself: a script gets the key exactly, never a shown() copy."""
    key = "acme/\x1b[31mred\u202e\tx.xml"
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=fixture_bytes("bad/acme-thousands-separator.xml"))
    build_ingestor(settings).ingest(ObjectRef(BUCKET, key), trigger="sqs")
    result = invoke("quarantine", "list", "--json")
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout  # escaped: \u001b, \u202e
    [row] = documents(result, "file.json")
    assert row["key"] == key
    human = invoke("quarantine", "list")
    assert "\x1b" not in human.stdout and "\\x1b[31mred\\u202e\\tx.xml" in human.stdout


def _lines_with(text: str, output: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


def test_piped_output_at_80_columns_keeps_every_key_status_and_time_whole(drops: Drops) -> None:
    """Piped, a table is a tab-separated header and one line per record, whatever COLUMNS says."""
    for argv in (["files"], ["quarantine", "list"], ["reprocess", "--quarantined", "--dry-run"]):
        result = invoke(*argv)
        rows = [line for line in _lines_with(f"s3://{BUCKET}/{QUARANTINED}", result.stdout) if "\t" in line]
        assert len(rows) == 1, (argv, result.stdout)
        assert "│" not in result.stdout and "…" not in rows[0], argv
    listed = invoke("files").stdout.splitlines()
    assert listed[1].split("\t") == [
        "updated",
        "status",
        "partner",
        "file",
        "version",
        "parser",
        "events",
        "problems",
        "reason",
    ]
    fields = next(line for line in listed if QUARANTINED in line).split("\t")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields[0])
    assert fields[1:5] == ["quarantined", "acme", f"s3://{BUCKET}/{QUARANTINED}", drops.quarantined.version_id]
    status = invoke("status", f"s3://{BUCKET}/{QUARANTINED}").stdout
    [head] = _lines_with(f"s3://{BUCKET}/{QUARANTINED}", status)
    assert head.startswith("quarantined  ") and f"version {drops.quarantined.version_id}" in head
    shown = invoke("quarantine", "show", f"s3://{BUCKET}/{QUARANTINED}").stdout
    assert f"quarantined s3://{BUCKET}/{QUARANTINED}" in shown.splitlines()
    assert f"reprocess: dropgate reprocess s3://{BUCKET}/{QUARANTINED}" in shown.splitlines()


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_on_an_80_column_terminal_records_fold_and_nothing_is_cut(
    drops: Drops, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table that does not fit becomes one block per record; a long value folds onto more lines."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stdout is a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    result = invoke("quarantine", "list")
    assert result.exit_code == 0, result.output
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|38;)", result.stdout)  # NO_COLOR: no colour codes
    lines = [ANSI.sub("", line).rstrip() for line in result.stdout.splitlines()]
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    fields: dict[str, str] = {}
    name = ""
    for line in lines:
        if line.startswith(" "):  # a folded value goes on under its field
            fields[name] += line.strip()
        elif "  " in line:
            name, value = line.split(None, 1)
            fields[name] = value.strip()
    assert fields["file"] == f"s3://{BUCKET}/{QUARANTINED}"
    assert fields["status"] == "quarantined" and fields["version"] == drops.quarantined.version_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["updated"])
    wide = invoke("partners")  # what fits stays a table
    assert "│" in wide.stdout or "┃" in wide.stdout or "initech" in wide.stdout
