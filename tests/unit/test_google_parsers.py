"""The two Google RSS parsers on their own: bytes in, records and located problems out."""

from __future__ import annotations

import io
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropgate.adapters.row_spill import SqliteRowSpill
from parsers.base import Document, LimitExceeded, Problem, Record
from parsers.generic import GenericInventoryParser
from parsers.google.local import GoogleLocalInventoryParser
from parsers.google.merchant import GoogleMerchantParser
from parsers.limits import Limits
from parsers.xml_stream import sniff
from tests.conftest import fixture_bytes

Parser = GoogleMerchantParser | GoogleLocalInventoryParser
HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>\n'
TAIL = b"</channel></rss>\n"


def parse(
    parser: Parser, data: bytes, limits: Limits | None = None
) -> tuple[list[Document], list[Record], list[Problem]]:
    items = list(parser.parse(io.BytesIO(data), limits) if limits else parser.parse(io.BytesIO(data)))
    return (
        [i for i in items if isinstance(i, Document)],
        [i for i in items if isinstance(i, Record)],
        [i for i in items if isinstance(i, Problem)],
    )


def merchant(data: bytes) -> tuple[list[Document], list[Record], list[Problem]]:
    return parse(GoogleMerchantParser(), data)


def local(data: bytes) -> tuple[list[Document], list[Record], list[Problem]]:
    return parse(GoogleLocalInventoryParser(SqliteRowSpill), data)


def store_item(product: str, store: str, quantity: str, *more: str) -> bytes:
    extra = "".join(more)
    return (
        f"<item><g:store_code>{store}</g:store_code><g:id>{product}</g:id>"
        f"<g:quantity>{quantity}</g:quantity>{extra}</item>\n"
    ).encode()


def one_item(parser: Parser, *more: str, product: str = "SKU-1") -> bytes:
    """A valid item for ``parser`` with ``more`` appended."""
    if isinstance(parser, GoogleLocalInventoryParser):
        return store_item(product, "S1", "1", *more)
    extra = "".join(more)
    return f"<item><g:id>{product}</g:id><g:availability>in_stock</g:availability>{extra}</item>\n".encode()


def located(problems: list[Problem]) -> list[tuple[int | None, int | None, str | None, str | None, str | None]]:
    return [(p.line, p.record, p.product_id, p.field, p.value) for p in problems]


# -- Merchant Center ---------------------------------------------------------------------------


def test_merchant_feed_gives_every_product_in_contract_terms() -> None:
    docs, records, problems = merchant(fixture_bytes("good/merchant-feed.xml", "google-merchant"))
    assert problems == []
    assert docs == [Document(root="rss", namespace=None)]
    assert [(r.index, r.product_id, r.line, r.path) for r in records] == [
        (1, "SKU-10042", 7, "/rss/channel/item[1]"),
        (2, "SKU-10043", 24, "/rss/channel/item[2]"),
        (3, "SKU-10044", 34, "/rss/channel/item[3]"),
        (4, "SKU-10045", 44, "/rss/channel/item[4]"),
        (5, "SKU-10046", 53, "/rss/channel/item[5]"),
    ]
    by_id = {r.product_id: r.fields for r in records}
    # g:mpn is the sku; the g:price inside g:shipping is not the product's price
    assert by_id["SKU-10042"] == {
        "sku": "NW-TB2-GRN",
        "name": "Trailblazer 2-Person Tent",
        "quantity": None,
        "availability": "in_stock",
        "price": {"amount": "249.00", "currency": "USD"},
        "locations": [],
    }
    # id trimmed; legacy "out of stock" normalised; amount kept as written
    assert by_id["SKU-10043"] == {
        "sku": None,
        "name": "Summit Down Sleeping Bag",
        "quantity": None,
        "availability": "out_of_stock",
        "price": {"amount": "189.5", "currency": "USD"},
        "locations": [],
    }
    # g:title wins over the RSS title; currency upper-cased
    assert by_id["SKU-10044"] == {
        "sku": None,
        "name": "Northwind Headlamp 400 Lumen",
        "quantity": None,
        "availability": "preorder",
        "price": {"amount": "39.99", "currency": "USD"},
        "locations": [],
    }
    assert by_id["SKU-10045"] is not None
    assert by_id["SKU-10045"]["availability"] == "backorder"
    assert by_id["SKU-10045"]["price"] == {"amount": "59.00", "currency": "EUR"}
    assert by_id["SKU-10046"] == {
        "sku": None,
        "name": "Gift card",
        "quantity": None,
        "availability": "in_stock",
        "price": None,
        "locations": [],
    }


