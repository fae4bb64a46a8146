"""The legacy Amazon MWS XML inventory feed (``<AmazonEnvelope>`` with ``MessageType`` Inventory).

Partners who already produce this feed for Amazon can drop the same file here unchanged, so the
rules follow Amazon's ``amzn-envelope.xsd``/``Inventory.xsd`` rather than inventing new ones.
Streams through the shared front end (``parsers.front_end``) filtered to the few tags it needs; each
``<Message>`` is released once emitted, so memory stays flat however many messages the feed holds.

Format rules:
- the root is ``<AmazonEnvelope>`` with no namespace; ``<MessageType>`` must be ``Inventory``
  (a price or product feed is refused as a whole, not message by message).
- ``<PurgeAndReplace>`` true → the file is a full snapshot, false → a delta, absent → the
  partner's configuration decides. It and ``<MessageType>`` precede the first ``<Message>``.
- one record per ``<Message>``: ``OperationType`` ``Update`` (the default) or ``PartialUpdate`` is a
  state, ``Delete`` a tombstone. ``Inventory/SKU`` is the ``productId`` (and ``sku``).
- the stock is ``<Quantity>`` (a whole number; availability follows from it) or, without a count,
  ``<Available>`` true/false; both at once is ambiguous and refused, neither is refused.
- ``<Header>`` (the merchant id is Amazon's, not a dropgate partner id), ``FulfillmentLatency``,
  ``RestockDate``, ``SwitchFulfillmentTo`` and other Amazon-only elements are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, Literal

from parsers import fields
from parsers.base import Document, Item, Problem, Record, truncate
from parsers.diagnostics import check_attributes, check_depth, foreign_root_problem, has_entity_reference, too_much_text
from parsers.fields import FieldError
from parsers.front_end import Items, RecordScan
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.records import RecordReader
from parsers.xml_stream import Sniffed, local_name, source_line

ROOT = "AmazonEnvelope"
MESSAGE = "Message"
MESSAGE_TYPE = "MessageType"
PURGE = "PurgeAndReplace"
PAYLOAD = "Inventory"
SKU = "SKU"
OPERATIONS = ("Update", "PartialUpdate", "Delete")
#: Children of ``<Message>`` that are not its payload.
_ENVELOPE_CHILDREN = frozenset({"MessageID", "OperationType"})
#: The ``<Inventory>`` children dropgate reads → the contract field their problems are about.
_FIELDS = {SKU: "productId", "Quantity": "quantity", "Available": "availability"}
#: ``xsd:boolean`` spellings, which is what Amazon's schema types these flags as.
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


class AmazonInventoryParser:
    """Parser for Amazon MWS inventory feeds. Bump ``version`` with every behavioural change."""

    name = "amazon-inventory"
    version = "1"
    expects = f"<{ROOT}> with no namespace (Amazon inventory feed)"

    def matches(self, sniffed: Sniffed) -> bool:
        return sniffed.root == ROOT and sniffed.namespace is None

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        return _Scan(limits, self.expects).items(stream, accepts=self.matches)


class _Scan(RecordScan):
    """One feed: a record per ``<Message>`` of the envelope, the header as it streams past."""

    tags = (ROOT, MESSAGE_TYPE, PURGE, MESSAGE)
    record_word = "message"
    id_word = SKU
    before_first = f"before the first <{MESSAGE}>"

    def __init__(self, limits: Limits, expects: str) -> None:
        super().__init__(limits, expects)
        self.envelope: Any = None
        self.header = _Header()

    def start(self, element: Any) -> Items:
        tag = element.tag
        if tag == ROOT and element.getparent() is None:
            self.envelope = element
            check_attributes(element, self.limits, path=f"/{ROOT}")
        elif tag == MESSAGE and self.envelope is not None and element.getparent() is self.envelope:
            items = [] if self.header.emitted else list(self.header.document(self.envelope))
            if self.header.refused:
                self.stopped = True  # not an inventory feed: its messages would each be a problem
                return items
            self.open(element)
            return items
        return ()

    def read(self, element: Any) -> Items:
        return self.read_ids(_message(element, self.index, self.limits))

    def end(self, element: Any) -> Items:
        if self.envelope is not None and element.getparent() is self.envelope:
            self.header.read(element, self.limits)
        return ()

    def cut_id(self, element: Any) -> str | None:
        # The message is cut off, but what was parsed of it may already name the product.
        payload = element.find(PAYLOAD)
        sku = _sku_of(payload) if payload is not None else ""
        return sku or None

    def finish(self, root: Any) -> Items:
        if self.envelope is None:
            return (foreign_root_problem(root, self.expects, truncate_value=True),)
        if not self.header.emitted:
            return self.header.document(self.envelope)  # a feed without messages: nothing changes, but say so
        return self.header.problems  # header elements after the first message


class _Header:
    """``MessageType`` and ``PurgeAndReplace``: read as they stream past, emitted as one Document."""

    def __init__(self) -> None:
        self.snapshot: Literal["full", "delta"] | None = None
        self.seen: set[str] = set()
        self.problems: list[Problem] = []
        self.emitted = False
        #: The feed is not an inventory feed: nothing after the Document is worth reading.
        self.refused = False

    def problem(self, element: Any, name: str, message: str, value: object) -> None:
        self.problems.append(
            Problem(
                kind="validation",
                message=message,
                line=source_line(element),
                path=f"/{ROOT}/{name}",
                field=name,
                value=truncate(value),
            )
        )

    def read(self, element: Any, limits: Limits) -> None:
        name = str(element.tag)
        raw: str | None = element.text
        if raw is not None and len(raw) > limits.max_text_chars:
            raise too_much_text(f"<{name}>", len(raw), limits, line=source_line(element), path=f"/{ROOT}/{name}")
        if self.emitted:
            self.problem(
                element,
                name,
                f"<{name}> comes after the first <Message>, where it cannot apply to the messages before it; "
                f"put <{MESSAGE_TYPE}> and <{PURGE}> between <Header> and the first <Message>",
                raw,
            )
            return
        if name in self.seen:
            self.problem(element, name, f"<{name}> appears more than once; send it once per envelope", raw)
            return
        self.seen.add(name)
        value = (raw or "").strip()
        if name == MESSAGE_TYPE:
            if value != PAYLOAD:
                self.refused = True
                self.problem(
                    element,
                    name,
                    f"MessageType '{value}' is not accepted: only Inventory feeds are "
                    f"(<{MESSAGE_TYPE}>{PAYLOAD}</{MESSAGE_TYPE}>); send price, product and other feeds elsewhere",
                    raw,
                )
        elif value.lower() in _TRUE:
            self.snapshot = "full"
        elif value.lower() in _FALSE:
            self.snapshot = "delta"
        else:
            self.problem(
                element,
                name,
                f"PurgeAndReplace '{value}' must be true (the file is the whole inventory) or false (it holds changes)",
                raw,
            )

    def document(self, envelope: Any) -> Iterator[Item]:
        self.emitted = True
        if MESSAGE_TYPE not in self.seen:
            self.problems.append(
                Problem(
                    kind="validation",
                    message=(
                        f"the envelope has no <{MESSAGE_TYPE}>, so it cannot be told apart from a price or product "
                        f"feed; add <{MESSAGE_TYPE}>{PAYLOAD}</{MESSAGE_TYPE}> after <Header>"
                    ),
                    line=source_line(envelope),
                    path=f"/{ROOT}/{MESSAGE_TYPE}",
                    field=MESSAGE_TYPE,
                )
            )
        yield from self.problems
        self.problems = []
        yield Document(root=ROOT, namespace=None, snapshot=self.snapshot)


def _message(element: Any, index: int, limits: Limits) -> list[Record | Problem]:
    """One message's record, or its problems (a list: the caller needs the product id afterwards)."""
    reader = RecordReader(element, index, limits, f"/{ROOT}/{MESSAGE}[{index}]")
    operation, inventory, found = _envelope(reader, element)
    operation_name = _operation(reader, operation)
    if inventory is not None and not reader.product_id and SKU not in found:
        reader.problem(
            "productId",
            f"the message has no <{SKU}>; every message needs a non-empty one, e.g. <{SKU}>ABC-123</{SKU}>",
            element=inventory,
            sub=f"/{PAYLOAD}",
        )
    if operation_name == "Delete":
        if not reader.problems:
            return [Record(index=index, product_id=reader.product_id, fields=None, line=reader.line, path=reader.path)]
        return list(reader.problems)
    stock = _stock(reader, inventory, found) if inventory is not None else None
    if reader.problems or stock is None:
        return list(reader.problems)
    quantity, availability = stock
    record = Record(
        index=index,
        product_id=reader.product_id,
        fields={
            "sku": reader.product_id,
            "name": None,
            "quantity": quantity,
            "availability": availability,
            "price": None,
            "locations": [],
        },
        line=reader.line,
        path=reader.path,
    )
    return [record]


