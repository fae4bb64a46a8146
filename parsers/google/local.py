"""Google local inventory feed (``google-local-inventory``): one RSS item is one product in one store.

Where each rule comes from (Google Merchant Center Help, local product inventory feed
specification https://support.google.com/merchants/answer/3061342 and the attribute pages it links):

- ``g:store_code`` (→ ``locationId``, answer/13869896) and ``g:id`` (legacy ``g:itemid``) are
  required. ``g:quantity`` is optional and ``g:availability`` is what is required in its place
  (answer/13475891: quantity is optional, availability is mandatory): an item needs at least one
  of them, and an item with neither is a problem quoting that rule. ``g:price`` is optional.
- ``g:quantity`` is a whole number ≥ 0 (answer/13475891: 0 or more).
- per-store availability (answer/13475891 lists in stock, out of stock, limited availability, on
  display to order): ``in_stock``; ``limited_availability`` → ``in_stock`` (one or two on hand,
  still buyable); ``on_display_to_order`` → ``backorder`` (orderable, not on the shelf);
  ``out_of_stock``, ``preorder``, ``backorder`` as is. Missing: ``in_stock`` when the store's
  quantity > 0, else ``out_of_stock``.
- ``g:price`` as in the product feed (``15.00 USD``, ``15.00USD``, ``USD 15.00``).
- one record per product: ``locations`` are its stores that gave a quantity, sorted by
  ``locationId``; ``quantity`` their sum when every store gave one, else ``None`` (a store without
  a count makes the product's total unknown, and a partial sum would understate it); a store
  without a quantity is not a location, since every location in the contract carries a quantity
  (``dropgate.events.Location``), but its availability counts. ``availability`` is the best
  store's, in the order in_stock > backorder > preorder > out_of_stock (a shopper can get it if
  any store can sell it), ``price`` the lowest store price. All prices of one product must share
  one currency (the first in file order sets it); a store in another currency is a problem on its
  item, since the lowest of mixed currencies means nothing.
- the same (product, store) twice is a problem on the later item.
- a product with any bad item yields no record at all: its other stores alone would publish a
  wrong sum. The problems are still reported, located on the bad items.
- the record's ``index``, ``line`` and ``path`` are those of the product's first item.
- which Google feed a file is comes from the partner's configuration, and for a file under no
  prefix from its first item as a whole (``rss.first_item_is_local``): a store code and none of a
  product's title, link or image link. A product feed given to this parser is
  refused as ``unknown_format``, saying so.

A product's stores may be spread through the file, so nothing can be emitted before the last
item. Each store row goes to the row spill the parser is given (``parsers.google.row_spill``; the
product's keeps them in a scratch file, so memory stays flat), which is read back grouped by
product once the whole file is read. Problems found per item stream out while reading; the ones
that need the whole product (duplicate store, mixed currency) come with the grouped records at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import groupby
from typing import BinaryIO

from parsers import fields
from parsers.base import Item, Problem, Record, truncate
from parsers.front_end import Items
from parsers.google.items import ITEM_PATH, LOCAL_AVAILABILITY, ItemReader, availability_converter, price
from parsers.google.row_spill import RowSpill, RowSpillFactory, StoreRow
from parsers.google.rss import RssScan, describe_root, first_item_is_local, g, is_google_rss, refuse_google
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.xml_stream import Sniffed, source_line

_LOCAL_WANTED = {
    g("id"): ("id", "productId"),
    g("itemid"): ("id", "productId"),
    g("store_code"): ("store_code", "locations.locationId"),
    g("quantity"): ("quantity", "locations.quantity"),
    g("availability"): ("availability", "availability"),
    g("price"): ("price", "price"),
}
_LOCAL_AVAILABILITY = availability_converter(LOCAL_AVAILABILITY)
#: Best first: what a shopper can get soonest from at least one store.
_AVAILABILITY_RANK = {"in_stock": 0, "backorder": 1, "preorder": 2, "out_of_stock": 3}


class GoogleLocalInventoryParser:
    """Google local inventory feed (RSS 2.0, one item per product and store), grouped per product.

    ``row_spill`` makes the place a parse keeps its store rows until they are grouped (see
    ``parsers.google.row_spill``). Bump ``version`` with every behavioural change.
    """

    name = "google-local-inventory"
    version = "2"
    expects = describe_root("Google local inventory feed, items with <g:store_code>")

    def __init__(self, row_spill: RowSpillFactory) -> None:
        self.row_spill = row_spill

    def matches(self, sniffed: Sniffed) -> bool:
        return is_google_rss(sniffed) and first_item_is_local(sniffed)

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        with self.row_spill() as rows:
            scan = _LocalScan(limits, self.expects, _LOCAL_WANTED, rows)
            yield from scan.items(stream, accepts=self.matches, refuse=_refuse)
            if scan.completed:
                yield from _grouped(rows)


def _refuse(sniffed: Sniffed, expects: str) -> Problem:
    return refuse_google(sniffed, expects, local=True)


#: Google's rule for an item with neither a count nor a status, quoted in the problem.
_NEITHER = (
    "item has neither <g:quantity> nor <g:availability>; Google's local inventory specification says "
    '"quantity is optional, availability is mandatory" (https://support.google.com/merchants/answer/13475891): '
    "send <g:availability>, e.g. <g:availability>in_stock</g:availability>, and <g:quantity> when you count units"
)


class _LocalScan(RssScan):
    def __init__(self, limits: Limits, expects: str, wanted: dict[str, tuple[str, str]], rows: RowSpill) -> None:
        super().__init__(limits, expects, wanted)
        self.rows = rows

    def read_item(self, reader: ItemReader) -> Items:
        """The item's own problems; its store row waits in the spill for the rest of its product."""
        product_id = reader.require_id()
        store = fields.text_value(reader.child_text("store_code"))
        if store is None:
            child = reader.children.get("store_code")
            reader.item_problem(
                "locations.locationId",
                "item has no store code; every local inventory item needs a non-empty <g:store_code>, e.g. "
                "<g:store_code>STORE-0042</g:store_code>",
                element=child,
                label_="g:store_code",
                value=child.text if child is not None else None,
            )
        quantity = reader.convert("quantity", "locations.quantity", fields.whole_number)
        if "quantity" not in reader.children:
            reader.missing("availability", "availability", _NEITHER)
        availability = reader.convert("availability", "availability", _LOCAL_AVAILABILITY)
        amount = reader.convert("price", "price", price)
        if product_id is None:
            return reader.problems  # nothing to group it with
        if availability is None and quantity is not None:
            availability = "in_stock" if quantity > 0 else "out_of_stock"
        row: StoreRow = (
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
        self.rows.add(row)
        return reader.problems


def _line_of(reader: ItemReader, key: str) -> int | None:
    child = reader.children.get(key)
    return source_line(child) if child is not None else None


def _grouped(rows: RowSpill) -> Iterator[Item]:
    # A generator of its own, so that closing the parse early closes the spill's reading (and its
    # cursor) before the spill itself is closed on leaving the ``with``.
    for product_id, product_rows in groupby(rows.by_product(), key=lambda row: row[0]):
        yield from _product(product_id, product_rows)


def _product(product_id: str, product_rows: Iterator[StoreRow]) -> Iterator[Item]:
    """One product from its store rows (file order): the record, or the problems that stop it."""
    first: StoreRow | None = None
    bad = False
    seen: dict[str, int] = {}  # store → the item that first gave it
    quantities: dict[str, int] = {}
    uncounted = False
    best = "out_of_stock"
    currency: str | None = None
    lowest: tuple[Decimal, str] | None = None
    for row in product_rows:
        _, index, _, store, _, quantity, availability, amount, row_currency, _, row_bad = row
        first = first or row
        bad = bad or bool(row_bad)
        if store is not None:
            if store in seen:
                bad = True
                yield _repeated_store(product_id, row, seen[store])
                continue
            seen[store] = index
        if row_currency is not None and amount is not None:
            currency = currency or row_currency
            if row_currency != currency:
                bad = True
                yield _other_currency(product_id, row, currency)
                continue
            if lowest is None or Decimal(amount) < lowest[0]:
                lowest = (Decimal(amount), amount)
        if bad or store is None or availability is None:
            continue
        if quantity is None:
            uncounted = True  # availability only: the store is not a location, the total is unknown
        else:
            quantities[store] = quantity
        if _AVAILABILITY_RANK[availability] < _AVAILABILITY_RANK[best]:
            best = availability
    if bad or first is None:
        return
    price_value = {"amount": lowest[1], "currency": currency} if lowest is not None else None
    yield _record(product_id, first, quantities, None if uncounted else sum(quantities.values()), best, price_value)


def _repeated_store(product_id: str, row: StoreRow, first_item: int) -> Problem:
    index, store = row[1], row[3]
    return Problem(
        kind="validation",
        message=(
            f"store '{store}' appears more than once for product '{product_id}' (first in item "
            f"{first_item}); send one item per product and store"
        ),
        line=row[4],
        record=index,
        product_id=product_id,
        path=f"{ITEM_PATH}[{index}]/g:store_code",
        field="locations.locationId",
        value=truncate(store),
    )


def _other_currency(product_id: str, row: StoreRow, currency: str) -> Problem:
    index, amount, row_currency = row[1], row[7], row[8]
    return Problem(
        kind="validation",
        message=(
            f"price is in {row_currency} but this product's earlier stores are priced in {currency}; "
            "send every store's price for one product in the same currency"
        ),
        line=row[9],
        record=index,
        product_id=product_id,
        path=f"{ITEM_PATH}[{index}]/g:price",
        field="price",
        value=truncate(f"{amount} {row_currency}"),
    )


def _record(
    product_id: str,
    first: StoreRow,
    quantities: dict[str, int],
    total: int | None,
    best: str,
    price_value: dict[str, str | None] | None,
) -> Item:
    """The product's record, at its first item; a problem when its stores' sum is too large to publish.

    ``total`` is ``None`` when a store gave availability only: the product's quantity is unknown.
    """
    index, line = first[1], first[2]
    too_large = fields.total_too_large(total, "its stores' quantities") if total is not None else None
    if too_large:
        return Problem(
            kind="validation",
            message=too_large,
            line=line,
            record=index,
            product_id=product_id,
            path=f"{ITEM_PATH}[{index}]/g:quantity",
            field="quantity",
            value=truncate(total),
        )
    return Record(
        index=index,
        product_id=product_id,
        fields={
            "sku": None,
            "name": None,
            "quantity": total,
            "availability": best,
            "price": price_value,
            "locations": [{"locationId": store, "quantity": quantities[store]} for store in sorted(quantities)],
        },
        line=line,
        path=f"{ITEM_PATH}[{index}]",
    )
