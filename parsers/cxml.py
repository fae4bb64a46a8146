"""cXML ProductActivityMessage: the supplier inventory report of Ariba-style procurement networks.

Suppliers already send this document to their buyers' networks, so accepting it unchanged spares
them a second export. Real files start with ``<!DOCTYPE cXML SYSTEM "http://xml.cxml.org/…/Fulfill.dtd">``:
that DTD is never fetched nor loaded (``secure_iterparse``), so the file parses offline and a hostile
DOCTYPE cannot make dropgate connect anywhere. Streams through the shared front end
(``parsers.front_end``) filtered to the tags it needs and releases each ``<ProductActivityDetails>``
once emitted.

Format rules:
- the root is ``<cXML>`` with no namespace carrying ``<Message><ProductActivityMessage>``; any other
  cXML document (OrderRequest, ShipNoticeRequest, …) is not inventory and is an unknown format.
- ``ProductActivityHeader/@creationDate`` is the snapshot time (``asOf``), else the root's
  ``timestamp``; the one used must be ISO 8601 with a zone.
- one record per ``<ProductActivityDetails>``: ``ItemID/SupplierPartID`` is the ``productId`` (and
  ``sku``), ``Description`` the name.
- the quantity is one ``<Inventory>`` quantity, the first the partner's rule names that the product
  holds (default ``UnrestrictedUseQuantity``, else ``StockOnHandQuantity``); blocked, in-transit,
  in-inspection and the other types never count, and a product with none of the rule's types is a
  problem naming what it holds (``parsers.cxml_inventory``, which says where each rule comes from).
  The chosen element's ``quantity`` is required: the DTD makes it optional on the unrestricted type,
  but a type sent without a number says nothing about the stock, and falling back to the next type
  (stock on hand may include blocked stock) could overstate it.
- cXML quantities are decimals: ``120`` and ``120.0`` are 120 units, ``1.5`` is refused (dropgate
  counts whole units), and a dot is always the decimal mark (``1.000`` is one unit, not a thousand).
- availability is ``in_stock`` when the quantity is > 0, else ``out_of_stock``.
- ``BuyerPartID``, ``UnitOfMeasure``, ``Classification``, ``ConsignmentInventory`` and other elements
  are ignored.

Where the rules come from: the cXML 1.2.063 DTD (``http://xml.cxml.org/schemas/cXML/1.2.063/cXML.dtd``;
a copy is in the public FriendsOfCXML/cxml-php repository, ``tests/metadata/cxml/dtd/``).
``ProductActivityMessage`` is a ``ProductActivityHeader`` and one or more ``ProductActivityDetails``,
each ``(ItemID | ResourceID), Description?, …, Inventory?, ConsignmentInventory?, …``; the header's
``creationDate`` is a datetime with a zone and its ``processType`` names the scenario (``SMI`` is
supplier-managed inventory). ``Inventory``'s children, their ``quantity`` attributes and what each
stock type is are cited in ``parsers.cxml_inventory``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, BinaryIO

from parsers import fields
from parsers.base import Document, Item, Problem, Record, truncate
from parsers.cxml_inventory import DEFAULT_AVAILABLE, available_rule, first_present, not_available
from parsers.cxml_inventory import whole_units as whole_units  # re-exported: callers import it from here
from parsers.diagnostics import (
    check_attributes,
    check_depth,
    foreign_root_problem,
    has_entity_reference,
    snapshot_time,
    too_much_text,
    unknown_format_problem,
)
from parsers.fields import FieldError
from parsers.front_end import Items, RecordScan
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.records import RecordReader
from parsers.xml_stream import SNIFF_BYTES, Sniffed, local_name, source_line

ROOT = "cXML"
MESSAGE = "Message"
ACTIVITY = "ProductActivityMessage"
HEADER = "ProductActivityHeader"
DETAILS = "ProductActivityDetails"
PART_ID = "SupplierPartID"
ACTIVITY_PATH = f"/{ROOT}/{MESSAGE}/{ACTIVITY}"
#: cXML's other top-level payload wrappers: a document holding one of them is never inventory.
_OTHER_PAYLOADS = ("Request", "Response")
_PAYLOAD_NAME = re.compile(rb"<(?:Message|Request|Response)\b[^>]*>\s*<([A-Za-z_][\w.\-]*)")


class CxmlProductActivityParser:
    """Parser for cXML ProductActivityMessage documents. Bump ``version`` with every behavioural change."""

    name = "cxml-product-activity"
    version = "2"
    expects = f"<{ROOT}> with no namespace holding a <{ACTIVITY}> (cXML supplier inventory)"

    def __init__(self, available_quantity: Sequence[str] = DEFAULT_AVAILABLE) -> None:
        #: The partner's rule: the first of these ``<Inventory>`` quantities a product holds is its quantity.
        self.available_quantity = available_rule(available_quantity)

    def matches(self, sniffed: Sniffed) -> bool:
        return sniffed.root == ROOT and sniffed.namespace is None and sniffed.mentions(ACTIVITY)

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        # An OrderRequest or a foreign document is refused before parsing, unless the head is too short to tell.
        return _Scan(limits, self.expects, self.available_quantity).items(
            stream,
            accepts=lambda head: self.matches(head) or not _head_is_conclusive(head),
            refuse=_not_activity,
        )


class _Scan(RecordScan):
    """One cXML document: a record per ``<ProductActivityDetails>`` of its activity message."""

    tags = (ROOT, MESSAGE, *_OTHER_PAYLOADS, ACTIVITY, HEADER, DETAILS)
    id_word = PART_ID
    before_first = f"before the first <{DETAILS}>"

    def __init__(self, limits: Limits, expects: str, available: tuple[str, ...]) -> None:
        super().__init__(limits, expects)
        self.available = available
        self.root: Any = None
        self.head = _Head()

    def start(self, element: Any) -> Items:
        tag, root, head = element.tag, self.root, self.head
        if tag == ROOT and element.getparent() is None:
            self.root = element
            check_attributes(element, self.limits, path=f"/{ROOT}")
            head.timestamp = element.get("timestamp")
            head.root_line = source_line(element)
        elif tag in _OTHER_PAYLOADS and root is not None and element.getparent() is root:
            return self._refuse(tag, element)
        elif tag == ACTIVITY and _is_activity(element, root):
            head.seen_activity = True
        elif tag == DETAILS and head.seen_activity and _in_activity(element, root):
            items = [] if head.emitted else list(head.document())
            self.open(element)
            return items
        return ()

    def read(self, element: Any) -> Items:
        return self.read_ids(_details(element, self.index, self.limits, self.available))

    def end(self, element: Any) -> Items:
        tag, root, head = element.tag, self.root, self.head
        if tag == HEADER and head.seen_activity and _in_activity(element, root):
            head.read(element)
        elif tag == ACTIVITY and head.seen_activity and not head.emitted:
            return head.document()  # an activity message without details: nothing to change
        elif tag == MESSAGE and root is not None and element.getparent() is root and not head.seen_activity:
            payload = next((local_name(child.tag) for child in element if isinstance(child.tag, str)), None)
            return self._refuse(payload, element)
        return ()

    def _refuse(self, payload: str | None, element: Any) -> Items:
        self.stopped = True
        return (_not_activity(self.sniffed, self.expects, payload=payload, line=source_line(element)),)

    def cut_id(self, element: Any) -> str | None:
        # The product is cut off, but what was parsed of it may already name it.
        part = element.find(f"ItemID/{PART_ID}")
        part_id = truncate((part.text or "").strip()) if part is not None else None
        return part_id or None

    def finish(self, root: Any) -> Items:
        if self.root is None:
            return (foreign_root_problem(root, self.expects, truncate_value=True),)
        if not self.head.seen_activity:
            return (_not_activity(self.sniffed, self.expects, line=source_line(self.root)),)
        return self.head.late


def _head_is_conclusive(sniffed: Sniffed) -> bool:
    """Whether the head alone proves the document is not a product activity message.

    A cXML ``<Header>`` is normally a few hundred bytes, but credentials and signatures can push the
    payload past the sniffed head; then the parser finds out while streaming instead.
    """
    if sniffed.root != ROOT or sniffed.namespace is not None:
        return True
    return len(sniffed.head) < SNIFF_BYTES or any(sniffed.mentions(name) for name in _OTHER_PAYLOADS)


def _not_activity(sniffed: Sniffed, expects: str, *, payload: str | None = None, line: int | None = None) -> Problem:
    problem = unknown_format_problem(sniffed, expects)
    if sniffed.root != ROOT or sniffed.namespace is not None:
        return problem
    if payload is None:
        found = _PAYLOAD_NAME.search(sniffed.head)
        payload = found.group(1).decode("utf-8", errors="replace") if found else None
    carries = f"<{payload}>" if payload else f"no <{ACTIVITY}>"
    return replace(
        problem,
        message=(
            f"this cXML document carries {carries}, not an inventory report; only cXML {ACTIVITY} documents "
            f"are accepted here (expected {expects})"
        ),
        line=line or problem.line,
        value=truncate(payload) if payload else problem.value,
    )


def _is_activity(element: Any, root: Any) -> bool:
    parent = element.getparent()
    return root is not None and parent is not None and parent.tag == MESSAGE and parent.getparent() is root


def _in_activity(element: Any, root: Any) -> bool:
    """A direct child of ``/cXML/Message/ProductActivityMessage`` (a details or the header)."""
    parent = element.getparent()
    return parent is not None and parent.tag == ACTIVITY and _is_activity(parent, root)


class _Head:
    """The snapshot time: ``creationDate`` of the activity header, else the root's ``timestamp``."""

    def __init__(self) -> None:
        self.timestamp: str | None = None
        self.root_line: int | None = None
        self.creation: str | None = None
        self.header_line: int | None = None
        self.seen_header = False
        self.seen_activity = False
        self.emitted = False
        #: Problems found after the Document went out (a header after the first details).
        self.late: list[Problem] = []

    def read(self, header: Any) -> None:
        if self.emitted or self.seen_header:
            self.late.append(
                Problem(
                    kind="validation",
                    message=(
                        f"<{HEADER}> must come once, before the first <{DETAILS}>: its creationDate dates the "
                        "whole report"
                    ),
                    line=source_line(header),
                    path=f"{ACTIVITY_PATH}/{HEADER}",
                    field=HEADER,
                    value=truncate(header.get("creationDate")),
                )
            )
            return
        self.seen_header = True
        self.creation = header.get("creationDate")
        self.header_line = source_line(header)

    def document(self) -> Iterator[Item]:
        self.emitted = True
        if self.creation is not None:
            used = (self.creation, "creationDate", self.header_line, f"{ACTIVITY_PATH}/{HEADER}/@creationDate")
        elif self.timestamp is not None:
            used = (self.timestamp, "timestamp", self.root_line, f"/{ROOT}/@timestamp")
        else:
            used = None
        as_of: datetime | None = None
        if used is not None:
            raw, name, line, path = used
            advice = "; it is the time the inventory was taken"
            as_of, problem = snapshot_time(raw, name, line=line, path=path, field=name, advice=advice)
            if problem is not None:
                yield problem
        yield from self.late
        self.late = []
        yield Document(root=ROOT, namespace=None, as_of=as_of)


