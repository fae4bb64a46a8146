"""Declarative XPath formats: a spec from partners.yaml in, records and located problems out."""

from __future__ import annotations

import copy
import io
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from parsers.base import Document, LimitExceeded, Problem, Record
from parsers.declarative.parser import XPathParser
from parsers.declarative.spec import DeclarativeFormat
from parsers.limits import Limits
from parsers.xml_stream import sniff
from tests.conftest import fixture_bytes

#: The example format, exactly as it goes under ``formats:`` in partners.yaml.
EXAMPLE_YAML = """
formats:
  initech-stock:
    version: "3"
    root: StockReport
    namespace: "urn:initech:stock:1"
    namespaces: {s: "urn:initech:stock:1"}
    record: "s:Items/s:Item"
    as_of: "@generated"
    deleted: {path: "@status", equals: ["deleted", "removed"]}
    fields:
      productId:    {path: "s:Code", transforms: [trim]}
      sku:          {path: "s:Code"}
      name:         {path: "s:Description", transforms: [trim]}
      quantity:     {path: "s:OnHand", transforms: [trim, integer]}
      availability: {path: "s:Status", map: {A: in_stock, X: out_of_stock, B: backorder}}
      price:        {path: "s:Price", transforms: [trim, price]}
    locations: {path: "s:Stores/s:Store", id: "@code", quantity: "@qty"}
"""
EXAMPLE: dict[str, Any] = yaml.safe_load(EXAMPLE_YAML)["formats"]["initech-stock"]
NS = "urn:initech:stock:1"


def example_parser() -> XPathParser:
    return XPathParser("initech-stock", DeclarativeFormat.model_validate(EXAMPLE))


def split(items: Iterator[Any]) -> tuple[list[Document], list[Record], list[Problem]]:
    found = list(items)
    return (
        [i for i in found if isinstance(i, Document)],
        [i for i in found if isinstance(i, Record)],
        [i for i in found if isinstance(i, Problem)],
    )


def parse(data: bytes, parser: XPathParser | None = None) -> tuple[list[Document], list[Record], list[Problem]]:
    return split((parser or example_parser()).parse(io.BytesIO(data)))


def simple(fields: dict[str, Any], **spec: Any) -> XPathParser:
    """A format without namespaces over ``<feed><item …>``, for one rule at a time."""
    mapping = {"version": "1", "root": "feed", "record": "item", "fields": {"productId": {"path": "@id"}, **fields}}
    return XPathParser("feed", DeclarativeFormat.model_validate({**mapping, **spec}))


def items(*bodies: str) -> bytes:
    return (
        "<feed>" + "".join(f'<item id="P{n}">{body}</item>' for n, body in enumerate(bodies, 1)) + "</feed>"
    ).encode()


def load_error(mapping: dict[str, Any]) -> str:
    """Rendered the way partners.yaml errors are (``loc: msg``), so the assertions see what an operator sees."""
    with pytest.raises(ValidationError) as caught:
        DeclarativeFormat.model_validate(mapping)
    return "\n".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in caught.value.errors())


def changed(**updates: Any) -> dict[str, Any]:
    mapping = copy.deepcopy(EXAMPLE)
    for key, value in updates.items():
        if key.startswith("fields__"):
            mapping["fields"][key.removeprefix("fields__")] = value
        else:
            mapping[key] = value
    return mapping


# -- the spec ------------------------------------------------------------------------------------


def test_example_spec_describes_the_format() -> None:
    parser = example_parser()
    assert (parser.name, parser.version) == ("initech-stock", "3")
    assert parser.expects == "<StockReport> in namespace urn:initech:stock:1 (declarative format initech-stock)"


