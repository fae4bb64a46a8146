"""A key belongs to the partner that first published it (issue 17, part 2): the rule on the fakes.

Another partner's record of that key is an ``authorization`` problem on the record (strict:
quarantined; skip_invalid: the rest published); a partner whose keys carry its id is never checked;
two partners claiming one key at once leave exactly one owner.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dropgate.config import Settings
from dropgate.index_shards import CELL_BITS, CELLS, Shard
from dropgate.ingest import ownership
from dropgate.key_index import key_hash
from dropgate.key_ownership import (
    LAYOUT,
    SHARD_CELLS,
    Claim,
    NotOwned,
    Owners,
    Stored,
    claim_all,
    owner_of,
    shard_of,
    transfer,
)
from dropgate.terminal import shell_command
from tests.fakes import InMemoryOwnershipStore, Service, inventory, make_service

PARTNERS = """
partners:
  acme: {prefix: acme/, format: generic}
  beta: {prefix: beta/, format: generic}
  lenient: {prefix: lenient/, format: generic, policy: skip_invalid}
  prefixed: {prefix: prefixed/, format: generic, key_template: "{partnerId}:{productId}"}
  fullsnap: {prefix: fullsnap/, format: generic, snapshot: full}
"""
STREAMING = Settings(parallel_parse_min_bytes=-1)
PARALLEL = Settings(parse_processes=2, parallel_parse_min_bytes=0)


@pytest.fixture
def service() -> Service:
    return make_service(PARTNERS)


def send(service: Service, key: str, products: dict[str, int | str | None], day: int = 16) -> object:
    return service.ingest(service.drop(key, inventory(products, day=day)))


def owner(service: Service, key: bytes) -> str | None:
    return owner_of(service.ownership, service.bucket, key)


def test_the_first_partner_owns_its_keys_and_a_second_strict_partner_is_quarantined(service: Service) -> None:
    first = service.ingest(service.drop("acme/mon.xml", inventory({"P1": 1, "P2": 2})))
    assert (first.status, first.events) == ("published", 2)
    assert (owner(service, b"P1"), owner(service, b"P2")) == ("acme", "acme")
    before = list(service.sink.messages)

    second = service.ingest(service.drop("beta/tue.xml", inventory({"P3": 3, "P2": 9}, day=17)))
    assert second.status == "quarantined"
    assert service.sink.messages == before  # acme's state is untouched
    problem = second.problems[0]
    assert (problem.kind, problem.record, problem.line, problem.product_id) == ("authorization", 2, 3, "P2")
    assert "belongs to partner 'acme'" in problem.message
    assert "'{partnerId}:{productId}'" in problem.message
    assert shell_command("dropgate", "keys", "transfer", "P2", "--from", "acme", "--to", "beta") in problem.message
    diagnostics = service.quarantine.diagnostics[(service.bucket, "beta/tue.xml")].as_dict()
    assert [(p["kind"], p["line"], p["record"]) for p in diagnostics["problems"]] == [("authorization", 3, 2)]
    assert owner(service, b"P3") is None  # a quarantined file claims nothing


@pytest.mark.parametrize("settings", [STREAMING, PARALLEL], ids=["streaming", "parallel"])
def test_skip_invalid_publishes_the_rest_and_claims_it(settings: Settings) -> None:
    service = make_service(PARTNERS, settings=settings)
    send(service, "acme/mon.xml", {"P1": 1, "P2": 2})
    outcome = send(service, "lenient/tue.xml", {"P1": 5, "L1": 1, "P2": None, "L2": 2}, day=17)
    assert (outcome.status, outcome.events, outcome.tombstones) == ("quarantined", 2, 0)  # type: ignore[attr-defined]
    assert [p.record for p in outcome.problems] == [1, 3]  # type: ignore[attr-defined]
    assert [m.key for m in service.sink.messages[2:]] == [b"L1", b"L2"]  # neither P1 nor the delete of P2
    assert (owner(service, b"L1"), owner(service, b"P1"), owner(service, b"P2")) == ("lenient", "acme", "acme")


def test_a_partner_that_owns_its_keys_reads_their_shards_and_writes_nothing(service: Service) -> None:
    send(service, "acme/mon.xml", {"P1": 1, "P2": 2})
    service.ownership.reads.clear()
    writes = list(service.ownership.writes)
    again = send(service, "acme/tue.xml", {"P1": 3, "P2": 4}, day=17)
    assert (again.status, again.events) == ("published", 2)  # type: ignore[attr-defined]
    assert service.ownership.writes == writes
    assert sorted(service.ownership.reads) == sorted({shard_of(b"P1").name, shard_of(b"P2").name})


def test_a_partner_whose_keys_carry_its_id_is_never_checked(service: Service) -> None:
    send(service, "acme/mon.xml", {"P1": 1})
    service.ownership.reads.clear()
    outcome = send(service, "prefixed/tue.xml", {"P1": 2}, day=17)
    assert (outcome.status, outcome.events) == ("published", 1)  # type: ignore[attr-defined]
    assert service.ownership.reads == []
    assert service.sink.keys[-1] == b"prefixed:P1"


def test_a_transfer_lets_the_new_owner_publish(service: Service) -> None:
    send(service, "acme/mon.xml", {"P1": 1})
    with pytest.raises(NotOwned):
        transfer(service.ownership, service.bucket, b"P1", "beta", "lenient")
    assert transfer(service.ownership, service.bucket, b"P1", "acme", "beta") == "acme"
    assert transfer(service.ownership, service.bucket, b"P1", "acme", "beta") == "beta"  # done already: no-op
    assert owner(service, b"P1") == "beta"
    outcome = send(service, "beta/tue.xml", {"P1": 7}, day=17)
    assert (outcome.status, outcome.events) == ("published", 1)  # type: ignore[attr-defined]
    assert send(service, "acme/wed.xml", {"P1": 8}, day=18).status == "quarantined"  # type: ignore[attr-defined]


def test_a_full_snapshot_does_not_delete_a_key_transferred_away(service: Service) -> None:
    """The new owner's state must survive the old owner's next snapshot, which no longer has it."""
    send(service, "fullsnap/mon.xml", {"P1": 1, "P2": 2, "P3": 3})
    assert transfer(service.ownership, service.bucket, b"P2", "fullsnap", "beta") == "fullsnap"
    send(service, "beta/mon.xml", {"P2": 7}, day=17)
    outcome = send(service, "fullsnap/tue.xml", {"P1": 1}, day=18)
    assert (outcome.status, outcome.snapshot_deletes) == ("published", 1)  # type: ignore[attr-defined]
    tombstones = [m.key for m in service.sink.messages if m.value is None]
    assert tombstones == [b"P3"]  # not P2: beta's now
    assert "1 more now owned by another partner: not deleted" in " ".join(outcome.notes)  # type: ignore[attr-defined]


def test_a_partner_cannot_make_a_key_another_partners_template_reserves(service: Service) -> None:
    """prefixed's keys are 'prefixed:<id>' and never in the map: acme, keyed by the product id alone,
    must not reach them by sending the product id 'prefixed:P1' (nor delete one with a tombstone)."""
    send(service, "prefixed/mon.xml", {"P1": 1, "P2": 2})
    before = list(service.sink.messages)
    assert [m.key for m in before] == [b"prefixed:P1", b"prefixed:P2"]
    outcome = send(service, "acme/tue.xml", {"A1": 1, "prefixed:P1": 0, "prefixed:P2": None}, day=17)
    assert outcome.status == "quarantined"  # type: ignore[attr-defined]
    assert service.sink.messages == before
    problems = outcome.problems  # type: ignore[attr-defined]
    assert [(p.kind, p.record, p.product_id) for p in problems] == [
        ("authorization", 2, "prefixed:P1"),
        ("authorization", 3, "prefixed:P2"),
    ]
    assert "partner 'prefixed' holds by its key template" in problems[0].message


@pytest.mark.parametrize("settings", [STREAMING, PARALLEL], ids=["streaming", "parallel"])
def test_skip_invalid_leaves_out_the_reserved_keys_and_publishes_the_rest(settings: Settings) -> None:
    service = make_service(PARTNERS, settings=settings)
    outcome = send(service, "lenient/tue.xml", {"prefixed:P1": 5, "L1": 1, "prefixed:P2": None, "L2": 2}, day=17)
    assert (outcome.status, outcome.events) == ("quarantined", 2)  # type: ignore[attr-defined]
    assert [p.record for p in outcome.problems] == [1, 3]  # type: ignore[attr-defined]
    assert [m.key for m in service.sink.messages] == [b"L1", b"L2"]


def test_two_partners_claiming_one_key_at_once_leave_one_owner(service: Service) -> None:
    """Beta reads the shard (P1 unowned), then acme claims P1 before beta writes: beta's
    conditional write is refused, it reads again and finds acme's claim."""

    def rival() -> None:
        assert send(service, "acme/mon.xml", {"P1": 1}).status == "published"  # type: ignore[attr-defined]

    service.ownership.before_write = rival
    outcome = send(service, "beta/mon.xml", {"P1": 2, "B1": 1})
    assert outcome.status == "quarantined"  # type: ignore[attr-defined]
    assert [(p.kind, p.record) for p in outcome.problems] == [("authorization", 1)]  # type: ignore[attr-defined]
    assert owner(service, b"P1") == "acme"
    assert [m.key for m in service.sink.messages] == [b"P1"]  # acme's only


