"""The generic partner inventory format (``<inventory><product id=…>``).

Streams through the shared front end (``parsers.front_end``) filtered to the two tags it needs, so
per-product cost is one ``start`` and one ``end`` event plus a walk over the product's own children,
and each product is released once emitted. The usual product is read in one pass here; anything
else goes to the checked path (``parsers.generic_checked``), which says what is wrong with it.

Format rules (see docs/formats.md "The generic partner format"):
- ``id`` is required and becomes ``productId``; ``deleted="true"`` means a tombstone.
- ``quantity`` is a whole number ≥ 0; optional when ``locations`` is present (then their sum);
  when both are present they must agree.
- without ``availability``: ``in_stock`` when quantity > 0, else ``out_of_stock``.
- ``generatedAt`` on the root is the snapshot time (``asOf``).
- unknown child elements are ignored, so partners can add fields without breaking ingestion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from parsers import fields
from parsers.base import Document, Item, Problem, Record, truncate
from parsers.diagnostics import check_attributes, snapshot_time, sniffed_from
from parsers.front_end import Items, RecordScan
from parsers.generic_bytes import canonical_records
from parsers.generic_checked import PRODUCT, ROOT, checked_product
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.segments import NotPlain, Segment, check_first_root, parse_segment
from parsers.xml_stream import Sniffed, source_line

#: Plain digits up to this length are quantities without further checks (18 digits fit in int64).
_FAST_DIGITS = fields.MAX_QUANTITY_DIGITS


class GenericInventoryParser:
    """Parser for the generic format. Bump ``version`` with every behavioural change."""

    name = "generic-xml"
    version = "1"
    expects = f"<{ROOT}> with no namespace (the generic inventory format)"

    def matches(self, sniffed: Sniffed) -> bool:
        return sniffed.root == ROOT and sniffed.namespace is None

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        scan = _Scan(limits, self.expects)
        return scan.items(stream, accepts=self.matches, refuse=_unknown_format)

    # -- segments (see parsers/segments.py and dropgate/parallel.py) ------------------------------
    root_tag = ROOT
    record_tag = PRODUCT

    def segment_document(self, root: Any, limits: Limits = DEFAULT_LIMITS) -> Document:
        """The document's own root (the first segment's): what :meth:`parse` yields first."""
        check_first_root(root, ROOT)
        if len(root.attrib) > limits.max_attributes:
            raise NotPlain("the root has too many attributes")
        items = list(_document(root))
        if len(items) != 1 or not isinstance(items[0], Document):
            raise NotPlain("the root's attributes have problems")
        return items[0]

    def segment_records(self, segment: Segment, xml_parser: Any, limits: Limits = DEFAULT_LIMITS) -> list[Record]:
        """The segment's products as :meth:`parse` gives them; :class:`NotPlain` for anything else.

        Products in the canonical layout are read from the bytes (``generic_bytes``, in C), and a
        segment after the first is then not parsed at all; any other segment is parsed and its
        elements walked."""
        records = canonical_records(segment, limits, _path)
        if records is None:
            records = self._walked(parse_segment(segment.text, xml_parser), segment, limits)
        elif segment.first:
            parse_segment(segment.text, xml_parser)  # the prolog and the root's start tag are lxml's to judge
        if segment.line_offset:
            for record in records:
                if record.line is not None:
                    record.line += segment.line_offset
        return records

    def _walked(self, root: Any, segment: Segment, limits: Limits) -> list[Record]:
        records: list[Record] = []
        index = segment.first_index - 1
        for element in root:
            if element.tag != PRODUCT:
                raise NotPlain(f"<{element.tag}> between products")
            index += 1
            record = _plain_product(element, index, limits)
            if record is None:
                raise NotPlain(f"product {index} needs the checked path")
            records.append(record)
        if index - segment.first_index + 1 != segment.records:
            raise NotPlain("the segment holds products the cutter did not count")
        return records


def _unknown_format(found: Sniffed, expects: str, *, line: int | None = None) -> Problem:
    """This format's wording: a root in no namespace is named bare (not ``… with no namespace``)."""
    where = f"<{found.root}>" + (f" in namespace {found.namespace}" if found.namespace else "")
    return Problem(
        kind="unknown_format",
        message=f"root element is {where}, expected {expects}",
        line=line,
        path=f"/{found.root}",
        value=truncate(found.namespace or found.root),
    )


class _Scan(RecordScan):
    """One generic document: a record per ``<product>``, the document from the root's attributes."""

    tags = (ROOT, PRODUCT)
    before_first = "before the first product"
    record_tag = PRODUCT
    id_attribute = "id"

    def __init__(self, limits: Limits, expects: str) -> None:
        super().__init__(limits, expects)
        self.seen_root = False

    def start(self, element: Any) -> Items:
        if element.getparent() is None:  # the root (products are opened by the front end)
            self.seen_root = True
            check_attributes(element, self.limits, path=f"/{ROOT}")
            return _document(element)
        return ()

    def read(self, element: Any) -> Items:
        record = _plain_product(element, self.index, self.limits)
        if record is not None:
            return (record,)
        return checked_product(element, self.index, self.limits)

    def end(self, element: Any) -> Items:
        if element.tag == PRODUCT:  # a product that held a product: a record of its own, read after the inner one
            return self.close(element)
        return ()

    def finish(self, root: Any) -> Items:
        if self.seen_root:
            return ()
        return (
            _unknown_format(sniffed_from(root), self.expects, line=source_line(root) if root is not None else None),
        )


