"""Every partner format, end to end: upload to S3 → notification → queue → handler → topic.

Also the routing users rely on: a file under no prefix found by its root element (a declarative
format reaches its partner), a file in no known format quarantined with the formats listed, and a
full snapshot (Amazon's PurgeAndReplace) deleting what it no longer lists.
"""

from __future__ import annotations

import json

import orjson
import pytest

from devstack.sqs_runner import drain_queue
from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.storage import ObjectRef
from handlers.ingest import handler
from tests.conftest import TopicProbe, fixture_bytes
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
BUCKET = "dropgate-formats-drops"

DROPS = {
    "northwind/feeds/merchant-feed.xml": ("good/merchant-feed.xml", "google-merchant"),
    "contoso/local-inventory.xml": ("good/local-inventory.xml", "google-local"),
    "tailspin/inventory-update.xml": ("good/inventory-update.xml", "amazon"),
    "fabrikam/product-activity.xml": ("good/product-activity.xml", "cxml"),
    "fabrikam/stock-on-hand.xml": ("good/product-activity-stock-on-hand.xml", "cxml"),  # supplier-managed
    "initech/stock-2026-11-20.xml": ("good/initech-stock.xml", "declarative"),
    "inbox/initech-stock.xml": ("good/initech-stock.xml", "declarative"),  # no prefix: found by its root
    "inbox/orders.xml": (None, None),  # no prefix, no format
}
ORDERS = b'<?xml version="1.0"?>\n<Orders xmlns="urn:example:orders:2"><Order id="1"/></Orders>\n'


