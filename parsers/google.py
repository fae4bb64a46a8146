"""Google's two RSS inventory feeds: Merchant Center products and local (per-store) inventory.

Both are RSS 2.0 documents whose items carry Google attributes in the ``g`` namespace
(``http://base.google.com/ns/1.0``). They share one streaming, hardened front end
(:class:`_RssScan`: sniff, entity refusal, record window, ``iterparse`` filtered to ``rss`` and
``item``, release after each item) and differ in what an item means.

Merchant Center product feed (``google-merchant``), one item = one product:
- ``g:id`` is required and becomes ``productId`` (trimmed).
- ``g:title``, else the plain RSS ``title``, becomes ``name``; ``g:mpn`` becomes ``sku``.
- ``g:availability`` is required (Google requires it): ``in_stock``, ``out_of_stock``,
  ``preorder``, ``backorder``; case is forgiven and the legacy spellings with spaces
  (``in stock``, ``out of stock``) are normalised. Anything else is a validation problem.
- ``g:price`` is ``<amount> <ISO 4217 code>``, e.g. ``15.00 USD``; any other shape is a problem.
- the feed has no stock counts: ``quantity`` is ``None`` and ``locations`` is empty.
- an item with ``g:store_code`` means the file is a local inventory feed: ``unknown_format``.

Local inventory feed (``google-local-inventory``), one item = one product in one store:
- ``g:store_code`` (→ ``locationId``), ``g:id`` (legacy ``g:itemid``) and ``g:quantity`` (a whole
  number) are required; ``g:availability`` and ``g:price`` are optional.
- per-store availability: ``in_stock``; ``limited_availability`` → ``in_stock`` (still buyable);
  ``on_display_to_order`` → ``backorder`` (orderable, not on the shelf); ``out_of_stock``,
  ``preorder``, ``backorder`` as is. Missing: ``in_stock`` when the store's quantity > 0, else
  ``out_of_stock``.
- one record per product: ``locations`` are its stores sorted by ``locationId``, ``quantity`` their
  sum, ``availability`` the best store's, in the order in_stock > backorder > preorder >
  out_of_stock (a shopper can get it if any store can sell it), ``price`` the lowest store price.
  All prices of one product must share one currency (the first in file order sets it); a store
  in another currency is a problem on its item, since the lowest of mixed currencies means nothing.
- the same (product, store) twice is a problem on the later item.
- a product with any bad item yields no record at all: its other stores alone would publish a
  wrong sum. The problems are still reported, located on the bad items.
- the record's ``index``, ``line`` and ``path`` are those of the product's first item.

A product's stores may be spread through the file, so nothing can be emitted before the last
item. Rather than holding a million store rows in memory, each row goes to a temporary SQLite
file (stdlib, one file to delete, and its sorter spills to disk once past the small page cache),
which is then read back with one ``ORDER BY productId``: memory stays flat, disk holds the rows
(roughly 100 bytes each). Problems found per item stream out while reading; the ones that need
the whole product (duplicate store, mixed currency) come with the grouped records at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import groupby
from typing import Any, BinaryIO, cast

from lxml import etree

from parsers import fields
from parsers.base import Document, Item, ParserFailed, Problem, Record, truncate
from parsers.doctype import DoctypeRefused
from parsers.fields import FieldError
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.xml_stream import (
    RecordWindow,
    Sniffed,
    check_attributes,
    check_depth,
    foreign_root_problem,
    has_entity_reference,
    release,
    secure_iterparse,
    sniff_document,
    source_line,
    syntax_problem,
    syntax_problem_after,
    too_much_text,
)

G = "http://base.google.com/ns/1.0"
ROOT = "rss"
ITEM = "item"
CHANNEL = "channel"
ITEM_PATH = f"/{ROOT}/{CHANNEL}/{ITEM}"


def _g(local: str) -> str:
    return f"{{{G}}}{local}"


_SPACES = re.compile(r"[\s_]+")
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")

MERCHANT_AVAILABILITY = {v: v for v in ("in_stock", "out_of_stock", "preorder", "backorder")}
LOCAL_AVAILABILITY = {
    **MERCHANT_AVAILABILITY,
    "limited_availability": "in_stock",
    "on_display_to_order": "backorder",
}
#: Best first: what a shopper can get soonest from at least one store.
_AVAILABILITY_RANK = {"in_stock": 0, "backorder": 1, "preorder": 2, "out_of_stock": 3}


def _is_google_rss(sniffed: Sniffed) -> bool:
    """RSS 2.0 elements are in no namespace; Google's attributes are in ``g``, declared on the root."""
    return sniffed.root == ROOT and sniffed.namespace is None and sniffed.declares(G)


