"""The generic format's checked path: a product read field by field, with every problem located.

The fast path in ``parsers.generic`` reads the usual product in one pass; whatever it declines (a
problem, a tombstone, whitespace to trim, an unknown nested element) is read here, and what is said
about it comes from here. The two give the same record for any product both accept (a test holds
them together).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from parsers import fields
from parsers.base import Item, ParserFailed, Record
from parsers.diagnostics import check_attributes, check_depth, has_entity_reference, too_much_text
from parsers.fields import FieldError
from parsers.limits import Limits
from parsers.records import RecordReader

ROOT = "inventory"
PRODUCT = "product"
_SINGLE_FIELDS = ("sku", "name", "quantity", "availability", "price", "locations")
#: Plain digits up to this length are quantities without further checks (18 digits fit in int64).
_FAST_DIGITS = fields.MAX_QUANTITY_DIGITS
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


class _ProductReader(RecordReader):
    """Collects one product's fields and problems; a product with any problem yields no record."""

    def field_text(self, child: Any, field: str) -> str | None:
        """Text of the product's child ``<field>`` (the hot path: one call per field, nothing more)."""
        if len(child) and has_entity_reference(child):
            message = f"<{field}> contains an entity reference; entities are never expanded: send literal text"
            self.entity_problem(field, message, self.where(child, f"/{field}"))
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


def checked_product(element: Any, index: int, limits: Limits) -> Iterator[Item]:
    """One product's record, or the problems that stop it."""
    reader = _ProductReader(element, index, limits, f"/{ROOT}/{PRODUCT}[{index}]", (element.get("id") or "").strip())
    if _is_tombstone(reader, element):
        if not reader.problems:
            yield Record(index=index, product_id=reader.product_id, fields=None, line=reader.line, path=reader.path)
        yield from reader.problems
        return
    values, location_list = _values(reader, element)
    quantity = _quantity(reader, values, location_list)
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


def _is_tombstone(reader: _ProductReader, element: Any) -> bool:
    """Checks the product's own limits, id and ``deleted`` flag; whether it is a tombstone."""
    limits, index = reader.limits, reader.index
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
    if deleted_raw is None:
        return False
    flag = deleted_raw.strip().lower()
    if flag in _TRUE:
        return True
    if flag not in _FALSE:
        reader.problem("deleted", f"deleted '{deleted_raw}' must be true or false", value=deleted_raw, sub="/@deleted")
    return False


def _values(reader: _ProductReader, element: Any) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The product's fields, each read once (a repeated one is a problem), and its locations if sent."""
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
    return values, location_list


def _quantity(reader: _ProductReader, values: dict[str, Any], location_list: list[dict[str, Any]] | None) -> Any:
    """The quantity sent, or its locations' sum when none is; the two must agree when both are."""
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
    return quantity


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
