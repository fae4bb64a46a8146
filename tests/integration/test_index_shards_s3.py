"""The sharded key index on S3 (moto) with a real broker: a partner's single index object of before
is migrated by its first file, shards and layout land where docs/contract.md "No stale overwrite"
says, and a later delta's stale check reads them back."""

from __future__ import annotations

from typing import Any

import pytest

from dropgate.adapters.s3_state import S3KeyIndexStore
from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.index_shards import ShardLayout
from tests.conftest import TopicProbe
from tests.integration.test_quarantine_and_claims import atomic_dynamodb_writes  # noqa: F401 (fixture)
from tests.integration.test_stale_guard import BUCKET, put, quantities, snapshot
from tests.unit.test_index_shards import DAY_16_MS, catalogue
from tests.unit.test_key_positions import FORMAT_2, format_1

pytestmark = pytest.mark.integration
LEGACY = "dropgate-state/key-index/acme.keyindex"
FOLDER = "dropgate-state/key-index/acme/"


def state_keys(aws: dict[str, Any]) -> list[str]:
    listed = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="dropgate-state/key-index/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_a_single_index_object_is_migrated_to_shards_and_guards_the_next_file(
    aws: dict[str, Any], settings: Settings, topic_probe: TopicProbe
) -> None:
    before = catalogue(100_000, as_of_ms=DAY_16_MS + 86_400_000)  # P0.. published on the 17th
    aws["s3"].put_object(Bucket=BUCKET, Key=LEGACY, Body=format_1(before))  # as dropgate wrote it then
    ingestor = build_ingestor(settings)

    older = ingestor.ingest(put(aws, snapshot(16, {"P1": 5, "NEW": 1}), "acme/mon.xml"), trigger="test")

    assert (older.status, older.events, older.stale) == ("published", 1, 1)  # P1 is older than the index
    assert quantities(topic_probe) == {b"NEW": 1}
    keys = state_keys(aws)
    assert LEGACY not in keys and FOLDER + "layout.json" in keys
    layout = ShardLayout.from_bytes(aws["s3"].get_object(Bucket=BUCKET, Key=FOLDER + "layout.json")["Body"].read())
    assert len(layout.shards) == 6 and keys == sorted(
        [FOLDER + "layout.json"] + [f"{FOLDER}{shard.name}.keyindex" for shard in layout.shards]
    )
    for shard in layout.shards:  # migrated: every shard in the current format, with topic positions
        body = aws["s3"].get_object(Bucket=BUCKET, Key=f"{FOLDER}{shard.name}.keyindex")["Body"].read()
        assert body.startswith(FORMAT_2)
    store = S3KeyIndexStore(aws["s3"], BUCKET)
    assert sum(len(index) for index in store.read("acme", BUCKET, layout.shards)) == len(before) + 1

    newer = ingestor.ingest(put(aws, snapshot(18, {"P1": 7, "NEW": 1}), "acme/wed.xml"), trigger="test")
    assert (newer.status, newer.events, newer.stale) == ("published", 2, 0)
    assert quantities(topic_probe) == {b"NEW": 1, b"P1": 7}