def _describe_root(expects_what: str) -> str:
    return f'<{ROOT}> declaring xmlns:g="{G}" ({expects_what})'


# -- the shared front end ----------------------------------------------------------------------


class _ItemReader:
    """One item's wanted children and problems; the element is only valid until the scan resumes."""

    def __init__(self, element: Any, index: int, limits: Limits, wanted: dict[str, tuple[str, str]]) -> None:
        self.index = index
        self.limits = limits
        self.wanted = wanted
        self.line: int | None = source_line(element)
        self.path = f"{ITEM_PATH}[{index}]"
        self.problems: list[Problem] = []
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
        id_child = children.get("id")
        # An id holding an entity reference is no id (its text stops at the reference).
        self.product_id: str | None = (id_child.text or "").strip() or None if id_child is not None else None
        if id_child is not None and len(id_child):
            self.product_id = None
        check_attributes(element, limits, path=self.path, record=index, product_id=self.product_id)
        if nested:  # flat items (the usual case) skip the subtree walk
            check_depth(element, limits, path=self.path, record=index, product_id=self.product_id)
        for child, key in repeated:
            label, first = _label(child.tag), _label(children[key].tag)
            field = wanted[child.tag][1]
            message = (
                f"<{label}> appears more than once in this item; send it once"
                if first == label
                else f"<{label}> and <{first}> both give the {field}; send only <{first}>"
            )
            self.problem(field, message, element=child, value=child.text)

    def problem(self, field: str, message: str, *, element: Any = None, value: object = None, label: str = "") -> None:
        sub = _label(element.tag) if element is not None else label
        self.problems.append(
            Problem(
                kind="validation",
                message=message,
                line=source_line(element) if element is not None else self.line,
                record=self.index,
                product_id=self.product_id,
                path=f"{self.path}/{sub}" if sub else self.path,
                field=field,
                value=truncate(value),
            )
        )

    def text(self, key: str) -> str | None:
        """The child's text, or ``None`` when absent; refuses entity references and huge text."""
        child = self.children.get(key)
        if child is None:
            return None
        if len(child) and has_entity_reference(child):
            label = _label(child.tag)
            self.problems.append(
                Problem(
                    kind="security_limit",
                    message=f"<{label}> contains an entity reference; entities are never expanded: send literal text",
                    line=source_line(child),
                    record=self.index,
                    product_id=self.product_id,
                    path=f"{self.path}/{label}",
                    field=self.wanted[child.tag][1],
                )
            )
            return None
        text: str | None = child.text
        if text is not None and len(text) > self.limits.max_text_chars:
            label = _label(child.tag)
            raise too_much_text(
                f"<{label}>",
                len(text),
                self.limits,
                line=source_line(child),
                record=self.index,
                product_id=self.product_id,
                path=f"{self.path}/{label}",
            )
        return text if text is not None else ""

    def convert(self, key: str, field: str, converter: Callable[[str], Any]) -> Any:
        """``converter(text)`` for a present child; a ``FieldError`` becomes a located problem."""
        raw = self.text(key)
        if raw is None:
            return None
        try:
            return converter(raw)
        except FieldError as error:
            self.problem(field, f"{_label(self.children[key].tag)} {error}", element=self.children[key], value=raw)
            return None
        except Exception as error:  # a converter bug: quarantine naming the field, never a retry
            where = {"line": self.line, "record": self.index, "product_id": self.product_id}
            raise ParserFailed(error, field=field, **where) from error

    def require_id(self) -> str | None:
        """The product id, or ``None`` after recording why there is none."""
        if self.text("id") is None and "id" in self.children:
            return None  # an entity reference: already a problem
        if self.product_id is None:
            child = self.children.get("id")
            self.problem(
                "productId",
                "item has no product id; every item needs a non-empty <g:id>, e.g. <g:id>SKU-10042</g:id>",
                element=child,
                label="g:id",
                value=child.text if child is not None else None,
            )
        return self.product_id

    def missing(self, key: str, field: str, message: str) -> bool:
        if key in self.children:
            return False
        self.problem(field, message, label=f"g:{key}")
        return True


