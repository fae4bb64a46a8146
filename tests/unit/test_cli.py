"""`dropgate inspect` as a user runs it: JSON lines on stdout, problems on stderr, exit codes."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from dropgate.cli import app
from tests.conftest import GENERIC

runner = CliRunner()


def test_inspect_clean_file_prints_every_event_and_exits_0() -> None:
    result = runner.invoke(app, ["inspect", str(GENERIC / "good/acme-2026-11-20.xml")])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["key"] for line in lines] == ["P0000001", "P0000002", "P0000003", "P0000004", "P0000005"]
    assert lines[-1]["value"] is None
    first = lines[0]["value"]
    assert first["partnerId"] == "acme" and first["quantity"] == 12 and first["source"]["bucket"] is None
    assert "ok, 5 event(s), parser generic-xml/1" in result.stderr


def test_inspect_writes_no_invisible_character_raw_and_the_json_is_the_same(tmp_path: Any) -> None:
    """A product name with a right-to-left override, a C1 CSI and a zero-width space: the event
    lines escape them (a terminal would act on them), and parse to exactly the partner's text."""
    hostile = "evil\u202etxt.exe\u009b31mred\u200b"
    text = (GENERIC / "good/acme-2026-11-20.xml").read_text(encoding="utf-8")
    start, end = text.index("<name>") + len("<name>"), text.index("</name>")
    drop = tmp_path / "hostile.xml"
    drop.write_text(text[:start] + hostile + text[end:], encoding="utf-8")
    result = runner.invoke(app, ["inspect", str(drop), "--partner", "acme"])
    assert result.exit_code == 0, result.stderr
    assert not any(ch in result.stdout for ch in "\u202e\u009b\u200b")
    assert "\\u202e" in result.stdout
    assert json.loads(result.stdout.splitlines()[0])["value"]["name"] == hostile


def test_inspect_gzip_with_partner_key_template() -> None:
    result = runner.invoke(app, ["inspect", str(GENERIC / "good/globex-stock.xml"), "--partner", "globex"])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == ["globex:1001", "globex:1002"]
    gz = runner.invoke(app, ["inspect", str(GENERIC / "good/acme-2026-11-21.xml.gz")])
    assert gz.exit_code == 0, gz.stderr
    assert len(gz.stdout.splitlines()) == 3


def test_inspect_bad_file_exits_1_with_located_problems() -> None:
    result = runner.invoke(app, ["inspect", str(GENERIC / "bad/acme-bad-values.xml")])
    assert result.exit_code == 1
    assert result.stdout == ""  # strict: nothing would be published
    assert (
        "[validation] line 9, record 2 (P0000002), /inventory/product[2]/quantity: quantity '1,234' is ambiguous"
        in (result.stderr)
    )
    assert "would be quarantined: 6 problem(s); nothing would be published (policy strict)" in result.stderr


def test_inspect_of_a_missing_file_is_not_found_and_an_unknown_partner_a_usage_error() -> None:
    missing = runner.invoke(app, ["inspect", "no/such/file.xml"])
    assert missing.exit_code == 3 and "no/such/file.xml is not a file" in missing.stderr
    partner = runner.invoke(app, ["inspect", str(GENERIC / "good/acme-2026-11-20.xml"), "--partner", "umbrella"])
    assert partner.exit_code == 2 and "unknown partner 'umbrella'" in partner.stderr


def test_inspect_previews_a_file_no_partner_claims_and_ingest_refuses_it_with_the_fix(tmp_path: Any) -> None:
    from dropgate.app import build_ingestor
    from dropgate.config import Settings
    from dropgate.storage import ObjectRef

    path = tmp_path / "stray.xml"
    path.write_bytes(b'<inventory><product id="A"><quantity>1</quantity></product></inventory>')
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.stderr
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["key"] == "A" and line["value"]["partnerId"] == "unassigned"
    assert "no partner claims this file" in result.stderr

    prepared = build_ingestor(Settings(), local=True, publish=False).prepare(ObjectRef(None, str(path)))
    with prepared.spool:
        [problem] = prepared.problems
    assert "no partner for this file" in problem.message and "add the partner to partners.yaml" in problem.message


