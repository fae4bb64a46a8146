"""The feed shapes both Google feeds share (RSS 2.0, and Atom 1.0 for products), and the scan that reads their items.

An item is a record: the shared front end (``parsers.front_end``) streams the feed filtered to its
root and item tags, with every safety rule, and hands each ``<item>`` under ``<channel>`` (RSS) or
``<entry>`` under ``<feed>`` (Atom) to the feed's :meth:`RssScan.read_item` as an
:class:`~parsers.google.items.ItemReader`.

Which of the two Google feeds a document is, is judged from its first item as a whole (see
:func:`first_item_is_local`), never from one element found somewhere in the head: a product feed
may carry ``g:store_code`` (Google's vehicle ads require it) and is still a product feed.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from parsers.base import Document, Problem
from parsers.diagnostics import check_attributes, foreign_root_problem, unknown_format_problem
from parsers.front_end import Items, RecordScan
from parsers.google.items import ATOM, ENTRY_PATH, ITEM_PATH, G, ItemReader, Wanted
from parsers.limits import Limits
from parsers.xml_stream import Sniffed

ROOT = "rss"
ITEM = "item"
CHANNEL = "channel"
ATOM_ROOT = f"{{{ATOM}}}feed"
ATOM_ENTRY = f"{{{ATOM}}}entry"


class Shape(NamedTuple):
    """Where a feed's items are: the root's tag, the item's tag and its parent's, the item path."""

    root: str
    item: str
    parent: str
    path: str
    document: Document


RSS = Shape(ROOT, ITEM, CHANNEL, ITEM_PATH, Document(root=ROOT, namespace=None))
ATOM_FEED = Shape(ATOM_ROOT, ATOM_ENTRY, ATOM_ROOT, ENTRY_PATH, Document(root="feed", namespace=ATOM))


def g(local: str) -> str:
    """The qualified tag of a Google attribute, e.g. ``g("id")``."""
    return f"{{{G}}}{local}"


def atom(local: str) -> str:
    """The qualified tag of an Atom element, e.g. ``atom("title")``."""
    return f"{{{ATOM}}}{local}"


def is_google_rss(sniffed: Sniffed) -> bool:
    """RSS 2.0 elements are in no namespace; Google's attributes are in ``g``, declared on the root."""
    return sniffed.root == ROOT and sniffed.namespace is None and sniffed.declares(G)


def is_google_atom(sniffed: Sniffed) -> bool:
    """An Atom 1.0 feed (``<feed>`` in Atom's namespace) declaring Google's ``g`` on the root."""
    return sniffed.root == "feed" and sniffed.namespace == ATOM and sniffed.declares(G)


def describe_root(expects_what: str, *, atom_too: bool = False) -> str:
    if atom_too:
        return f'<{ROOT}> (RSS 2.0) or <feed> in namespace {ATOM} (Atom 1.0), declaring xmlns:g="{G}" ({expects_what})'
    return f'<{ROOT}> declaring xmlns:g="{G}" ({expects_what})'


# -- which Google feed: the first item as a whole ------------------------------------------------

_FIRST_ITEM = re.compile(rb"<(?:[\w.\-]+:)?(?:item|entry)[\s>]")
_ITEM_END = re.compile(rb"</(?:[\w.\-]+:)?(?:item|entry)\s*>")
_CHILD = re.compile(rb"<(?:[\w.\-]+:)?([\w.\-]+)[\s/>]")
#: Attributes Google's product data specification requires of every product and its local
#: inventory specification does not have: an item with one of them describes a product.
PRODUCT_ONLY = frozenset({"title", "link", "image_link"})


def first_item_children(sniffed: Sniffed) -> frozenset[str] | None:
    """The local names of the elements in the head's first item (``None``: no item in the head)."""
    start = _FIRST_ITEM.search(sniffed.head)
    if start is None:
        return None
    end = _ITEM_END.search(sniffed.head, start.end())
    body = sniffed.head[start.end() : end.start() if end is not None else len(sniffed.head)]
    return frozenset(name.decode("ascii", "replace") for name in _CHILD.findall(body))