def _label(tag: str) -> str:
    """``{G}price`` → ``g:price``, as Google's documentation and partners' files write it."""
    if tag.startswith(f"{{{G}}}"):
        return "g:" + tag[len(G) + 2 :]
    return tag.rpartition("}")[2]


class _RssScan:
    """Streams an RSS feed's items under every safety rule; yields documents, problems and readers.

    ``completed`` is true only when the whole document was read without a fatal problem, which is
    what the local inventory parser needs before it may emit grouped products.
    """

    def __init__(
        self,
        stream: BinaryIO,
        limits: Limits,
        *,
        matches: Callable[[Sniffed], bool],
        expects: str,
        wanted: dict[str, tuple[str, str]],
    ) -> None:
        self.stream = stream
        self.limits = limits
        self.matches = matches
        self.expects = expects
        self.wanted = wanted
        self.completed = False

    def __iter__(self) -> Iterator[Document | Problem | _ItemReader]:
        stream, _, refused = sniff_document(self.stream, accepts=self.matches, expects=self.expects)
        if refused is not None:
            yield refused
            return
        index = 0
        current: Any = None
        last_id: str | None = None
        seen_root = False
        foreign_root: Any = None
        window = RecordWindow(
            stream,
            self.limits.max_record_bytes,
            after=lambda: f"after item {index}, productId {last_id}" if index else "before the first item",
        )
        context = secure_iterparse(cast(BinaryIO, window), events=("start", "end"), tag=(ROOT, ITEM))
        try:
            for event, element in context:
                if event == "start":
                    parent = element.getparent()
                    if element.tag == ROOT and parent is None:
                        seen_root = True
                        check_attributes(element, self.limits, path=f"/{ROOT}")
                        yield Document(root=ROOT, namespace=None)
                    elif element.tag == ITEM and parent is not None and parent.tag == CHANNEL:
                        if not seen_root:
                            foreign_root = element.getroottree().getroot()
                            break  # an item under another root: reported below as unknown_format
                        index += 1
                        current = element
                    continue
                if element is current:
                    current = None
                    window.mark()
                    reader = _ItemReader(element, index, self.limits, self.wanted)
                    last_id = reader.product_id
                    yield reader
                    release(element)
        except DoctypeRefused as doctype:  # before any record: nothing of the document was read
            yield doctype.problem()
            return
        except etree.XMLSyntaxError as error:
            if current is not None:
                yield syntax_problem(error, record=index, product_id=_partial_id(current, self.wanted))
            else:
                yield syntax_problem_after(error, index, last_id, record="item")
            return
        if not seen_root:
            yield foreign_root_problem(context.root if foreign_root is None else foreign_root, self.expects)
            return
        self.completed = True


def _partial_id(item: Any, wanted: dict[str, tuple[str, str]]) -> str | None:
    """The item's product id (its first id element), also for an item cut short by a syntax error."""
    for child in item:
        if isinstance(child.tag, str) and wanted.get(child.tag, ("",))[0] == "id":
            return (child.text or "").strip() or None
    return None