def test_merchant_bad_values_are_each_located_and_explained() -> None:
    _, records, problems = merchant(fixture_bytes("bad/merchant-bad-values.xml", "google-merchant"))
    # SKU-20003's 'available for order' is Google's older spelling of a backorder (issue 20)
    assert [r.product_id for r in records] == ["SKU-20001", "SKU-20003"]
    assert records[1].fields is not None and records[1].fields["availability"] == "backorder"
    assert all(p.kind == "validation" for p in problems)
    assert located(problems) == [
        (17, 2, "SKU-20002", "price", "6.50"),
        (25, 4, None, "productId", None),
        (30, 5, "SKU-20005", "availability", None),
        (33, 5, "SKU-20005", "price", "44,90 EUR"),
    ]
    assert [p.path for p in problems] == [
        "/rss/channel/item[2]/g:price",
        "/rss/channel/item[4]/g:id",
        "/rss/channel/item[5]/g:availability",
        "/rss/channel/item[5]/g:price",
    ]
    no_currency, no_id, no_availability, comma = (p.message for p in problems)
    assert "has no currency" in no_currency and "15.00 USD" in no_currency
    assert "<g:id>SKU-10042</g:id>" in no_id
    assert "Google requires" in no_availability
    assert "comma" in comma and "15.00 USD" in comma


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$15.00", "shape 15.00 USD"),
        ("15.00 US dollars", "shape 15.00 USD"),
        ("15.00 dollars", "'dollars' is not an ISO 4217 currency code"),
        ("EURO 15.00", "'EURO' is not an ISO 4217 currency code"),
        ("USD 16,50", "'16,50' uses a comma"),
        ("USD", "shape 15.00 USD"),
        ("", "shape 15.00 USD"),
        ("-3.00 USD", "'-3.00' is not a decimal amount"),
    ],
)
def test_merchant_price_in_another_shape_says_which_shape_is_expected(raw: str, expected: str) -> None:
    data = HEAD + one_item(GoogleMerchantParser(), f"<g:price>{raw}</g:price>") + TAIL
    _, records, problems = merchant(data)
    assert records == []
    (problem,) = problems
    assert (problem.line, problem.record, problem.field, problem.value) == (3, 1, "price", raw)
    assert expected in problem.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("IN STOCK", "in_stock"), (" out_of_stock ", "out_of_stock"), ("pre order", None), ("discontinued", None)],
)
def test_merchant_availability_forgives_case_and_spaces_only(raw: str, expected: str | None) -> None:
    data = HEAD + f"<item><g:id>SKU-1</g:id><g:availability>{raw}</g:availability></item>".encode() + TAIL
    _, records, problems = merchant(data)
    if expected is None:
        assert records == [] and [p.field for p in problems] == ["availability"]
    else:
        assert problems == [] and records[0].fields is not None
        assert records[0].fields["availability"] == expected


def test_merchant_repeated_field_is_a_problem() -> None:
    data = HEAD + b"<item><g:id>SKU-1</g:id><g:availability>in_stock</g:availability>\n<g:id>SKU-2</g:id></item>" + TAIL
    _, records, problems = merchant(data)
    assert records == []
    assert located(problems) == [(4, 1, "SKU-1", "productId", "SKU-2")]
    assert "appears more than once" in problems[0].message