def first_item_is_local(sniffed: Sniffed) -> bool:
    """Whether the feed is a local inventory feed: its first item names a store and describes no product.

    A store code alone does not make one: vehicle-ads product feeds require ``g:store_code`` too,
    and their items have a title and a link like every product's. With no item in the head, a
    store code anywhere in it is all there is to go by.
    """
    children = first_item_children(sniffed)
    if children is None:
        return sniffed.mentions("store_code")
    return "store_code" in children and not children & PRODUCT_ONLY


def refuse_google(sniffed: Sniffed, expects: str, *, local: bool) -> Problem:
    """``unknown_format`` for a Google feed of the other kind, saying which kind it is and why.

    A Google root that is the other feed is not "another root": the message names what the head
    shows, so nobody hunts for a namespace declaration that is there.
    """
    if not (is_google_rss(sniffed) or is_google_atom(sniffed)):
        return unknown_format_problem(sniffed, expects)
    if not local:
        why = "its first item has <g:store_code> and none of a product's title, link or image_link"
        message = f"this is a Google local inventory feed, not a Merchant Center product feed: {why}"
        fix = "google-local-inventory"
    elif is_google_atom(sniffed):
        message = "this is a Google Merchant Center product feed in Atom 1.0; local inventory feeds are RSS 2.0"
        fix = "google-merchant"
    elif first_item_children(sniffed) is None:
        message = "no item with <g:store_code> in the first 64 KiB: this is no Google local inventory feed"
        fix = "google-merchant if it is a product feed"
    else:
        why = "its first item has no <g:store_code>, or has a product's title, link or image_link"
        message = f"this is a Google Merchant Center product feed, not a local inventory feed: {why}"
        fix = "google-merchant"
    return Problem(
        kind="unknown_format",
        message=f"{message}; configure the partner's format as {fix}",
        line=1,
        path=f"/{sniffed.root}",
        value=sniffed.namespace or sniffed.root,
    )


class RssScan(RecordScan):
    """Streams a feed's items; a feed's subclass says what an item means (:meth:`read_item`).

    ``shapes`` are the feed shapes the format reads (RSS only, or RSS and Atom). ``completed`` is
    true only when the whole document was read without a fatal problem, which is what the local
    inventory parser needs before it may emit grouped products.
    """

    shapes: tuple[Shape, ...] = (RSS,)
    tags: tuple[str, ...] = (ROOT, ITEM)
    record_word = "item"
    before_first = "before the first item"

    def __init__(self, limits: Limits, expects: str, wanted: Wanted) -> None:
        super().__init__(limits, expects)
        self.wanted = wanted
        #: The shape of the document's root, once seen.
        self.shape: Shape | None = None
        self.completed = False

    def start(self, element: Any) -> Items:
        parent = element.getparent()
        tag = element.tag
        if parent is None:
            for candidate in self.shapes:
                if tag == candidate.root:
                    self.shape = candidate
                    check_attributes(element, self.limits, path=f"/{candidate.document.root}")
                    return (candidate.document,)
            return ()
        shape = self.shape
        if shape is None:
            if any(tag == s.item and parent.tag == s.parent for s in self.shapes):  # an item under another root
                self.stopped = True
                return (foreign_root_problem(element.getroottree().getroot(), self.expects),)
            return ()
        if tag == shape.item and parent.tag == shape.parent:
            self.open(element)
        return ()

    def read(self, element: Any) -> Items:
        path = self.shape.path if self.shape is not None else ITEM_PATH
        reader = ItemReader(element, self.index, self.limits, self.wanted, path)
        self.last_id = reader.product_id or None
        return self.read_item(reader)

    def read_item(self, reader: ItemReader) -> Items:
        """The item's record or problems; the element is only valid until this returns."""
        raise NotImplementedError

    def cut_id(self, element: Any) -> str | None:
        """The item's product id, also for an item cut short by a syntax error."""
        ids: dict[str, str | None] = {}
        for child in element:
            key = self.wanted.get(child.tag, ("",))[0] if isinstance(child.tag, str) else ""
            if key in ("id", "atom:id") and key not in ids:
                ids[key] = (child.text or "").strip() or None
        return ids.get("id", ids.get("atom:id"))

    def finish(self, root: Any) -> Items:
        if self.shape is None:
            return (foreign_root_problem(root, self.expects),)
        self.completed = True
        return ()