# -- shared field rules ------------------------------------------------------------------------


def _availability_converter(allowed: dict[str, str]) -> Callable[[str], str]:
    names = ", ".join(allowed)

    def convert(raw: str) -> str:
        text = _SPACES.sub("_", raw.strip().lower())
        try:
            return allowed[text]
        except KeyError:
            raise FieldError(
                f"'{raw.strip()}' is not a known availability; expected one of {names} "
                "(the legacy spelling with spaces, e.g. 'in stock', is accepted too)"
            ) from None

    return convert


def price(raw: str) -> dict[str, str]:
    """Google's ``<amount> <currency>``, e.g. ``15.00 USD``, as a contract price."""
    parts = raw.split()
    if len(parts) == 1 and _AMOUNT.fullmatch(parts[0]):
        raise FieldError(f"'{raw.strip()}' has no currency; expected an amount and an ISO 4217 code, e.g. 15.00 USD")
    if len(parts) != 2:
        raise FieldError(
            f"'{raw.strip()}' is not in the shape 15.00 USD (a decimal amount, a space, an ISO 4217 currency code)"
        )
    try:
        amount = fields.decimal_amount(parts[0])
        currency = fields.currency_code(parts[1])
    except FieldError as error:
        raise FieldError(f"{error}; expected the shape 15.00 USD") from None
    return {"amount": amount, "currency": currency}


# -- Merchant Center -------------------------------------------------------------------------

_MERCHANT_WANTED = {
    _g("id"): ("id", "productId"),
    "title": ("title", "name"),
    _g("title"): ("g:title", "name"),
    _g("availability"): ("availability", "availability"),
    _g("price"): ("price", "price"),
    _g("mpn"): ("mpn", "sku"),
    _g("store_code"): ("store_code", "locations.locationId"),
}
_MERCHANT_AVAILABILITY = _availability_converter(MERCHANT_AVAILABILITY)


class GoogleMerchantParser:
    """Google Merchant Center product feed (RSS 2.0). Bump ``version`` with every behavioural change."""

    name = "google-merchant"
    version = "1"
    expects = _describe_root("Google Merchant Center product feed")

    def matches(self, sniffed: Sniffed) -> bool:
        return _is_google_rss(sniffed) and not sniffed.mentions("store_code")

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        scan = _RssScan(stream, limits, matches=self.matches, expects=self.expects, wanted=_MERCHANT_WANTED)
        for found in scan:
            if not isinstance(found, _ItemReader):
                yield found
                continue
            if "store_code" in found.children:
                yield Problem(
                    kind="unknown_format",
                    message=(
                        "item has <g:store_code>: this is a Google local inventory feed, not a Merchant Center "
                        "product feed; configure the partner's format as google-local-inventory"
                    ),
                    line=source_line(found.children["store_code"]),
                    path=f"{found.path}/g:store_code",
                    value=truncate(found.children["store_code"].text),
                )
                return
            yield from _merchant_item(found)


def _merchant_item(reader: _ItemReader) -> Iterator[Item]:
    product_id = reader.require_id()
    name = fields.text_value(reader.text("g:title")) or fields.text_value(reader.text("title"))
    sku = fields.text_value(reader.text("mpn"))
    availability = reader.convert("availability", "availability", _MERCHANT_AVAILABILITY)
    reader.missing(
        "availability",
        "availability",
        "item has no <g:availability>; Google requires one of in_stock, out_of_stock, preorder, backorder",
    )
    price_value = reader.convert("price", "price", price)
    if reader.problems or product_id is None:
        yield from reader.problems
        return
    yield Record(
        index=reader.index,
        product_id=product_id,
        fields={
            "sku": sku,
            "name": name,
            "quantity": None,
            "availability": availability,
            "price": price_value,
            "locations": [],
        },
        line=reader.line,
        path=reader.path,
    )


# -- local inventory ---------------------------------------------------------------------------

