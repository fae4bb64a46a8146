"""One Google item: its wanted children, read and converted with located problems.

Shared by both feeds; which children an item is read for (and the contract field each one's
problems are about) is the feed's ``wanted`` table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from parsers import fields
from parsers.base import ParserFailed
from parsers.diagnostics import check_attributes, check_depth, has_entity_reference, too_much_text
from parsers.fields import FieldError
from parsers.limits import Limits
from parsers.records import RecordReader

G = "http://base.google.com/ns/1.0"
#: Atom 1.0's namespace: an Atom feed's own elements (``feed``, ``entry``, ``title``, ``id``) are in it.
ATOM = "http://www.w3.org/2005/Atom"
#: Where every item is (RSS 2.0 puts them under the channel).
ITEM_PATH = "/rss/channel/item"
#: Where every entry of an Atom feed is (directly under the root).
ENTRY_PATH = "/feed/entry"
#: Qualified tag → (key the feed reads it by, contract field its problems are about).
Wanted = dict[str, tuple[str, str]]

_SPACES = re.compile(r"[\s_]+")
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")


def label(tag: str) -> str:
    """``{G}price`` → ``g:price``, as Google's documentation and partners' files write it."""
    if tag.startswith(f"{{{G}}}"):
        return "g:" + tag[len(G) + 2 :]
    return tag.rpartition("}")[2]


def id_key(children: dict[str, Any]) -> str:
    """Which child names the product: ``g:id``, else (Atom only) the entry's own ``<id>``.

    Google's Atom 1.0 specification makes the entry's ``id`` the product's; exporters that also write
    ``g:id`` keep ``<id>`` for Atom's own use (RFC 4287 requires one per entry), so ``g:id`` wins.
    """
    return "atom:id" if "id" not in children and "atom:id" in children else "id"


class ItemReader(RecordReader):
    """One item's wanted children and problems; the element is only valid until the scan resumes."""

    def __init__(self, element: Any, index: int, limits: Limits, wanted: Wanted, item_path: str = ITEM_PATH) -> None:
        super().__init__(element, index, limits, f"{item_path}[{index}]")
        self.wanted = wanted
        self.children: dict[str, Any] = {}
        children = self.children
        repeated: list[tuple[Any, str]] = []
        nested = False
        for child in element:
            nested = nested or len(child) > 0
            entry = wanted.get(child.tag)
            if entry is None:
                continue  # unknown elements (g:link, g:image_link, …) are the partner's business
            if entry[0] in children:
                repeated.append((child, entry[0]))
            else:
                children[entry[0]] = child
        self.id_key = id_key(children)
        id_child = children.get(self.id_key)
        # An id holding an entity reference is no id (its text stops at the reference).
        if id_child is not None and not len(id_child):
            self.product_id = (id_child.text or "").strip()
        pid = self.product_id or None
        check_attributes(element, limits, path=self.path, record=index, product_id=pid)
        if nested:  # flat items (the usual case) skip the subtree walk
            check_depth(element, limits, path=self.path, record=index, product_id=pid)
        for child, key in repeated:
            name, first = label(child.tag), label(children[key].tag)
            field = wanted[child.tag][1]
            message = (
                f"<{name}> appears more than once in this item; send it once"
                if first == name
                else f"<{name}> and <{first}> both give the {field}; send only <{first}>"
            )
            self.item_problem(field, message, element=child, value=child.text)

    def item_problem(
        self, field: str, message: str, *, element: Any = None, value: object = None, label_: str = ""
    ) -> None:
        """A validation problem at ``element`` (else at the child named ``label_``, else the item)."""
        sub = label(element.tag) if element is not None else label_
        self.problem(field, message, value=value, element=element, sub=f"/{sub}" if sub else "")

    def child_text(self, key: str) -> str | None:
        """The child's text, or ``None`` when absent; refuses entity references and huge text."""
        child = self.children.get(key)
        if child is None:
            return None
        if len(child) and has_entity_reference(child):
            name = label(child.tag)
            message = f"<{name}> contains an entity reference; entities are never expanded: send literal text"
            self.entity_problem(self.wanted[child.tag][1], message, self.where(child, f"/{name}"))
            return None
        text: str | None = child.text
        if text is not None and len(text) > self.limits.max_text_chars:
            name = label(child.tag)
            raise too_much_text(f"<{name}>", len(text), self.limits, **self.where(child, f"/{name}"))
        return text if text is not None else ""

    def convert(self, key: str, field: str, converter: Callable[[str], Any]) -> Any:
        """``converter(text)`` for a present child; a ``FieldError`` becomes a located problem."""
        raw = self.child_text(key)
        if raw is None:
            return None
        try:
            return converter(raw)
        except FieldError as error:
            child = self.children[key]
            self.item_problem(field, f"{label(child.tag)} {error}", element=child, value=raw)
            return None
        except Exception as error:  # a converter bug: quarantine naming the field, never a retry
            where = {"line": self.line, "record": self.index, "product_id": self.product_id or None}
            raise ParserFailed(error, field=field, **where) from error

    def require_id(self) -> str | None:
        """The product id, or ``None`` after recording why there is none."""
        key = self.id_key
        if self.child_text(key) is None and key in self.children:
            return None  # an entity reference: already a problem
        if not self.product_id:
            child = self.children.get(key)
            self.item_problem(
                "productId",
                "item has no product id; every item needs a non-empty <g:id>, e.g. <g:id>SKU-10042</g:id>",
                element=child,
                label_="g:id",
                value=child.text if child is not None else None,
            )
        return self.product_id or None

    def missing(self, key: str, field: str, message: str) -> bool:
        if key in self.children:
            return False
        self.item_problem(field, message, label_=f"g:{key}")
        return True