def _envelope(reader: RecordReader, element: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The message's ``OperationType``, its one ``<Inventory>`` (``None`` after a problem) and what that holds."""
    limits, index = reader.limits, reader.index
    check_attributes(element, limits, path=reader.path, record=index)
    operation: Any = None
    payloads: list[Any] = []
    nested = False
    for child in element:
        tag = child.tag
        if tag == "OperationType":
            operation = child
            nested = nested or len(child) > 0
        elif tag not in _ENVELOPE_CHILDREN and isinstance(tag, str):
            payloads.append(child)
        elif len(child):
            nested = True
    inventory = payloads[0] if len(payloads) == 1 and payloads[0].tag == PAYLOAD else None
    found: dict[str, Any] = {}
    if inventory is not None:
        check_attributes(inventory, limits, path=reader.path + f"/{PAYLOAD}", record=index)
        found, deeper = _inventory_children(reader, inventory)
        if nested or deeper:
            # Usually Message → Inventory → leaves (depth 3, always allowed): walk only what nests deeper.
            check_depth(element, limits, path=reader.path, record=index)
    elif not payloads:
        reader.problem(
            "Inventory",
            f"the message has no <{PAYLOAD}>; each message carries one, e.g. "
            f"<{PAYLOAD}><{SKU}>ABC-123</{SKU}><Quantity>10</Quantity></{PAYLOAD}>",
        )
    else:
        shown = ", ".join(f"<{local_name(p.tag)}>" for p in payloads)
        reader.product_id = next((_sku_of(p) for p in payloads if _sku_of(p)), "")
        reader.problem(
            "Inventory",
            f"the message carries {shown}; a message of an inventory feed carries exactly one <{PAYLOAD}>",
            value=local_name(payloads[0].tag),
            element=payloads[0],
            sub=f"/{local_name(payloads[0].tag)}",
        )
    return operation, inventory, found


def _operation(reader: RecordReader, operation: Any) -> str:
    operation_name = "Update"  # Amazon's default when OperationType is absent
    if operation is not None:
        operation_name = (reader.text(operation, "OperationType", "/OperationType") or "").strip()
        if operation_name not in OPERATIONS:
            reader.problem(
                "OperationType",
                f"OperationType '{operation_name}' is not one of {', '.join(OPERATIONS)} "
                "(Update and PartialUpdate carry the stock; Delete removes the product)",
                value=operation_name,
                element=operation,
                sub="/OperationType",
            )
    return operation_name


def _sku_of(payload: Any) -> str:
    """The SKU of a payload dropgate does not read, so its problem still names the product."""
    element = payload.find(SKU)
    return truncate(str(element.text or "").strip()) or "" if element is not None else ""


def _inventory_children(reader: RecordReader, inventory: Any) -> tuple[dict[str, Any], bool]:
    """SKU, Quantity and Available, each at most once (other Amazon elements are not ours), and
    whether anything in ``<Inventory>`` nests further.

    Reads the SKU on the way, so problems found later name the product.
    """
    found: dict[str, Any] = {}
    nested = False
    for child in inventory:
        tag = child.tag
        if len(child):
            nested = True
        field = _FIELDS.get(tag) if isinstance(tag, str) else None
        if field is None:
            continue
        sub = f"/{PAYLOAD}/{tag}"
        if tag in found:
            reader.problem(field, f"<{tag}> appears more than once; send it once per message", element=child, sub=sub)
            continue
        found[tag] = child
        if tag == SKU:
            raw = reader.text(child, field, sub)
            reader.product_id = (raw or "").strip()
            if not reader.product_id and not (len(child) and has_entity_reference(child)):
                reader.problem(
                    field,
                    f"<{SKU}> is empty; every message needs a non-empty SKU, e.g. <{SKU}>ABC-123</{SKU}>",
                    value=raw,
                    element=child,
                    sub=sub,
                )
    return found, nested


def _stock(reader: RecordReader, inventory: Any, found: dict[str, Any]) -> tuple[int | None, str] | None:
    """Quantity (availability follows from it) or Available (no count): exactly one of them."""
    quantity_el = found.get("Quantity")
    available_el = found.get("Available")
    if quantity_el is not None and available_el is not None:
        reader.problem(
            "availability",
            "<Inventory> has both <Quantity> and <Available>, which is ambiguous; send <Quantity> when you have a "
            "count, or only <Available>true</Available> / <Available>false</Available> when you do not",
            value=available_el.text,
            element=available_el,
            sub=f"/{PAYLOAD}/Available",
        )
        return None
    if quantity_el is not None:
        sub = f"/{PAYLOAD}/Quantity"
        text = reader.text(quantity_el, "quantity", sub)
        try:
            quantity = fields.whole_number(text)
        except FieldError as error:
            reader.problem("quantity", f"Quantity {error}", value=text, element=quantity_el, sub=sub)
            return None
        return quantity, "in_stock" if quantity > 0 else "out_of_stock"
    if available_el is not None:
        sub = f"/{PAYLOAD}/Available"
        raw = reader.text(available_el, "availability", sub)
        flag = (raw or "").strip().lower()
        if flag in _TRUE:
            return None, "in_stock"
        if flag in _FALSE:
            return None, "out_of_stock"
        reader.problem(
            "availability",
            f"Available '{(raw or '').strip()}' must be true (in stock) or false (out of stock)",
            value=raw,
            element=available_el,
            sub=sub,
        )
        return None
    reader.problem(
        "quantity",
        "the message sets no stock: send <Quantity> (a whole number, e.g. <Quantity>10</Quantity>) or, without "
        "a count, <Available>true</Available> or <Available>false</Available>",
        element=inventory,
        sub=f"/{PAYLOAD}",
    )
    return None