def test_matches_root_and_namespace_exactly() -> None:
    parser = example_parser()

    def head(xml: bytes) -> Any:
        return sniff(io.BytesIO(xml))[1]

    assert parser.matches(head(b'<s:StockReport xmlns:s="urn:initech:stock:1"/>'))
    assert parser.matches(head(b'<StockReport xmlns="urn:initech:stock:1"/>'))
    assert not parser.matches(head(b'<StockReport xmlns="urn:initech:stock:2"/>'))
    assert not parser.matches(head(b"<StockReport/>"))
    assert not parser.matches(head(b'<Report xmlns="urn:initech:stock:1"/>'))
    assert simple({}).matches(head(b"<feed/>"))
    assert not simple({}).matches(head(b'<feed xmlns="urn:x"/>'))


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (changed(fields__quantity={"path": "s:OnHand["}), ["fields.quantity.path", "not a usable XPath"]),
        (changed(fields__name={"path": "t:Description"}), ["fields.name.path", "Undefined namespace prefix"]),
        (
            changed(fields__quantity={"path": "s:OnHand", "transforms": ["rot13"]}),
            [
                "fields.quantity.transforms",
                "unknown transform 'rot13'",
                "allowed on quantity: trim, lower, upper, integer",
            ],
        ),
        (
            changed(fields__quantity={"path": "s:OnHand", "transforms": ["price"]}),
            ["fields.quantity.transforms", "'price'", "only valid on price"],
        ),
        (
            changed(fields__availability={"path": "s:Status", "map": {"A": "instock"}}),
            ["fields.availability.map", "'instock'", "in_stock, out_of_stock, preorder, backorder, discontinued"],
        ),
        (changed(record="s:Items//s:Item"), ["record", "child steps", "no //"]),
        (changed(record="s:Items/s:Item[1]"), ["record", "child steps"]),
        (changed(record="t:Items/t:Item"), ["record", "prefix 't' is not declared"]),
        (changed(fields={"sku": {"path": "s:Code"}}), ["fields.productId", "productId is required"]),
        ({k: v for k, v in EXAMPLE.items() if k != "version"}, ["version is required", '"1"']),
        (changed(version=3), ["version", 'quoted text, e.g. version: "3"']),
        (changed(fields__colour={"path": "s:Colour"}), ["fields.colour", "unknown field 'colour'", "productId, sku"]),
        (changed(fields__price={"path": "s:Price"}), ["fields.price", "fields.currency is required"]),
        (changed(fields__currency={"path": "s:Price/@currency"}), ["fields.currency", "remove fields.currency"]),
        (
            changed(fields__quantity={"path": "s:OnHand", "transforms": ["integer", "trim"]}),
            ["fields.quantity.transforms", "must be the last"],
        ),
        (
            changed(fields__quantity={"path": "s:OnHand", "default": "many"}),
            ["fields.quantity.default", "'many' is not a whole number"],
        ),
        (
            changed(fields__quantity={"path": "s:OnHand", "map": {"HIGH": "lots"}}),
            ["fields.quantity.map", "'HIGH' maps to quantity 'lots'"],
        ),
        (changed(fields__sku={"path": "/StockReport/s:Code"}), ["fields.sku.path", "relative to the record element"]),
        (changed(fields__productId={"path": "s:Code", "default": "X"}), ["fields.productId", "takes no default"]),
        (changed(as_of="s:Header/s:Generated"), ["as_of", "attribute of the root element", "@generated"]),
        (
            changed(locations={"path": "count(s:Stores)", "id": "@code", "quantity": "@qty"}),
            ["locations.path", "must select elements"],
        ),
        (changed(locations={"path": "s:Stores/s:Store", "id": "@code"}), ["locations.quantity", "Field required"]),
        (
            changed(fields__availability={"path": "s:Status", "map": {True: "in_stock"}}),
            ["fields.availability.map", "quote it"],
        ),
        (changed(shape="flat"), ["shape", "Extra inputs are not permitted"]),
        (
            changed(fields__availability={"path": "s:Status", "transforms": ["lower"], "map": {"A": "in_stock"}}),
            ["fields.availability.map", "key 'A' can never match", "write the key as 'a'"],
        ),
    ],
)
def test_load_time_errors_name_the_field_and_what_is_allowed(mapping: dict[str, Any], expected: list[str]) -> None:
    message = load_error(mapping)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_every_mistake_in_a_spec_is_reported_at_once() -> None:
    message = load_error(
        changed(fields__quantity={"path": "s:OnHand", "transforms": ["price"]}, fields__name={"path": "t:Name"})
    )
    assert "fields.quantity.transforms" in message and "fields.name.path" in message


