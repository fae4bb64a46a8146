"""The generic format parser on its own: bytes in, records and located problems out."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from parsers.base import Document, Problem, Record
from parsers.generic import GenericInventoryParser
from tests.conftest import fixture_bytes, listening_socket


def parse(data: bytes) -> tuple[list[Document], list[Record], list[Problem]]:
    items = list(GenericInventoryParser().parse(io.BytesIO(data)))
    return (
        [i for i in items if isinstance(i, Document)],
        [i for i in items if isinstance(i, Record)],
        [i for i in items if isinstance(i, Problem)],
    )


def test_good_file_gives_every_product_in_contract_terms() -> None:
    docs, records, problems = parse(fixture_bytes("good/acme-2026-11-20.xml"))
    assert problems == []
    assert docs == [
        Document(root="inventory", namespace=None, partner="acme", as_of=datetime(2026, 11, 20, 6, 0, tzinfo=UTC))
    ]
    by_id = {r.product_id: r for r in records}
    assert [r.index for r in records] == [1, 2, 3, 4, 5]
    assert by_id["P0000001"].fields == {
        "sku": "ACME-0000001",
        "name": "Widget 1",
        "quantity": 12,
        "availability": "in_stock",
        "price": {"amount": "19.99", "currency": "USD"},
        "locations": [{"locationId": "WH1", "quantity": 7}, {"locationId": "WH2", "quantity": 5}],
    }
    assert by_id["P0000001"].line == 3
    # quantity trimmed; availability derived from it
    assert by_id["P0000002"].fields is not None
    assert by_id["P0000002"].fields["quantity"] == 0
    assert by_id["P0000002"].fields["availability"] == "out_of_stock"
    # quantity from the locations' sum; entity &amp; decoded; locations sorted by id
    p3 = by_id["P0000003"].fields
    assert p3 is not None
    assert p3["quantity"] == 3
    assert p3["name"] == 'Sprocket 3 — "heavy duty" & rust-proof'
    assert [loc["locationId"] for loc in p3["locations"]] == ["STORE-042", "WH1"]
    # unknown elements (<color>) are ignored
    assert by_id["P0000004"].fields is not None
    assert by_id["P0000004"].fields["price"] == {"amount": "129.5", "currency": "EUR"}
    assert by_id["P0000005"].deleted


def test_bad_values_are_each_located_and_explained() -> None:
    _, records, problems = parse(fixture_bytes("bad/acme-bad-values.xml"))
    assert [r.product_id for r in records] == ["P0000001"]
    found = {(p.record, p.field): p for p in problems}
    ambiguous = found[(2, "quantity")]
    assert ambiguous.kind == "validation"
    assert ambiguous.line == 9
    assert ambiguous.product_id == "P0000002"
    assert ambiguous.path == "/inventory/product[2]/quantity"
    assert ambiguous.value == "1,234"
    assert "ambiguous" in ambiguous.message and "1234" in ambiguous.message
    mismatch = found[(3, "quantity")]
    assert "does not equal the sum of its locations (4 + 5 = 9)" in mismatch.message
    missing_id = found[(4, "productId")]
    assert missing_id.product_id is None and missing_id.line == 19
    assert found[(5, "availability")].value == "maybe"
    assert found[(5, "price")].value == "3,50"
    assert found[(5, "price.currency")].value == "dollars"
    assert len(problems) == 6


def test_malformed_xml_names_line_column_and_product() -> None:
    _, records, problems = parse(fixture_bytes("bad/acme-malformed.xml"))
    assert [r.product_id for r in records] == ["P0000001"]
    (problem,) = problems
    assert problem.kind == "xml_syntax"
    assert (problem.line, problem.column) == (7, 26)
    assert (problem.record, problem.product_id) == (2, "P0000002")
    assert "quantity" in problem.message and "quantiy" in problem.message


def test_error_between_products_says_after_which_one() -> None:
    data = b'<inventory><product id="A"><quantity>1</quantity></product>\n<oops></inventory>'
    _, _, problems = parse(data)
    (problem,) = problems
    assert problem.kind == "xml_syntax" and problem.record is None
    assert "after record 1, productId A" in problem.message


def test_unknown_root_is_unknown_format() -> None:
    _, records, problems = parse(b"<catalog><item/></catalog>")
    assert records == []
    (problem,) = problems
    assert problem.kind == "unknown_format"
    assert "<catalog>" in problem.message and "<inventory>" in problem.message


def test_generated_at_without_zone_is_a_problem() -> None:
    _, _, problems = parse(
        b'<inventory generatedAt="2026-11-20T06:00:00"><product id="A"><quantity>1</quantity></product></inventory>'
    )
    assert [(p.field, p.path) for p in problems] == [("generatedAt", "/inventory/@generatedAt")]


def test_duplicate_fields_and_missing_quantity_are_problems() -> None:
    _, records, problems = parse(
        b'<inventory><product id="A"><quantity>1</quantity><quantity>2</quantity></product>'
        b'<product id="B"><name>x</name></product></inventory>'
    )
    assert records == []
    messages = [p.message for p in problems]
    assert any("appears more than once" in m for m in messages)
    assert any("neither <quantity> nor <locations>" in m for m in messages)


def test_entities_are_never_expanded_nor_files_read() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE inventory [<!ENTITY secret SYSTEM "file:///etc/passwd">'
        b'<!ENTITY word "expanded">]><inventory><product id="A"><name>&secret;&word;</name>'
        b"<quantity>1</quantity></product></inventory>"
    )
    _, records, problems = parse(data)
    assert records == []
    assert problems and all("root:" not in (p.value or "") + p.message for p in problems)
    (problem,) = problems
    assert problem.kind == "security_limit" and "declares entities" in problem.message


def test_entities_in_attributes_are_not_expanded_either() -> None:
    data = b'<!DOCTYPE inventory [<!ENTITY e "P9">]><inventory><product id="&e;"><quantity>1</quantity></product></inventory>'
    _, records, problems = parse(data)
    assert records == []
    assert [p.kind for p in problems] == ["security_limit"]


def test_undeclared_entity_reference_in_text_is_reported_not_expanded() -> None:
    # A DOCTYPE beyond the sniffed head naming an external DTD (never read): the reference stays a reference.
    data = (
        b"<!--" + b"x" * 70_000 + b'--><!DOCTYPE inventory SYSTEM "inventory.dtd">'
        b'<inventory><product id="A"><name>&word;</name><quantity>1</quantity></product></inventory>'
    )
    _, records, problems = parse(data)
    assert records == []
    assert problems[0].field == "name" and "entity reference" in problems[0].message


def test_namespaced_or_foreign_root_stops_before_parsing() -> None:
    body = b"".join(b'<product id="P%d"><quantity>1</quantity></product>' % i for i in range(50_000))
    data = b'<?xml version="1.0"?>\n<inventory xmlns="urn:other">' + body + b"</inventory>"
    stream = io.BytesIO(data)
    items = list(GenericInventoryParser().parse(stream))
    assert stream.tell() <= 70_000  # the head only, not the whole document
    (problem,) = items
    assert problem.kind == "unknown_format"
    assert problem.message.startswith("root element is <inventory> in namespace urn:other, expected <inventory>")


def test_deep_nesting_is_a_security_limit_with_a_plain_message() -> None:
    depth = 100_000
    data = (
        b'<inventory><product id="A"><quantity>1</quantity>'
        + b"<x>" * depth
        + b"</x>" * depth
        + b"</product></inventory>"
    )
    _, records, problems = parse(data)
    assert records == []
    (problem,) = problems
    assert problem.kind == "security_limit"
    assert problem.message.startswith("the document exceeds a safety limit of the XML parser")


def test_external_dtd_is_never_fetched() -> None:
    """A listening socket proves no connection is attempted for the DTD."""
    with listening_socket() as (port, connections):
        data = (
            f'<?xml version="1.0"?><!DOCTYPE inventory SYSTEM "http://127.0.0.1:{port}/evil.dtd">'
            '<inventory><product id="A"><quantity>1</quantity></product></inventory>'
        ).encode()
        _, records, problems = parse(data)
    assert connections == []
    assert [r.product_id for r in records] == ["A"] and problems == []


def test_records_stream_out_before_the_file_is_read_to_the_end() -> None:
    body = b"".join(b'<product id="P%d"><quantity>1</quantity></product>' % i for i in range(200_000))
    data = b"<inventory>" + body + b"</inventory>"
    stream = io.BytesIO(data)
    items = GenericInventoryParser().parse(stream)
    first = next(item for item in items if isinstance(item, Record))
    assert first.product_id == "P0"
    assert stream.tell() < len(data) // 10
    assert sum(isinstance(item, Record) for item in items) == 199_999


def test_a_syntax_error_deep_in_a_file_follows_every_record_before_it() -> None:
    """Records read before the error are the same whatever the parser library buffers: here the error
    sits in the middle of a later 32 KiB feed, after 2,000 products spread over several feeds."""
    products = "".join(f'<product id="P{n}"><quantity>{n}</quantity></product>\n' for n in range(1, 2001))
    data = f"<inventory>\n{products}<product id='BAD'><quantity>1</quantiy></product></inventory>".encode()
    _, records, problems = parse(data)
    assert len(records) == 2000 and records[-1].product_id == "P2000"
    (problem,) = problems
    assert problem.kind == "xml_syntax" and problem.line == 2002
    assert problem.record == 2001 and problem.product_id == "BAD"


def test_an_external_dtd_on_local_disk_is_never_opened(tmp_path: Path) -> None:
    """libxml2 reads a DOCTYPE's external subset when lxml's ID collection is off; ours stays on."""
    dtd = tmp_path / "inventory.dtd"
    dtd.write_text("not a DTD <<< if this is read, the parse fails")
    data = (
        f'<?xml version="1.0"?>\n<!DOCTYPE inventory SYSTEM "{dtd}">\n'
        '<inventory><product id="A"><quantity>1</quantity></product></inventory>'
    ).encode()
    _, records, problems = parse(data)
    assert problems == []
    assert [r.product_id for r in records] == ["A"]