def _document(root: Any) -> Iterator[Item]:
    raw = root.get("generatedAt")
    as_of = None
    if raw is not None:
        as_of, problem = snapshot_time(
            raw, "generatedAt", line=source_line(root), path=f"/{ROOT}/@generatedAt", field="generatedAt"
        )
        if problem is not None:
            yield problem
    partner = (root.get("partner") or "").strip() or None
    yield Document(root=ROOT, namespace=None, partner=partner, as_of=as_of)


_LEAVES = frozenset({"sku", "name", "quantity", "availability", "price"})
_AVAILABILITY = frozenset(fields.AVAILABILITY_VALUES)
_DECIMAL = fields.DECIMAL_PATTERN.fullmatch
_CURRENCY = fields.CURRENCY_PATTERN.fullmatch


def _plain_product(element: Any, index: int, limits: Limits) -> Record | None:
    """The usual product read in one pass, or ``None`` when anything about it needs the checked path.

    Most products in a drop are plain: each known field once, as clean text, no nesting beyond
    ``locations/location``, nothing to trim or normalise. This path only accepts what the checked
    path would accept unchanged and gives the same :class:`Record` (a test holds the two together);
    anything else (a problem, a tombstone, whitespace, lower-case currency, an unknown nested
    element) returns ``None`` and the checked path decides, with its diagnostics.
    """
    if len(element.attrib) > limits.max_attributes:
        return None
    product_id = element.get("id")
    if not product_id or product_id.strip() != product_id:
        return None
    deleted = element.get("deleted")
    if deleted is not None:
        if deleted != "true" or any(len(child) for child in element):
            return None
        return Record(index=index, product_id=product_id, fields=None, line=source_line(element), path=_path(index))
    found = _plain_fields(element, limits)
    if found is None:
        return None
    return Record(index=index, product_id=product_id, fields=found, line=source_line(element), path=_path(index))


def _plain_fields(element: Any, limits: Limits) -> dict[str, Any] | None:
    """The contract fields of a product whose children are all plain, else ``None``."""
    max_text = limits.max_text_chars
    seen: set[str] = set()
    sku = name = availability = None
    quantity: int | None = None
    price: dict[str, str] | None = None
    locations: list[dict[str, Any]] | None = None
    for child in element:
        tag = child.tag
        if tag == "locations":
            if locations is not None:
                return None
            locations = _plain_locations(child, limits)
            if locations is None:
                return None
            continue
        if len(child):
            return None  # nested elements or an entity reference
        if tag not in _LEAVES:
            if tag == PRODUCT:
                return None  # a product inside a product is a record of its own to the streaming parser
            continue  # unknown elements (and comments) are ignored, as in the checked path
        if tag in seen:
            return None
        seen.add(tag)
        text = child.text
        if text is None or len(text) > max_text:
            return None
        if tag == "sku":
            sku = text.strip() or None
        elif tag == "name":
            name = text.strip() or None
        elif tag == "quantity":
            if len(text) > _FAST_DIGITS or not text.isascii() or not text.isdigit():
                return None
            quantity = int(text)
        elif tag == "availability":
            if text not in _AVAILABILITY:
                return None
            availability = text
        else:
            currency = child.get("currency")
            if currency is None or not _DECIMAL(text) or not _CURRENCY(currency):
                return None
            price = {"amount": text, "currency": currency}
    if locations is not None:
        total = sum(location["quantity"] for location in locations)
        if total > fields.MAX_QUANTITY:
            return None  # the checked path says why
        if quantity is None:
            quantity = total
        elif quantity != total:
            return None
    elif quantity is None:
        return None
    return {
        "sku": sku,
        "name": name,
        "quantity": quantity,
        "availability": availability or ("in_stock" if quantity else "out_of_stock"),
        "price": price,
        "locations": locations or [],
    }


def _path(index: int) -> str:
    return f"/{ROOT}/{PRODUCT}[{index}]"


def _plain_locations(element: Any, limits: Limits) -> list[dict[str, Any]] | None:
    found: dict[str, dict[str, Any]] = {}
    for location in element:
        if location.tag != "location" or len(location) or len(location.attrib) > limits.max_attributes:
            return None
        location_id = location.get("id")
        raw = location.get("quantity")
        if (
            not location_id
            or location_id in found
            or location_id.strip() != location_id
            or raw is None
            or len(raw) > _FAST_DIGITS
            or not raw.isascii()
            or not raw.isdigit()
        ):
            return None
        found[location_id] = {"locationId": location_id, "quantity": int(raw)}
    return [found[key] for key in sorted(found)]
