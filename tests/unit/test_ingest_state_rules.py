"""The ingest service's rules about state already published, on in-memory fakes: the stale guard,
``changed_only`` and snapshot deletes. The guard is the product's :class:`KeyIndexGuard`; the same
behaviours are proven against moto and a broker in ``tests/integration``."""

from __future__ import annotations

import orjson

from tests.fakes import RecordingSink, Service, inventory, make_service

MONDAY = inventory({"A": 1, "B": 1, "C": 1, "D": 1, "E": 1}, day=16)
TUESDAY = inventory({"A": 2, "E": 2, "F": 2}, day=17)  # B, C and D are gone


def quantities(sink: RecordingSink) -> dict[bytes, int | None]:
    """What a consumer of the compacted topic ends up with: each key's quantity (``None``: deleted)."""
    return {key: None if value is None else orjson.loads(value)["quantity"] for key, value in sink.latest().items()}


# -- stale skips and changed_only -----------------------------------------------------------------
def test_a_dry_run_counts_each_verdict_and_names_the_first_keys_of_each() -> None:
    """What ``reprocess --dry-run`` prints: new, changed (and which fields), unchanged, stale and
    deleted, the counts over the whole file and the first keys of each but unchanged."""
    svc = make_service()
    svc.ingest(svc.drop("acme/tue.xml", inventory({"A": 1, "B": 1, "C": 1, "D": 1}, day=17)))
    svc.ingest(svc.drop("acme/thu.xml", inventory({"D": 4}, day=19)))
    preview = svc.ingestor.dry_run(
        svc.drop("acme/wed.xml", inventory({"A": 1, "B": 2, "C": None, "D": 3, "N": 1}, day=18)), changed_only=True
    )
    verdicts = preview.verdicts
    assert verdicts is not None
    counts = (verdicts.new, verdicts.changed, verdicts.unchanged, verdicts.stale, verdicts.deleted)
    assert counts == (1, 2, 1, 1, 1)  # N; B and C (a delete is a change); A; D; C
    assert verdicts.published == 3
    assert verdicts.samples == {
        "new": ["N"],
        "changed": ["B: quantity", "C: (deleted)"],
        "stale": ["D"],
    }


def test_an_older_file_after_a_newer_one_skips_its_stale_events_and_says_so() -> None:
    svc = make_service()
    newer = svc.ingest(svc.drop("acme/wed.xml", inventory({"A": 3, "B": 3}, day=18)))
    older = svc.ingest(svc.drop("acme/tue.xml", inventory({"A": 2, "B": 2, "C": 2}, day=17)))

    assert (newer.status, newer.events, newer.stale) == ("published", 2, 0)
    assert (older.status, older.events, older.stale) == ("published", 1, 2)
    assert older.notes == ["skipped 2 stale event(s) older than the newest published for their key (e.g. A, B)"]
    assert quantities(svc.sink) == {b"A": 3, b"B": 3, b"C": 2}
    assert svc.sink.keys == [b"A", b"B", b"C"]
    row = svc.row(older.ref)
    assert (row.status, row.event_count, row.attempts[-1]["stale"]) == ("published", 1, 2)


def test_a_stale_delete_does_not_remove_a_newer_state() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/wed.xml", inventory({"A": 3}, day=18)))
    older = svc.ingest(svc.drop("acme/tue.xml", inventory({"A": None}, day=17)))
    assert (older.events, older.tombstones, older.stale) == (0, 1, 1)
    assert quantities(svc.sink) == {b"A": 3}


def test_the_same_snapshot_time_again_is_not_stale_so_a_fix_wins() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/tue.xml", inventory({"A": 2}, day=17)))
    fixed = svc.ingest(svc.drop("acme/tue-fixed.xml", inventory({"A": 5}, day=17)))
    assert (fixed.events, fixed.stale) == (1, 0)
    assert quantities(svc.sink) == {b"A": 5}


def test_changed_only_skips_the_keys_whose_state_did_not_change() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/mon.xml", inventory({"A": 1, "B": 1, "D": 1}, day=16)))
    same_again = inventory({"A": 1, "B": 1, "D": 2, "G": 5}, day=17)  # D changed, G is new
    outcome = svc.ingest(svc.drop("acme/tue.xml", same_again), changed_only=True)

    assert (outcome.status, outcome.events, outcome.unchanged, outcome.stale) == ("published", 2, 2, 0)
    assert svc.sink.keys == [b"A", b"B", b"D", b"D", b"G"]  # Monday's three, then only D and G
    assert outcome.verdicts is not None and outcome.verdicts.samples["changed"] == ["D: quantity"]


def test_without_changed_only_unchanged_keys_are_published_again() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/mon.xml", inventory({"A": 1}, day=16)))
    outcome = svc.ingest(svc.drop("acme/tue.xml", inventory({"A": 1}, day=17)))
    assert (outcome.events, outcome.unchanged) == (1, 0)
    assert svc.sink.keys == [b"A", b"A"]


def test_an_unchanged_key_held_back_still_moves_its_newest_time_forward() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/mon.xml", inventory({"K": 1}, day=16)))
    wednesday = svc.ingest(svc.drop("acme/wed.xml", inventory({"K": 1}, day=18)), changed_only=True)
    tuesday = svc.ingest(svc.drop("acme/tue.xml", inventory({"K": 2}, day=17)))
    assert (wednesday.events, wednesday.unchanged) == (0, 1)
    assert (tuesday.events, tuesday.stale) == (0, 1)  # older than Wednesday's, which said K=1
    assert quantities(svc.sink) == {b"K": 1}