def test_yaml_numbers_in_maps_and_defaults_are_text() -> None:
    parser = simple(
        {"quantity": {"path": "level", "map": {"HIGH": 100, "LOW": 0}}, "sku": {"path": "sku", "default": 7}}
    )
    _, records, problems = parse(items("<level>HIGH</level>", "<level>LOW</level>"), parser)
    assert problems == []
    assert [(r.fields or {})["quantity"] for r in records] == [100, 0]
    assert [(r.fields or {})["sku"] for r in records] == ["7", "7"]


# -- a clean file --------------------------------------------------------------------------------


def test_clean_file_gives_exact_records() -> None:
    docs, records, problems = parse(fixture_bytes("good/initech-stock.xml", "declarative"))
    assert problems == []
    assert docs == [Document(root="StockReport", namespace=NS, as_of=datetime(2026, 11, 20, 6, 30, tzinfo=UTC))]
    assert [(r.index, r.product_id, r.line, r.path) for r in records] == [
        (1, "INI-1001", 7, "/StockReport/Items/Item[1]"),
        (2, "INI-1002", 18, "/StockReport/Items/Item[2]"),
        (3, "INI-1003", 24, "/StockReport/Items/Item[3]"),
        (4, "INI-1004", 33, "/StockReport/Items/Item[4]"),
        (5, "INI-1005", 36, "/StockReport/Items/Item[5]"),
    ]
    assert [r.fields for r in records] == [
        {
            "sku": "INI-1001",
            "name": "Red Stapler",
            "quantity": 12,
            "availability": "in_stock",
            "price": {"amount": "15.00", "currency": "USD"},
            "locations": [{"locationId": "S01", "quantity": 7}, {"locationId": "S02", "quantity": 5}],
        },
        {
            "sku": "INI-1002",
            "name": "TPS Report Cover Sheet (pack of 100)",
            "quantity": 0,
            "availability": "out_of_stock",  # derived from the quantity
            "price": {"amount": "4.25", "currency": "EUR"},
            "locations": [],
        },
        {
            "sku": "INI-1003",
            "name": "Swingline Stapler & Remover",
            "quantity": 3,  # the locations' sum, sorted by id
            "availability": "backorder",
            "price": None,
            "locations": [{"locationId": "S03", "quantity": 3}, {"locationId": "WH", "quantity": 0}],
        },
        None,  # status="removed": a tombstone
        {
            "sku": "INI-1005",
            "name": "Coffee Mug",
            "quantity": None,  # an availability alone is enough
            "availability": "out_of_stock",
            "price": None,
            "locations": [],
        },
    ]


def test_same_named_elements_outside_the_record_path_are_not_records() -> None:
    # The fixture has <s:Item> under <s:Archive> and inside a record's <s:Notes>: neither is a record.
    _, records, _ = parse(fixture_bytes("good/initech-stock.xml", "declarative"))
    assert "OLD-1" not in {r.product_id for r in records}
    assert len(records) == 5


def test_records_in_repeated_containers_are_all_read() -> None:
    data = (
        b'<StockReport xmlns="urn:initech:stock:1"><Items><Item><Code>A</Code><OnHand>1</OnHand></Item></Items>'
        b"<Items><Item><Code>B</Code><OnHand>2</OnHand></Item></Items></StockReport>"
    )
    _, records, problems = parse(data)
    assert problems == []
    assert [(r.index, r.product_id, r.path) for r in records] == [
        (1, "A", "/StockReport/Items/Item[1]"),
        (2, "B", "/StockReport/Items/Item[2]"),
    ]