# -- shared field rules ------------------------------------------------------------------------

#: Google's four current product-feed values (product data specification, availability).
MERCHANT_AVAILABILITY = {v: v for v in ("in_stock", "out_of_stock", "preorder", "backorder")}
#: Values Google's specifications no longer list for product feeds but real exporters still write:
#: ``limited availability`` (still in the local inventory spec: one or two units on hand, so buyable) and
#: ``available for order`` (the pre-2014 product spec: orders taken, ships in 4 or more business
#: days because it is not in the warehouse now — today's definition of ``backorder``).
OLDER_MERCHANT_AVAILABILITY = {"limited_availability": "in_stock", "available_for_order": "backorder"}
LOCAL_AVAILABILITY = {
    **MERCHANT_AVAILABILITY,
    "limited_availability": "in_stock",
    "on_display_to_order": "backorder",
}


def availability_converter(allowed: dict[str, str], older: dict[str, str] | None = None) -> Callable[[str], str]:
    """Google's availability → the contract's; ``older`` are accepted but not advertised in messages."""
    names = ", ".join(allowed)
    accepted = {**allowed, **(older or {})}
    also = " and ".join(f"'{name.replace('_', ' ')}'" for name in older or {})
    note = f", as are Google's older {also}" if also else ""

    def convert(raw: str) -> str:
        text = _SPACES.sub("_", raw.strip().lower())
        try:
            return accepted[text]
        except KeyError:
            raise FieldError(
                f"'{raw.strip()}' is not a known availability; expected one of {names} "
                f"(the legacy spelling with spaces, e.g. 'in stock', is accepted too{note})"
            ) from None

    return convert


#: ``15.00 USD`` (Google's example), ``165.00USD`` (no space, as WooCommerce plugins write it) and
#: ``USD 165.00`` (code first); the amount and the code are then judged one by one.
_AMOUNT_FIRST = re.compile(r"(?P<amount>[0-9][0-9.,]*)\s*(?P<code>[A-Za-z]{3})")
_CODE_FIRST = re.compile(r"(?P<code>[A-Za-z]{3})\s*(?P<amount>[0-9][0-9.,]*)")
_SHAPE = "15.00 USD (a decimal amount and an ISO 4217 currency code; 15.00USD and USD 15.00 are read too)"


def price(raw: str) -> dict[str, str]:
    """Google's ``<amount> <currency>``, e.g. ``15.00 USD``, as a contract price."""
    text = raw.strip()
    match = _AMOUNT_FIRST.fullmatch(text) or _CODE_FIRST.fullmatch(text)
    if match is not None:
        amount, code = match["amount"], match["code"]
    else:
        parts = text.split()
        if len(parts) == 1 and _AMOUNT.fullmatch(parts[0]):
            raise FieldError(f"'{text}' has no currency; expected an amount and an ISO 4217 code, e.g. 15.00 USD")
        if len(parts) != 2:
            raise FieldError(f"'{text}' is not in the shape {_SHAPE}")
        # Two words: the one that starts with a letter is meant as the currency, so the refusal
        # names the part that is really wrong ('EURO 15.00': the code, not the amount).
        amount, code = (parts[1], parts[0]) if parts[0][:1].isalpha() else (parts[0], parts[1])
    try:
        return {"amount": fields.decimal_amount(amount), "currency": fields.currency_code(code)}
    except FieldError as error:
        raise FieldError(f"{error}; expected the shape 15.00 USD") from None