class _DetailsReader(RecordReader):
    """Collects one details element's values and problems; any problem means no record."""

    entity_advice = "send plain text"

    def only(self, parent: Any, tag: str, field: str, sub: str) -> Any:
        """The one child ``tag`` of ``parent``; a second one is a problem (which of them would be right?)."""
        found = parent.findall(tag)
        for extra in found[1:]:
            self.problem(field, f"<{tag}> appears more than once; send it once", element=extra, sub=f"{sub}/{tag}")
        return found[0] if found else None


def _details(element: Any, index: int, limits: Limits, available: tuple[str, ...]) -> list[Record | Problem]:
    """One product's record, or its problems (a list: the caller needs the product id afterwards)."""
    reader = _DetailsReader(element, index, limits, f"{ACTIVITY_PATH}/{DETAILS}[{index}]")
    check_attributes(element, limits, path=reader.path, record=index)
    check_depth(element, limits, path=reader.path, record=index)

    item_id = reader.only(element, "ItemID", "productId", "")
    part = reader.only(item_id, PART_ID, "productId", "/ItemID") if item_id is not None else None
    if part is not None:
        reader.product_id = (reader.text(part, "productId", f"/ItemID/{PART_ID}") or "").strip()
    if not reader.product_id and not (part is not None and len(part) and has_entity_reference(part)):
        reader.problem(
            "productId",
            f"the product has no {PART_ID}; every <{DETAILS}> needs <ItemID><{PART_ID}>SP-100</{PART_ID}></ItemID>",
            value=part.text if part is not None else None,
            element=part if part is not None else item_id,
            sub=f"/ItemID/{PART_ID}" if item_id is not None else "/ItemID",
        )

    name = None
    description = reader.only(element, "Description", "name", "")
    if description is not None:
        name = _description(reader, description)

    count = _count(reader, element, available)
    if reader.problems or count is None:
        return list(reader.problems)
    record = Record(
        index=index,
        product_id=reader.product_id,
        fields={
            "sku": reader.product_id,
            "name": name,
            "quantity": count,
            "availability": "in_stock" if count > 0 else "out_of_stock",
            "price": None,
            "locations": [],
        },
        line=reader.line,
        path=reader.path,
    )
    return [record]


