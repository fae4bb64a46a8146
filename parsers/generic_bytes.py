"""The generic format's usual products read straight from a segment's bytes.

A worker on the parallel path spends most of its time walking lxml elements: a Python proxy per
child, a C call per tag, text and attribute. Most drops are written by one exporter, every product
in the same canonical layout (docs/formats.md's: ``sku``, ``name``, ``quantity``, ``availability``,
``price``, ``locations``, each optional, in that order). One compiled pattern matches a product in
that layout in C, and the record is built from its groups.

This reads a *subset* of XML by pattern, written here rather than taken from a library because no
XML library builds records faster than lxml builds the tree this replaces. What makes it safe:

- it accepts only bytes whose meaning XML cannot change and that no conforming parser refuses: no
  ``&`` (no entity or character reference), no ``<`` or ``]]>`` in text, no CR (line ends are
  normalised), no tab or line break in an attribute value (attribute values are normalised), no
  character XML forbids (C0 controls, U+FFFE, U+FFFF), strict UTF-8, double quotes, one fixed
  attribute order, and nothing but whitespace between products;
- a segment after the first is then well formed by construction (``<inventory>``, canonical
  products, ``</inventory>``), so lxml does not parse it at all; the first segment, which holds the
  prolog and the root's own start tag, is still parsed by lxml (the cutter has already refused
  DOCTYPEs, comments, CDATA and processing instructions after the prolog);
- when any product of a segment is not in the canonical layout, or anything else is unexpected,
  it gives ``None`` and the segment is parsed by lxml and read by the element walk
  (``generic._plain_product``), which is the reference: a property test holds the two to the same
  records on generated segments, hostile bytes included, and holds every segment this accepts to
  one lxml parses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from parsers import fields
from parsers.base import Record
from parsers.limits import Limits
from parsers.segments import Segment

_WS = rb"[ \t\r\n]*"
#: What XML forbids in a document (C0 controls but tab, LF and CR) as a byte class.
_FORBIDDEN = rb"\x00-\x08\x0b\x0c\x0e-\x1f"
_ATTRIBUTE = rb'"([^"<&\t\n\r' + _FORBIDDEN + rb']+)"'
_TEXT = rb"([^<&\r" + _FORBIDDEN + rb"]+)"
_AVAILABILITY = b"|".join(value.encode() for value in fields.AVAILABILITY_VALUES)
_DIGITS = rb"([0-9]{1,%d})" % fields.MAX_QUANTITY_DIGITS
_LOCATION = rb"<location id=" + _ATTRIBUTE + rb" quantity=\"" + _DIGITS + rb'"/>'

#: One product in the canonical layout and the whitespace after it. Groups: 1 id, 2 tombstone,
#: 3 sku, 4 name, 5 quantity, 6 availability, 7 currency, 8 amount, 9 the locations' bytes.
_PRODUCT = re.compile(
    rb"<product id=" + _ATTRIBUTE + rb"(?:( deleted=\"true\"/>)|>" + _WS
    + rb"(?:<sku>" + _TEXT + rb"</sku>" + _WS + rb")?"
    + rb"(?:<name>" + _TEXT + rb"</name>" + _WS + rb")?"
    + rb"(?:<quantity>" + _DIGITS + rb"</quantity>" + _WS + rb")?"
    + rb"(?:<availability>(" + _AVAILABILITY + rb")</availability>" + _WS + rb")?"
    + rb"(?:<price currency=\"([A-Z]{3})\">([0-9]+(?:\.[0-9]+)?)</price>" + _WS + rb")?"
    + rb"(?:<locations>" + _WS + rb"((?:" + _LOCATION + _WS + rb")*)</locations>" + _WS + rb")?"
    + rb"</product>)" + _WS
)  # fmt: skip
_LOCATIONS = re.compile(_LOCATION)
#: The longest quantity or availability: tighter text limits are left to the walk.
_LONGEST_TOKEN = max(fields.MAX_QUANTITY_DIGITS, *map(len, fields.AVAILABILITY_VALUES))
_START = re.compile(rb"<inventory>" + _WS)
_END = re.compile(rb"</inventory>" + _WS)
#: Sequences no character data may hold: the end of a CDATA section, U+FFFE and U+FFFF in UTF-8.
_NEVER_IN_TEXT = (b"]]>", b"\xef\xbf\xbe", b"\xef\xbf\xbf")


def canonical_records(segment: Segment, limits: Limits, path: Callable[[int], str]) -> list[Record] | None:
    """The segment's products as the element walk reads them, or ``None``.

    ``path(index)`` is the record's path; lines are the segment's own (the caller offsets them).
    The first segment must still be parsed by lxml (see the module's docstring); no other is.
    """
    text = segment.text
    if segment.records < 1 or limits.max_attributes < 2 or limits.max_text_chars < _LONGEST_TOKEN:
        return None  # an empty segment, or limits only the walk applies
    if any(sequence in text for sequence in _NEVER_IN_TEXT):
        return None
    start = _first_product(segment)
    if start is None:
        return None
    try:
        return _products(text, start, segment.first_index, segment.records, limits, path)
    except UnicodeDecodeError:  # not UTF-8 after all: lxml says where
        return None


def _first_product(segment: Segment) -> int | None:
    """Where the first product starts, when only the root's start tag (and, in the first segment,
    the prolog) comes before it: then no product can be nested in another element."""
    text = segment.text
    if not segment.first:
        start = _START.match(text)
        return start.end() if start is not None else None
    position = text.find(b"<product ")
    if position < 0 or text.count(b"<", 0, position) != text.count(b"<?", 0, position) + 1:
        return None
    return position


def _products(
    text: bytes, position: int, first_index: int, count: int, limits: Limits, path: Callable[[int], str]
) -> list[Record] | None:
    records: list[Record] = []
    line = text.count(b"\n", 0, position) + 1
    match = _PRODUCT.match
    for index in range(first_index, first_index + count):
        found = match(text, position)
        if found is None:
            return None
        record = _record(found, index, line, limits, path)
        if record is None:
            return None
        records.append(record)
        line += text.count(b"\n", position, found.end())
        position = found.end()
    # After the last product, only the root's end tag: no element or text the walk would see.
    return records if _END.fullmatch(text, position) is not None else None


def _record(found: re.Match[bytes], index: int, line: int, limits: Limits, path: Callable[[int], str]) -> Record | None:
    product_id = found[1].decode()
    if product_id.strip() != product_id:
        return None
    if found[2] is not None:
        return Record(index, product_id, None, line, path(index))
    values = _fields(found, limits.max_text_chars)
    if values is None:
        return None
    return Record(index, product_id, values, line, path(index))


def _fields(found: re.Match[bytes], max_text: int) -> dict[str, Any] | None:
    sku, name, quantity_text, availability, currency, amount, located = found.group(3, 4, 5, 6, 7, 8, 9)
    quantity = int(quantity_text) if quantity_text is not None else None
    if located is not None:
        summed = _locations(located)
        if summed is None:
            return None
        locations, total = summed
        if total > fields.MAX_QUANTITY or (quantity is not None and quantity != total):
            return None
        quantity = total
    elif quantity is None:
        return None
    else:
        locations = []
    if sku is not None:
        sku = sku.decode()
        if len(sku) > max_text:
            return None
        sku = sku.strip() or None
    if name is not None:
        name = name.decode()
        if len(name) > max_text:
            return None
        name = name.strip() or None
    price = None
    if currency is not None:
        if len(amount) > max_text:  # ASCII digits: as many characters as bytes
            return None
        price = {"amount": amount.decode(), "currency": currency.decode()}
    return {
        "sku": sku,
        "name": name,
        "quantity": quantity,
        "availability": availability.decode() if availability is not None else _default(quantity),
        "price": price,
        "locations": locations,
    }


def _default(quantity: int) -> str:
    return "in_stock" if quantity else "out_of_stock"


def _locations(located: bytes) -> tuple[list[dict[str, Any]], int] | None:
    """The locations sorted by id (UTF-8 bytes sort as their code points do) and their total."""
    pairs = _LOCATIONS.findall(located)
    pairs.sort()
    locations: list[dict[str, Any]] = []
    total = 0
    previous = None
    for location_id_bytes, quantity_text in pairs:
        if location_id_bytes == previous:
            return None
        previous = location_id_bytes
        location_id = location_id_bytes.decode()
        if location_id.strip() != location_id:
            return None
        quantity = int(quantity_text)
        total += quantity
        locations.append({"locationId": location_id, "quantity": quantity})
    return locations, total
