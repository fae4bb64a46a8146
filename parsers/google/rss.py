"""The RSS 2.0 shape both Google feeds share, and the scan that reads its items.

An item is a record: the shared front end (``parsers.front_end``) streams the feed filtered to
``rss`` and ``item``, with every safety rule, and hands each ``<item>`` under ``<channel>`` to the
feed's :meth:`RssScan.read_item` as an :class:`~parsers.google.items.ItemReader`.
"""

from __future__ import annotations

from typing import Any

from parsers.base import Document
from parsers.diagnostics import check_attributes, foreign_root_problem
from parsers.front_end import Items, RecordScan
from parsers.google.items import G, ItemReader, Wanted
from parsers.limits import Limits
from parsers.xml_stream import Sniffed

ROOT = "rss"
ITEM = "item"
CHANNEL = "channel"


def g(local: str) -> str:
    """The qualified tag of a Google attribute, e.g. ``g("id")``."""
    return f"{{{G}}}{local}"


def is_google_rss(sniffed: Sniffed) -> bool:
    """RSS 2.0 elements are in no namespace; Google's attributes are in ``g``, declared on the root."""
    return sniffed.root == ROOT and sniffed.namespace is None and sniffed.declares(G)


def describe_root(expects_what: str) -> str:
    return f'<{ROOT}> declaring xmlns:g="{G}" ({expects_what})'


class RssScan(RecordScan):
    """Streams an RSS feed's items; a feed's subclass says what an item means (:meth:`read_item`).

    ``completed`` is true only when the whole document was read without a fatal problem, which is
    what the local inventory parser needs before it may emit grouped products.
    """

    tags = (ROOT, ITEM)
    record_word = "item"
    before_first = "before the first item"

    def __init__(self, limits: Limits, expects: str, wanted: Wanted) -> None:
        super().__init__(limits, expects)
        self.wanted = wanted
        self.seen_root = False
        self.completed = False

    def start(self, element: Any) -> Items:
        parent = element.getparent()
        if element.tag == ROOT and parent is None:
            self.seen_root = True
            check_attributes(element, self.limits, path=f"/{ROOT}")
            return (Document(root=ROOT, namespace=None),)
        if element.tag == ITEM and parent is not None and parent.tag == CHANNEL:
            if not self.seen_root:  # an item under another root
                self.stopped = True
                return (foreign_root_problem(element.getroottree().getroot(), self.expects),)
            self.open(element)
        return ()

    def read(self, element: Any) -> Items:
        reader = ItemReader(element, self.index, self.limits, self.wanted)
        self.last_id = reader.product_id or None
        return self.read_item(reader)

    def read_item(self, reader: ItemReader) -> Items:
        """The item's record or problems; the element is only valid until this returns."""
        raise NotImplementedError

    def cut_id(self, element: Any) -> str | None:
        """The item's product id (its first id element), also for an item cut short by a syntax error."""
        for child in element:
            if isinstance(child.tag, str) and self.wanted.get(child.tag, ("",))[0] == "id":
                return (child.text or "").strip() or None
        return None

    def finish(self, root: Any) -> Items:
        if not self.seen_root:
            return (foreign_root_problem(root, self.expects),)
        self.completed = True
        return ()