# -- snapshot deletes (initech: snapshot: full) ---------------------------------------------------
def ingest_monday(svc: Service) -> None:
    first = svc.ingest(svc.drop("initech/mon.xml", MONDAY))
    assert (first.status, first.events, first.snapshot_deletes) == ("published", 5, 0)
    assert first.notes[0].startswith("snapshot: first snapshot recorded: 5 key(s) recorded")
    assert svc.snapshots.keys("initech") == [b"A", b"B", b"C", b"D", b"E"]


def test_a_second_full_snapshot_tombstones_exactly_the_products_it_lacks() -> None:
    svc = make_service()
    ingest_monday(svc)
    monday_ref = svc.dropped[0]
    outcome = svc.ingest(svc.drop("initech/tue.xml", TUESDAY))

    assert (outcome.status, outcome.events, outcome.tombstones, outcome.snapshot_deletes) == ("published", 6, 3, 3)
    assert outcome.notes[0].startswith(f"snapshot: 3 product(s) missing since {monday_ref}: 3 tombstone(s) published")
    assert svc.sink.tombstones == [b"B", b"C", b"D"]
    tombstone = svc.sink.messages[-1]
    assert dict(tombstone.headers)["source-object"] == str(outcome.ref).encode()
    assert quantities(svc.sink) == {b"A": 2, b"B": None, b"C": None, b"D": None, b"E": 2, b"F": 2}
    assert svc.snapshots.keys("initech") == [b"A", b"E", b"F"]
    row = svc.row(outcome.ref)
    assert (row.status, row.event_count, row.tombstones) == ("published", 6, 3)

    again = svc.ingest(outcome.ref, trigger="reprocess", force=True)
    assert (again.status, again.snapshot_deletes) == ("published", 0)  # nothing more to delete
    assert svc.sink.tombstones == [b"B", b"C", b"D"]


def test_a_delta_partner_never_deletes_what_a_file_lacks() -> None:
    svc = make_service()
    svc.ingest(svc.drop("acme/mon.xml", MONDAY))
    outcome = svc.ingest(svc.drop("acme/tue.xml", TUESDAY))
    assert (outcome.tombstones, outcome.snapshot_deletes, outcome.notes) == (0, 0, [])
    assert svc.sink.tombstones == [] and svc.snapshots.objects == {}


def test_a_full_snapshot_with_problems_never_deletes_under_strict() -> None:
    svc = make_service()
    ingest_monday(svc)
    outcome = svc.ingest(svc.drop("initech/tue.xml", inventory({"A": 2, "E": "lots"}, day=17)))
    assert (outcome.status, outcome.events, outcome.snapshot_deletes) == ("quarantined", 0, 0)
    assert outcome.notes == ["snapshot: a file with problems never deletes"]
    assert svc.sink.tombstones == []
    assert svc.snapshots.keys("initech") == [b"A", b"B", b"C", b"D", b"E"]


FULL_AND_LENIENT = "partners:\n  initech: {prefix: initech/, format: generic, snapshot: full, policy: skip_invalid}\n"


def test_a_partly_published_full_snapshot_never_deletes_under_skip_invalid() -> None:
    svc = make_service(FULL_AND_LENIENT)
    ingest_monday(svc)
    outcome = svc.ingest(svc.drop("initech/tue.xml", inventory({"A": 2, "E": "lots"}, day=17)))
    assert (outcome.status, outcome.events, outcome.snapshot_deletes) == ("quarantined", 1, 0)
    assert outcome.notes[0] == "snapshot: full snapshot with problems: a partial file never deletes"
    assert svc.sink.tombstones == []
    assert svc.snapshots.keys("initech") == [b"A", b"B", b"C", b"D", b"E"]


def test_an_empty_full_snapshot_refuses_to_delete_the_catalogue() -> None:
    svc = make_service()
    ingest_monday(svc)
    outcome = svc.ingest(svc.drop("initech/tue.xml", inventory({}, day=17)))  # what a broken export looks like
    assert (outcome.status, outcome.events, outcome.snapshot_deletes) == ("published", 0, 0)
    assert outcome.notes == ["snapshot: full snapshot with no products: refusing to delete the whole catalogue"]
    assert svc.sink.tombstones == []
    assert svc.snapshots.keys("initech") == [b"A", b"B", b"C", b"D", b"E"]


def test_a_full_snapshot_of_explicit_deletes_only_deletes_just_those() -> None:
    svc = make_service()
    ingest_monday(svc)
    outcome = svc.ingest(svc.drop("initech/tue.xml", inventory({"A": None}, day=17)))
    assert (outcome.status, outcome.events, outcome.tombstones, outcome.snapshot_deletes) == ("published", 1, 1, 0)
    assert outcome.notes[0] == "snapshot: full snapshot with no products: refusing to delete the whole catalogue"
    assert svc.sink.tombstones == [b"A"]
    assert svc.snapshots.keys("initech") == [b"B", b"C", b"D", b"E"]


def test_an_older_full_snapshot_after_a_newer_one_deletes_nothing() -> None:
    svc = make_service()
    svc.ingest(svc.drop("initech/tue.xml", TUESDAY))
    older = svc.ingest(svc.drop("initech/mon.xml", MONDAY))
    assert older.snapshot_deletes == 0
    assert "older than the newest one already published" in older.notes[0]
    assert svc.sink.tombstones == []
    assert svc.snapshots.keys("initech") == [b"A", b"B", b"C", b"D", b"E", b"F"]
