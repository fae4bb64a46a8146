"""Google feeds as real exporters write them (issue 20, classes 1, 3 and 5): Atom product feeds,
vehicle-ads feeds with store codes, local rows without a quantity, and the price and availability
spellings Google and shop plugins use. What users see: records value by value, or located problems."""

from __future__ import annotations

import io

import pytest

from dropgate.adapters.row_spill import SqliteRowSpill
from parsers.base import Document, Problem, Record
from parsers.google.items import price
from parsers.google.local import GoogleLocalInventoryParser
from parsers.google.merchant import GoogleMerchantParser
from parsers.xml_stream import Sniffed, sniff
from tests.conftest import fixture_bytes

ATOM = "http://www.w3.org/2005/Atom"
ATOM_HEAD = f'<feed xmlns="{ATOM}" xmlns:g="http://base.google.com/ns/1.0">\n'.encode()
RSS_HEAD = b'<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>\n'
RSS_TAIL = b"</channel></rss>\n"


def items(parser: GoogleMerchantParser | GoogleLocalInventoryParser, data: bytes) -> list[Document | Record | Problem]:
    return list(parser.parse(io.BytesIO(data)))


def merchant(data: bytes) -> tuple[list[Record], list[Problem]]:
    found = items(GoogleMerchantParser(), data)
    return [i for i in found if isinstance(i, Record)], [i for i in found if isinstance(i, Problem)]


def local(data: bytes) -> tuple[list[Record], list[Problem]]:
    found = items(GoogleLocalInventoryParser(SqliteRowSpill), data)
    return [i for i in found if isinstance(i, Record)], [i for i in found if isinstance(i, Problem)]


def product(
    sku: str | None, name: str | None, availability: str, amount: str | None, currency: str | None = None
) -> dict[str, object]:
    """A product feed record's fields: no quantity, no locations."""
    return {
        "sku": sku,
        "name": name,
        "quantity": None,
        "availability": availability,
        "price": {"amount": amount, "currency": currency} if amount else None,
        "locations": [],
    }


def _sniffed(data: bytes) -> Sniffed:
    return sniff(io.BytesIO(data))[1]


def where(problem: Problem) -> tuple[object, ...]:
    return (problem.kind, problem.line, problem.record, problem.product_id, problem.path, problem.field, problem.value)


# -- 1. Atom 1.0 product feeds ---------------------------------------------------------------------


def test_an_atom_feed_is_read_entry_by_entry_with_the_rss_rules() -> None:
    found = items(GoogleMerchantParser(), fixture_bytes("good/merchant-atom-feed.xml", "google-merchant"))
    assert found[0] == Document(root="feed", namespace=ATOM)
    records = [i for i in found if isinstance(i, Record)]
    assert len(found) == 4 and len(records) == 3
    assert [(r.index, r.product_id, r.line, r.path) for r in records] == [
        (1, "SKU-71001", 12, "/feed/entry[1]"),
        (2, "SKU-71002", 25, "/feed/entry[2]"),
        (3, "SKU-71003", 36, "/feed/entry[3]"),
    ]
    # g:id wins over Atom's own <id>; the Atom title is the name; 'in stock' as in RSS
    assert records[0].fields == product("NW-RTP-CB", "Ridgeline Trekking Poles", "in_stock", "129.00", "USD")
    # g:title wins over the Atom title; the currency is upper-cased
    assert records[1].fields == product(None, "Alpine Gaiters, size M", "out_of_stock", "45.5", "EUR")
    # no g:id: the entry's <id> is the product id (Google's Atom 1.0 example)
    assert records[2].fields == product(None, "Camp Lantern", "preorder", "34.99", "USD")


def test_an_atom_entry_s_problems_are_located_under_feed_entry() -> None:
    data = (
        ATOM_HEAD
        + b"<entry><title>No id at all</title><g:availability>in_stock</g:availability></entry>\n"
        + b"<entry><id>A-2</id><g:availability>sold out</g:availability><g:price>9.99</g:price></entry>\n"
        + b"</feed>\n"
    )
    records, problems = merchant(data)
    assert records == []
    assert [where(p) for p in problems] == [
        ("validation", 2, 1, None, "/feed/entry[1]/g:id", "productId", None),
        ("validation", 3, 2, "A-2", "/feed/entry[2]/g:availability", "availability", "sold out"),
        ("validation", 3, 2, "A-2", "/feed/entry[2]/g:price", "price", "9.99"),
    ]


def test_an_atom_entry_cut_off_by_a_syntax_error_is_named_by_its_id() -> None:
    data = ATOM_HEAD + b"<entry><id>tag:x</id><g:id>A-1</g:id><g:availability>in_stock</g:availabilty></entry></feed>"
    records, problems = merchant(data)
    assert records == []
    (problem,) = problems
    assert (problem.kind, problem.record, problem.product_id) == ("xml_syntax", 1, "A-1")


# -- 3. store codes in product feeds, local rows without a quantity -----------------------------------


def test_a_vehicle_ads_feed_is_a_product_feed_and_its_store_codes_are_not_locations() -> None:
    data = fixture_bytes("good/vehicle-ads-feed.xml", "google-merchant")
    assert GoogleMerchantParser().matches(_sniffed(data))
    assert not GoogleLocalInventoryParser(SqliteRowSpill).matches(_sniffed(data))
    records, problems = merchant(data)
    assert problems == []  # the repeated g:store_code of VEH-3002 is vehicle ads' own, not a problem
    assert [(r.index, r.product_id, r.line, r.path) for r in records] == [
        (1, "VEH-3001", 11, "/rss/channel/item[1]"),
        (2, "VEH-3002", 24, "/rss/channel/item[2]"),
    ]
    assert records[0].fields == product(None, "2024 Contoso Roadster LX", "in_stock", "27995.00", "USD")
    assert records[1].fields == product(None, "2025 Contoso Wagon", "backorder", "41250.00", "USD")