def test_merchant_malformed_xml_names_line_column_and_product() -> None:
    _, records, problems = merchant(fixture_bytes("bad/merchant-malformed.xml", "google-merchant"))
    assert [r.product_id for r in records] == ["SKU-30001"]
    (problem,) = problems
    assert problem.kind == "xml_syntax"
    assert (problem.line, problem.record, problem.product_id) == (12, 2, "SKU-30002")
    assert problem.column is not None
    assert "availabilty" in problem.message


def test_error_between_items_says_after_which_one() -> None:
    data = HEAD + b"<item><g:id>SKU-1</g:id><g:availability>in_stock</g:availability></item>\n<oops></channel></rss>"
    _, records, problems = merchant(data)
    assert [r.product_id for r in records] == ["SKU-1"]
    (problem,) = problems
    assert problem.kind == "xml_syntax" and problem.record is None
    assert "after item 1, productId SKU-1" in problem.message


def test_a_store_code_past_the_sniffed_head_is_a_product_attribute_not_a_format() -> None:
    padding = b"<item><g:id>SKU-0</g:id><g:availability>in_stock</g:availability></item>\n" * 1_000
    vehicle = (
        b"<item><g:store_code>DEALER-1</g:store_code><g:id>VEH-1</g:id><g:title>2024 Roadster</g:title>"
        b"<g:availability>in_stock</g:availability><g:price>27995.00 USD</g:price></item>\n"
    )
    data = HEAD + padding + vehicle + TAIL
    assert len(HEAD + padding) > 64 * 1024
    _, records, problems = merchant(data)
    assert problems == []
    assert len(records) == 1_001
    assert (records[-1].product_id, records[-1].path, records[-1].fields) == (
        "VEH-1",
        "/rss/channel/item[1001]",
        {
            "sku": None,
            "name": "2024 Roadster",
            "quantity": None,
            "availability": "in_stock",
            "price": {"amount": "27995.00", "currency": "USD"},
            "locations": [],
        },
    )


# -- telling the formats apart ---------------------------------------------------------------


def test_matches_tells_merchant_local_and_generic_apart() -> None:
    samples = {
        "merchant": fixture_bytes("good/merchant-feed.xml", "google-merchant"),
        "local": fixture_bytes("good/local-inventory.xml", "google-local"),
        "generic": fixture_bytes("good/acme-2026-11-20.xml"),
        "atom": fixture_bytes("good/merchant-atom-feed.xml", "google-merchant"),
        "vehicles": fixture_bytes("good/vehicle-ads-feed.xml", "google-merchant"),
        "local, no quantity": fixture_bytes("good/local-availability-only.xml", "google-local"),
        "plain rss": b'<rss version="2.0"><channel><item><title>news</title></item></channel></rss>',
        "plain atom": b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>news</title></entry></feed>',
        "namespaced rss": HEAD.replace(b"<rss ", b'<rss xmlns="urn:other" ') + TAIL,
    }
    parsers = {
        "merchant": GoogleMerchantParser(),
        "local": GoogleLocalInventoryParser(SqliteRowSpill),
        "generic": GenericInventoryParser(),
    }
    matched = {
        sample: [name for name, parser in parsers.items() if parser.matches(sniff(io.BytesIO(data))[1])]
        for sample, data in samples.items()
    }
    assert matched == {
        "merchant": ["merchant"],
        "local": ["local"],
        "generic": ["generic"],
        "atom": ["merchant"],
        "vehicles": ["merchant"],
        "local, no quantity": ["local"],
        "plain rss": [],
        "plain atom": [],
        "namespaced rss": [],
    }