_LOCAL_WANTED = {
    _g("id"): ("id", "productId"),
    _g("itemid"): ("id", "productId"),
    _g("store_code"): ("store_code", "locations.locationId"),
    _g("quantity"): ("quantity", "locations.quantity"),
    _g("availability"): ("availability", "availability"),
    _g("price"): ("price", "price"),
}
_LOCAL_AVAILABILITY = _availability_converter(LOCAL_AVAILABILITY)
#: Rows buffered before one ``executemany``: few round trips, a few hundred KiB at most.
_BATCH = 2_000
#: SQLite page cache in KiB (negative ``cache_size``); also bounds its sorter's memory before it spills.
_CACHE_KIB = 2_048

#: product_id, item, item line, store, store_code line, quantity, availability, amount, currency, price line, bad
_Row = tuple[
    str, int, int | None, str | None, int | None, int | None, str | None, str | None, str | None, int | None, int
]


class GoogleLocalInventoryParser:
    """Google local inventory feed (RSS 2.0, one item per product and store), grouped per product.

    Bump ``version`` with every behavioural change.
    """

    name = "google-local-inventory"
    version = "1"
    expects = _describe_root("Google local inventory feed, items with <g:store_code>")

    def matches(self, sniffed: Sniffed) -> bool:
        return _is_google_rss(sniffed) and sniffed.mentions("store_code")

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        scan = _RssScan(stream, limits, matches=self.matches, expects=self.expects, wanted=_LOCAL_WANTED)
        with _StoreRows() as rows:
            for found in scan:
                if isinstance(found, _ItemReader):
                    yield from _local_item(found, rows)
                else:
                    yield found
            if scan.completed:
                yield from _grouped(rows)


def _local_item(reader: _ItemReader, rows: _StoreRows) -> Iterator[Problem]:
    product_id = reader.require_id()
    store = fields.text_value(reader.text("store_code"))
    if store is None:
        child = reader.children.get("store_code")
        reader.problem(
            "locations.locationId",
            "item has no store code; every local inventory item needs a non-empty <g:store_code>, e.g. "
            "<g:store_code>STORE-0042</g:store_code>",
            element=child,
            label="g:store_code",
            value=child.text if child is not None else None,
        )
    quantity = reader.convert("quantity", "locations.quantity", fields.whole_number)
    reader.missing(
        "quantity",
        "locations.quantity",
        "item has no <g:quantity>; every store needs its whole number of units ≥ 0, e.g. <g:quantity>12</g:quantity>",
    )
    availability = reader.convert("availability", "availability", _LOCAL_AVAILABILITY)
    amount = reader.convert("price", "price", price)
    if product_id is None:
        yield from reader.problems  # nothing to group it with
        return
    if availability is None and quantity is not None:
        availability = "in_stock" if quantity > 0 else "out_of_stock"
    rows.add(
        (
            product_id,
            reader.index,
            reader.line,
            store,
            _line_of(reader, "store_code"),
            quantity,
            availability,
            amount["amount"] if amount else None,
            amount["currency"] if amount else None,
            _line_of(reader, "price"),
            1 if reader.problems else 0,
        )
    )
    yield from reader.problems


def _line_of(reader: _ItemReader, key: str) -> int | None:
    child = reader.children.get(key)
    return source_line(child) if child is not None else None