# -- transforms, maps, defaults, paths -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "spec", "body", "expected"),
    [
        ("sku", {"path": "sku"}, "<sku>  ab-1 </sku>", "ab-1"),  # text fields are always trimmed
        ("sku", {"path": "sku", "transforms": ["trim", "upper"]}, "<sku> ab-1 </sku>", "AB-1"),
        ("sku", {"path": "sku", "transforms": ["lower"]}, "<sku>AB-1</sku>", "ab-1"),
        ("quantity", {"path": "qty", "transforms": ["trim", "integer"]}, "<qty> 0042 </qty>", 42),
        ("quantity", {"path": "qty"}, "<qty>7</qty>", 7),  # a quantity is a whole number with or without `integer`
        (
            "availability",
            {"path": "state", "transforms": ["trim", "lower"], "map": {"y": "in_stock"}},
            "<state> Y </state>",
            "in_stock",
        ),
        ("availability", {"path": "state"}, "<state>PreOrder</state>", "preorder"),  # contract values pass through
    ],
)
def test_transforms_and_maps(field: str, spec: dict[str, Any], body: str, expected: Any) -> None:
    fields = {field: spec}
    if field != "quantity":
        fields["quantity"] = {"path": "q", "default": "1"}
    _, records, problems = parse(items(body), simple(fields))
    assert problems == []
    assert (records[0].fields or {})[field] == expected


@pytest.mark.parametrize(
    ("price", "body", "expected"),
    [
        (
            {"path": "price", "transforms": ["trim", "price"]},
            "<price> 15.00 USD </price>",
            {"amount": "15.00", "currency": "USD"},
        ),
        ({"path": "price", "transforms": ["price"]}, "<price>EUR 9.5</price>", {"amount": "9.5", "currency": "EUR"}),
        (
            {"path": "price", "transforms": ["decimal"]},
            '<price cur="gbp">3.10</price>',
            {"amount": "3.10", "currency": "GBP"},
        ),
    ],
)
def test_price_amount_and_currency(price: dict[str, Any], body: str, expected: dict[str, str]) -> None:
    fields: dict[str, Any] = {"price": price, "quantity": {"path": "q", "default": "1"}}
    if "price" not in price["transforms"]:
        fields["currency"] = {"path": "price/@cur", "transforms": ["currency"]}
    _, records, problems = parse(items(body), simple(fields))
    assert problems == []
    assert (records[0].fields or {})["price"] == expected


def test_currency_default_and_missing_currency() -> None:
    parser = simple(
        {
            "quantity": {"path": "q", "default": "1"},
            "price": {"path": "p"},
            "currency": {"path": "@cur", "default": "usd"},
        }
    )
    _, records, problems = parse(items("<p>2.00</p>"), parser)
    assert problems == [] and (records[0].fields or {})["price"] == {"amount": "2.00", "currency": "USD"}
    parser = simple({"quantity": {"path": "q", "default": "1"}, "price": {"path": "p"}, "currency": {"path": "@cur"}})
    _, records, problems = parse(items("<p>2.00</p>"), parser)
    assert records == []
    (problem,) = problems
    assert (problem.field, problem.path, problem.product_id) == ("price.currency", "/feed/item[1]/@cur", "P1")
    assert "no currency" in problem.message


def test_a_value_missing_from_the_map_lists_the_keys() -> None:
    _, records, problems = parse(
        b'<StockReport xmlns="urn:initech:stock:1"><Items><Item>\n<Code>A</Code>\n<Status>Z</Status>'
        b"</Item></Items></StockReport>"
    )
    assert records == []
    (problem,) = problems
    assert problem.message == "availability 'Z' is not in the format's map; expected one of A, X, B"
    assert (problem.line, problem.path, problem.value) == (3, "/StockReport/Items/Item[1]/s:Status", "Z")


def test_defaults_and_required_fields() -> None:
    parser = simple(
        {"quantity": {"path": "q", "default": "0"}, "name": {"path": "title", "required": True}},
    )
    _, records, problems = parse(items("<title>T</title>", "<title>  </title>"), parser)
    assert [(r.product_id, (r.fields or {})["quantity"], (r.fields or {})["availability"]) for r in records] == [
        ("P1", 0, "out_of_stock")
    ]
    (problem,) = problems
    assert (problem.record, problem.field, problem.path) == (2, "name", "/feed/item[2]/title")
    assert "required" in problem.message


