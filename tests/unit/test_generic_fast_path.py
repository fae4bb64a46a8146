"""The generic parser's one-pass path for plain products must never disagree with the checked path.

``_plain_product`` either gives exactly the record ``_product`` gives, or declines (``None``) and
leaves the product to the checked path with its diagnostics. Hypothesis builds products from the
awkward cases both paths have to get right: whitespace, case, duplicates, missing and malformed
values, unsorted or repeated locations, unknown and nested elements, tombstones.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from dropgate.events import FileSerializer
from parsers import generic, generic_checked
from parsers.base import LimitExceeded, Record
from parsers.generic import GenericInventoryParser
from parsers.limits import DEFAULT_LIMITS
from tests.conftest import GENERIC

_TEXTS = st.sampled_from(["A-1", " A-1 ", "", "Brave Lamp X-200", "  ", "x" * 40])
_QUANTITIES = st.sampled_from(["7", "0", " 7", "07", "-1", "1,000", "1.5", "x", "9" * 19, ""])
_AVAILABILITY = st.sampled_from(["in_stock", "preorder", "In_Stock", " backorder", "bogus", ""])
_AMOUNTS = st.sampled_from(["19.99", "5", " 2.50", "1,5", "-3", "", "1e3"])
_CURRENCIES = st.sampled_from(["USD", "EUR", "usd", " USD", "US", None])
_LOCATION_IDS = st.sampled_from(["WH1", "WH2", "STORE-001", " WH3", "", None])


@st.composite
def _location(draw: Any) -> str:
    attrs = []
    location_id = draw(_LOCATION_IDS)
    if location_id is not None:
        attrs.append(f'id="{location_id}"')
    quantity = draw(st.one_of(st.none(), _QUANTITIES))
    if quantity is not None:
        attrs.append(f'quantity="{quantity}"')
    tag = draw(st.sampled_from(["location"] * 6 + ["place"]))
    body = draw(st.sampled_from(["", "", "", "<extra/>"]))
    return f"<{tag} {' '.join(attrs)}>{body}</{tag}>" if body else f"<{tag} {' '.join(attrs)}/>"


@st.composite
def _child(draw: Any) -> str:
    kind = draw(st.sampled_from(["sku", "name", "quantity", "availability", "price", "locations", "other"]))
    if kind in ("sku", "name"):
        return f"<{kind}>{draw(_TEXTS)}</{kind}>"
    if kind == "quantity":
        return f"<quantity>{draw(_QUANTITIES)}</quantity>"
    if kind == "availability":
        return f"<availability>{draw(_AVAILABILITY)}</availability>"
    if kind == "price":
        currency = draw(_CURRENCIES)
        attr = f' currency="{currency}"' if currency is not None else ""
        return f"<price{attr}>{draw(_AMOUNTS)}</price>"
    if kind == "locations":
        return "<locations>" + "".join(draw(st.lists(_location(), max_size=4))) + "</locations>"
    return draw(st.sampled_from(["<colour>red</colour>", "<meta><a>1</a></meta>", "<!-- note -->", "<tags/>"]))


@st.composite
def _product(draw: Any) -> str:
    attrs = []
    product_id = draw(st.sampled_from(["P1", "P1", "P1", " P1", "", None]))
    if product_id is not None:
        attrs.append(f'id="{product_id}"')
    deleted = draw(st.sampled_from([None, None, None, "true", "false", "TRUE", "yes"]))
    if deleted is not None:
        attrs.append(f'deleted="{deleted}"')
    children = draw(st.lists(_child(), max_size=7))
    return f"<product {' '.join(attrs)}>{''.join(children)}</product>"


def _element(product_xml: str) -> Any:
    return etree.fromstring(f"<inventory>\n{product_xml}\n</inventory>".encode())[0]


def _checked(element: Any) -> list[Any] | None:
    try:
        return list(generic_checked.checked_product(element, 1, DEFAULT_LIMITS))
    except LimitExceeded:
        return None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_product())
def test_the_plain_path_gives_the_checked_record_or_declines(product_xml: str) -> None:
    element = _element(product_xml)
    plain = generic._plain_product(element, 1, DEFAULT_LIMITS)
    if plain is not None:
        assert _checked(element) == [plain], product_xml
        assert_serialized_alike([plain])


_SERIALIZER = FileSerializer(
    partner_id="acme",
    as_of=datetime(2026, 11, 20, 6, tzinfo=UTC),
    bucket="drops",
    key="acme/x.xml",
    version_id="v1",
    parser_name="generic-xml",
    parser_version="1",
)


def assert_serialized_alike(records: list[Record]) -> None:
    """What the plain paths read needs no second validation: ``serialize_plain`` gives the bytes and
    hashes of the validating ``serialize`` (which would raise on anything the contract refuses)."""
    for record in records:
        if record.fields is None:
            continue
        plain = _SERIALIZER.serialize_plain(record.product_id, record.fields, record.index)
        validated = _SERIALIZER.serialize(record.product_id, record.fields, record.index)
        assert (plain.head, plain.tail, plain.state, plain.fields) == (
            validated.head,
            validated.tail,
            validated.state,
            validated.fields,
        )


@pytest.mark.parametrize(
    "product_xml",
    [
        '<product id="P1"><sku>A-1</sku><name>Lamp</name><quantity>7</quantity>'
        '<availability>preorder</availability><price currency="USD">19.99</price>'
        '<locations><location id="WH2" quantity="3"/><location id="WH1" quantity="4"/></locations></product>',
        '<product id="P1"><locations><location id="WH1" quantity="0"/></locations></product>',
        '<product id="P1"><quantity>3</quantity><colour>red</colour></product>',
        '<product id="P1" deleted="true"/>',
    ],
)
def test_plain_products_take_the_plain_path(product_xml: str) -> None:
    """Otherwise the equivalence above would hold trivially, and the speed would be gone."""
    element = _element(product_xml)
    plain = generic._plain_product(element, 1, DEFAULT_LIMITS)
    assert plain is not None
    assert _checked(element) == [plain]
    assert_serialized_alike([plain])


def _every_generic_fixture() -> list[Path]:
    return sorted(GENERIC.rglob("*.xml"))


@pytest.mark.parametrize("path", _every_generic_fixture(), ids=lambda p: str(p.relative_to(GENERIC)))
def test_whole_files_parse_the_same_without_the_plain_path(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = path.read_bytes()
    with_plain = list(GenericInventoryParser().parse(io.BytesIO(data)))
    monkeypatch.setattr(generic, "_plain_product", lambda *_: None)
    checked_only = list(GenericInventoryParser().parse(io.BytesIO(data)))
    assert with_plain == checked_only
