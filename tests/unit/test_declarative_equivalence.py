"""A built-in format re-expressed as a declarative format gives the same events.

This is the proof that onboarding a new XML shape by configuration is as good as code: the same
file through the Google Merchant (or Amazon) parser and through its ``partners.yaml`` description
produces byte-identical keys and values, except for the parser's own name and version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import FIXTURES

GOOGLE_MERCHANT = """
    version: "1"
    root: rss
    namespaces: {g: "http://base.google.com/ns/1.0"}
    record: channel/item
    fields:
      productId:    {path: "g:id"}
      sku:          {path: "g:mpn"}
      name:         {path: "(g:title | title[not(../g:title)])[1]"}
      availability:
        path: "g:availability"
        transforms: [trim, lower]
        map: {in_stock: in_stock, "in stock": in_stock, out_of_stock: out_of_stock,
              "out of stock": out_of_stock, preorder: preorder, backorder: backorder}
      price:        {path: "g:price", transforms: [trim, price]}
"""

AMAZON_INVENTORY = """
    version: "1"
    root: AmazonEnvelope
    record: Message
    deleted: {path: "OperationType", equals: [Delete]}
    fields:
      productId:    {path: "Inventory/SKU"}
      sku:          {path: "Inventory/SKU"}
      quantity:     {path: "Inventory/Quantity", transforms: [trim, integer]}
      availability: {path: "Inventory/Available", transforms: [trim, lower], map: {"true": in_stock, "false": out_of_stock}}
"""


def events(tmp_path: Path, fmt: str, spec: str | None, fixture: Path) -> list[tuple[bytes, Any]]:
    config = tmp_path / f"partners-{'declarative' if spec else 'built-in'}.yaml"
    text = f"partners:\n  p: {{prefix: p/, format: {'described' if spec else fmt}}}\n"
    if spec:
        text += "formats:\n  described:" + spec
    config.write_text(text, encoding="utf-8")
    ingestor = build_ingestor(Settings(partners=str(config)), local=True, publish=False)
    prepared = ingestor.prepare(ObjectRef(None, str(fixture)), partner_id="p")
    with prepared.spool:
        assert prepared.problems == []
        found = []
        for entry in prepared.spool.replay(prepared.sha256):
            value = orjson.loads(entry.value) if entry.value is not None else None
            if value is not None:
                parser = value.pop("parser")
                assert parser["name"] == ("described" if spec else prepared.parser.name)
            found.append((entry.key, value))
        return found


@pytest.mark.parametrize(
    ("fmt", "spec", "fixture"),
    [
        ("google-merchant", GOOGLE_MERCHANT, "google-merchant/good/merchant-feed.xml"),
        ("amazon-inventory", AMAZON_INVENTORY, "amazon/good/inventory-update.xml"),
    ],
)
def test_a_built_in_format_described_declaratively_gives_the_same_events(
    tmp_path: Path, fmt: str, spec: str, fixture: str
) -> None:
    built_in = events(tmp_path, fmt, None, FIXTURES / fixture)
    described = events(tmp_path, fmt, spec, FIXTURES / fixture)
    assert len(built_in) >= 5
    assert described == built_in