class _StoreRows:
    """The store rows of one file in a temporary SQLite file, deleted on exit whatever happens."""

    def __init__(self) -> None:
        self._pending: list[_Row] = []
        self._path: str | None = None
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> _StoreRows:
        descriptor, self._path = tempfile.mkstemp(prefix="dropgate-google-local-", suffix=".sqlite")
        os.close(descriptor)
        try:
            self._db = sqlite3.connect(self._path, isolation_level=None)
            for pragma in (
                "journal_mode = OFF",  # a scratch file: nothing to roll back to, no -journal file to clean
                "synchronous = OFF",
                f"cache_size = -{_CACHE_KIB}",
                "temp_store = FILE",
                "locking_mode = EXCLUSIVE",
            ):
                self._db.execute(f"PRAGMA {pragma}")
            self._db.execute(
                "CREATE TABLE rows (product_id TEXT NOT NULL, item INTEGER NOT NULL, line INTEGER, store TEXT,"
                " store_line INTEGER, quantity INTEGER, availability TEXT, amount TEXT, currency TEXT,"
                " price_line INTEGER, bad INTEGER NOT NULL)"
            )
            self._db.execute("BEGIN")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None

    def add(self, row: _Row) -> None:
        self._pending.append(row)
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        assert self._db is not None
        self._db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
        self._pending.clear()

    def by_product(self) -> Iterator[_Row]:
        """Every row, grouped by product in productId order, each product's rows in file order."""
        self._flush()
        assert self._db is not None
        yield from self._db.execute("SELECT * FROM rows ORDER BY product_id, item")


def _grouped(rows: _StoreRows) -> Iterator[Item]:
    for product_id, product_rows in groupby(rows.by_product(), key=lambda row: row[0]):
        yield from _product(product_id, product_rows)


def _product(product_id: str, product_rows: Iterator[_Row]) -> Iterator[Item]:
    """One product from its store rows (file order): the record, or the problems that stop it."""
    first: _Row | None = None
    bad = False
    seen: dict[str, int] = {}  # store → the item that first gave it
    quantities: dict[str, int] = {}
    best = "out_of_stock"
    currency: str | None = None
    lowest: tuple[Decimal, str] | None = None
    for row in product_rows:
        _, index, _, store, store_line, quantity, availability, amount, row_currency, price_line, row_bad = row
        first = first or row
        bad = bad or bool(row_bad)
        if store is not None:
            if store in seen:
                bad = True
                yield Problem(
                    kind="validation",
                    message=(
                        f"store '{store}' appears more than once for product '{product_id}' (first in item "
                        f"{seen[store]}); send one item per product and store"
                    ),
                    line=store_line,
                    record=index,
                    product_id=product_id,
                    path=f"{ITEM_PATH}[{index}]/g:store_code",
                    field="locations.locationId",
                    value=truncate(store),
                )
                continue
            seen[store] = index
        if row_currency is not None and amount is not None:
            currency = currency or row_currency
            if row_currency != currency:
                bad = True
                yield Problem(
                    kind="validation",
                    message=(
                        f"price is in {row_currency} but this product's earlier stores are priced in {currency}; "
                        "send every store's price for one product in the same currency"
                    ),
                    line=price_line,
                    record=index,
                    product_id=product_id,
                    path=f"{ITEM_PATH}[{index}]/g:price",
                    field="price",
                    value=truncate(f"{amount} {row_currency}"),
                )
                continue
            if lowest is None or Decimal(amount) < lowest[0]:
                lowest = (Decimal(amount), amount)
        if bad or store is None or quantity is None or availability is None:
            continue
        quantities[store] = quantity
        if _AVAILABILITY_RANK[availability] < _AVAILABILITY_RANK[best]:
            best = availability
    if bad or first is None:
        return
    index, line = first[1], first[2]
    total = sum(quantities.values())
    too_large = fields.total_too_large(total, "its stores' quantities")
    if too_large:
        yield Problem(
            kind="validation",
            message=too_large,
            line=line,
            record=index,
            product_id=product_id,
            path=f"{ITEM_PATH}[{index}]/g:quantity",
            field="quantity",
            value=truncate(total),
        )
        return
    yield Record(
        index=index,
        product_id=product_id,
        fields={
            "sku": None,
            "name": None,
            "quantity": total,
            "availability": best,
            "price": {"amount": lowest[1], "currency": currency} if lowest is not None else None,
            "locations": [{"locationId": store, "quantity": quantities[store]} for store in sorted(quantities)],
        },
        line=line,
        path=f"{ITEM_PATH}[{index}]",
    )
