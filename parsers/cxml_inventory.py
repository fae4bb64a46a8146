"""cXML ``<Inventory>``: which of its quantities is the stock a shopper can buy.

A ``<ProductActivityDetails>`` reports one product's stock split by type (unrestricted use, blocked,
under quality inspection, in transit, …). The event contract has one ``quantity``: what a shopper can
buy. So one type, chosen by a rule, becomes the quantity, and no other type is ever added to it.

Where each rule comes from (cXML 1.2.063 DTD, ``http://xml.cxml.org/schemas/cXML/1.2.063/cXML.dtd``;
``Fulfill.dtd`` of that release, and both DTDs of 1.2.050 and 1.2.053, define ``Inventory`` the same
way; copies are in the public FriendsOfCXML/cxml-php repository under ``tests/metadata/cxml/dtd/``):

- ``Inventory`` holds up to fifteen children, each optional and at most once, in a fixed order:
  thirteen stock quantities (:data:`QUANTITY_TYPES`, each a ``quantity`` attribute of type ``r8``
  and an optional ``UnitOfMeasure``), then ``OrderQuantity`` and ``DaysOfSupply``, which carry a
  ``minimum`` and ``maximum`` and no stock at all.
- What each type means is the DTD's comment on its element: unrestricted-use stock is the physical
  stock that is always available; blocked stock is expressly not counted as unrestricted; the others
  are stock under inspection, reserved for promotions, moving between plants or to a subcontractor,
  withdrawn but not yet arrived, not yet finished, scrap, or not stock at all (a level to keep, an
  increment). None of those can be sold now, so :func:`available_rule` refuses them.
- ``StockOnHandQuantity`` is, by the DTD's comment, a value calculated from the stock types for a
  customer, location and material, and its ``quantity`` is required where the unrestricted one's is
  optional. Supplier-managed-inventory reports (``ProductActivityHeader/@processType`` "SMI") may
  send it alone, and such DTD-valid files were quarantined before (issue 20). Because it may
  include stock that is not free, it is the fallback of the default rule
  (:data:`DEFAULT_AVAILABLE`: unrestricted use, else stock on hand), and a partner whose stock on
  hand includes blocked stock configures ``[UnrestrictedUseQuantity]`` alone (``partners.yaml``,
  ``cxml: {available_quantity: [...]}``; docs/formats.md "cXML ProductActivityMessage").
- ``ConsignmentInventory`` (a sibling of ``Inventory``) is stock at the buyer still owned by the
  supplier; it is not read.

The other types are carried nowhere: the contract has no field for them. They are only named in the
problem a product gets when it has none of the types its partner's rule accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from parsers import fields
from parsers.base import truncate
from parsers.fields import FieldError

#: The stock quantities of ``<Inventory>`` in the DTD's order, with why each one can or cannot be sold.
QUANTITY_TYPES: dict[str, str] = {
    "SubcontractingStockInTransferQuantity": "stock in transfer to a subcontractor",
    "UnrestrictedUseQuantity": "unrestricted-use stock",
    "BlockedQuantity": "blocked stock",
    "QualityInspectionQuantity": "stock under quality inspection",
    "PromotionQuantity": "stock reserved for promotions",
    "StockInTransferQuantity": "stock in transfer between plants",
    "IncrementQuantity": "an increment to stock, not a stock level",
    "RequiredMinimumQuantity": "a minimum stock level to keep, not stock",
    "RequiredMaximumQuantity": "a maximum stock level, not stock",
    "StockOnHandQuantity": "stock on hand",
    "WorkInProcessQuantity": "work in process, not finished goods",
    "IntransitQuantity": "stock in transit",
    "ScrapQuantity": "scrap",
}
#: ``<Inventory>`` children that carry a minimum and a maximum, never a stock quantity.
LIMIT_TYPES: dict[str, str] = {
    "OrderQuantity": "the minimum and maximum order quantity, not stock",
    "DaysOfSupply": "the minimum and maximum days of supply, not stock",
}
#: The types that may make up available quantity: stock that is there and may be sold.
SELLABLE = ("UnrestrictedUseQuantity", "StockOnHandQuantity")
#: Unrestricted-use stock when the product reports it, else stock on hand (supplier-managed inventory).
DEFAULT_AVAILABLE: tuple[str, ...] = SELLABLE
#: A plain cXML decimal: digits, optionally a dot and more digits (``120``, ``120.000``, ``1.5``).
_DECIMAL = re.compile(r"(?=\.?[0-9])(?P<units>[0-9]*)(?:\.(?P<fraction>[0-9]*))?")
_ACCEPTS = f"available_quantity accepts {' and '.join(SELLABLE)}, in the order they are tried"


def available_rule(names: Iterable[str]) -> tuple[str, ...]:
    """The quantity types, tried in order, whose first present one is a product's available quantity.

    Raises ``ValueError`` naming the bad type: blocked, in-transit and the other types are refused
    here, once, so no configuration can make them stock a shopper can buy.
    """
    rule = tuple(names)
    if not rule:
        raise ValueError(f"name at least one quantity type; {_ACCEPTS}")
    for name in rule:
        meaning = QUANTITY_TYPES.get(name) or LIMIT_TYPES.get(name)
        if name in SELLABLE:
            continue
        if meaning is not None:
            raise ValueError(f"{name} is {meaning}: a shopper cannot buy it; {_ACCEPTS}")
        raise ValueError(f"'{truncate(name, 80)}' is not a cXML Inventory quantity type; {_ACCEPTS}")
    repeated = next((name for index, name in enumerate(rule) if name in rule[:index]), None)
    if repeated is not None:
        raise ValueError(f"{repeated} is named twice; name each type once")
    return rule


def first_present(inventory: Any, rule: Sequence[str]) -> str | None:
    """The first type of ``rule`` that ``inventory`` holds, if any."""
    return next((name for name in rule if inventory.find(name) is not None), None)


def not_available(inventory: Any, rule: Sequence[str]) -> str:
    """Why a product has no available quantity: what it holds, and what its partner's rule accepts."""
    if inventory is None:
        found = "it has no <Inventory>"
    else:
        names = list(dict.fromkeys(child.tag for child in inventory if isinstance(child.tag, str)))
        shown = [_described(str(truncate(name, 80))) for name in names[:5]] + (["…"] if len(names) > 5 else [])
        found = f"its <Inventory> holds {', '.join(shown)}" if names else "its <Inventory> is empty"
    return (
        f"the product has no stock a shopper can buy: {found}, and its partner counts only {', else '.join(rule)} "
        "(cxml.available_quantity in partners.yaml); blocked, in-transit, in-inspection and other stock never "
        f'counts; send e.g. <Inventory><{rule[0]} quantity="120"><UnitOfMeasure>EA</UnitOfMeasure></{rule[0]}>'
        "</Inventory>"
    )


def _described(name: str) -> str:
    if name in QUANTITY_TYPES:
        return f"{name} ({QUANTITY_TYPES[name]})"
    if name in LIMIT_TYPES:
        return name
    return f"{name} (not a cXML Inventory element)"


def whole_units(raw: str | None) -> int:
    """A cXML quantity (a decimal) as whole units: ``120.0`` is 120, ``1.5`` is refused.

    The dot is always cXML's decimal mark, so ``1.000`` is one unit; the shared
    ``fields.whole_number`` would call it ambiguous, which it is not in this format.
    """
    text = (raw or "").strip()
    decimal = _DECIMAL.fullmatch(text)
    if decimal:
        if not (decimal.group("fraction") or "").strip("0"):
            return fields.whole_number(decimal.group("units") or "0")
        raise FieldError(
            f"'{text}' is a fraction of a unit; inventory counts whole units: send e.g. 120 (or 120.0), and a "
            "unit of measure small enough that the stock is a whole number"
        )
    if "," in text:
        raise FieldError(f"'{text}' uses a comma; cXML quantities use a dot as the decimal mark and no separators")
    return fields.whole_number(text)  # negative, empty or not a number: its message says which
