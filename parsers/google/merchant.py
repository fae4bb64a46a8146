"""Google Merchant Center product feed (``google-merchant``): one RSS item, or one Atom entry, is one product.

Where each rule comes from (Google Merchant Center Help, product data specification
https://support.google.com/merchants/answer/7052112 and the attribute pages it links):

- the feed is RSS 2.0 (``<rss>``, items under ``<channel>``) or Atom 1.0 (``<feed>`` in
  ``http://www.w3.org/2005/Atom``, one ``<entry>`` per product), with Google's attributes in
  ``http://base.google.com/ns/1.0`` declared on the root (Atom 1.0 specification,
  https://support.google.com/merchants/answer/14990811). Both are read by the same rules.
- ``g:id`` is required and becomes ``productId`` (trimmed). In an Atom entry without ``g:id`` the
  entry's own ``<id>`` is the product id: the Atom specification lists ``id`` among the entry-level
  elements a product needs. With both, ``g:id`` wins (``<id>`` is then Atom's own identifier).
- ``g:title``, else the plain RSS or Atom ``title``, becomes ``name``; ``g:mpn`` becomes ``sku``.
  ``link`` and ``summary`` carry nothing the contract holds and are not read.
- ``g:availability`` is required (answer/6324448): ``in_stock``, ``out_of_stock``, ``preorder``,
  ``backorder``; case is forgiven and the spellings with spaces (``in stock``) are normalised.
  Two older values real exporters still write are read too: ``limited availability`` →
  ``in_stock`` (the local inventory spec, answer/13475891: one or two units on hand, still
  buyable) and ``available for order`` → ``backorder`` (the 2011 product spec: orders taken,
  ships in 4 or more business days as it is not in the warehouse; today's ``backorder``).
  Anything else is a validation problem listing the values.
- ``g:price`` is an amount and an ISO 4217 code (answer/6324371: ``15.00 USD``); ``165.00USD``
  (the Pinterest for WooCommerce plugin's feed) and ``USD 165.00`` are read too. A comma, a
  negative amount or a word that is not a currency code is a problem naming that part.
- the feed has no stock counts: ``quantity`` is ``None`` and ``locations`` is empty.
- ``g:store_code`` does not make a product a store row: the store code attribute page
  (answer/13869896) requires it for vehicle ads (answer/11189169) too, where it names the
  dealership that has the vehicle and may repeat. It carries no count, and every location in the
  contract needs a quantity, so it is not carried: it is ignored, repeated or not.
- which Google feed a file is comes from the partner's configuration, and for a file under no
  prefix from its first item as a whole (``rss.first_item_is_local``): an item with a store code
  and none of a product's title, link or image link is a local inventory row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from parsers import fields
from parsers.base import Item, Problem, Record
from parsers.front_end import Items
from parsers.google.items import (
    MERCHANT_AVAILABILITY,
    OLDER_MERCHANT_AVAILABILITY,
    ItemReader,
    availability_converter,
    price,
)
from parsers.google.rss import (
    ATOM_ENTRY,
    ATOM_FEED,
    ATOM_ROOT,
    ITEM,
    ROOT,
    RSS,
    RssScan,
    atom,
    describe_root,
    first_item_is_local,
    g,
    is_google_atom,
    is_google_rss,
    refuse_google,
)
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.xml_stream import Sniffed

_MERCHANT_WANTED = {
    g("id"): ("id", "productId"),
    atom("id"): ("atom:id", "productId"),
    "title": ("title", "name"),
    atom("title"): ("title", "name"),
    g("title"): ("g:title", "name"),
    g("availability"): ("availability", "availability"),
    g("price"): ("price", "price"),
    g("mpn"): ("mpn", "sku"),
}
_MERCHANT_AVAILABILITY = availability_converter(MERCHANT_AVAILABILITY, OLDER_MERCHANT_AVAILABILITY)


class GoogleMerchantParser:
    """Google Merchant Center product feed (RSS 2.0 or Atom 1.0). Bump ``version`` with every behavioural change."""

    name = "google-merchant"
    version = "2"
    expects = describe_root("Google Merchant Center product feed", atom_too=True)

    def matches(self, sniffed: Sniffed) -> bool:
        return (is_google_rss(sniffed) or is_google_atom(sniffed)) and not first_item_is_local(sniffed)

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        scan = _MerchantScan(limits, self.expects, _MERCHANT_WANTED)
        return scan.items(stream, accepts=self.matches, refuse=_refuse)


def _refuse(sniffed: Sniffed, expects: str) -> Problem:
    return refuse_google(sniffed, expects, local=False)


class _MerchantScan(RssScan):
    shapes = (RSS, ATOM_FEED)
    tags = (ROOT, ITEM, ATOM_ROOT, ATOM_ENTRY)

    def read_item(self, reader: ItemReader) -> Items:
        return _merchant_item(reader)


def _merchant_item(reader: ItemReader) -> Iterator[Item]:
    product_id = reader.require_id()
    name = fields.text_value(reader.child_text("g:title")) or fields.text_value(reader.child_text("title"))
    sku = fields.text_value(reader.child_text("mpn"))
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
