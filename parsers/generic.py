"""The generic partner inventory format (``<inventory><product id=…>``).

Streams with ``iterparse`` filtered to the two tags it needs, so per-product cost is one ``end``
event plus a walk over the product's own children, and each product is released once emitted.

Format rules (see README "The generic partner format"):
- ``id`` is required and becomes ``productId``; ``deleted="true"`` means a tombstone.
- ``quantity`` is a whole number ≥ 0; optional when ``locations`` is present (then their sum);
  when both are present they must agree.
- without ``availability``: ``in_stock`` when quantity > 0, else ``out_of_stock``.
- ``generatedAt`` on the root is the snapshot time (``asOf``).
- unknown child elements are ignored, so partners can add fields without breaking ingestion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from lxml import etree

from parsers import fields
from parsers.base import Document, Item, ParserFailed, Problem, Record, truncate
from parsers.doctype import DoctypeRefused
from parsers.fields import FieldError
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.records import RecordReader
from parsers.segments import NotPlain, Segment, check_first_root
from parsers.xml_stream import (
    RecordWindow,
    Sniffed,
    check_attributes,
    check_depth,
    has_entity_reference,
    release,
    secure_iterparse,
    sniff_document,
    sniffed_from,
    source_line,
    syntax_problem,
    syntax_problem_after,
    too_much_text,
)

ROOT = "inventory"
PRODUCT = "product"
_SINGLE_FIELDS = ("sku", "name", "quantity", "availability", "price", "locations")
#: Plain digits up to this length are quantities without further checks (18 digits fit in int64).
_FAST_DIGITS = fields.MAX_QUANTITY_DIGITS
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


class GenericInventoryParser:
    """Parser for the generic format. Bump ``version`` with every behavioural change."""

    name = "generic-xml"
    version = "1"
    expects = f"<{ROOT}> with no namespace (the generic inventory format)"

    def matches(self, sniffed: Sniffed) -> bool:
        return sniffed.root == ROOT and sniffed.namespace is None

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        stream, _, refused = sniff_document(stream, accepts=self.matches, expects=self.expects, refuse=_unknown_format)
        if refused is not None:
            yield refused
            return
        index = 0
        current_id: str | None = None
        inside_product = False
        seen_root = False
        window = RecordWindow(
            stream,
            limits.max_record_bytes,
            after=lambda: f"after record {index}, productId {current_id}" if index else "before the first product",
        )
        context = secure_iterparse(cast(BinaryIO, window), events=("start", "end"), tag=(ROOT, PRODUCT))
        try:
            for event, element in context:
                if event == "start":
                    if element.tag == ROOT and element.getparent() is None:
                        seen_root = True
                        check_attributes(element, limits, path=f"/{ROOT}")
                        yield from _document(element)
                    elif element.tag == PRODUCT:
                        index += 1
                        current_id = (element.get("id") or "").strip() or None
                        inside_product = True
                    continue
                if element.tag == PRODUCT:
                    inside_product = False
                    window.mark()
                    record = _plain_product(element, index, limits)
                    if record is not None:
                        yield record
                    else:
                        yield from _product(element, index, limits)
                    release(element)
        except DoctypeRefused as doctype:  # before any record: nothing of the document was read
            yield doctype.problem()
            return
        except etree.XMLSyntaxError as error:
            if inside_product:
                yield syntax_problem(error, record=index, product_id=current_id)
            else:
                yield syntax_problem_after(error, index, current_id)
            return
        if not seen_root:
            root = context.root
            yield _unknown_format(
                sniffed_from(root), self.expects, line=source_line(root) if root is not None else None
            )

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

    def segment_records(self, root: Any, segment: Segment, limits: Limits = DEFAULT_LIMITS) -> Iterator[Record]:
        """The segment's products as :meth:`parse` gives them; :class:`NotPlain` for anything else."""
        index = segment.first_index - 1
        offset = segment.line_offset
        for element in root:
            if element.tag != PRODUCT:
                raise NotPlain(f"<{element.tag}> between products")
            index += 1
            record = _plain_product(element, index, limits)
            if record is None:
                raise NotPlain(f"product {index} needs the checked path")
            if offset and record.line is not None:
                record.line += offset
            yield record
        if index - segment.first_index + 1 != segment.records:
            raise NotPlain("the segment holds products the cutter did not count")


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