def test_a_new_partners_large_file_reads_and_writes_each_shard_once(service: Service) -> None:
    """Past 16 shards the ones read at the check are kept for the claims while they are small (a
    new map's are empty): no shard is read twice."""
    products: dict[str, int | str | None] = {f"N{i}": 1 for i in range(600)}
    touched = {shard_of(key.encode()).name for key in products}
    assert len(touched) > 16
    assert send(service, "acme/mon.xml", products).status == "published"  # type: ignore[attr-defined]
    assert sorted(service.ownership.reads) == sorted(touched)
    assert sorted(service.ownership.writes) == sorted(touched)
    assert {owner(service, key.encode()) for key in products} == {"acme"}


def test_a_key_claimed_by_a_file_that_lost_a_race_stays_the_partners_for_its_other_files(service: Service) -> None:
    """Why a strict file that loses a race keeps the claims it wrote: the check runs outside the
    partner lock, so another file of the same partner may find such a key its own and publish it.
    Giving the claims back would leave that key nobody's with the partner's state on the topic,
    for any partner's next file to overwrite (a give-back was tried, and reverted, for this)."""
    store = service.ownership
    lost_at = LAYOUT.index(shard_of(b"P1"))
    key = next(f"K{i}" for i in range(1000) if LAYOUT.index(shard_of(f"K{i}".encode())) < lost_at)
    write = store.write
    raced: list[object] = []
    armed = [True]

    def racing(bucket: str | None, shard: Shard, owners: Owners, expected: str | None) -> bool:
        if armed[0] and shard == shard_of(b"P1"):  # the first file's claims reach P1's shard
            armed[0] = False
            raced.append(send(service, "acme/mon.xml", {"P1": 1}))
            raced.append(send(service, "beta/other.xml", {key: 5}))  # finds the key beta's: publishes it
        return write(bucket, shard, owners, expected)

    store.write = racing  # type: ignore[method-assign]
    assert send(service, "beta/first.xml", {key: 1, "P1": 2}).status == "quarantined"  # type: ignore[attr-defined]
    assert [outcome.status for outcome in raced] == ["published", "published"]  # type: ignore[attr-defined]
    published = list(service.sink.messages)
    assert send(service, "lenient/later.xml", {key: 9}, day=18).status == "quarantined"  # type: ignore[attr-defined]
    assert service.sink.messages == published  # beta's state of the key stands
    assert owner(service, key.encode()) == "beta"


