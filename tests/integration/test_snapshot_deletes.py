"""Snapshot deletes: a product missing from a partner's full snapshot gets a tombstone on the topic.

Real parts: moto's S3 and DynamoDB (ledger, partner lock, key sets) and a Kafka-protocol broker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.adapters.kafka_topic_reader import materialise
from dropgate.adapters.s3_state import S3SnapshotStore
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.ingest.service import Ingestor
from dropgate.storage import ObjectRef
from tests.conftest import TopicProbe

pytestmark = pytest.mark.integration
BUCKET = "drops"


def catalogue(day: int, products: dict[str, int | str], partner: str = "initech") -> bytes:
    """A generic-format file of 2026-11-<day>; a string quantity is sent as is (to make it invalid)."""
    body = "".join(f'<product id="{pid}"><quantity>{qty}</quantity></product>' for pid, qty in products.items())
    return f'<inventory partner="{partner}" generatedAt="2026-11-{day:02d}T06:00:00Z">{body}</inventory>'.encode()


MONDAY = catalogue(16, {"A": 1, "B": 1, "C": 1, "D": 1, "E": 1})
TUESDAY = catalogue(17, {"A": 2, "E": 2, "F": 2})  # B, C and D are gone


def ingestor_for(settings: Settings, tmp_path: Path, *, snapshot: str, policy: str = "strict") -> Ingestor:
    config = tmp_path / "partners.yaml"
    config.write_text(
        f"partners:\n  initech: {{prefix: initech/, format: generic, snapshot: {snapshot}, policy: {policy}}}\n",
        encoding="utf-8",
    )
    return build_ingestor(settings.model_copy(update={"partners": str(config)}))


def put(aws: dict[str, Any], body: bytes, key: str) -> ObjectRef:
    return ObjectRef(BUCKET, key, aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"])


def stored_keys(aws: dict[str, Any]) -> list[bytes]:
    """The partner's key set as its shards hold it (their count checked against the manifest's)."""
    store = S3SnapshotStore(aws["s3"], BUCKET)
    manifest = store.manifest("initech", BUCKET)
    assert manifest is not None
    shards = store.read("initech", BUCKET, manifest.generation, manifest.layout.shards)
    keys = sorted(key for shard in shards for key in shard)
    assert len(keys) == manifest.header.count
    return keys


def test_second_full_snapshot_tombstones_exactly_the_three_products_it_lacks(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    ingestor = ingestor_for(settings, tmp_path, snapshot="full")
    first = ingestor.ingest(put(aws, MONDAY, "initech/mon.xml"), trigger="test")
    assert (first.status, first.events, first.snapshot_deletes) == ("published", 5, 0)
    assert "first snapshot recorded" in first.notes[0]
    assert stored_keys(aws) == [b"A", b"B", b"C", b"D", b"E"]

    tuesday = put(aws, TUESDAY, "initech/tue.xml")
    preview = ingestor.dry_run(tuesday)
    [note] = preview.notes
    assert preview.snapshot_deletes == 3
    assert note.startswith("snapshot: 3 product(s) missing since s3://drops/initech/mon.xml?versionId=")
    assert note.endswith(": would publish 3 tombstone(s)")
    assert len(topic_probe.messages()) == 5  # the dry run published nothing
    assert stored_keys(aws) == [b"A", b"B", b"C", b"D", b"E"]  # and stored nothing

    second = ingestor.ingest(tuesday, trigger="test")
    assert (second.status, second.events, second.tombstones, second.snapshot_deletes) == ("published", 6, 3, 3)
    assert "3 product(s) missing since s3://drops/initech/mon.xml" in second.notes[0]

    messages = topic_probe.messages()
    tombstones = [m for m in messages if m.value is None]
    assert sorted(m.key for m in tombstones) == [b"B", b"C", b"D"]
    assert tombstones[0].headers["source-object"].startswith(b"s3://drops/initech/tue.xml")
    assert sorted(materialise(messages)) == [b"A", b"E", b"F"]
    assert stored_keys(aws) == [b"A", b"E", b"F"]
    row = DynamoLedger(aws["dynamodb"], settings.ledger_table).get(second.ref)
    assert row is not None and (row.status, row.event_count, row.tombstones) == ("published", 6, 3)

    # Reprocessing the same snapshot deletes nothing more: the republish is idempotent.
    again = ingestor.ingest(second.ref, trigger="reprocess", force=True)
    assert (again.status, again.snapshot_deletes) == ("published", 0)
    assert len([m for m in topic_probe.messages() if m.value is None]) == 3


def test_the_same_two_files_in_delta_mode_give_no_tombstones(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    ingestor = ingestor_for(settings, tmp_path, snapshot="delta")
    outcomes = [
        ingestor.ingest(put(aws, body, f"initech/{n}.xml"), trigger="test")
        for n, body in (("mon", MONDAY), ("tue", TUESDAY))
    ]
    assert [(o.status, o.tombstones, o.snapshot_deletes) for o in outcomes] == [("published", 0, 0)] * 2
    messages = topic_probe.messages()
    assert [m for m in messages if m.value is None] == []
    assert sorted(materialise(messages)) == [b"A", b"B", b"C", b"D", b"E", b"F"]


def test_an_older_snapshot_after_a_newer_one_deletes_nothing(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    ingestor = ingestor_for(settings, tmp_path, snapshot="full")
    newer = ingestor.ingest(put(aws, TUESDAY, "initech/tue.xml"), trigger="test")
    older = ingestor.ingest(put(aws, MONDAY, "initech/mon.xml"), trigger="test")
    assert (newer.snapshot_deletes, older.snapshot_deletes) == (0, 0)
    assert "older than the newest one already published" in older.notes[0]
    assert [m for m in topic_probe.messages() if m.value is None] == []
    # B, C and D are live now (no newer state for them): tracked, so the next snapshot without them deletes them
    assert stored_keys(aws) == [b"A", b"B", b"C", b"D", b"E", b"F"]
    third = ingestor.ingest(put(aws, catalogue(18, {"A": 3, "F": 3}), "initech/wed.xml"), trigger="test")
    assert third.snapshot_deletes == 4
    assert sorted(materialise(topic_probe.messages())) == [b"A", b"F"]


def test_a_partly_published_snapshot_never_deletes(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    ingestor = ingestor_for(settings, tmp_path, snapshot="full", policy="skip_invalid")
    ingestor.ingest(put(aws, MONDAY, "initech/mon.xml"), trigger="test")
    partial = catalogue(17, {"A": 2, "E": "lots"})  # E invalid: skipped, the file is quarantined
    outcome = ingestor.ingest(put(aws, partial, "initech/tue.xml"), trigger="test")
    assert (outcome.status, outcome.events, outcome.snapshot_deletes) == ("quarantined", 1, 0)
    assert "a partial file never deletes" in outcome.notes[0]
    assert [m for m in topic_probe.messages() if m.value is None] == []
    assert stored_keys(aws) == [b"A", b"B", b"C", b"D", b"E"]


def test_an_empty_full_snapshot_deletes_nothing_and_says_why(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    ingestor = ingestor_for(settings, tmp_path, snapshot="full")
    ingestor.ingest(put(aws, MONDAY, "initech/mon.xml"), trigger="test")
    empty = catalogue(17, {})  # what a broken export job looks like
    outcome = ingestor.ingest(put(aws, empty, "initech/tue.xml"), trigger="test")
    assert (outcome.status, outcome.events, outcome.snapshot_deletes) == ("published", 0, 0)
    assert outcome.notes == ["snapshot: full snapshot with no products: refusing to delete the whole catalogue"]
    assert [m for m in topic_probe.messages() if m.value is None] == []
    assert stored_keys(aws) == [b"A", b"B", b"C", b"D", b"E"]


def test_products_published_between_snapshots_are_deleted_by_the_next_snapshot(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    """A partner's deltas (or partial files) between full snapshots add to the tracked key set."""
    ingestor = ingestor_for(settings, tmp_path, snapshot="full", policy="skip_invalid")
    ingestor.ingest(put(aws, catalogue(16, {"A": 1, "B": 1}), "initech/mon.xml"), trigger="test")
    partial = ingestor.ingest(put(aws, catalogue(17, {"A": 2, "N": 1, "E": "x"}), "initech/tue.xml"), trigger="test")
    assert (partial.status, partial.snapshot_deletes) == ("quarantined", 0)
    assert stored_keys(aws) == [b"A", b"B", b"N"]
    last = ingestor.ingest(put(aws, catalogue(18, {"A": 3}), "initech/wed.xml"), trigger="test")
    assert last.snapshot_deletes == 2
    assert sorted(materialise(topic_probe.messages())) == [b"A"]


