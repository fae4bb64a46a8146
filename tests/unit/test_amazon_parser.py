"""The Amazon MWS inventory feed parser on its own: bytes in, records and located problems out."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from typing import Literal

import pytest

from parsers.amazon import AmazonInventoryParser
from parsers.base import Document, LimitExceeded, Problem, Record
from parsers.cxml import CxmlProductActivityParser
from parsers.generic import GenericInventoryParser
from parsers.limits import Limits
from parsers.xml_stream import sniff
from tests.conftest import fixture_bytes, listening_socket

HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    b'xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">\n'
    b"<Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M1</MerchantIdentifier></Header>\n"
)


def parse(data: bytes, limits: Limits | None = None) -> tuple[list[Document], list[Record], list[Problem]]:
    parser = AmazonInventoryParser()
    items = list(parser.parse(io.BytesIO(data)) if limits is None else parser.parse(io.BytesIO(data), limits))
    return (
        [i for i in items if isinstance(i, Document)],
        [i for i in items if isinstance(i, Record)],
        [i for i in items if isinstance(i, Problem)],
    )


def feed(*messages: str, message_type: str = "Inventory", purge: str | None = None) -> bytes:
    """A small feed: the envelope head, MessageType, optional PurgeAndReplace and the given messages."""
    body = f"<MessageType>{message_type}</MessageType>\n"
    if purge is not None:
        body += f"<PurgeAndReplace>{purge}</PurgeAndReplace>\n"
    body += "".join(f"<Message><MessageID>{n}</MessageID>{m}</Message>\n" for n, m in enumerate(messages, 1))
    return HEAD + body.encode() + b"</AmazonEnvelope>"


def state(sku: str, quantity: int | None, availability: str) -> dict[str, object]:
    return {
        "sku": sku,
        "name": None,
        "quantity": quantity,
        "availability": availability,
        "price": None,
        "locations": [],
    }


def test_update_feed_gives_states_and_tombstones_in_contract_terms() -> None:
    items = list(AmazonInventoryParser().parse(io.BytesIO(fixture_bytes("good/inventory-update.xml", "amazon"))))
    assert isinstance(items[0], Document)  # before any record
    assert items[0] == Document(root="AmazonEnvelope", namespace=None, snapshot="delta")
    records = items[1:]
    assert all(isinstance(r, Record) for r in records)
    assert [(r.index, r.product_id, r.fields, r.line, r.path) for r in records if isinstance(r, Record)] == [
        (1, "ABC-123", state("ABC-123", 10, "in_stock"), 9, "/AmazonEnvelope/Message[1]"),
        (2, "ABC-124", state("ABC-124", 0, "out_of_stock"), 18, "/AmazonEnvelope/Message[2]"),  # PartialUpdate
        (3, "ABC-125", None, 27, "/AmazonEnvelope/Message[3]"),  # Delete → tombstone
        (4, "ABC-126", state("ABC-126", None, "in_stock"), 34, "/AmazonEnvelope/Message[4]"),  # Available, no count
        (5, "ABC-127", state("ABC-127", None, "out_of_stock"), 43, "/AmazonEnvelope/Message[5]"),  # no OperationType
        (6, "ABC-128", state("ABC-128", 250, "in_stock"), 50, "/AmazonEnvelope/Message[6]"),
    ]
    assert isinstance(records[2], Record) and records[2].deleted


def test_purge_and_replace_true_is_a_full_snapshot() -> None:
    docs, records, problems = parse(fixture_bytes("good/inventory-purge.xml", "amazon"))
    assert problems == []
    assert docs == [Document(root="AmazonEnvelope", namespace=None, snapshot="full")]
    assert [(r.product_id, r.fields) for r in records] == [
        ("ABC-123", state("ABC-123", 8, "in_stock")),
        ("ABC-128", state("ABC-128", 3, "in_stock")),
    ]


@pytest.mark.parametrize(
    ("purge", "snapshot"), [(None, None), ("true", "full"), ("false", "delta"), (" TRUE ", "full"), ("0", "delta")]
)
def test_snapshot_follows_purge_and_replace(purge: str | None, snapshot: Literal["full", "delta"] | None) -> None:
    docs, records, problems = parse(feed("<Inventory><SKU>A</SKU><Quantity>1</Quantity></Inventory>", purge=purge))
    assert problems == []
    assert docs == [Document(root="AmazonEnvelope", namespace=None, snapshot=snapshot)]
    assert [r.product_id for r in records] == ["A"]


def test_bad_values_are_each_located_and_explained() -> None:
    docs, records, problems = parse(fixture_bytes("bad/inventory-bad-values.xml", "amazon"))
    assert docs == [Document(root="AmazonEnvelope", namespace=None, snapshot=None)]
    assert [r.product_id for r in records] == ["GOOD-1"]
    assert all(p.kind == "validation" for p in problems)
    located = [(p.line, p.record, p.product_id, p.field, p.value, p.path) for p in problems]
    message = "/AmazonEnvelope/Message"
    assert located == [
        (21, 2, "BAD-2", "quantity", "1,200", f"{message}[2]/Inventory/Quantity"),
        (26, 3, "BAD-3", "OperationType", "Replace", f"{message}[3]/OperationType"),
        (38, 4, "BAD-4", "availability", "true", f"{message}[4]/Inventory/Available"),
        (45, 5, None, "productId", None, f"{message}[5]/Inventory/SKU"),
        (52, 6, "BAD-6", "quantity", None, f"{message}[6]/Inventory"),
        (60, 7, "BAD-7", "Inventory", "Price", f"{message}[7]/Price"),
        (70, 8, "BAD-8", "availability", "maybe", f"{message}[8]/Inventory/Available"),
        (78, 9, "BAD-9", "quantity", "-3", f"{message}[9]/Inventory/Quantity"),
    ]
    by_record = {p.record: p.message for p in problems}
    assert "ambiguous" in by_record[2] and "1234" in by_record[2]
    assert "Update, PartialUpdate, Delete" in by_record[3]
    assert "both <Quantity> and <Available>" in by_record[4] and "ambiguous" in by_record[4]
    assert "non-empty SKU" in by_record[5]
    assert "<Quantity>" in by_record[6] and "<Available>true</Available>" in by_record[6]
    assert "exactly one <Inventory>" in by_record[7]
    assert "true (in stock) or false" in by_record[8]
    assert "negative" in by_record[9]


def test_a_price_feed_is_refused_as_a_whole() -> None:
    docs, records, problems = parse(fixture_bytes("bad/price-feed.xml", "amazon"))
    assert records == []
    assert docs == [Document(root="AmazonEnvelope", namespace=None, snapshot=None)]
    # document-level (record None: the whole file is refused), and no per-message noise
    assert [(p.kind, p.line, p.record, p.field, p.value, p.path) for p in problems] == [
        ("validation", 7, None, "MessageType", "Price", "/AmazonEnvelope/MessageType"),
        ("validation", 8, None, "PurgeAndReplace", "yes", "/AmazonEnvelope/PurgeAndReplace"),
    ]
    assert "only Inventory feeds are" in problems[0].message and "'Price'" in problems[0].message
    assert "must be true" in problems[1].message


def test_missing_message_type_is_a_document_problem() -> None:
    data = HEAD + b"<Message><MessageID>1</MessageID><Inventory><SKU>A</SKU><Quantity>1</Quantity></Inventory>"
    docs, records, problems = parse(data + b"</Message></AmazonEnvelope>")
    assert [r.product_id for r in records] == ["A"]
    (problem,) = problems
    assert (problem.kind, problem.record, problem.field, problem.line) == ("validation", None, "MessageType", 2)
    assert "<MessageType>Inventory</MessageType>" in problem.message
    assert len(docs) == 1


def test_header_elements_after_the_first_message_are_document_problems() -> None:
    message = "<Message><MessageID>1</MessageID><Inventory><SKU>A</SKU><Quantity>1</Quantity></Inventory></Message>"
    data = HEAD + f"<MessageType>Inventory</MessageType>{message}<PurgeAndReplace>true</PurgeAndReplace>".encode()
    docs, records, problems = parse(data + b"</AmazonEnvelope>")
    assert docs == [Document(root="AmazonEnvelope", namespace=None, snapshot=None)]
    assert [r.product_id for r in records] == ["A"]
    (problem,) = problems
    assert (problem.record, problem.field, problem.value) == (None, "PurgeAndReplace", "true")
    assert "after the first <Message>" in problem.message


def test_envelope_without_messages_still_says_what_it_is() -> None:
    docs, records, problems = parse(feed(purge="true"))
    assert docs == [Document(root="AmazonEnvelope", namespace=None, snapshot="full")]
    assert records == [] and problems == []


def test_delete_needs_only_the_sku_but_needs_it() -> None:
    _, records, problems = parse(
        feed(
            "<OperationType>Delete</OperationType><Inventory><SKU>A</SKU><Quantity>3</Quantity></Inventory>",
            "<OperationType>Delete</OperationType><Inventory><FulfillmentLatency>1</FulfillmentLatency></Inventory>",
            "<OperationType>Delete</OperationType>",
        )
    )
    assert [(r.product_id, r.fields) for r in records] == [("A", None)]
    assert [(p.record, p.field) for p in problems] == [(2, "productId"), (3, "Inventory")]
    assert "has no <Inventory>" in problems[1].message


def test_repeated_fields_are_problems() -> None:
    _, records, problems = parse(
        feed("<Inventory><SKU>A</SKU><Quantity>1</Quantity><Quantity>2</Quantity></Inventory>"),
    )
    assert records == []
    (problem,) = problems
    assert (problem.field, problem.product_id, problem.path) == (
        "quantity",
        "A",
        "/AmazonEnvelope/Message[1]/Inventory/Quantity",
    )
    assert "more than once" in problem.message


def test_malformed_xml_names_line_column_and_message() -> None:
    docs, records, problems = parse(fixture_bytes("bad/inventory-malformed.xml", "amazon"))
    assert len(docs) == 1
    assert [r.product_id for r in records] == ["ABC-123"]
    (problem,) = problems
    assert problem.kind == "xml_syntax"
    assert (problem.line, problem.column) == (19, 28)
    assert (problem.record, problem.product_id) == (2, "ABC-124")
    assert "Quantiy" in problem.message


def test_error_between_messages_says_after_which_one() -> None:
    data = feed("<Inventory><SKU>A</SKU><Quantity>1</Quantity></Inventory>").replace(
        b"</AmazonEnvelope>", b"<oops></AmazonEnvelope>"
    )
    _, records, problems = parse(data)
    assert [r.product_id for r in records] == ["A"]
    (problem,) = problems
    assert problem.kind == "xml_syntax" and problem.record is None
    assert "after message 1, SKU A" in problem.message


def test_matches_tells_the_formats_apart() -> None:
    amazon, cxml, generic = AmazonInventoryParser(), CxmlProductActivityParser(), GenericInventoryParser()
    _, amazon_head = sniff(io.BytesIO(fixture_bytes("good/inventory-update.xml", "amazon")))
    _, cxml_head = sniff(io.BytesIO(fixture_bytes("good/product-activity.xml", "cxml")))
    _, generic_head = sniff(io.BytesIO(fixture_bytes("good/acme-2026-11-20.xml")))
    _, namespaced = sniff(io.BytesIO(b'<AmazonEnvelope xmlns="urn:amazon"><Message/></AmazonEnvelope>'))
    assert [amazon.matches(h) for h in (amazon_head, cxml_head, generic_head, namespaced)] == [
        True,
        False,
        False,
        False,
    ]
    assert (cxml.matches(amazon_head), generic.matches(amazon_head)) == (False, False)
    assert AmazonInventoryParser.name == "amazon-inventory" and AmazonInventoryParser.version == "1"


@pytest.mark.parametrize(
    ("data", "described"),
    [
        (b'<inventory><product id="A"><quantity>1</quantity></product></inventory>', "<inventory> with no namespace"),
        (b'<AmazonEnvelope xmlns="urn:x"><Message/></AmazonEnvelope>', "<AmazonEnvelope> in namespace urn:x"),
    ],
)
def test_other_documents_are_an_unknown_format(data: bytes, described: str) -> None:
    docs, records, problems = parse(data)
    assert docs == [] and records == []
    (problem,) = problems
    assert problem.kind == "unknown_format"
    assert problem.message == f"root element is {described}, expected {AmazonInventoryParser.expects}"


def test_unreadable_head_still_finds_the_foreign_root() -> None:
    # UTF-16 defeats the sniffer; the parser itself still notices the root is not an envelope.
    _, records, problems = parse('<?xml version="1.0" encoding="UTF-16"?><catalog/>'.encode("utf-16"))
    assert records == []
    (problem,) = problems
    assert problem.kind == "unknown_format" and "<catalog>" in problem.message


def test_entity_declarations_are_refused() -> None:
    data = b'<?xml version="1.0"?><!DOCTYPE AmazonEnvelope [<!ENTITY secret SYSTEM "file:///etc/passwd">]>' + feed(
        "<Inventory><SKU>&secret;</SKU><Quantity>1</Quantity></Inventory>"
    ).removeprefix(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    docs, records, problems = parse(data)
    assert docs == [] and records == []
    (problem,) = problems
    assert problem.kind == "security_limit" and "declares entities" in problem.message


def test_undeclared_entity_reference_past_the_sniffed_head_is_reported_not_expanded() -> None:
    data = (
        b"<!--" + b"x" * 70_000 + b'--><!DOCTYPE AmazonEnvelope SYSTEM "AmazonEnvelope.dtd">'
        b"<AmazonEnvelope><MessageType>Inventory</MessageType><Message><MessageID>1</MessageID>"
        b"<Inventory><SKU>A&word;</SKU><Quantity>1</Quantity></Inventory></Message></AmazonEnvelope>"
    )
    _, records, problems = parse(data)
    assert records == []
    assert problems[0].kind == "security_limit" and problems[0].field == "productId"
    assert "entity reference" in problems[0].message
    assert all("expanded" not in (p.product_id or "") for p in problems)


def test_external_dtd_is_never_fetched() -> None:
    """A listening socket proves no connection is attempted for the DTD."""
    with listening_socket() as (port, connections):
        data = feed("<Inventory><SKU>A</SKU><Quantity>1</Quantity></Inventory>").replace(
            b"?>\n", f'?>\n<!DOCTYPE AmazonEnvelope SYSTEM "http://127.0.0.1:{port}/amzn-envelope.dtd">\n'.encode(), 1
        )
        _, records, problems = parse(data)
    assert connections == []
    assert [r.product_id for r in records] == ["A"] and problems == []


def test_huge_text_is_refused_by_the_text_limit() -> None:
    data = feed(f"<Inventory><SKU>{'A' * 5_000}</SKU><Quantity>1</Quantity></Inventory>")
    with pytest.raises(LimitExceeded) as raised:
        parse(data, Limits(max_text_chars=1_000))
    problem = raised.value.problem()
    assert (problem.kind, problem.field, problem.record, problem.path) == (
        "security_limit",
        "max_text_chars",
        1,
        "/AmazonEnvelope/Message[1]/Inventory/SKU",
    )


def test_a_message_larger_than_the_record_window_is_refused() -> None:
    padding = "<FulfillmentLatency>2</FulfillmentLatency>" * 5_000
    data = feed(f"<Inventory><SKU>A</SKU><Quantity>1</Quantity>{padding}</Inventory>")
    with pytest.raises(LimitExceeded) as raised:
        parse(data, Limits(max_record_bytes=100_000))
    assert raised.value.limit == "max_record_bytes"


class GeneratedFeed(io.RawIOBase):
    """An Amazon feed produced on demand: the test never holds the whole document in memory."""

    def __init__(self, messages: int) -> None:
        self._chunks = self._generate(messages)
        self._pending = b""

    @staticmethod
    def _generate(messages: int) -> Iterator[bytes]:
        yield HEAD + b"<MessageType>Inventory</MessageType><PurgeAndReplace>true</PurgeAndReplace>\n"
        batch = []
        for n in range(1, messages + 1):
            operation = "Delete" if n % 1000 == 0 else "Update"
            batch.append(
                b"<Message><MessageID>%d</MessageID><OperationType>%s</OperationType><Inventory>"
                b"<SKU>SKU-%07d</SKU><Quantity>%d</Quantity><FulfillmentLatency>2</FulfillmentLatency>"
                b"</Inventory></Message>\n" % (n, operation.encode(), n, n % 50)
            )
            if len(batch) == 500:
                yield b"".join(batch)
                batch = []
        yield b"".join(batch) + b"</AmazonEnvelope>\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        memoryview(buffer)[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def test_two_hundred_thousand_messages_stream_in_flat_memory() -> None:
    stream = io.BufferedReader(GeneratedFeed(200_000))
    tracemalloc.start()
    try:
        documents = states = tombstones = problems = 0
        last: Record | None = None
        for item in AmazonInventoryParser().parse(stream):
            if isinstance(item, Record):
                last = item
                if item.deleted:
                    tombstones += 1
                else:
                    states += 1
            elif isinstance(item, Document):
                documents += 1
            else:
                problems += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (documents, states, tombstones, problems) == (1, 199_800, 200, 0)
    assert last is not None and (last.index, last.product_id) == (200_000, "SKU-0200000")
    assert peak < 30 * 1024 * 1024, f"peak traced memory {peak / 1024 / 1024:.1f} MB"