def _count(reader: _DetailsReader, element: Any, available: tuple[str, ...]) -> int | None:
    """The available stock in whole units (the first type of ``available`` present); ``None`` after a problem."""
    inventory = reader.only(element, "Inventory", "quantity", "")
    name = first_present(inventory, available) if inventory is not None else None
    if name is None:
        reader.problem(
            "quantity",
            not_available(inventory, available),
            element=inventory,
            sub="/Inventory" if inventory is not None else "",
        )
        return None
    chosen = reader.only(inventory, name, "quantity", "/Inventory")
    raw = chosen.get("quantity")
    sub = f"/Inventory/{name}"
    if raw is None:
        reader.problem(
            "quantity",
            f'<{name}> has no quantity; send <{name} quantity="120"><UnitOfMeasure>EA</UnitOfMeasure></{name}>',
            element=chosen,
            sub=sub,
        )
        return None
    try:
        return whole_units(raw)
    except FieldError as error:
        reader.problem("quantity", f"quantity {error}", value=raw, element=chosen, sub=f"{sub}/@quantity")
        return None


def _description(reader: _DetailsReader, description: Any) -> str | None:
    """cXML descriptions are mixed content (text and an optional ``<ShortName>``): the text, else the short name.

    The text is what buyers see as the item's description; the short name is only a fallback.
    """
    parts = [reader.text(description, "name", "/Description") or ""]
    short_name: str | None = None
    for child in description:
        if child.tag == "ShortName" and short_name is None:
            short_name = fields.text_value(reader.text(child, "name", "/Description/ShortName"))
        parts.append(child.tail or "")
    text = "".join(parts).strip()
    if len(text) > reader.limits.max_text_chars:
        raise too_much_text("<Description>", len(text), reader.limits, **reader.where(description, "/Description"))
    return text or short_name