def test_a_key_template_change_restarts_the_key_set_instead_of_deleting_everything(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    ingestor_for(settings, tmp_path, snapshot="full").ingest(put(aws, MONDAY, "initech/mon.xml"), trigger="test")
    config = tmp_path / "partners.yaml"
    config.write_text(
        "partners:\n  initech: {prefix: initech/, format: generic, snapshot: full, "
        "key_template: '{partnerId}:{productId}'}\n",
        encoding="utf-8",
    )
    renamed = build_ingestor(settings.model_copy(update={"partners": str(config)}))
    outcome = renamed.ingest(put(aws, TUESDAY, "initech/tue.xml"), trigger="test")
    assert outcome.snapshot_deletes == 0
    assert "the key template changed ({productId} → {partnerId}:{productId})" in outcome.notes[0]
    assert stored_keys(aws) == [b"initech:A", b"initech:E", b"initech:F"]


def test_a_crash_before_the_key_set_is_written_repeats_the_same_tombstones(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe, tmp_path: Path
) -> None:
    class FailsOnTuesday(S3SnapshotStore):
        failed = False

        def write_manifest(self, partner: str, bucket: str | None, manifest: Any) -> None:
            if "tue.xml" in manifest.header.source and not self.failed:
                self.failed = True
                raise ConnectionError("S3 went away")
            super().write_manifest(partner, bucket, manifest)

    ingestor = ingestor_for(settings, tmp_path, snapshot="full")
    ingestor.snapshots = FailsOnTuesday(aws["s3"], BUCKET)
    ingestor.ingest(put(aws, MONDAY, "initech/mon.xml"), trigger="test")
    tuesday = put(aws, TUESDAY, "initech/tue.xml")
    with pytest.raises(ConnectionError):
        ingestor.ingest(tuesday, trigger="sqs")
    assert sorted(m.key for m in topic_probe.messages() if m.value is None) == [b"B", b"C", b"D"]
    retried = ingestor.ingest(tuesday, trigger="sqs")
    assert (retried.status, retried.snapshot_deletes) == ("published", 3)
    assert sorted(materialise(topic_probe.messages())) == [b"A", b"E", b"F"]
    assert stored_keys(aws) == [b"A", b"E", b"F"]