def upload(stack: Stack, key: str, body: bytes) -> str:
    version: str = stack.clients["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
    return version


def test_every_format_reaches_the_topic_and_an_unknown_one_is_quarantined(
    local_stack: Stack, topic_probe: TopicProbe
) -> None:
    versions = {
        key: upload(local_stack, key, fixture_bytes(*source) if source[0] else ORDERS)  # type: ignore[arg-type]
        for key, source in DROPS.items()
    }
    stats = drain_queue(local_stack.clients["sqs"], local_stack.queue_url, handler, wait_seconds=0)
    assert stats.failed == 0

    messages = topic_probe.messages()
    by_source: dict[str, list[str]] = {}
    for message in messages:
        source = message.headers["source-object"].decode().split("?")[0].removeprefix(f"s3://{BUCKET}/")
        by_source.setdefault(source, []).append((message.key or b"").decode())
    initech = ["initech:INI-1001", "initech:INI-1002", "initech:INI-1003", "initech:INI-1004", "initech:INI-1005"]
    assert {source: sorted(keys) for source, keys in by_source.items()} == {
        "northwind/feeds/merchant-feed.xml": [f"northwind:SKU-1004{n}" for n in (2, 3, 4, 5, 6)],
        "contoso/local-inventory.xml": [f"contoso:SKU-1004{n}" for n in (2, 3, 4, 5, 6)],
        "tailspin/inventory-update.xml": [f"tailspin:ABC-12{n}" for n in range(3, 9)],
        "fabrikam/product-activity.xml": [f"fabrikam:SP-10{n}" for n in range(4)],
        "fabrikam/stock-on-hand.xml": [f"fabrikam:SP-40{n}" for n in range(4)],
        "initech/stock-2026-11-20.xml": initech,
        "inbox/initech-stock.xml": initech,
    }
    state = {key.decode(): orjson.loads(value) for key, value in materialise(messages).items()}
    local = state["contoso:SKU-10042"]  # its stores are spread through the file
    assert local["quantity"] == sum(loc["quantity"] for loc in local["locations"]) == 9
    assert len(local["locations"]) == 3
    assert state["northwind:SKU-10042"]["quantity"] is None and state["northwind:SKU-10042"]["price"]["currency"]
    assert "tailspin:ABC-125" not in state  # an Amazon Delete is a tombstone
    assert state["fabrikam:SP-100"]["quantity"] == 120 and state["fabrikam:SP-100"]["asOf"] == "2026-11-20T13:00:00Z"
    on_hand = [state[f"fabrikam:SP-40{n}"] for n in range(4)]  # StockOnHandQuantity; in transit is not added
    assert [(s["quantity"], s["availability"], s["locations"]) for s in on_hand] == [
        (340, "in_stock", []),
        (0, "out_of_stock", []),
        (75, "in_stock", []),
        (12, "in_stock", []),
    ]
    assert state["initech:INI-1001"]["parser"] == {"name": "initech-stock", "version": "1"}
    assert state["initech:INI-1001"]["partnerId"] == "initech"

    ledger = DynamoLedger(local_stack.clients["dynamodb"], local_stack.ledger_table)
    rows = {key: ledger.get(ObjectRef(BUCKET, key, version)) for key, version in versions.items()}
    assert {key: (row.status, row.partner, row.parser_name) for key, row in rows.items() if row} == {
        "northwind/feeds/merchant-feed.xml": ("published", "northwind", "google-merchant"),
        "contoso/local-inventory.xml": ("published", "contoso", "google-local-inventory"),
        "tailspin/inventory-update.xml": ("published", "tailspin", "amazon-inventory"),
        "fabrikam/product-activity.xml": ("published", "fabrikam", "cxml-product-activity"),
        "fabrikam/stock-on-hand.xml": ("published", "fabrikam", "cxml-product-activity"),
        "initech/stock-2026-11-20.xml": ("published", "initech", "initech-stock"),
        "inbox/initech-stock.xml": ("published", "initech", "initech-stock"),
        "inbox/orders.xml": ("quarantined", None, "unknown-format"),
    }
    diagnostics = json.loads(
        local_stack.clients["s3"]
        .get_object(Bucket=BUCKET, Key="quarantine/diagnostics/inbox/orders.xml.diagnostics.json")["Body"]
        .read()
    )
    [problem] = diagnostics["problems"]
    assert problem["kind"] == "unknown_format" and problem["value"] == "urn:example:orders:2"
    assert "root element is <Orders> in namespace urn:example:orders:2" in problem["message"]
    assert "google-local-inventory (" in problem["message"] and "initech-stock (" in problem["message"]


def test_an_amazon_purge_and_replace_deletes_what_the_next_purge_no_longer_lists(
    local_stack: Stack, topic_probe: TopicProbe
) -> None:
    first = fixture_bytes("good/inventory-purge.xml", "amazon")  # ABC-123 and ABC-128
    second = first.replace(b"<SKU>ABC-128</SKU>", b"<SKU>ABC-129</SKU>")
    sqs = local_stack.clients["sqs"]
    upload(local_stack, "tailspin/purge-1.xml", first)
    assert drain_queue(sqs, local_stack.queue_url, handler, wait_seconds=0).failed == 0
    upload(local_stack, "tailspin/purge-2.xml", second)
    assert drain_queue(sqs, local_stack.queue_url, handler, wait_seconds=0).failed == 0

    messages = topic_probe.messages()
    assert [m.key for m in messages if m.value is None] == [b"tailspin:ABC-128"]
    assert sorted(materialise(messages)) == [b"tailspin:ABC-123", b"tailspin:ABC-129"]


# -- Google feeds as exporters write them (issue 20) ------------------------------------------------

GOOGLE_DROPS = {
    "northwind/feeds/atom.xml": ("good/merchant-atom-feed.xml", "google-merchant"),
    "northwind/feeds/vehicles.xml": ("good/vehicle-ads-feed.xml", "google-merchant"),
    "northwind/feeds/spellings.xml": ("good/merchant-spellings.xml", "google-merchant"),
    "northwind/feeds/wrong.xml": ("bad/merchant-wrong-spellings.xml", "google-merchant"),
    "contoso/availability-only.xml": ("good/local-availability-only.xml", "google-local"),
    "contoso/neither.xml": ("bad/local-neither-quantity-nor-availability.xml", "google-local"),
    "inbox/vehicles.xml": ("good/vehicle-ads-feed.xml", "google-merchant"),  # no prefix: found by its first item
}


def _sidecar(stack: Stack, key: str) -> list[dict[str, object]]:
    body = stack.clients["s3"].get_object(Bucket=BUCKET, Key=f"quarantine/diagnostics/{key}.diagnostics.json")
    problems: list[dict[str, object]] = json.loads(body["Body"].read())["problems"]
    return problems


def test_google_atom_vehicle_and_availability_only_feeds_reach_the_topic_as_their_values(
    local_stack: Stack, topic_probe: TopicProbe
) -> None:
    versions = {key: upload(local_stack, key, fixture_bytes(*source)) for key, source in GOOGLE_DROPS.items()}
    assert drain_queue(local_stack.clients["sqs"], local_stack.queue_url, handler, wait_seconds=0).failed == 0

    state = {key.decode(): orjson.loads(value) for key, value in materialise(topic_probe.messages()).items()}
    seen = {
        key: (v["quantity"], v["availability"], v["price"] and (v["price"]["amount"], v["price"]["currency"]))
        for key, v in state.items()
    }
    assert seen == {
        "northwind:SKU-71001": (None, "in_stock", ("129.00", "USD")),
        "northwind:SKU-71002": (None, "out_of_stock", ("45.5", "EUR")),
        "northwind:SKU-71003": (None, "preorder", ("34.99", "USD")),
        "northwind:VEH-3001": (None, "in_stock", ("27995.00", "USD")),
        "northwind:VEH-3002": (None, "backorder", ("41250.00", "USD")),
        "northwind:SKU-80001": (None, "in_stock", ("165.00", "USD")),
        "northwind:SKU-80002": (None, "in_stock", ("165.00", "USD")),
        "northwind:SKU-80003": (None, "backorder", ("899", "EUR")),
        "contoso:SKU-90001": (None, "in_stock", ("55.00", "USD")),
        "contoso:SKU-90002": (None, "backorder", None),
        "contoso:SKU-90003": (2, "in_stock", ("12.50", "USD")),
    }
    assert {key: v["locations"] for key, v in state.items() if v["locations"]} == {
        "contoso:SKU-90001": [{"locationId": "STORE-B", "quantity": 4}],
        "contoso:SKU-90003": [{"locationId": "STORE-A", "quantity": 2}],
    }
    assert state["northwind:SKU-71001"]["name"] == "Ridgeline Trekking Poles"
    assert state["northwind:VEH-3001"]["parser"] == {"name": "google-merchant", "version": "2"}

    ledger = DynamoLedger(local_stack.clients["dynamodb"], local_stack.ledger_table)
    rows = {key: ledger.get(ObjectRef(BUCKET, key, version)) for key, version in versions.items()}
    assert {key: (row.status, row.parser_name) for key, row in rows.items() if row} == {
        "northwind/feeds/atom.xml": ("published", "google-merchant"),
        "northwind/feeds/vehicles.xml": ("published", "google-merchant"),
        "northwind/feeds/spellings.xml": ("published", "google-merchant"),
        "northwind/feeds/wrong.xml": ("quarantined", "google-merchant"),
        "contoso/availability-only.xml": ("published", "google-local-inventory"),
        "contoso/neither.xml": ("quarantined", "google-local-inventory"),
        # found as a product feed, not a local one; no partner's prefix, so it waits for one
        "inbox/vehicles.xml": ("quarantined", "google-merchant"),
    }
    wrong = _sidecar(local_stack, "northwind/feeds/wrong.xml")
    assert [(p["line"], p["record"], p["productId"], p["field"], p["value"]) for p in wrong] == [
        (13, 1, "SKU-81001", "price", "USD 89,95"),
        (19, 2, "SKU-81002", "price", "EURO 120.00"),
        (24, 3, "SKU-81003", "availability", "available soon"),
        (31, 4, "SKU-81004", "price", "$19.99"),
    ]
    [neither] = _sidecar(local_stack, "contoso/neither.xml")
    assert (neither["kind"], neither["line"], neither["record"], neither["field"]) == (
        "validation",
        15,
        2,
        "availability",
    )
    assert '"quantity is optional, availability is mandatory"' in str(neither["message"])