@pytest.mark.parametrize("early", [False, True], ids=["read-at-the-check", "read-while-parsed"])
def test_a_race_lost_in_one_shard_of_a_large_claim_leaves_the_other_shards_claimed(
    service: Service, early: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claims are written eight in flight: acme takes P1 between beta's check (or its early read)
    and beta's writes; beta's write of P1's shard is refused, read again and decided again; every
    other key is beta's, and nothing of beta's is published."""
    if early:
        monkeypatch.setattr(ownership, "EARLY_READ_BYTES", 0)
    products: dict[str, int | str | None] = {"P1": 2, **{f"B{i}": 1 for i in range(600)}}

    def rival() -> None:
        assert send(service, "acme/mon.xml", {"P1": 1}).status == "published"  # type: ignore[attr-defined]

    service.ownership.before_write = rival
    outcome = send(service, "beta/mon.xml", products)
    assert outcome.status == "quarantined"  # type: ignore[attr-defined]
    assert [(p.kind, p.record, p.product_id) for p in outcome.problems] == [("authorization", 1, "P1")]  # type: ignore[attr-defined]
    assert owner(service, b"P1") == "acme"
    assert {owner(service, f"B{i}".encode()) for i in range(600)} == {"beta"}
    assert [m.key for m in service.sink.messages] == [b"P1"]  # acme's only


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file counts as large: its shards are read while it is parsed."""
    monkeypatch.setattr(ownership, "EARLY_READ_BYTES", 0)


@pytest.mark.usefixtures("large")
def test_a_large_file_has_every_shard_read_once_while_it_is_parsed(service: Service) -> None:
    """Every shard, touched or not (what a large file touches), read once: none again for the claims."""
    products: dict[str, int | str | None] = {f"N{i}": 1 for i in range(40)}
    touched = {shard_of(key.encode()).name for key in products}
    assert 16 < len(touched) < len(LAYOUT)
    assert send(service, "acme/mon.xml", products).status == "published"  # type: ignore[attr-defined]
    assert sorted(service.ownership.reads) == sorted(shard.name for shard in LAYOUT)  # all 64, once
    assert sorted(service.ownership.writes) == sorted(touched)
    assert {owner(service, key.encode()) for key in products} == {"acme"}
    assert send(service, "beta/tue.xml", {"N7": 2, "B1": 1}, day=17).status == "quarantined"  # type: ignore[attr-defined]


@pytest.mark.usefixtures("large")
def test_an_early_read_that_fails_is_done_again_after_the_parse(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    store = service.ownership
    reads = store.read
    failures = iter([OSError("SlowDown: reduce your request rate")])

    def flaky(bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return reads(bucket, shards)

    store.read = flaky  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="dropgate"):
        assert send(service, "acme/mon.xml", {"P1": 1, "P2": 2}).status == "published"  # type: ignore[attr-defined]
    assert (owner(service, b"P1"), owner(service, b"P2")) == ("acme", "acme")
    assert "reading the key ownership map early failed (SlowDown: reduce your request rate)" in caplog.text


@pytest.mark.usefixtures("large")
def test_the_shards_read_early_are_let_go_once_the_check_has_decided(service: Service) -> None:
    """Up to a million entries of the map are read early; by the publish, nothing holds them."""
    assert send(service, "acme/mon.xml", {f"A{i}": 1 for i in range(300)}).status == "published"  # type: ignore[attr-defined]
    store, publisher = service.ownership, service.sink
    reads, publish = store.read, publisher.publish
    read: list[weakref.ref[Owners]] = []
    alive_at_publish: list[int] = []

    def recording(bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        for stored in reads(bucket, shards):
            read.append(weakref.ref(stored.owners))
            yield stored

    def publishing(*args: Any, **options: Any) -> Any:
        gc.collect()
        alive_at_publish.append(sum(shard() is not None for shard in read))
        return publish(*args, **options)

    store.read = recording  # type: ignore[method-assign]
    publisher.publish = publishing  # type: ignore[method-assign]
    assert send(service, "acme/tue.xml", {f"A{i}": 2 for i in range(10)}, day=17).status == "published"  # type: ignore[attr-defined]
    assert len(read) == len(LAYOUT)  # every shard read early (and none again)
    assert alive_at_publish == [0]


@pytest.mark.parametrize("outcome", ["unreadable", "failed"])
@pytest.mark.usefixtures("large")
def test_an_early_read_stops_when_the_file_will_not_be_checked(
    service: Service, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """A file that cannot be read, or whose invocation fails, is never checked: its early read stops
    at the next shard instead of reading the whole map after the invocation has returned."""
    store = service.ownership
    reads = store.read
    gate = threading.Event()  # the reads wait until the invocation has returned

    def gated(bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        for stored in reads(bucket, shards):
            gate.wait()
            yield stored

    store.read = gated  # type: ignore[method-assign]
    if outcome == "failed":
        ref = service.drop("acme/mon.xml", inventory({"P1": 1}))
        monkeypatch.setattr(service.ingestor, "prepare", _raises(ConnectionError("S3 went away")))
        with pytest.raises(ConnectionError):
            service.ingest(ref)
    else:
        assert service.ingest(service.drop("acme/mon.xml", b"<inventory><product>")).status == "quarantined"  # type: ignore[attr-defined]
    gate.set()
    for thread in threading.enumerate():
        if thread.name.startswith("dropgate-owners"):
            thread.join()
    assert len(store.reads) == 1  # the one in flight, of the 64


def _raises(error: Exception) -> Any:
    def raising(*args: Any, **options: Any) -> Any:
        raise error

    return raising


@pytest.mark.usefixtures("large")
def test_an_early_read_that_cannot_start_releases_the_file_for_its_retry(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The invocation fails and the ledger records it, which releases the file: the retry works
    instead of being answered 'in progress' until the claim expires."""
    ref = service.drop("acme/mon.xml", inventory({"P1": 1}))

    def no_thread(*args: Any, **options: Any) -> Any:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched:
        patched.setattr(ThreadPoolExecutor, "submit", no_thread)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            service.ingest(ref)
    retry = service.ingest(ref)
    assert retry.status == "published"  # type: ignore[attr-defined]
    assert service.sink.keys == [b"P1"]


@pytest.mark.usefixtures("large")
def test_shards_not_kept_from_the_check_are_read_for_the_claims_several_at_once(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the budget of entries kept from the check, the claims read their shards again: eight
    in one call (which S3 serves at once), not one after another."""
    assert send(service, "acme/mon.xml", {f"A{i}": 1 for i in range(3000)}).status == "published"  # type: ignore[attr-defined]
    monkeypatch.setattr(ownership, "_KEEP_ENTRIES", 0)  # every shard holds some of acme's keys: none kept
    products: dict[str, int | str | None] = {f"B{i}": 1 for i in range(300)}
    touched = {shard_of(key.encode()).name for key in products}
    store = service.ownership
    reads = store.read
    calls: list[list[str]] = []

    def recording(bucket: str | None, shards: Sequence[Shard]) -> Iterator[Stored]:
        calls.append([shard.name for shard in shards])
        return reads(bucket, shards)

    store.read = recording  # type: ignore[method-assign]
    assert send(service, "beta/tue.xml", products, day=17).status == "published"  # type: ignore[attr-defined]
    early, at_check, *for_claims = calls
    assert len(early) == len(at_check) == len(LAYOUT)  # the early read kept none: all read at the check
    assert [len(names) for names in for_claims] == [min(8, len(touched) - n) for n in range(0, len(touched), 8)]
    assert sorted(name for names in for_claims for name in names) == sorted(touched)
    assert {owner(service, key.encode()) for key in products} == {"beta"}


def test_a_small_file_reads_only_the_shards_it_touches(service: Service) -> None:
    assert ownership.EARLY_READ_BYTES > 1000
    assert send(service, "acme/mon.xml", {"P1": 1}).status == "published"  # type: ignore[attr-defined]
    assert service.ownership.reads == [shard_of(b"P1").name]


def test_a_dry_run_reports_without_claiming(service: Service) -> None:
    send(service, "acme/mon.xml", {"P1": 1})
    ref = service.drop("beta/tue.xml", inventory({"P1": 2, "B1": 1}, day=17))
    outcome = service.ingestor.dry_run(ref)
    assert [p.kind for p in outcome.problems] == ["authorization"]
    assert owner(service, b"B1") is None


def test_hostile_keys_are_escaped_in_the_problem(service: Service) -> None:
    sent = "P'$(x)\u202e\x7f\u0085&quot;"  # what XML can carry: quotes, a bidi override, DEL, a C1 control
    hostile = "P'$(x)\u202e\x7f\u0085\""
    send(service, "acme/mon.xml", {sent: 1})
    outcome = send(service, "beta/tue.xml", {sent: 2}, day=17)
    problem = outcome.problems[0]  # type: ignore[attr-defined]
    assert (problem.kind, problem.product_id) == ("authorization", hostile)
    assert not any(char in problem.message for char in "\u202e\x7f\u0085")
    assert "P'$(x)\\u202e\\x7f\\x85\"" in problem.message
    assert shell_command("dropgate", "keys", "transfer", hostile, "--from", "acme", "--to", "beta") in problem.message


def test_a_shard_keeps_its_owners_once_and_drops_names_that_own_nothing() -> None:
    import numpy as np

    shard = Owners.empty().with_owner(np.array([3, 1], dtype=np.uint64), "acme")
    shard = shard.with_owner(np.array([2], dtype=np.uint64), "beta").with_owner(
        np.array([1, 3], dtype=np.uint64), "beta"
    )
    again = Owners.from_bytes(shard.to_bytes())
    assert again.names == ("beta",)
    assert again.owners_of(np.array([1, 2, 3, 4], dtype=np.uint64)).tolist() == [0, 0, 0, -1]
    assert len(LAYOUT) == CELLS // SHARD_CELLS  # every cell once, in order
    assert shard_of(b"P1") == LAYOUT[(key_hash(b"P1") >> (64 - CELL_BITS)) // SHARD_CELLS]


def test_claims_come_back_in_order_each_once_while_writes_are_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty shards, one key each: four hold keys acme owns already (nothing to write), and beta
    claims shard 7's key just before acme's write of it (refused, read again, decided again);
    every claim comes back once, in order, with what another partner owns."""
    import numpy as np

    store = InMemoryOwnershipStore()
    key = [np.array([(lo << (64 - CELL_BITS)) + 1], dtype=np.uint64) for lo in range(0, 20 * SHARD_CELLS, SHARD_CELLS)]
    for i in (0, 3, 4, 19):
        assert store.write(None, LAYOUT[i], Owners.empty().with_owner(key[i], "acme"), None)
    write = store.write

    def racing(bucket: str | None, shard: Shard, owners: Owners, expected: str | None) -> bool:
        if shard == LAYOUT[7] and LAYOUT[7].name not in store.writes:
            assert write(bucket, shard, Owners.empty().with_owner(key[7], "beta"), None)  # beta first
        return write(bucket, shard, owners, expected)

    monkeypatch.setattr(store, "write", racing)
    store.writes.clear()
    results = list(claim_all(store, None, [Claim(LAYOUT[i], key[i], None) for i in range(20)], "acme"))
    assert [each.shard for each, _taken, _seen in results] == list(LAYOUT[:20])
    assert [(LAYOUT.index(each.shard), taken.tolist()) for each, taken, _ in results if len(taken)] == [
        (7, key[7].tolist())
    ]
    written = {1, 2, 5, 6, *range(8, 19)}
    assert sorted(store.writes) == sorted([LAYOUT[7].name] + [LAYOUT[i].name for i in written])  # beta's 7
    for i in range(20):
        found = store.objects[(None, LAYOUT[i].name)][0]
        assert Owners.from_bytes(found).names == (("beta",) if i == 7 else ("acme",))
