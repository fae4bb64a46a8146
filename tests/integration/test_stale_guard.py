"""Replaying old files never leaves a stale state on top; --changed-only skips what did not change."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe
from tests.integration.test_quarantine_and_claims import atomic_dynamodb_writes  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
BUCKET = "drops"


def snapshot(day: int, products: dict[str, int | None]) -> bytes:
    """A generic-format snapshot of 2026-11-<day>; ``None`` quantity means deleted."""
    body = []
    for pid, qty in products.items():
        if qty is None:
            body.append(f'<product id="{pid}" deleted="true"/>')
        else:
            body.append(f'<product id="{pid}"><name>{pid} name</name><quantity>{qty}</quantity></product>')
    return (
        f'<inventory partner="acme" generatedAt="2026-11-{day:02d}T06:00:00Z">' + "".join(body) + "</inventory>"
    ).encode()


MONDAY = snapshot(16, {"A": 1, "B": 1, "C": 1, "D": 1})
TUESDAY = snapshot(17, {"A": 2, "B": 2, "C": None, "E": 2})
WEDNESDAY = snapshot(18, {"A": 3, "E": 3, "F": 3})
#: For every key, the state from the newest snapshot that mentions it.
EXPECTED = {b"A": 3, b"B": 2, b"D": 1, b"E": 3, b"F": 3}  # C deleted on Tuesday


def put(aws: dict[str, Any], body: bytes, key: str) -> ObjectRef:
    return ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def quantities(probe: TopicProbe) -> dict[bytes, int]:
    return {key: orjson.loads(value)["quantity"] for key, value in materialise(probe.messages()).items()}


def test_three_snapshots_in_reverse_order_leave_the_newest_state(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    refs = [
        put(aws, body, f"acme/{name}.xml") for name, body in (("mon", MONDAY), ("tue", TUESDAY), ("wed", WEDNESDAY))
    ]
    ingestor = build_ingestor(settings)
    outcomes = [ingestor.ingest(ref, trigger="reprocess") for ref in reversed(refs)]
    assert [(o.status, o.events, o.stale) for o in outcomes] == [
        ("published", 3, 0),  # Wednesday: A E F
        ("published", 2, 2),  # Tuesday: B and C (deleted) published; A and E are older than Wednesday's
        ("published", 1, 3),  # Monday: only D is news; A B C are older
    ]
    assert quantities(topic_probe) == EXPECTED
    ledger = DynamoLedger(aws["dynamodb"], settings.ledger_table)
    monday = ledger.get(outcomes[2].ref)
    assert monday is not None and monday.attempts[-1]["stale"] == 3
    assert "skipped 3 stale event(s)" in outcomes[2].notes[0]


@pytest.mark.usefixtures("atomic_dynamodb_writes")
def test_concurrent_files_of_one_partner_still_leave_the_newest_state(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    refs = [put(aws, body, f"acme/{day}.xml") for day, body in (("mon", MONDAY), ("tue", TUESDAY), ("wed", WEDNESDAY))]
    ingestor = build_ingestor(settings)
    ingestor.sink.ensure_topic()  # type: ignore[union-attr]
    for _ in range(3):  # several interleavings, each from a fresh topic state is not needed: state only moves forward
        with ThreadPoolExecutor(max_workers=3) as pool:
            outcomes = list(pool.map(lambda ref: ingestor.ingest(ref, trigger="test", force=True), refs))
        assert all(o.status == "published" for o in outcomes)
        assert quantities(topic_probe) == EXPECTED


def test_reprocessing_an_unchanged_file_republishes_identical_values(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ref = put(aws, TUESDAY, "acme/tue.xml")
    ingestor = build_ingestor(settings)
    first = ingestor.ingest(ref, trigger="sqs")
    again = ingestor.ingest(ref, trigger="reprocess", force=True)
    assert (first.events, again.events, again.stale) == (4, 4, 0)  # same asOf is not stale: a fix must win
    values: dict[bytes, list[bytes | None]] = {}
    for message in topic_probe.messages():
        values.setdefault(message.key or b"", []).append(message.value)
    assert all(len(v) == 2 and v[0] == v[1] for v in values.values())


def test_changed_only_publishes_only_keys_whose_state_changed(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, MONDAY, "acme/mon.xml"), trigger="test")
    # Tuesday re-sends A, B, D unchanged, changes nothing else but adds G
    same_again = snapshot(17, {"A": 1, "B": 1, "D": 1, "G": 5})
    outcome = ingestor.ingest(put(aws, same_again, "acme/tue.xml"), trigger="test", changed_only=True)
    assert (outcome.events, outcome.unchanged) == (1, 3)
    assert sorted(m.key for m in topic_probe.messages()) == [b"A", b"B", b"C", b"D", b"G"]  # Monday's four + G


def test_dry_run_shows_new_changed_unchanged_and_stale(aws: dict[str, Any], settings: Settings) -> None:
    ingestor = build_ingestor(settings)
    ingestor.ingest(put(aws, TUESDAY, "acme/tue.xml"), trigger="test")
    candidate = snapshot(17, {"A": 2, "B": 7, "C": 1, "Z": 1})  # A same, B qty changed, C re-created, Z new
    outcome = ingestor.dry_run(put(aws, candidate, "acme/candidate.xml"))
    verdicts = outcome.verdicts
    assert verdicts is not None
    assert (verdicts.new, verdicts.changed, verdicts.unchanged, verdicts.stale) == (1, 2, 1, 0)
    assert verdicts.samples["changed"] == ["B: quantity", "C: (re-created)"]
    assert verdicts.samples["new"] == ["Z"]
    older = ingestor.dry_run(put(aws, MONDAY, "acme/old.xml"))
    assert older.verdicts is not None and older.verdicts.stale == 3