@pytest.mark.parametrize(
    ("parser", "data", "expected"),
    [
        (
            GoogleMerchantParser(),
            fixture_bytes("good/local-inventory.xml", "google-local"),
            "this is a Google local inventory feed, not a Merchant Center product feed: its first item has "
            "<g:store_code> and none of a product's title, link or image_link; configure the partner's format "
            "as google-local-inventory",
        ),
        (
            GoogleLocalInventoryParser(SqliteRowSpill),
            fixture_bytes("good/merchant-feed.xml", "google-merchant"),
            "this is a Google Merchant Center product feed, not a local inventory feed",
        ),
        (
            GoogleLocalInventoryParser(SqliteRowSpill),
            fixture_bytes("good/vehicle-ads-feed.xml", "google-merchant"),
            "configure the partner's format as google-merchant",
        ),
        (
            GoogleLocalInventoryParser(SqliteRowSpill),
            fixture_bytes("good/merchant-atom-feed.xml", "google-merchant"),
            "this is a Google Merchant Center product feed in Atom 1.0; local inventory feeds are RSS 2.0",
        ),
        (
            GoogleLocalInventoryParser(SqliteRowSpill),
            HEAD + TAIL,
            "no item with <g:store_code> in the first 64 KiB: this is no Google local inventory feed",
        ),
        (GoogleMerchantParser(), fixture_bytes("good/acme-2026-11-20.xml"), "root element is <inventory>"),
    ],
)
def test_a_file_in_another_format_is_unknown_format_before_parsing(parser: Parser, data: bytes, expected: str) -> None:
    docs, records, problems = parse(parser, data)
    assert docs == [] and records == []
    (problem,) = problems
    assert problem.kind == "unknown_format" and expected in problem.message
    # A Google feed of the other kind is never told it lacks the g namespace it declares.
    assert ("declaring xmlns:g" in problem.message) == (b"base.google.com" not in data)


def test_a_merchant_refusal_lists_rss_and_atom() -> None:
    plain_atom = b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>1</id></entry></feed>'
    (problem,) = merchant(plain_atom)[2]
    assert problem.kind == "unknown_format"
    assert problem.message == (
        "root element is <feed> in namespace http://www.w3.org/2005/Atom, expected <rss> (RSS 2.0) or <feed> in "
        'namespace http://www.w3.org/2005/Atom (Atom 1.0), declaring xmlns:g="http://base.google.com/ns/1.0" '
        "(Google Merchant Center product feed)"
    )


def test_foreign_root_not_seen_by_the_sniffer_is_unknown_format() -> None:
    data = b"<!--" + b"x" * 70_000 + b"--><catalog><channel><item><g:id>1</g:id></item></channel></catalog>"
    docs, records, problems = local(data.replace(b"<catalog>", b'<catalog xmlns:g="http://base.google.com/ns/1.0">'))
    assert docs == [] and records == []
    (problem,) = problems
    assert problem.kind == "unknown_format" and "<catalog>" in problem.message


# -- local inventory ---------------------------------------------------------------------------


def test_local_inventory_groups_spread_out_stores_into_one_record_per_product() -> None:
    docs, records, problems = local(fixture_bytes("good/local-inventory.xml", "google-local"))
    assert problems == []
    assert docs == [Document(root="rss", namespace=None)]
    # productId order; index/line/path are the product's first item
    assert [(r.product_id, r.index, r.line, r.path) for r in records] == [
        ("SKU-10042", 1, 7, "/rss/channel/item[1]"),
        ("SKU-10043", 2, 16, "/rss/channel/item[2]"),
        ("SKU-10044", 3, 22, "/rss/channel/item[3]"),
        ("SKU-10045", 5, 35, "/rss/channel/item[5]"),
        ("SKU-10046", 9, 59, "/rss/channel/item[9]"),
    ]
    by_id = {r.product_id: r.fields for r in records}
    # items 1, 4 and 8 (the last by legacy g:itemid); the lowest store price
    assert by_id["SKU-10042"] == {
        "sku": None,
        "name": None,
        "quantity": 9,
        "availability": "in_stock",
        "price": {"amount": "239.00", "currency": "USD"},
        "locations": [
            {"locationId": "STORE-001", "quantity": 2},
            {"locationId": "STORE-003", "quantity": 4},
            {"locationId": "STORE-014", "quantity": 3},
        ],
    }
    # no availability on item 6: derived from its quantity 0
    assert by_id["SKU-10043"] == {
        "sku": None,
        "name": None,
        "quantity": 0,
        "availability": "out_of_stock",
        "price": None,
        "locations": [{"locationId": "STORE-001", "quantity": 0}, {"locationId": "STORE-014", "quantity": 0}],
    }
    # limited_availability (both spellings) counts as in stock
    assert by_id["SKU-10044"] == {
        "sku": None,
        "name": None,
        "quantity": 6,
        "availability": "in_stock",
        "price": {"amount": "39.99", "currency": "USD"},
        "locations": [{"locationId": "STORE-001", "quantity": 5}, {"locationId": "STORE-003", "quantity": 1}],
    }
    # on_display_to_order is a backorder, which beats out_of_stock
    assert by_id["SKU-10045"] is not None
    assert by_id["SKU-10045"]["availability"] == "backorder"
    assert by_id["SKU-10045"]["quantity"] == 0
    assert by_id["SKU-10046"] is not None
    assert by_id["SKU-10046"]["locations"] == [{"locationId": "STORE-001", "quantity": 7}]