def _document(root: Any) -> Iterator[Item]:
    raw = root.get("generatedAt")
    as_of = None
    if raw is not None:
        try:
            as_of = fields.timestamp(raw)
        except FieldError as error:
            yield Problem(
                kind="validation",
                message=f"generatedAt {error}",
                line=source_line(root),
                path=f"/{ROOT}/@generatedAt",
                field="generatedAt",
                value=truncate(raw),
            )
    partner = (root.get("partner") or "").strip() or None
    yield Document(root=ROOT, namespace=None, partner=partner, as_of=as_of)


class _ProductReader(RecordReader):
    """Collects one product's fields and problems; a product with any problem yields no record."""

    def field_text(self, child: Any, field: str) -> str | None:
        """Text of the product's child ``<field>`` (the hot path: one call per field, nothing more)."""
        if len(child) and has_entity_reference(child):
            self.problems.append(
                Problem(
                    kind="security_limit",
                    message=f"<{field}> contains an entity reference; entities are never expanded: send literal text",
                    field=field,
                    **self.where(child, f"/{field}"),
                )
            )
            return None
        text: str | None = child.text
        if text is not None and len(text) > self.limits.max_text_chars:
            raise too_much_text(f"<{field}>", len(text), self.limits, **self.where(child, f"/{field}"))
        return text

    def convert(self, child: Any, field: str, converter: Any, raw: str | None, sub: str = "") -> Any:
        try:
            return converter(raw)
        except FieldError as error:
            self.problem(field, f"{field} {error}", value=raw, element=child, sub=sub or f"/{child.tag}")
            return None
        except Exception as error:  # a converter bug: quarantine naming the field, never a retry
            raise ParserFailed(error, field=field, **self.where(child, sub or f"/{child.tag}")) from error


_LEAVES = frozenset({"sku", "name", "quantity", "availability", "price"})
_AVAILABILITY = frozenset(fields.AVAILABILITY_VALUES)
_DECIMAL = fields.DECIMAL_PATTERN.fullmatch
_CURRENCY = fields.CURRENCY_PATTERN.fullmatch


