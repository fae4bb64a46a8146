"""The cXML ProductActivityMessage parser on its own: bytes in, records and located problems out."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from parsers.amazon import AmazonInventoryParser
from parsers.base import Document, Problem, Record
from parsers.cxml import CxmlProductActivityParser, whole_units
from parsers.fields import FieldError
from parsers.generic import GenericInventoryParser
from parsers.xml_stream import sniff
from tests.conftest import fixture_bytes, listening_socket

DETAILS = "/cXML/Message/ProductActivityMessage/ProductActivityDetails"


def parse(data: bytes) -> tuple[list[Document], list[Record], list[Problem]]:
    items = list(CxmlProductActivityParser().parse(io.BytesIO(data)))
    return (
        [i for i in items if isinstance(i, Document)],
        [i for i in items if isinstance(i, Record)],
        [i for i in items if isinstance(i, Problem)],
    )


def activity(
    *details: str,
    header: str = '<ProductActivityHeader messageID="M1" creationDate="2026-11-20T08:00:00-05:00"/>',
    timestamp: str = "2026-11-20T08:05:00-05:00",
    doctype: str = '<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/schemas/cXML/1.2.045/Fulfill.dtd">',
    padding: str = "",
) -> bytes:
    """A small product activity document around the given ``<ProductActivityDetails>`` bodies."""
    body = "".join(f"<ProductActivityDetails>{d}</ProductActivityDetails>\n" for d in details)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n'
        f'<cXML payloadID="p1@example.com" timestamp="{timestamp}" xml:lang="en-US">\n'
        f"<Header><From><Credential domain='NetworkID'><Identity>AN1</Identity></Credential></From>{padding}</Header>\n"
        f"<Message><ProductActivityMessage>{header}\n{body}</ProductActivityMessage></Message></cXML>"
    ).encode()


def item(part: str, quantity: str) -> str:
    return (
        f"<ItemID><SupplierPartID>{part}</SupplierPartID></ItemID><Inventory>"
        f'<UnrestrictedUseQuantity quantity="{quantity}"><UnitOfMeasure>EA</UnitOfMeasure></UnrestrictedUseQuantity>'
        "</Inventory>"
    )


def state(sku: str, name: str | None, quantity: int, availability: str) -> dict[str, object]:
    return {
        "sku": sku,
        "name": name,
        "quantity": quantity,
        "availability": availability,
        "price": None,
        "locations": [],
    }


def test_product_activity_gives_every_product_in_contract_terms() -> None:
    items = list(CxmlProductActivityParser().parse(io.BytesIO(fixture_bytes("good/product-activity.xml", "cxml"))))
    # creationDate 08:00 at -05:00 is 13:00 UTC; the Document comes before any record
    assert items[0] == Document(root="cXML", namespace=None, as_of=datetime(2026, 11, 20, 13, 0, tzinfo=UTC))
    records = items[1:]
    assert all(isinstance(r, Record) for r in records)
    assert [(r.index, r.product_id, r.fields, r.line, r.path) for r in records if isinstance(r, Record)] == [
        (1, "SP-100", state("SP-100", "Hex bolt M8", 120, "in_stock"), 25, f"{DETAILS}[1]"),
        # mixed-content description: the text, entity decoded; 0.000 is zero units
        (2, "SP-101", state("SP-101", "Flat washer M8, zinc & steel", 0, "out_of_stock"), 40, f"{DETAILS}[2]"),
        # a description with only a short name; 1.000 is one unit (the dot is the decimal mark)
        (3, "SP-102", state("SP-102", "Nut M8", 1, "in_stock"), 52, f"{DETAILS}[3]"),
        (4, "SP-103", state("SP-103", None, 2500, "in_stock"), 63, f"{DETAILS}[4]"),
    ]


def test_as_of_falls_back_to_the_root_timestamp() -> None:
    docs, records, problems = parse(activity(item("A", "1"), header='<ProductActivityHeader messageID="M1"/>'))
    assert problems == []
    assert docs == [Document(root="cXML", namespace=None, as_of=datetime(2026, 11, 20, 13, 5, tzinfo=UTC))]
    assert [r.product_id for r in records] == ["A"]


def test_no_time_at_all_leaves_as_of_to_the_core() -> None:
    data = activity(item("A", "1"), header="").replace(b' timestamp="2026-11-20T08:05:00-05:00"', b"")
    docs, _, problems = parse(data)
    assert problems == []
    assert docs == [Document(root="cXML", namespace=None, as_of=None)]


def test_bad_creation_date_is_a_document_problem() -> None:
    docs, records, problems = parse(fixture_bytes("bad/product-activity-bad-date.xml", "cxml"))
    assert docs == [Document(root="cXML", namespace=None, as_of=None)]
    assert [r.product_id for r in records] == ["SP-300"]
    (problem,) = problems
    assert (problem.kind, problem.line, problem.record, problem.field, problem.value, problem.path) == (
        "validation",
        11,
        None,
        "creationDate",
        "20/11/2026 08:00",
        "/cXML/Message/ProductActivityMessage/ProductActivityHeader/@creationDate",
    )
    assert "ISO 8601" in problem.message and "2026-11-20T06:00:00Z" in problem.message


def test_root_timestamp_without_zone_is_a_document_problem() -> None:
    _, _, problems = parse(activity(item("A", "1"), header="", timestamp="2026-11-20T08:05:00"))
    (problem,) = problems
    assert (problem.record, problem.field, problem.path, problem.line) == (None, "timestamp", "/cXML/@timestamp", 3)
    assert "no timezone" in problem.message


def test_bad_values_are_each_located_and_explained() -> None:
    docs, records, problems = parse(fixture_bytes("bad/product-activity-bad-values.xml", "cxml"))
    assert len(docs) == 1
    assert [(r.product_id, r.fields) for r in records] == [("SP-200", state("SP-200", "Good one", 7, "in_stock"))]
    assert all(p.kind == "validation" for p in problems)
    quantity = "/Inventory/UnrestrictedUseQuantity/@quantity"
    assert [(p.line, p.record, p.product_id, p.field, p.value, p.path) for p in problems] == [
        (22, 2, "SP-201", "quantity", "12.5", f"{DETAILS}[2]{quantity}"),
        (26, 3, None, "productId", None, f"{DETAILS}[3]/ItemID/SupplierPartID"),
        (33, 4, "SP-203", "quantity", None, f"{DETAILS}[4]/Inventory"),
        (40, 5, "SP-204", "quantity", "1,200", f"{DETAILS}[5]{quantity}"),
        (46, 6, "SP-205", "quantity", "-2", f"{DETAILS}[6]{quantity}"),
    ]
    messages = [p.message for p in problems]
    assert "fraction of a unit" in messages[0] and "120.0" in messages[0]
    assert "<SupplierPartID>" in messages[1]
    assert "UnrestrictedUseQuantity" in messages[2]
    assert "comma" in messages[3]
    assert "negative" in messages[4]


@pytest.mark.parametrize(
    ("raw", "units"),
    [("120", 120), ("120.0", 120), (" 120.000 ", 120), ("1.000", 1), ("0", 0), ("0.0", 0), ("7.", 7), (".0", 0)],
)
def test_cxml_decimals_with_a_zero_fraction_are_whole_units(raw: str, units: int) -> None:
    assert whole_units(raw) == units


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("1.5", "fraction of a unit"),
        ("0.001", "fraction of a unit"),
        ("1,5", "comma"),
        ("-3", "negative"),
        ("", "empty"),
        ("12 EA", "not a whole number"),
        ("1e3", "not a whole number"),
        ("9" * 19, "too large"),
    ],
)
def test_other_cxml_quantities_are_refused_with_a_reason(raw: str, said: str) -> None:
    with pytest.raises(FieldError, match=said):
        whole_units(raw)


def test_repeated_elements_are_problems() -> None:
    _, records, problems = parse(
        activity(item("A", "1") + '<Inventory><UnrestrictedUseQuantity quantity="2"/></Inventory>')
    )
    assert records == []
    (problem,) = problems
    assert (problem.record, problem.product_id, problem.field, problem.path) == (
        1,
        "A",
        "quantity",
        f"{DETAILS}[1]/Inventory",
    )
    assert "more than once" in problem.message


def test_malformed_xml_names_line_column_and_product() -> None:
    docs, records, problems = parse(fixture_bytes("bad/product-activity-malformed.xml", "cxml"))
    assert len(docs) == 1
    assert [r.product_id for r in records] == ["SP-400"]
    (problem,) = problems
    assert problem.kind == "xml_syntax"
    assert (problem.line, problem.column) == (19, 32)
    assert (problem.record, problem.product_id) == (2, "SP-401")
    assert "ProductActivityDetails" in problem.message


def test_error_after_the_last_product_says_after_which_one() -> None:
    data = activity(item("A", "1")).replace(b"</Message></cXML>", b"</Message><oops></cXML>")
    _, records, problems = parse(data)
    assert [r.product_id for r in records] == ["A"]
    (problem,) = problems
    assert problem.kind == "xml_syntax" and problem.record is None
    assert "after record 1, SupplierPartID A" in problem.message


def test_matches_tells_the_formats_apart() -> None:
    cxml, amazon, generic = CxmlProductActivityParser(), AmazonInventoryParser(), GenericInventoryParser()
    _, activity_head = sniff(io.BytesIO(fixture_bytes("good/product-activity.xml", "cxml")))
    _, order_head = sniff(io.BytesIO(fixture_bytes("bad/order-request.xml", "cxml")))
    _, amazon_head = sniff(io.BytesIO(fixture_bytes("good/inventory-update.xml", "amazon")))
    _, generic_head = sniff(io.BytesIO(fixture_bytes("good/acme-2026-11-20.xml")))
    _, namespaced = sniff(io.BytesIO(b'<cXML xmlns="urn:x"><Message><ProductActivityMessage/></Message></cXML>'))
    heads = (activity_head, order_head, amazon_head, generic_head, namespaced)
    assert [cxml.matches(h) for h in heads] == [True, False, False, False, False]
    assert (amazon.matches(activity_head), generic.matches(activity_head)) == (False, False)
    assert CxmlProductActivityParser.name == "cxml-product-activity" and CxmlProductActivityParser.version == "2"


def test_an_order_request_is_an_unknown_format_found_from_the_head() -> None:
    data = fixture_bytes("bad/order-request.xml", "cxml")
    stream = io.BytesIO(data)
    items = list(CxmlProductActivityParser().parse(stream))
    (problem,) = items
    assert isinstance(problem, Problem)
    assert (problem.kind, problem.value, problem.path) == ("unknown_format", "OrderRequest", "/cXML")
    assert "carries <OrderRequest>, not an inventory report" in problem.message
    assert CxmlProductActivityParser.expects in problem.message


def test_other_payload_past_the_sniffed_head_is_found_while_streaming() -> None:
    padding = "<!--" + "x" * 70_000 + "-->"
    order = (
        '<?xml version="1.0"?><cXML payloadID="p" timestamp="2026-11-20T08:00:00Z">'
        f"<Header>{padding}</Header><Request><OrderRequest><ItemOut quantity='1'/></OrderRequest></Request></cXML>"
    )
    _, records, problems = parse(order.encode())
    assert records == []
    (problem,) = problems
    assert (problem.kind, problem.value) == ("unknown_format", "Request")
    message = order.replace("<Request><OrderRequest><ItemOut quantity='1'/></OrderRequest></Request>", "")
    message = message.replace("</cXML>", "<Message><SubscriptionChangeMessage/></Message></cXML>")
    _, _, problems = parse(message.encode())
    assert [(p.kind, p.value) for p in problems] == [("unknown_format", "SubscriptionChangeMessage")]


def test_a_long_header_does_not_hide_the_product_activity() -> None:
    # The payload starts past the sniffed head, so matches() cannot see it; parsing still works.
    data = activity(item("A", "3"), padding="<!--" + "x" * 70_000 + "-->")
    _, head = sniff(io.BytesIO(data))
    assert not CxmlProductActivityParser().matches(head)
    docs, records, problems = parse(data)
    assert problems == [] and len(docs) == 1
    assert [(r.product_id, r.fields) for r in records] == [("A", state("A", None, 3, "in_stock"))]


@pytest.mark.parametrize(
    ("data", "described"),
    [
        (b'<inventory><product id="A"><quantity>1</quantity></product></inventory>', "<inventory> with no namespace"),
        (
            b'<cXML xmlns="urn:x"><Message><ProductActivityMessage/></Message></cXML>',
            "<cXML> in namespace urn:x",
        ),
    ],
)
def test_other_documents_are_an_unknown_format(data: bytes, described: str) -> None:
    docs, records, problems = parse(data)
    assert docs == [] and records == []
    (problem,) = problems
    assert problem.kind == "unknown_format"
    assert problem.message == f"root element is {described}, expected {CxmlProductActivityParser.expects}"


def test_entity_declarations_are_refused() -> None:
    data = activity(item("&secret;", "1"), doctype='<!DOCTYPE cXML [<!ENTITY secret SYSTEM "file:///etc/passwd">]>')
    docs, records, problems = parse(data)
    assert docs == [] and records == []
    (problem,) = problems
    assert problem.kind == "security_limit" and "declares entities" in problem.message


def test_undeclared_entity_reference_past_the_sniffed_head_is_reported_not_expanded() -> None:
    data = (
        b"<!--"
        + b"x" * 70_000
        + b"-->"
        + activity(
            "<ItemID><SupplierPartID>A</SupplierPartID></ItemID><Description>&word;</Description>"
            '<Inventory><UnrestrictedUseQuantity quantity="1"/></Inventory>',
            doctype='<!DOCTYPE cXML SYSTEM "cXML.dtd">',
        ).removeprefix(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    )
    _, records, problems = parse(data)
    assert records == []
    (problem,) = problems
    assert (problem.kind, problem.field, problem.product_id) == ("security_limit", "name", "A")
    assert "entity reference" in problem.message


def test_external_dtd_is_never_fetched_yet_the_file_parses() -> None:
    """Real cXML names an external DTD; a listening socket proves no connection is attempted for it."""
    with listening_socket() as (port, connections):
        doctype = f'<!DOCTYPE cXML SYSTEM "http://127.0.0.1:{port}/schemas/cXML/1.2.045/Fulfill.dtd">'
        docs, records, problems = parse(activity(item("A", "5"), doctype=doctype))
    assert connections == []
    assert problems == [] and len(docs) == 1
    assert [(r.product_id, r.fields) for r in records] == [("A", state("A", None, 5, "in_stock"))]


def test_external_dtd_with_a_public_id_is_not_fetched_either() -> None:
    with listening_socket() as (port, connections):
        doctype = f'<!DOCTYPE cXML PUBLIC "-//cXML//DTD Fulfill 1.2.045//EN" "http://127.0.0.1:{port}/Fulfill.dtd">'
        _, records, problems = parse(activity(item("A", "5"), doctype=doctype))
    assert connections == []
    assert problems == [] and [r.product_id for r in records] == ["A"]


def test_records_stream_out_before_the_file_is_read_to_the_end() -> None:
    data = activity(*(item(f"SP-{n}", str(n % 7)) for n in range(50_000)))
    stream = io.BytesIO(data)
    items = CxmlProductActivityParser().parse(stream)
    first = next(i for i in items if isinstance(i, Record))
    assert (first.index, first.product_id) == (1, "SP-0")
    assert stream.tell() < len(data) // 10
    rest = [i for i in items if isinstance(i, Record)]
    assert len(rest) == 49_999 and rest[-1].product_id == "SP-49999"