def test_local_bad_values_are_located_and_drop_their_whole_product() -> None:
    _, records, problems = local(fixture_bytes("bad/local-bad-values.xml", "google-local"))
    assert [r.product_id for r in records] == ["SKU-50006"]
    assert records[0].fields is not None
    assert records[0].fields["price"] == {"amount": "12", "currency": "USD"}
    assert all(p.kind == "validation" for p in problems)
    assert located(problems) == [
        (28, 4, "SKU-50004", "availability", "in_store_only"),
        (33, 5, "SKU-50001", "locations.quantity", "many"),
        (46, 8, "SKU-50005", "locations.locationId", None),
        (50, 9, None, "productId", None),
        # the ones that need the whole product come with the grouping, in productId order
        (39, 6, "SKU-50002", "price", "4.50 EUR"),
        (42, 7, "SKU-50003", "locations.locationId", "STORE-001"),
    ]
    assert [p.path for p in problems] == [
        "/rss/channel/item[4]/g:availability",
        "/rss/channel/item[5]/g:quantity",
        "/rss/channel/item[8]/g:store_code",
        "/rss/channel/item[9]/g:id",
        "/rss/channel/item[6]/g:price",
        "/rss/channel/item[7]/g:store_code",
    ]
    assert "limited_availability, on_display_to_order" in problems[0].message
    assert "whole number" in problems[1].message
    assert "earlier stores are priced in USD" in problems[4].message
    assert "appears more than once" in problems[5].message and "first in item 3" in problems[5].message


def test_duplicate_store_is_a_problem_on_the_later_item() -> None:
    data = (
        HEAD
        + store_item("SKU-1", "STORE-A", "1")
        + store_item("SKU-2", "STORE-A", "5")
        + store_item("SKU-1", "STORE-B", "2")
        + store_item("SKU-1", "STORE-A", "1")
        + TAIL
    )
    _, records, problems = local(data)
    assert [r.product_id for r in records] == ["SKU-2"]
    (problem,) = problems
    assert (problem.line, problem.record, problem.product_id, problem.path, problem.field, problem.value) == (
        6,
        4,
        "SKU-1",
        "/rss/channel/item[4]/g:store_code",
        "locations.locationId",
        "STORE-A",
    )


def test_one_bad_store_drops_the_whole_product_but_not_the_others() -> None:
    data = (
        HEAD
        + store_item("SKU-1", "STORE-A", "4")
        + store_item("SKU-2", "STORE-A", "1")
        + store_item("SKU-1", "STORE-B", "1,000")
        + store_item("SKU-1", "STORE-C", "6")
        + TAIL
    )
    _, records, problems = local(data)
    assert [(r.product_id, r.fields and r.fields["quantity"]) for r in records] == [("SKU-2", 1)]
    assert located(problems) == [(5, 3, "SKU-1", "locations.quantity", "1,000")]
    assert "ambiguous" in problems[0].message


