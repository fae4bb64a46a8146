"""Peer: what a user would write with xmltodict. ``xmltodict.parse(open(path, "rb"))`` (the whole
document as nested dicts), then per product a pydantic model → ``model_dump_json()`` → produce;
``deleted="true"`` products → tombstones."""

from __future__ import annotations

from typing import Any

from bench.contestants._common import Producing, arguments, producing_summary


def to_model(product: dict[str, Any]) -> Any:
    from bench.contestants._model import Product

    price = product.get("price")
    locations = (product.get("locations") or {}).get("location") or []
    if isinstance(locations, dict):  # xmltodict: one child is a dict, several are a list
        locations = [locations]
    return Product(
        id=product["@id"],
        sku=product.get("sku"),
        name=product.get("name"),
        quantity=product.get("quantity"),
        availability=product.get("availability"),
        price=price["#text"] if price else None,
        currency=price["@currency"] if price else None,
        locations=[{"id": location["@id"], "quantity": location["@quantity"]} for location in locations],
    )


def main() -> None:
    args = arguments(__doc__ or "")
    import gzip

    import xmltodict

    opener: Any = gzip.open if args.file.endswith(".gz") else open
    with opener(args.file, "rb") as source:
        document = xmltodict.parse(source)
    products = document["inventory"]["product"]
    if isinstance(products, dict):
        products = [products]
    producing = Producing(args.bootstrap, args.topic)
    for product in products:
        if product.get("@deleted") == "true":
            producing.send(product["@id"], None)
        else:
            producing.send(product["@id"], to_model(product).model_dump_json())
    remaining = producing.finish()
    producing_summary(producing, remaining, records=producing.sent)


if __name__ == "__main__":
    main()