def test_general_xpath_expressions() -> None:
    parser = simple(
        {
            "name": {"path": "normalize-space(concat(brand, ' ', model))"},
            "quantity": {"path": "count(unit)"},
            "sku": {"path": "codes/code[@type='sku']"},
            "price": {"path": "prices/price[@kind='retail']/text()", "transforms": ["price"]},
        }
    )
    body = (
        "<brand> Acme </brand><model>Rocket</model><unit/><unit/><codes><code type='ean'>1</code>"
        "<code type='sku'>S-9</code></codes><prices><price kind='list'>9.00 USD</price>"
        "<price kind='retail'>7.50 USD</price></prices>"
    )
    _, records, problems = parse(items(body), parser)
    assert problems == []
    assert records[0].fields == {
        "sku": "S-9",
        "name": "Acme Rocket",
        "quantity": 2,
        "availability": "in_stock",
        "price": {"amount": "7.50", "currency": "USD"},
        "locations": [],
    }


# -- located validation problems ------------------------------------------------------------------


def test_bad_values_are_each_located_and_explained() -> None:
    _, records, problems = parse(fixture_bytes("bad/initech-bad-values.xml", "declarative"))
    assert [r.product_id for r in records] == ["INI-2001"]
    found = {(p.record, p.field): p for p in problems}
    ambiguous = found[(2, "quantity")]
    assert (ambiguous.kind, ambiguous.line, ambiguous.product_id) == ("validation", 10, "INI-2002")
    assert ambiguous.path == "/StockReport/Items/Item[2]/s:OnHand"
    assert ambiguous.value == "1,234" and "ambiguous" in ambiguous.message and "1234" in ambiguous.message
    mismatch = found[(3, "quantity")]
    assert "does not equal the sum of its locations (4 + 5 = 9)" in mismatch.message
    missing_id = found[(4, "productId")]
    assert (missing_id.product_id, missing_id.line, missing_id.path) == (None, 20, "/StockReport/Items/Item[4]/s:Code")
    assert found[(5, "availability")].value == "Q"
    assert found[(5, "price")].value == "3,50 USD" and "comma" in found[(5, "price")].message
    assert found[(6, "price.currency")].message.startswith("price.currency 'dollars' is not an ISO 4217")
    assert "neither a quantity nor an availability" in found[(6, "availability")].message
    negative = found[(7, "locations.quantity")]
    assert (negative.line, negative.path) == (38, "/StockReport/Items/Item[7]/s:Stores/s:Store[2]/@qty")
    id_problems = [p for p in problems if p.record == 7 and p.field == "locations.locationId"]
    assert [(p.line, p.message) for p in id_problems] == [
        (39, "location 'S01' appears more than once in this record"),
        (40, "location has no id: '@code' finds nothing (or only blanks) in this location"),
    ]
    assert len(problems) == 10


def test_malformed_xml_names_line_column_and_product() -> None:
    _, records, problems = parse(fixture_bytes("bad/initech-malformed.xml", "declarative"))
    assert [r.product_id for r in records] == ["INI-3001"]
    (problem,) = problems
    assert problem.kind == "xml_syntax"
    assert (problem.line, problem.column) == (7, 29)
    assert (problem.record, problem.product_id) == (2, "INI-3002")  # read from the part of the record before the error
    assert "OnHand" in problem.message and "OnHnad" in problem.message


def test_error_between_records_says_after_which_one() -> None:
    parser = simple({"quantity": {"path": "q"}})
    _, _, problems = parse(b'<feed><item id="A"><q>1</q></item>\n<oops></feed>', parser)
    (problem,) = problems
    assert problem.kind == "xml_syntax" and problem.record is None
    assert "after record 1, productId A" in problem.message
    # An id read from a child element is known once the record has been read.
    data = b'<StockReport xmlns="urn:initech:stock:1"><Items><Item><Code>C1</Code><OnHand>1</OnHand></Item>\n<oops>'
    _, _, problems = parse(data + b"</Items></StockReport>")
    (problem,) = problems
    assert "after record 1, productId C1" in problem.message


# -- tombstones and as_of ---------------------------------------------------------------------------