def test_id_and_legacy_itemid_together_are_a_problem() -> None:
    data = HEAD + store_item("SKU-1", "S1", "1", "<g:itemid>SKU-9</g:itemid>") + TAIL
    _, records, problems = local(data)
    assert records == []
    assert located(problems) == [(3, 1, "SKU-1", "productId", "SKU-9")]
    assert "<g:itemid> and <g:id> both give the productId; send only <g:id>" in problems[0].message


@pytest.mark.parametrize(
    ("availabilities", "expected"),
    [
        (["out_of_stock", "preorder", "backorder"], "backorder"),
        (["out_of_stock", "preorder"], "preorder"),
        (["out of stock", "on display to order"], "backorder"),
        (["backorder", "limited_availability"], "in_stock"),
        (["OUT_OF_STOCK", "out_of_stock"], "out_of_stock"),
    ],
)
def test_product_availability_is_the_best_of_its_stores(availabilities: list[str], expected: str) -> None:
    items = [
        store_item("SKU-1", f"S{n}", "0", f"<g:availability>{value}</g:availability>")
        for n, value in enumerate(availabilities)
    ]
    _, records, problems = local(HEAD + b"".join(items) + TAIL)
    assert problems == []
    assert records[0].fields is not None and records[0].fields["availability"] == expected


def test_price_is_the_lowest_store_price_compared_as_decimals() -> None:
    data = (
        HEAD
        + store_item("SKU-1", "S1", "1", "<g:price>100 EUR</g:price>")
        + store_item("SKU-1", "S2", "1")
        + store_item("SKU-1", "S3", "1", "<g:price>99.90 eur</g:price>")
        + store_item("SKU-1", "S4", "1", "<g:price>100.00 EUR</g:price>")
        + TAIL
    )
    _, records, problems = local(data)
    assert problems == []
    assert records[0].fields is not None and records[0].fields["price"] == {"amount": "99.90", "currency": "EUR"}


# -- hardening -------------------------------------------------------------------------------


@pytest.mark.parametrize("parser", [GoogleMerchantParser(), GoogleLocalInventoryParser(SqliteRowSpill)])
def test_entity_declarations_are_refused(parser: Parser) -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        b'<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>'
        + one_item(parser, product="&secret;")
        + TAIL
    )
    docs, records, problems = parse(parser, data)
    assert docs == [] and records == []
    (problem,) = problems
    assert problem.kind == "security_limit" and "declares entities" in problem.message


@pytest.mark.parametrize("parser", [GoogleMerchantParser(), GoogleLocalInventoryParser(SqliteRowSpill)])
def test_undeclared_entity_reference_past_the_sniffed_head_is_reported_not_expanded(parser: Parser) -> None:
    data = (
        b"<!--" + b"x" * 70_000 + b'--><!DOCTYPE rss SYSTEM "rss.dtd">'
        b'<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>'
        + one_item(parser, product="SKU-&word;")
        + TAIL
    )
    _, records, problems = parse(parser, data)
    assert records == []
    assert [(p.kind, p.field, p.path) for p in problems] == [
        ("security_limit", "productId", "/rss/channel/item[1]/g:id")
    ]
    assert problems[0].product_id is None and problems[0].record == 1
    assert "SECRET-WORD" not in repr(problems)


@pytest.mark.parametrize("parser", [GoogleMerchantParser(), GoogleLocalInventoryParser(SqliteRowSpill)])
def test_overlong_text_is_a_security_limit(parser: Parser) -> None:
    data = HEAD + one_item(parser, "<g:price>", "9" * 200, " USD</g:price>") + TAIL
    with pytest.raises(LimitExceeded) as raised:
        parse(parser, data, Limits(max_text_chars=100))
    problem = raised.value.problem()
    assert (problem.field, problem.record, problem.product_id, problem.path) == (
        "max_text_chars",
        1,
        "SKU-1",
        "/rss/channel/item[1]/g:price",
    )