def test_local_stores_may_give_availability_without_a_quantity() -> None:
    records, problems = local(fixture_bytes("good/local-availability-only.xml", "google-local"))
    assert problems == []
    by_id = {r.product_id: (r.index, r.line, r.fields) for r in records}
    assert by_id == {
        # STORE-A gave availability only: the total is unknown (null) and STORE-A is no location,
        # since every location in the contract carries a quantity; STORE-B's count is kept.
        "SKU-90001": (
            1,
            10,
            {
                "sku": None,
                "name": None,
                "quantity": None,
                "availability": "in_stock",
                "price": {"amount": "55.00", "currency": "USD"},
                "locations": [{"locationId": "STORE-B", "quantity": 4}],
            },
        ),
        "SKU-90002": (
            3,
            22,
            {
                "sku": None,
                "name": None,
                "quantity": None,
                "availability": "backorder",
                "price": None,
                "locations": [],
            },
        ),
        "SKU-90003": (
            4,
            27,
            {
                "sku": None,
                "name": None,
                "quantity": 2,
                "availability": "in_stock",
                "price": {"amount": "12.50", "currency": "USD"},
                "locations": [{"locationId": "STORE-A", "quantity": 2}],
            },
        ),
    }


def test_a_local_store_with_neither_quantity_nor_availability_drops_its_product() -> None:
    records, problems = local(fixture_bytes("bad/local-neither-quantity-nor-availability.xml", "google-local"))
    assert [r.product_id for r in records] == ["SKU-91002"]
    (problem,) = problems
    assert where(problem) == (
        "validation",
        15,
        2,
        "SKU-91001",
        "/rss/channel/item[2]/g:availability",
        "availability",
        None,
    )
    assert problem.message.startswith("item has neither <g:quantity> nor <g:availability>; ")
    assert '"quantity is optional, availability is mandatory"' in problem.message
    assert "(https://support.google.com/merchants/answer/13475891)" in problem.message


# -- 5. price and availability spellings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "amount", "currency"),
    [
        ("165.00USD", "165.00", "USD"),
        ("USD 165.00", "165.00", "USD"),
        ("usd165", "165", "USD"),
        (" 42.5EUR ", "42.5", "EUR"),
    ],
)
def test_google_and_plugin_price_spellings_are_read(raw: str, amount: str, currency: str) -> None:
    assert price(raw) == {"amount": amount, "currency": currency}


def test_price_and_availability_spellings_of_real_exporters_are_read() -> None:
    records, problems = merchant(fixture_bytes("good/merchant-spellings.xml", "google-merchant"))
    assert problems == []
    assert [(r.product_id, r.fields) for r in records] == [
        ("SKU-80001", product(None, "Glacier Parka", "in_stock", "165.00", "USD")),
        ("SKU-80002", product(None, "Glacier Parka, kids", "in_stock", "165.00", "USD")),
        ("SKU-80003", product(None, "Expedition Sled", "backorder", "899", "EUR")),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("limited availability", "in_stock"),
        ("Limited_Availability", "in_stock"),
        ("available for order", "backorder"),
        ("AVAILABLE FOR ORDER", "backorder"),
    ],
)
def test_google_s_older_availability_values_map_as_google_described_them(raw: str, expected: str) -> None:
    data = RSS_HEAD + f"<item><g:id>A</g:id><g:availability>{raw}</g:availability></item>".encode() + RSS_TAIL
    records, problems = merchant(data)
    assert problems == [] and records[0].fields is not None
    assert records[0].fields["availability"] == expected


def test_values_that_are_really_wrong_are_refused_naming_the_wrong_part() -> None:
    records, problems = merchant(fixture_bytes("bad/merchant-wrong-spellings.xml", "google-merchant"))
    assert [r.product_id for r in records] == ["SKU-81005"]
    assert [where(p) for p in problems] == [
        ("validation", 13, 1, "SKU-81001", "/rss/channel/item[1]/g:price", "price", "USD 89,95"),
        ("validation", 19, 2, "SKU-81002", "/rss/channel/item[2]/g:price", "price", "EURO 120.00"),
        ("validation", 24, 3, "SKU-81003", "/rss/channel/item[3]/g:availability", "availability", "available soon"),
        ("validation", 31, 4, "SKU-81004", "/rss/channel/item[4]/g:price", "price", "$19.99"),
    ]
    comma, code, availability, shape = (p.message for p in problems)
    assert comma.startswith("g:price '89,95' uses a comma; use a dot as the decimal mark")
    assert code.startswith("g:price 'EURO' is not an ISO 4217 currency code")
    assert availability == (
        "g:availability 'available soon' is not a known availability; expected one of in_stock, out_of_stock, "
        "preorder, backorder (the legacy spelling with spaces, e.g. 'in stock', is accepted too, as are Google's "
        "older 'limited availability' and 'available for order')"
    )
    assert shape == (
        "g:price '$19.99' is not in the shape 15.00 USD (a decimal amount and an ISO 4217 currency code; "
        "15.00USD and USD 15.00 are read too)"
    )


def test_local_inventory_keeps_its_own_availability_values() -> None:
    """'available for order' is an older product-feed value; the local spec never had it."""
    data = (
        RSS_HEAD
        + (
            b"<item><g:store_code>S1</g:store_code><g:id>A</g:id><g:quantity>1</g:quantity>"
            b"<g:availability>available for order</g:availability></item>"
        )
        + RSS_TAIL
    )
    records, problems = local(data)
    assert records == [] and [p.field for p in problems] == ["availability"]