def test_tombstones_need_only_a_product_id() -> None:
    data = (
        b'<StockReport xmlns="urn:initech:stock:1"><Items>'
        b'<Item status=" deleted "><Code>A</Code><OnHand>oops</OnHand></Item>'
        b'<Item status="removed"/>'
        b'<Item status="Deleted"><Code>C</Code><OnHand>1</OnHand></Item>'
        b"</Items></StockReport>"
    )
    _, records, problems = parse(data)
    assert [(r.product_id, r.deleted) for r in records] == [("A", True), ("C", False)]  # equals is case-sensitive
    (problem,) = problems
    assert (problem.record, problem.field) == (2, "productId")


def test_as_of_is_read_from_the_root_attribute() -> None:
    def as_of(root_attributes: bytes) -> tuple[list[Document], list[Problem]]:
        docs, _, problems = parse(b'<StockReport xmlns="urn:initech:stock:1" ' + root_attributes + b"/>")
        return docs, problems

    docs, problems = as_of(b'generated="2026-11-20T06:00:00Z"')
    assert problems == [] and docs[0].as_of == datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    docs, problems = as_of(b"")
    assert problems == [] and docs[0].as_of is None
    docs, problems = as_of(b'generated="2026-11-20T06:00:00"')
    assert docs == [Document(root="StockReport", namespace=NS, as_of=None)]
    (problem,) = problems
    assert (problem.kind, problem.record, problem.path, problem.field) == (
        "validation",
        None,
        "/StockReport/@generated",
        "asOf",
    )
    assert "has no timezone" in problem.message and problem.value == "2026-11-20T06:00:00"


# -- locations ------------------------------------------------------------------------------------


def test_locations_give_the_quantity_when_it_is_not_mapped() -> None:
    parser = simple({}, locations={"path": "stock", "id": "@at", "quantity": "."})
    _, records, problems = parse(items('<stock at="B">2</stock><stock at="A">3</stock>', ""), parser)
    assert problems == []
    assert [(r.fields or {})["quantity"] for r in records] == [5, 0]
    assert (records[0].fields or {})["locations"] == [
        {"locationId": "A", "quantity": 3},
        {"locationId": "B", "quantity": 2},
    ]
    assert (records[1].fields or {})["availability"] == "out_of_stock"


# -- format routing and hardening -----------------------------------------------------------------


def test_foreign_root_stops_before_parsing() -> None:
    body = b"".join(b"<Item><Code>P%d</Code></Item>" % i for i in range(50_000))
    data = b'<?xml version="1.0"?>\n<StockReport xmlns="urn:initech:stock:2"><Items>' + body + b"</Items></StockReport>"
    stream = io.BytesIO(data)
    found = list(example_parser().parse(stream))
    assert stream.tell() <= 70_000
    (problem,) = found
    assert isinstance(problem, Problem) and problem.kind == "unknown_format"
    assert problem.message == (
        "root element is <StockReport> in namespace urn:initech:stock:2, expected <StockReport> in namespace "
        "urn:initech:stock:1 (declarative format initech-stock)"
    )


def test_root_found_different_while_parsing_is_unknown_format() -> None:
    # A prolog longer than the sniffed head: only the parser sees the root.
    data = b"<!--" + b"x" * 70_000 + b"-->\n<Other><Items><Item><Code>A</Code></Item></Items></Other>"
    _, records, problems = parse(data)
    assert records == []
    (problem,) = problems
    assert problem.kind == "unknown_format" and problem.line == 2
    assert problem.message.startswith("root element is <Other> with no namespace, expected <StockReport>")


def test_records_in_another_namespace_are_reported_once() -> None:
    # A classic: the document uses a default namespace, the record path has no prefix (= no namespace).
    mapping = changed(record="Items/Item")
    parser = XPathParser("initech-stock", DeclarativeFormat.model_validate(mapping))
    data = b'<StockReport xmlns="urn:initech:stock:1"><Items><Item/><Item/></Items></StockReport>'
    _, records, problems = parse(data, parser)
    assert records == []
    (problem,) = problems
    assert problem.field == "record" and problem.path == "/StockReport/Items"  # the first step that differs
    assert "is in namespace urn:initech:stock:1" in problem.message and "expects no namespace" in problem.message
    # Only the container in the wrong namespace: that step is named.
    data = b'<StockReport xmlns="urn:initech:stock:1"><Items xmlns="urn:other"><Item xmlns="urn:initech:stock:1"/>'
    _, records, problems = parse(data + b"</Items></StockReport>")
    (problem,) = problems
    assert problem.path == "/StockReport/Items" and problem.value == "{urn:other}Items"
    assert "<Items> at /StockReport/Items is in namespace urn:other" in problem.message
    assert "expects namespace urn:initech:stock:1 there" in problem.message