def test_an_item_bigger_than_the_record_window_is_refused() -> None:
    data = HEAD + store_item("SKU-1", "S1", "1", "<g:description>" + "x" * 5_000 + "</g:description>") + TAIL
    with pytest.raises(LimitExceeded) as raised:
        parse(GoogleLocalInventoryParser(SqliteRowSpill), data, Limits(max_record_bytes=4_096))
    assert raised.value.limit == "max_record_bytes"


# -- the local parser's temporary store --------------------------------------------------------


class _Generated(io.RawIOBase):
    """A file object over a generator of chunks: the test document never exists whole in memory."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        memoryview(buffer)[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def local_feed(products: int, stores: int) -> io.BufferedReader:
    """Every product in every store, store by store: each product's rows spread over the whole file."""

    def chunks() -> Iterator[bytes]:
        yield HEAD
        for store in range(stores):
            for start in range(0, products, 500):
                yield b"".join(
                    b"<item><g:store_code>STORE-%03d</g:store_code><g:id>SKU-%06d</g:id>"
                    b"<g:quantity>%d</g:quantity></item>\n" % (store, product, (product + store) % 7)
                    for product in range(start, min(start + 500, products))
                )
        yield TAIL

    return io.BufferedReader(_Generated(chunks()))


def test_two_hundred_thousand_store_rows_parse_with_flat_memory() -> None:
    products, stores = 20_000, 10
    tracemalloc.start()
    try:
        count = total = 0
        last = ""
        for item in GoogleLocalInventoryParser(SqliteRowSpill).parse(local_feed(products, stores)):
            assert not isinstance(item, Problem), item
            if isinstance(item, Record):
                assert item.fields is not None and item.product_id > last
                last = item.product_id
                count += 1
                total += item.fields["quantity"]
                assert len(item.fields["locations"]) == stores
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == products
    assert total == sum((p + s) % 7 for p in range(products) for s in range(stores))
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1024 / 1024:.1f} MiB"


def _scratch_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def test_temporary_store_is_removed_when_the_records_are_exhausted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scratch = _scratch_dir(monkeypatch, tmp_path)
    items = GoogleLocalInventoryParser(SqliteRowSpill).parse(
        io.BytesIO(fixture_bytes("good/local-inventory.xml", "google-local"))
    )
    assert isinstance(next(items), Document)
    assert [p.name.startswith("dropgate-google-local-") for p in scratch.iterdir()] == [True]
    assert sum(isinstance(item, Record) for item in items) == 5
    assert list(scratch.iterdir()) == []


def test_temporary_store_is_removed_when_the_generator_is_closed_early(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scratch = _scratch_dir(monkeypatch, tmp_path)
    items = GoogleLocalInventoryParser(SqliteRowSpill).parse(local_feed(3_000, 2))
    first = next(item for item in items if isinstance(item, Record))
    assert first.product_id == "SKU-000000"
    assert len(list(scratch.iterdir())) == 1
    items.close()
    assert list(scratch.iterdir()) == []


def test_temporary_store_is_removed_after_a_syntax_error_or_a_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scratch = _scratch_dir(monkeypatch, tmp_path)
    _, records, problems = local(fixture_bytes("bad/local-malformed.xml", "google-local"))
    assert records == []  # a cut-off file would give wrong sums: nothing is grouped
    (problem,) = problems
    assert (problem.kind, problem.line, problem.record, problem.product_id) == ("xml_syntax", 16, 2, "SKU-60002")
    assert list(scratch.iterdir()) == []
    with pytest.raises(LimitExceeded):
        parse(
            GoogleLocalInventoryParser(SqliteRowSpill),
            HEAD + store_item("SKU-1", "S1", "1" * 50) + TAIL,
            Limits(max_text_chars=10),
        )
    assert list(scratch.iterdir()) == []