def test_unexpected_errors_exit_2_with_one_line(monkeypatch: Any, capsys: Any) -> None:
    """Exit 1 means "quarantined" to scripts; an infrastructure error must never look like it."""
    import pytest

    from devstack.ports import free_port
    from dropgate.cli import main

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr("sys.argv", ["dropgate", "status", "s3://drops/acme/x.xml"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dropgate: EndpointConnectionError: Could not connect to the endpoint URL")
    assert "Traceback" not in err


def test_context_lines_read_bounded_pieces_of_long_lines() -> None:
    import io

    from dropgate.render import context_lines

    data = b"first\n" + b"<x>" * 100_000 + b"\nthird\nfourth\n"
    found = context_lines(io.BytesIO(data), {1, 2, 3})
    assert found[1] == "first" and found[3] == "third"
    assert found[2].startswith("<x><x>") and found[2].endswith(" …") and len(found[2]) < 200


def test_progress_is_reported_every_ten_thousand_products(tmp_path: Any) -> None:
    from dropgate.app import build_ingestor
    from dropgate.config import Settings
    from dropgate.storage import ObjectRef

    path = tmp_path / "many.xml"
    path.write_text("<inventory>" + '<product id="P"><quantity>1</quantity></product>' * 25_000 + "</inventory>")
    ingestor = build_ingestor(Settings(), local=True, publish=False)
    seen: list[int] = []
    ingestor.progress = seen.append
    ingestor.prepare(ObjectRef(None, str(path)), partner_id="acme").spool.close()
    # Once per 10,000 products, at the first count the reader knows past each multiple (a file parsed
    # in parallel knows counts a segment at a time).
    assert len(seen) == 2
    assert 10_000 <= seen[0] < 20_000 <= seen[1] < 25_000


def test_inspect_finds_every_format_without_a_partner() -> None:
    from tests.conftest import FIXTURES

    expected = {
        "google-merchant/good/merchant-feed.xml": ("google-merchant/2", 5),
        "google-merchant/good/merchant-atom-feed.xml": ("google-merchant/2", 3),
        "google-merchant/good/vehicle-ads-feed.xml": ("google-merchant/2", 2),
        "google-local/good/local-inventory.xml": ("google-local-inventory/2", 5),
        "google-local/good/local-availability-only.xml": ("google-local-inventory/2", 3),
        "amazon/good/inventory-update.xml": ("amazon-inventory/1", 6),
        "cxml/good/product-activity.xml": ("cxml-product-activity/2", 4),
        "declarative/good/initech-stock.xml": ("initech-stock/1", 5),
    }
    for fixture, (parser, count) in expected.items():
        result = runner.invoke(app, ["inspect", str(FIXTURES / fixture)])
        assert result.exit_code == 0, result.stderr
        assert f"ok, {count} event(s), parser {parser}" in result.stderr
        assert len(result.stdout.splitlines()) == count


def test_inspect_reads_google_feeds_as_exporters_write_them() -> None:
    """Issue 20: an Atom feed, a vehicle-ads feed given its partner, local stores without a count."""
    from tests.conftest import FIXTURES

    def events(fixture: str, *partner: str) -> list[tuple[str, dict[str, Any]]]:
        result = runner.invoke(app, ["inspect", str(FIXTURES / fixture), *partner])
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        keep = ("quantity", "availability", "price", "locations", "name")
        return [(line["key"], {k: line["value"][k] for k in keep}) for line in lines]

    usd = "USD"
    assert events("google-merchant/good/merchant-atom-feed.xml", "--partner", "northwind") == [
        ("northwind:SKU-71001", _state(None, "in_stock", ("129.00", usd), [], "Ridgeline Trekking Poles")),
        ("northwind:SKU-71002", _state(None, "out_of_stock", ("45.5", "EUR"), [], "Alpine Gaiters, size M")),
        ("northwind:SKU-71003", _state(None, "preorder", ("34.99", usd), [], "Camp Lantern")),
    ]
    assert events("google-merchant/good/vehicle-ads-feed.xml", "--partner", "northwind") == [
        ("northwind:VEH-3001", _state(None, "in_stock", ("27995.00", usd), [], "2024 Contoso Roadster LX")),
        ("northwind:VEH-3002", _state(None, "backorder", ("41250.00", usd), [], "2025 Contoso Wagon")),
    ]
    assert events("google-merchant/good/merchant-spellings.xml", "--partner", "northwind") == [
        ("northwind:SKU-80001", _state(None, "in_stock", ("165.00", usd), [], "Glacier Parka")),
        ("northwind:SKU-80002", _state(None, "in_stock", ("165.00", usd), [], "Glacier Parka, kids")),
        ("northwind:SKU-80003", _state(None, "backorder", ("899", "EUR"), [], "Expedition Sled")),
    ]
    assert events("google-local/good/local-availability-only.xml", "--partner", "contoso") == [
        ("contoso:SKU-90001", _state(None, "in_stock", ("55.00", usd), [("STORE-B", 4)])),
        ("contoso:SKU-90002", _state(None, "backorder", None, [])),
        ("contoso:SKU-90003", _state(2, "in_stock", ("12.50", usd), [("STORE-A", 2)])),
    ]


def test_inspect_words_google_refusals_for_what_is_really_wrong() -> None:
    from tests.conftest import FIXTURES

    wrong = runner.invoke(app, ["inspect", str(FIXTURES / "google-merchant/bad/merchant-wrong-spellings.xml")])
    assert wrong.exit_code == 1 and wrong.stdout == ""
    assert (
        "[validation] line 19, record 2 (SKU-81002), /rss/channel/item[2]/g:price: g:price 'EURO' is not an ISO 4217 "
        "currency code" in wrong.stderr
    )
    assert "would be quarantined: 4 problem(s)" in wrong.stderr
    neither = runner.invoke(
        app, ["inspect", str(FIXTURES / "google-local/bad/local-neither-quantity-nor-availability.xml")]
    )
    assert neither.exit_code == 1
    assert (
        "[validation] line 15, record 2 (SKU-91001), /rss/channel/item[2]/g:availability: item has neither "
        "<g:quantity> nor <g:availability>; Google's local inventory specification says \"quantity is optional, "
        'availability is mandatory"' in neither.stderr
    )
    # a product feed given to a local inventory partner: told what it is, not that it lacks xmlns:g
    product = runner.invoke(
        app, ["inspect", str(FIXTURES / "google-merchant/good/vehicle-ads-feed.xml"), "--partner", "contoso"]
    )
    assert product.exit_code == 1
    assert "[unknown_format] line 1, /rss: this is a Google Merchant Center product feed" in product.stderr
    assert "declaring xmlns:g" not in product.stderr


def _state(
    quantity: int | None,
    availability: str,
    price: tuple[str, str] | None,
    locations: list[tuple[str, int]],
    name: str | None = None,
) -> dict[str, Any]:
    return {
        "quantity": quantity,
        "availability": availability,
        "price": {"amount": price[0], "currency": price[1]} if price else None,
        "locations": [{"locationId": store, "quantity": count} for store, count in locations],
        "name": name,
    }


def test_partners_lists_partners_and_formats_and_refuses_a_bad_configuration(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # piped at 80 columns: one partner per line, nothing wrapped
    listed = runner.invoke(app, ["partners"])
    assert listed.exit_code == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert ["partner", "prefix", "format", "parser", "snapshot", "policy", "key"] in rows
    assert [
        "initech",
        "initech/",
        "initech-stock",
        "initech-stock/1",
        "full",
        "strict",
        "{partnerId}:{productId}",
    ] in rows
    assert ["google-local-inventory (built-in)", "google-local-inventory/2"] in [row[:2] for row in rows]
    assert "<AmazonEnvelope> with no namespace (Amazon inventory feed)" in [row[-1] for row in rows]
    bad = tmp_path / "partners.yaml"
    bad.write_text("partners:\n  acme: {prefix: acme/, format: generic, snapshot: weekly}\n")
    monkeypatch.setenv("DROPGATE_PARTNERS", str(bad))
    refused = runner.invoke(app, ["partners"])
    assert refused.exit_code == 2
    assert "partner 'acme', field 'snapshot': Input should be 'full' or 'delta'" in refused.stderr


def test_partners_shows_configuration_text_as_text_not_markup(tmp_path: Any, monkeypatch: Any) -> None:
    partners = tmp_path / "partners.yaml"
    partners.write_text(
        'partners:\n  acme: {prefix: "acme[bold]x[/]/", format: generic, key_template: "[red]{productId}"}\n'
    )
    monkeypatch.setenv("DROPGATE_PARTNERS", str(partners))
    for terminal in ("0", "1"):  # piped, and on a terminal (rich's own layout)
        monkeypatch.setenv("TTY_COMPATIBLE", terminal)
        result = runner.invoke(app, ["partners"])
        assert result.exit_code == 0, result.output
        assert "acme[bold]x[/]/" in result.stdout and "[red]{productId}" in result.stdout


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"dropgate {version('dropgate')}\n"


def test_help_states_the_exit_code_contract() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=80)
    text = " ".join(result.stdout.split())
    assert "0 done" in text and "1 the file is (or would be) quarantined" in text
    assert "2 usage, configuration or infrastructure error" in text and "3 not found" in text
    for command in (["status"], ["files"], ["ingest"], ["inspect"], ["reprocess"], ["quarantine", "show"]):
        helped = runner.invoke(app, [*command, "--help"], terminal_width=80)
        assert helped.exit_code == 0 and "Exit:" in helped.stdout, command


def test_since_is_parsed_as_a_moment() -> None:
    from datetime import UTC, datetime

    import pytest
    import typer

    from dropgate.cli.dates import parse_since

    now = datetime(2026, 12, 6, 14, 30, 5, tzinfo=UTC)
    assert parse_since("2026-12-01", now=now) == "2026-12-01T00:00:00.000Z"
    assert parse_since("2026-12-01T08:00", now=now) == "2026-12-01T08:00:00.000Z"
    assert parse_since("2026-12-01T08:00+01:00", now=now) == "2026-12-01T07:00:00.000Z"
    assert parse_since("2026-12-01T08:00:00Z", now=now) == "2026-12-01T08:00:00.000Z"
    assert parse_since("today", now=now) == "2026-12-06T00:00:00.000Z"
    assert parse_since(" Yesterday ", now=now) == "2026-12-05T00:00:00.000Z"
    assert parse_since("7d", now=now) == "2026-11-29T14:30:05.000Z"
    assert parse_since("12h", now=now) == "2026-12-06T02:30:05.000Z"
    assert parse_since("30m", now=now) == "2026-12-06T14:00:05.000Z"
    for wrong in (
        "last tuesday",
        "2026-13-01",
        "7 days",
        "",
        "1w",
        "\x1b[31m",
        "9" * 500 + "d",
        "999999d",
        "0001-01-01T00:00+14:00",
    ):
        with pytest.raises(typer.BadParameter, match="is not a date") as refused:
            parse_since(wrong, now=now)
        assert "\x1b" not in str(refused.value) and len(str(refused.value)) < 200, wrong


def test_a_date_that_is_not_one_is_a_usage_error_before_anything_is_read() -> None:
    for argv in (["quarantine", "list", "--since", "yesterdy"], ["files", "--since", "2026-02-30"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2 and "is not a date" in result.output, argv


def test_json_output_escapes_what_a_terminal_must_not_get_raw() -> None:
    from dropgate.cli.output import dumps

    document = {"key": "acme/\x1b]0;pwned\x07\u202egpj.xml\x85\u2028", "n": 1}
    text = dumps(document)
    assert json.loads(text) == document
    assert text.isascii() and "\n" not in text