def test_entity_declarations_are_refused_and_never_expanded() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE StockReport [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        b'<StockReport xmlns="urn:initech:stock:1"><Items><Item><Code>&secret;</Code><OnHand>1</OnHand></Item>'
        b"</Items></StockReport>"
    )
    _, records, problems = parse(data)
    assert records == []
    (problem,) = problems
    assert problem.kind == "security_limit" and "declares entities" in problem.message


def test_undeclared_entity_reference_is_reported_not_expanded() -> None:
    data = (
        b"<!--" + b"x" * 70_000 + b'--><!DOCTYPE StockReport SYSTEM "StockReport.dtd">'
        b'<StockReport xmlns="urn:initech:stock:1"><Items><Item><Code>A</Code><Description>&word;</Description>'
        b"<OnHand>1</OnHand></Item></Items></StockReport>"
    )
    _, records, problems = parse(data)
    assert records == []
    (problem,) = problems
    assert problem.kind == "security_limit" and problem.field == "name" and "entity reference" in problem.message


def test_text_over_the_limit_is_refused_with_its_location() -> None:
    parser = simple({"quantity": {"path": "q"}, "name": {"path": "n"}})
    data = items("<q>1</q>", "<q>1</q><n>" + "x" * 200 + "</n>")
    with pytest.raises(LimitExceeded) as caught:
        list(parser.parse(io.BytesIO(data), Limits(max_text_chars=100)))
    assert caught.value.limit == "max_text_chars"
    assert caught.value.where["record"] == 2 and caught.value.where["path"] == "/feed/item[2]/n"


def test_content_that_is_not_records_is_bounded() -> None:
    parser = simple({"quantity": {"path": "q"}})
    data = b"<feed>" + b"<x/>" * 100_000 + b"</feed>"
    with pytest.raises(LimitExceeded) as caught:
        list(parser.parse(io.BytesIO(data), Limits(max_record_bytes=64 * 1024)))
    assert caught.value.limit == "max_record_bytes" and "before the first record" in caught.value.message


def test_deep_nesting_inside_a_record_is_a_security_limit() -> None:
    parser = simple({"quantity": {"path": "q"}})
    data = items("<q>1</q>" + "<x>" * 20 + "</x>" * 20)
    with pytest.raises(LimitExceeded) as caught:
        list(parser.parse(io.BytesIO(data)))
    assert caught.value.limit == "max_depth" and caught.value.where["record"] == 1


class _Generated(io.RawIOBase):
    """A file object backed by a generator: the document never exists whole, not even as bytes."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def test_200k_records_stream_in_flat_memory() -> None:
    count = 200_000

    def chunks() -> Iterator[bytes]:
        yield b'<s:StockReport xmlns:s="urn:initech:stock:1" generated="2026-11-20T06:00:00Z"><s:Items>'
        for start in range(0, count, 1000):
            yield b"".join(
                b'<s:Item status="active"><s:Code>P%07d</s:Code><s:OnHand>%d</s:OnHand></s:Item>\n' % (i, i % 5)
                for i in range(start, start + 1000)
            )
        yield b"</s:Items></s:StockReport>"

    parser = example_parser()
    tracemalloc.start()
    try:
        records = 0
        last: Record | None = None
        for item in parser.parse(io.BufferedReader(_Generated(chunks()))):
            assert not isinstance(item, Problem), item
            if isinstance(item, Record):
                records += 1
                last = item
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert records == count
    assert last is not None and (last.index, last.product_id, last.fields) == (
        count,
        f"P{count - 1:07d}",
        {
            "sku": f"P{count - 1:07d}",
            "name": None,
            "quantity": 4,
            "availability": "in_stock",
            "price": None,
            "locations": [],
        },
    )
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1024 / 1024:.1f} MB"