def _plain_product(element: Any, index: int, limits: Limits) -> Record | None:
    """The usual product read in one pass, or ``None`` when anything about it needs :func:`_product`.

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
    return Record(
        index=index,
        product_id=product_id,
        fields={
            "sku": sku,
            "name": name,
            "quantity": quantity,
            "availability": availability or ("in_stock" if quantity else "out_of_stock"),
            "price": price,
            "locations": locations or [],
        },
        line=source_line(element),
        path=_path(index),
    )


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


def _product(element: Any, index: int, limits: Limits) -> Iterator[Item]:
    reader = _ProductReader(element, index, limits, f"/{ROOT}/{PRODUCT}[{index}]", (element.get("id") or "").strip())
    pid = reader.product_id or None
    check_attributes(element, limits, path=reader.path, record=index, product_id=pid)
    for child in element:
        # The usual record nests only locations/location (depth 3, always allowed): walk the whole
        # subtree only when something else nests.
        if len(child) and (child.tag != "locations" or any(len(grandchild) for grandchild in child)):
            check_depth(element, limits, path=reader.path, record=index, product_id=pid)
            break
    if not reader.product_id:
        reader.problem(
            "productId",
            'product has no id; every product needs a non-empty id attribute, e.g. <product id="P0000001">',
            value=element.get("id"),
            sub="/@id",
        )
    deleted_raw = element.get("deleted")
    deleted = False
    if deleted_raw is not None:
        flag = deleted_raw.strip().lower()
        if flag in _TRUE:
            deleted = True
        elif flag not in _FALSE:
            reader.problem(
                "deleted",
                f"deleted '{deleted_raw}' must be true or false",
                value=deleted_raw,
                sub="/@deleted",
            )
    if deleted:
        if not reader.problems:
            yield Record(index=index, product_id=reader.product_id, fields=None, line=reader.line, path=reader.path)
        yield from reader.problems
        return

    values: dict[str, Any] = {}
    location_list: list[dict[str, Any]] | None = None
    for child in element:
        tag = child.tag
        if tag not in _SINGLE_FIELDS:
            continue  # unknown elements are the partner's business; they do not break ingestion
        if tag in values or (tag == "locations" and location_list is not None):
            reader.problem(
                tag, f"<{tag}> appears more than once; send it once per product", element=child, sub=f"/{tag}"
            )
            continue
        if tag == "sku" or tag == "name":
            values[tag] = fields.text_value(reader.field_text(child, tag))
        elif tag == "quantity":
            text = reader.field_text(child, tag)
            if text is not None and len(text) <= _FAST_DIGITS and text.isascii() and text.isdigit():
                values[tag] = int(text)  # the common case; anything else goes through the checked path
            else:
                values[tag] = reader.convert(child, tag, fields.whole_number, text)
        elif tag == "availability":
            values[tag] = reader.convert(child, tag, fields.availability, reader.field_text(child, tag))
        elif tag == "price":
            amount = reader.convert(child, "price", fields.decimal_amount, reader.field_text(child, tag))
            currency = reader.convert(
                child, "price.currency", fields.currency_code, child.get("currency"), "/price/@currency"
            )
            values[tag] = {"amount": amount, "currency": currency}
        else:
            location_list = _locations(reader, child)
    quantity = values.get("quantity")
    if location_list is not None:
        total = sum(loc["quantity"] for loc in location_list if loc["quantity"] is not None)
        too_large = fields.total_too_large(total, "its locations")
        if too_large:
            reader.problem("quantity", too_large, value=total, sub="/locations")
        elif "quantity" not in values:
            quantity = total
        elif quantity is not None and quantity != total:
            parts = " + ".join(str(loc["quantity"]) for loc in location_list)
            reader.problem(
                "quantity",
                f"quantity {quantity} does not equal the sum of its locations ({parts} = {total}); "
                "send the total, or omit <quantity> to use the sum",
                value=quantity,
                sub="/quantity",
            )
    elif "quantity" not in values:
        reader.problem("quantity", "product has neither <quantity> nor <locations>; send at least one of them")
    if reader.problems:
        yield from reader.problems
        return
    availability = values.get("availability") or ("in_stock" if quantity else "out_of_stock")
    yield Record(
        index=index,
        product_id=reader.product_id,
        fields={
            "sku": values.get("sku"),
            "name": values.get("name"),
            "quantity": quantity,
            "availability": availability,
            "price": values.get("price"),
            "locations": location_list or [],
        },
        line=reader.line,
        path=reader.path,
    )


def _locations(reader: _ProductReader, element: Any) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    position = 0
    for loc in element:
        if loc.tag != "location":
            continue
        position += 1
        sub = f"/locations/location[{position}]"
        if len(loc.attrib) > reader.limits.max_attributes:
            check_attributes(loc, reader.limits, path=reader.path + sub, record=reader.index)
        loc_id = (loc.get("id") or "").strip()
        if not loc_id:
            reader.problem(
                "locations.locationId",
                'location has no id; e.g. <location id="WH1" quantity="7"/>',
                element=loc,
                sub=sub + "/@id",
            )
            continue
        raw = loc.get("quantity")
        if raw is not None and len(raw) <= _FAST_DIGITS and raw.isascii() and raw.isdigit():
            quantity: int | None = int(raw)
        else:
            quantity = reader.convert(loc, "locations.quantity", fields.whole_number, raw, sub + "/@quantity")
        if loc_id in found:
            reader.problem(
                "locations.locationId",
                f"location '{loc_id}' appears more than once in this product",
                value=loc_id,
                element=loc,
                sub=sub + "/@id",
            )
            continue
        found[loc_id] = {"locationId": loc_id, "quantity": quantity}
    return [found[key] for key in sorted(found)]
