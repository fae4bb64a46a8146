"""cXML stock types: which ``<Inventory>`` quantity is what a shopper can buy, by a partner's rule."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dropgate.cli import app
from parsers.base import Document, Problem, Record
from parsers.cxml import CxmlProductActivityParser
from tests.conftest import FIXTURES, fixture_bytes

DETAILS = "/cXML/Message/ProductActivityMessage/ProductActivityDetails"
PREFER_ON_HAND = ("StockOnHandQuantity", "UnrestrictedUseQuantity")
runner = CliRunner()


def parse(fixture: str, parser: CxmlProductActivityParser | None = None) -> tuple[list[Record], list[Problem]]:
    items = list((parser or CxmlProductActivityParser()).parse(io.BytesIO(fixture_bytes(fixture, "cxml"))))
    assert sum(isinstance(i, Document) for i in items) == 1
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


def rows(records: list[Record]) -> list[tuple[str, str | None, object, object, object]]:
    return [
        (r.product_id, r.fields["name"], r.fields["quantity"], r.fields["availability"], r.fields["locations"])
        for r in records
    ]


def test_stock_on_hand_is_the_quantity_of_a_supplier_managed_inventory_report() -> None:
    records, problems = parse("good/product-activity-stock-on-hand.xml")
    assert problems == []
    assert rows(records) == [
        ("SP-400", "Cable tie 200 mm", 340, "in_stock", []),
        # work in process (25) and in transit (60) are not added to the 0 on hand
        ("SP-401", "Cable tie 300 mm", 0, "out_of_stock", []),
        ("SP-402", None, 75, "in_stock", []),  # OrderQuantity and DaysOfSupply are limits, not stock
        ("SP-403", "Cable tie mount", 12, "in_stock", []),  # required minimum and maximum are not stock
    ]
    assert [r.line for r in records] == [15, 22, 32, 40]


def test_only_unrestricted_use_counts_when_blocked_and_in_transit_stock_are_reported() -> None:
    records, problems = parse("good/product-activity-stock-types.xml")
    assert problems == []
    assert rows(records) == [
        # 30 unrestricted; blocked 5, inspection 8, transfer 12, on hand 55 and in transit 40 do not count
        ("SP-500", 'Hydraulic hose 1/2"', 30, "in_stock", []),
        ("SP-501", 'Hydraulic hose 3/4"', 0, "out_of_stock", []),  # 9 blocked and 100 in transit: none to sell
        ("SP-502", "Hose clamp", 14, "in_stock", []),  # consignment stock (200) and promotion stock are not read
        ("SP-503", "Hose fitting", 9, "in_stock", []),  # no unrestricted use: stock on hand, never the blocked 2
    ]


def test_a_partner_rule_may_prefer_stock_on_hand() -> None:
    records, problems = parse("good/product-activity-stock-types.xml", CxmlProductActivityParser(PREFER_ON_HAND))
    assert problems == []
    assert [(r.product_id, r.fields["quantity"]) for r in records] == [
        ("SP-500", 55),
        ("SP-501", 0),  # no stock on hand: unrestricted use, still never blocked or in transit
        ("SP-502", 14),
        ("SP-503", 9),
    ]


def test_a_rule_of_unrestricted_use_alone_refuses_stock_on_hand_naming_what_was_found() -> None:
    records, problems = parse(
        "good/product-activity-stock-on-hand.xml", CxmlProductActivityParser(["UnrestrictedUseQuantity"])
    )
    assert records == []
    assert [(p.record, p.product_id, p.field, p.path) for p in problems] == [
        (n, f"SP-40{n - 1}", "quantity", f"{DETAILS}[{n}]/Inventory") for n in range(1, 5)
    ]
    assert "holds StockOnHandQuantity (stock on hand)," in problems[0].message
    assert "its partner counts only UnrestrictedUseQuantity (cxml.available_quantity" in problems[0].message
    assert (
        "holds StockOnHandQuantity (stock on hand), WorkInProcessQuantity (work in process, not finished goods), "
        "IntransitQuantity (stock in transit)," in problems[1].message
    )


def test_a_product_without_available_stock_is_a_problem_saying_what_it_holds_and_what_counts() -> None:
    records, problems = parse("bad/product-activity-no-available-stock.xml")
    assert [(r.product_id, r.fields["quantity"]) for r in records] == [("SP-604", 3)]
    assert [(p.kind, p.line, p.record, p.product_id, p.field, p.value, p.path) for p in problems] == [
        ("validation", 18, 1, "SP-600", "quantity", None, f"{DETAILS}[1]/Inventory"),
        ("validation", 25, 2, "SP-601", "quantity", None, f"{DETAILS}[2]/Inventory"),
        ("validation", 32, 3, "SP-602", "quantity", None, f"{DETAILS}[3]/Inventory/StockOnHandQuantity"),
        ("validation", 35, 4, "SP-603", "quantity", None, f"{DETAILS}[4]"),
    ]
    blocked, unknown, no_number, consignment = (p.message for p in problems)
    counts = "its partner counts only UnrestrictedUseQuantity, else StockOnHandQuantity"
    assert blocked.startswith(
        "the product has no stock a shopper can buy: its <Inventory> holds BlockedQuantity (blocked stock), "
        f"IntransitQuantity (stock in transit), and {counts}"
    )
    assert "holds UnrestrictedQuantity (not a cXML Inventory element), and " + counts in unknown
    assert no_number.startswith("<StockOnHandQuantity> has no quantity; send <StockOnHandQuantity quantity=")
    assert "it has no <Inventory>, and " + counts in consignment


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        (["BlockedQuantity"], "BlockedQuantity is blocked stock: a shopper cannot buy it"),
        (["UnrestrictedUseQuantity", "IntransitQuantity"], "IntransitQuantity is stock in transit: a shopper cannot"),
        (["QualityInspectionQuantity"], "is stock under quality inspection: a shopper cannot buy it"),
        (["OrderQuantity"], "OrderQuantity is the minimum and maximum order quantity, not stock: a shopper"),
        (["UnrestrictedUse"], "'UnrestrictedUse' is not a cXML Inventory quantity type"),
        ([], "name at least one quantity type"),
        (["StockOnHandQuantity", "StockOnHandQuantity"], "StockOnHandQuantity is named twice"),
    ],
)
def test_a_rule_may_name_only_stock_a_shopper_can_buy(rule: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as raised:
        CxmlProductActivityParser(rule)
    if rule and rule[0] != "StockOnHandQuantity":
        assert "available_quantity accepts UnrestrictedUseQuantity and StockOnHandQuantity" in str(raised.value)


def events(result: Any) -> list[tuple[str, object, object, object]]:
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return [(e["key"], e["value"]["quantity"], e["value"]["availability"], e["value"]["locations"]) for e in lines]


def test_inspect_reads_stock_on_hand_and_never_blocked_or_in_transit_stock() -> None:
    on_hand = runner.invoke(app, ["inspect", str(FIXTURES / "cxml/good/product-activity-stock-on-hand.xml")])
    assert on_hand.exit_code == 0, on_hand.stderr
    assert events(on_hand) == [
        ("SP-400", 340, "in_stock", []),
        ("SP-401", 0, "out_of_stock", []),
        ("SP-402", 75, "in_stock", []),
        ("SP-403", 12, "in_stock", []),
    ]
    assert "ok, 4 event(s), parser cxml-product-activity/" in on_hand.stderr
    types = FIXTURES / "cxml/good/product-activity-stock-types.xml"
    mixed = runner.invoke(app, ["inspect", str(types), "--partner", "fabrikam"])
    assert mixed.exit_code == 0, mixed.stderr
    assert events(mixed) == [
        ("fabrikam:SP-500", 30, "in_stock", []),
        ("fabrikam:SP-501", 0, "out_of_stock", []),
        ("fabrikam:SP-502", 14, "in_stock", []),
        ("fabrikam:SP-503", 9, "in_stock", []),
    ]


HOSES = (
    "partners:\n  hoses:\n    prefix: hoses/\n    format: cxml-product-activity\n"
    "    key_template: '{partnerId}:{productId}'\n"
    "    cxml: {available_quantity: [StockOnHandQuantity, UnrestrictedUseQuantity]}\n"
)


def test_a_partner_with_its_own_rule_gets_it_by_name_and_by_prefix(tmp_path: Path, monkeypatch: Any) -> None:
    from dropgate.app import build_ingestor
    from dropgate.config import Settings
    from dropgate.storage import ObjectRef

    partners = tmp_path / "partners.yaml"
    partners.write_text(HOSES)
    monkeypatch.setenv("DROPGATE_PARTNERS", str(partners))
    types = FIXTURES / "cxml/good/product-activity-stock-types.xml"
    given = runner.invoke(app, ["inspect", str(types), "--partner", "hoses"])
    assert given.exit_code == 0, given.stderr
    assert events(given) == [
        ("hoses:SP-500", 55, "in_stock", []),  # stock on hand first: 55, not the 30 unrestricted
        ("hoses:SP-501", 0, "out_of_stock", []),
        ("hoses:SP-502", 14, "in_stock", []),
        ("hoses:SP-503", 9, "in_stock", []),
    ]

    monkeypatch.chdir(tmp_path)  # a local key under the partner's prefix is routed by the prefix
    (tmp_path / "hoses").mkdir()
    (tmp_path / "hoses/activity.xml").write_bytes(types.read_bytes())
    prepared = build_ingestor(Settings(), local=True, publish=False).prepare(ObjectRef(None, "hoses/activity.xml"))
    with prepared.spool:
        assert prepared.problems == []
        values = [json.loads(entry.value or b"null") for entry in prepared.spool.replay(prepared.sha256)]
    assert [(v["partnerId"], v["productId"], v["quantity"], v["availability"]) for v in values] == [
        ("hoses", "SP-500", 55, "in_stock"),
        ("hoses", "SP-501", 0, "out_of_stock"),
        ("hoses", "SP-502", 14, "in_stock"),
        ("hoses", "SP-503", 9, "in_stock"),
    ]
