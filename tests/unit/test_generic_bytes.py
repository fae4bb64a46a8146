"""Canonical products read from a segment's bytes must be exactly what lxml and the element walk read.

``generic_bytes.canonical_records`` reads a segment without lxml (see its docstring for why that is
safe). The property here is the whole of that argument: whenever it gives records, lxml parses the
same bytes without error and the element walk (``generic._plain_product``, itself held to the
checked path in ``test_generic_fast_path.py``) gives the same records. Hypothesis builds segments
of canonical products with hostile values (references, CR, tabs, quotes, forbidden and invisible
characters, ``]]>``, broken UTF-8) and of products that are almost canonical.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from parsers import generic_bytes
from parsers.base import Record
from parsers.generic import GenericInventoryParser, _path, _plain_product
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.segments import Segment, parser
from tests.unit.test_generic_fast_path import assert_serialized_alike

_AWKWARD = [
    "A-1", " A-1", "A-1 ", "Ünïcødé ☃", "a\u00a0b", "\u00a0pad", "x&amp;y", "x&#65;", "a]]>b", "a]]b", "a>b", "a'b",
    'a"b', "a\rb", "a\tb", "a\nb", "a\x01b", "a\x0bb", "a\x7fb", "a\x85b", "a\u2028b", "a\ufffeb", "a\uffffb",
    "<b>", "  ", "",
]  # fmt: skip
_VALUES = st.one_of(st.sampled_from(_AWKWARD), st.text(max_size=12))
_QUANTITIES = st.sampled_from(["0", "7", "07", "1" * 18, "1" * 19, " 7", "-1", "1.5", ""])
_AVAILABILITY = st.sampled_from(["in_stock", "out_of_stock", "backorder", "In_Stock", "bogus"])
_AMOUNTS = st.sampled_from(["19.99", "5", "1.", ".5", "1,5", " 2.50"])
_CURRENCIES = st.sampled_from(["USD", "EUR", "usd", "US", "USDX"])
_GAPS = st.sampled_from(["", "\n    ", " ", "\t", "\r\n  ", "\n"])


@st.composite
def _location(draw: Any) -> str:
    gap = draw(_GAPS)
    attributes = [f'id="{draw(_VALUES)}"', f'quantity="{draw(_QUANTITIES)}"']
    if draw(st.integers(0, 9)) == 0:
        attributes.reverse()
    return f"{gap}<location {' '.join(attributes)}/>"


@st.composite
def _product(draw: Any) -> str:
    """A product in the canonical layout, its values drawn from the awkward ones; now and then a
    field out of order, repeated, or an extra element."""
    if draw(st.integers(0, 12)) == 0:
        return f'<product id="{draw(_VALUES)}" deleted="true"/>'
    gap = draw(_GAPS)
    fields = []
    for tag, values in (
        ("sku", _VALUES),
        ("name", _VALUES),
        ("quantity", _QUANTITIES),
        ("availability", _AVAILABILITY),
    ):
        if draw(st.booleans()):
            fields.append(f"<{tag}>{draw(values)}</{tag}>")
    if draw(st.booleans()):
        fields.append(f'<price currency="{draw(_CURRENCIES)}">{draw(_AMOUNTS)}</price>')
    if draw(st.booleans()):
        fields.append("<locations>" + "".join(draw(st.lists(_location(), max_size=3))) + f"{gap}</locations>")
    twist = draw(st.integers(0, 9))
    if twist == 0 and len(fields) > 1:
        fields.reverse()
    elif twist == 1 and fields:
        fields.append(fields[0])
    elif twist == 2:
        fields.insert(0, "<colour>red</colour>")
    return f'<product id="{draw(_VALUES)}">{gap}' + gap.join(fields) + f"{gap}</product>"


def _segment(products: list[str], *, raw: bytes = b"") -> Segment:
    body = "\n  ".join(products).encode("utf-8", "surrogatepass") + raw
    return Segment(b"<inventory>\n  " + body + b"\n</inventory>", 1, len(products), 0, False)


def _walked(segment: Segment) -> list[Record] | None:
    """What lxml and the element walk read, or ``None`` where they decline (or lxml refuses)."""
    try:
        root = etree.fromstring(segment.text, parser())
    except etree.XMLSyntaxError:
        return None
    records = [_plain_product(element, index, DEFAULT_LIMITS) for index, element in enumerate(root, 1)]
    if len(records) != segment.records or any(record is None for record in records):
        return None
    return [record for record in records if record is not None]


def _read(segment: Segment, limits: Limits = DEFAULT_LIMITS) -> list[Record] | None:
    return generic_bytes.canonical_records(segment, limits, _path)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_product(), min_size=1, max_size=4), st.sampled_from([b"", b"\xff", b"\xc3", b"<x/>", b"text"]))
def test_what_the_bytes_give_is_what_lxml_and_the_walk_give(products: list[str], raw: bytes) -> None:
    segment = _segment(products, raw=raw)
    read = _read(segment)
    if read is not None:
        assert read == _walked(segment), segment.text
        assert_serialized_alike(read)


CANONICAL = [
    '<product id="P1">\n    <sku>A-1</sku>\n    <name>Lamp ☃</name>\n    <quantity>7</quantity>\n'
    '    <availability>preorder</availability>\n    <price currency="USD">19.99</price>\n'
    '    <locations>\n      <location id="WH2" quantity="3"/>\n      <location id="WH1" quantity="4"/>\n'
    "    </locations>\n  </product>",
    '<product id="P2"><locations><location id="WH1" quantity="0"/></locations></product>',
    '<product id="P3"><quantity>3</quantity></product>',
    '<product id="P4" deleted="true"/>',
    '<product id="P5"><name>  </name><quantity>0</quantity><locations></locations></product>',
]


def test_canonical_products_are_read_from_the_bytes() -> None:
    """Otherwise the property above would hold trivially, and the speed would be gone."""
    segment = _segment(CANONICAL)
    read = _read(segment)
    assert read is not None
    assert read == _walked(segment)
    assert [record.line for record in read] == [2, 13, 14, 15, 16]  # as lxml counts them


@pytest.mark.parametrize(
    "product",
    [
        '<product id="P1"><quantity>3</quantity><colour>red</colour></product>',  # an element the walk ignores
        '<product id="P1"><name>a &amp; b</name><quantity>3</quantity></product>',  # a reference
        '<product id="P1"><name>a ]]> b</name><quantity>3</quantity></product>',  # not well formed
        '<product id="P1"><name>a \x01 b</name><quantity>3</quantity></product>',  # a forbidden character
        '<product id="P1"><name>a \ufffe b</name><quantity>3</quantity></product>',
        '<product id="P1"><quantity>3</quantity><sku>A</sku></product>',  # out of order
        '<product id="P1"><sku>A</sku><sku>B</sku><quantity>3</quantity></product>',
        '<product id=" P1"><quantity>3</quantity></product>',
        '<product id="P1"><quantity>3</quantity><locations><location id="A" quantity="1"/></locations></product>',
        '<product id="P1"><locations><location id="A" quantity="1"/><location id="A" quantity="1"/></locations></product>',
        "<product id='P1'><quantity>3</quantity></product>",
        '<product id="P1"/>',
    ],
)
def test_anything_else_is_left_to_lxml_and_the_walk(product: str) -> None:
    assert _read(_segment([CANONICAL[2], product])) is None


def test_broken_utf8_and_text_between_products_are_left_to_lxml() -> None:
    assert _read(_segment(['<product id="P\udcff"><quantity>3</quantity></product>'])) is None
    assert _read(_segment([CANONICAL[2]], raw=b"text")) is None
    nested = Segment(b"<inventory><group>" + CANONICAL[2].encode() + b"</group></inventory>", 1, 1, 0, False)
    assert _read(nested) is None


def test_tight_limits_are_left_to_the_walk() -> None:
    segment = _segment(CANONICAL)
    assert _read(segment, Limits(max_text_chars=2)) is None
    assert _read(segment, Limits(max_attributes=1)) is None
    long_name = _segment(['<product id="P1"><name>' + "x" * 50 + "</name><quantity>1</quantity></product>"])
    assert _read(long_name, Limits(max_text_chars=40)) is None


def test_the_first_segment_is_still_parsed_by_lxml() -> None:
    """Its prolog and the root's attributes are not the pattern's to judge."""
    broken = b'<?xml version="1.0"?>\n<inventory partner="a" partner="b">\n' + CANONICAL[2].encode() + b"</inventory>"
    segment = Segment(broken, 1, 1, 0, True)
    assert _read(segment) is not None  # the bytes alone look canonical …
    with pytest.raises(Exception, match="not parse"):  # … but the parser refuses the segment
        GenericInventoryParser().segment_records(segment, parser(), DEFAULT_LIMITS)
