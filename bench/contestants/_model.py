"""The peers' pydantic model: the ProductState fields a user would map (what survives in the flat
frame of ``pandas.read_xml``: id, sku, name, quantity, availability, price), plus currency and
locations, which only the xmltodict peer can fill (read_xml flattens child elements, so the nested
``<location>`` list and the ``currency`` attribute of ``<price>`` are lost)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel


class Location(BaseModel):
    id: str
    quantity: int


class FlatProduct(BaseModel):
    """What the pandas peer can fill from ``read_xml``'s flat frame."""

    id: str
    sku: str | None = None
    name: str | None = None
    quantity: int | None = None
    availability: str | None = None
    price: Decimal | None = None


class Product(FlatProduct):
    """What the xmltodict peer fills: the flat fields plus the price's currency and the locations."""

    currency: str | None = None
    locations: list[Location] = []
