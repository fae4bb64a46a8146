"""The ingest service's rules on in-memory fakes: policies, claims, failed publishes, quarantine, ignores.

What each test checks is what a user sees: the outcome's status and reason, the messages on the
topic, the ledger row ``dropgate status`` shows, and the quarantine diagnostics. The same
behaviours are proven end to end against moto and a broker in ``tests/integration``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dropgate.guard import LockBusy
from dropgate.publishing import PublishError
from tests.fakes import inventory, make_service

#: A document-level problem: the file says it belongs to another partner than its folder's.
WRONG_PARTNER = inventory({"A": 1, "B": 2}, partner="acme")
MALFORMED = '<inventory>\n<product id="A"><quantity>1</quantity></product>\n<product id="B"><quantity>2</quantiy>'


# -- strict and skip_invalid --------------------------------------------------------------------
def test_strict_one_invalid_record_publishes_nothing_and_quarantines_the_file_with_the_problem_located() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1, "B": 2, "C": "lots"}))  # the bad record comes last
    outcome = svc.ingest(ref)

    assert (outcome.status, outcome.events, outcome.invalid) == ("quarantined", 0, 1)
    assert (outcome.reason or "").startswith("1 problem(s); first: [validation] line 4, record 3 (C)")
    assert svc.sink.messages == []
    diagnostics = svc.quarantine.diagnostics[("drops", "acme/mon.xml")]
    [problem] = diagnostics.problems
    assert (problem.kind, problem.record, problem.line, problem.product_id, problem.field, problem.value) == (
        "validation",
        3,
        4,
        "C",
        "quantity",
        "lots",
    )
    assert (diagnostics.policy, diagnostics.published, diagnostics.version_id) == ("strict", 0, ref.version_id)
    row = svc.row(ref)
    assert (row.status, row.event_count, row.problem_count) == ("quarantined", 0, 1)
    assert row.diagnostics == outcome.diagnostics == "s3://drops/quarantine/files/acme/mon.xml"
    assert row.claim_until is None


def test_skip_invalid_publishes_the_valid_records_and_quarantines_the_invalid_one() -> None:
    svc = make_service()
    ref = svc.drop("lenient/mon.xml", inventory({"A": 1, "B": "lots", "C": 3}))
    outcome = svc.ingest(ref)

    assert (outcome.status, outcome.events, outcome.invalid, outcome.problem_count) == ("quarantined", 2, 1, 1)
    assert svc.sink.keys == [b"A", b"C"]
    diagnostics = svc.quarantine.diagnostics[("drops", "lenient/mon.xml")]
    assert [(p.record, p.product_id, p.field) for p in diagnostics.problems] == [(2, "B", "quantity")]
    assert (diagnostics.policy, diagnostics.published) == ("skip_invalid", 2)
    row = svc.row(ref)
    assert (row.status, row.event_count, row.problem_count) == ("quarantined", 2, 1)
    assert row.attempts[-1]["outcome"] == "quarantined" and row.attempts[-1]["invalid"] == 1


def test_skip_invalid_with_nothing_invalid_is_simply_published() -> None:
    svc = make_service()
    ref = svc.drop("lenient/mon.xml", inventory({"A": 1, "B": 2}))
    outcome = svc.ingest(ref)
    assert (outcome.status, outcome.events, outcome.reason) == ("published", 2, None)
    assert svc.quarantine.diagnostics == {}
    assert (svc.row(ref).status, svc.row(ref).event_count) == ("published", 2)


@pytest.mark.parametrize(
    ("body", "kind", "record"),
    [
        pytest.param(MALFORMED, "xml_syntax", 2, id="malformed-xml"),
        pytest.param(WRONG_PARTNER, "validation", None, id="document-names-another-partner"),
    ],
)
def test_a_fatal_problem_quarantines_the_whole_file_under_skip_invalid_too(
    body: str, kind: str, record: int | None
) -> None:
    svc = make_service()
    ref = svc.drop("lenient/bad.xml", body)
    outcome = svc.ingest(ref)

    assert (outcome.status, outcome.events) == ("quarantined", 0)
    assert svc.sink.messages == []
    [problem] = svc.quarantine.diagnostics[("drops", "lenient/bad.xml")].problems
    assert (problem.kind, problem.record) == (kind, record)
    assert (svc.row(ref).status, svc.row(ref).event_count) == ("quarantined", 0)


# -- claims ---------------------------------------------------------------------------------------
def test_a_second_ingest_of_the_same_version_is_a_duplicate_and_publishes_nothing() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1, "B": 2}))
    assert svc.ingest(ref).status == "published"

    again = svc.ingest(ref, trigger="sqs")
    assert (again.status, again.in_progress, again.events) == ("duplicate", False, 2)
    assert again.reason == "already published with parser generic-xml/1"
    assert svc.sink.keys == [b"A", b"B"]
    assert svc.row(ref).attempt_count == 1  # a duplicate notification leaves no attempt


def test_a_quarantined_version_is_a_duplicate_too() -> None:
    svc = make_service()
    ref = svc.drop("acme/bad.xml", inventory({"A": "x"}))
    assert svc.ingest(ref).status == "quarantined"
    again = svc.ingest(ref)
    assert (again.status, again.reason) == ("duplicate", "already quarantined with parser generic-xml/1")
    assert len(svc.quarantine.diagnostics) == 1 and svc.row(ref).attempt_count == 1


def test_a_version_claimed_by_another_invocation_is_a_duplicate_in_progress() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1}))
    assert svc.ledger.claim(ref, partner="acme", parser_label="generic-xml/1", ttl_s=60).granted

    outcome = svc.ingest(ref)
    assert (outcome.status, outcome.in_progress) == ("duplicate", True)
    assert outcome.reason == "another invocation is processing this version right now"
    assert svc.sink.messages == []
    assert svc.row(ref).status == "received"


def test_a_notification_arriving_while_the_version_is_being_published_is_a_duplicate_in_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1, "B": 2}))
    publish = svc.sink.publish
    meanwhile: list[Any] = []

    def publish_while_a_second_notification_arrives(*args: Any, **kwargs: Any) -> Any:
        meanwhile.append(svc.ingest(ref, trigger="sqs"))
        return publish(*args, **kwargs)

    monkeypatch.setattr(svc.sink, "publish", publish_while_a_second_notification_arrives)
    first = svc.ingest(ref, trigger="s3")

    [second] = meanwhile
    assert (first.status, second.status, second.in_progress) == ("published", "duplicate", True)
    assert svc.sink.keys == [b"A", b"B"]
    assert (svc.row(ref).status, svc.row(ref).attempt_count) == ("published", 1)


def test_concurrent_invocations_for_one_version_publish_it_once() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1, "B": 2, "C": 3}))
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: svc.ingest(ref, trigger="sqs"), range(8)))
    assert sorted(o.status for o in outcomes) == ["duplicate"] * 7 + ["published"]
    assert svc.sink.keys == [b"A", b"B", b"C"]


def test_another_file_of_the_partner_being_published_fails_the_invocation_and_the_retry_publishes() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1}))
    svc.lock.acquire("acme", "another-invocation", ttl_s=60, wait_until=0)
    with pytest.raises(LockBusy, match="another file of partner 'acme' is being published"):
        svc.ingest(ref)
    row = svc.row(ref)
    assert (row.status, row.claim_until) == ("received", None)
    assert "another file of partner 'acme'" in (row.last_error or "")
    assert svc.sink.messages == []

    svc.lock.release("acme", "another-invocation")
    assert (svc.ingest(ref).status, svc.sink.keys) == ("published", [b"A"])


def test_force_republishes_a_published_version() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1, "B": 2}))
    first = svc.ingest(ref)
    again = svc.ingest(ref, trigger="reprocess", force=True)

    assert (first.status, again.status, again.events, again.stale) == ("published", "published", 2, 0)
    assert svc.sink.keys == [b"A", b"B", b"A", b"B"]
    assert [m.value for m in svc.sink.messages[:2]] == [m.value for m in svc.sink.messages[2:]]
    row = svc.row(ref)
    assert (row.status, row.attempt_count, row.attempts[-1]["trigger"]) == ("published", 2, "reprocess")


def test_a_crashed_invocations_claim_can_be_taken_once_its_ttl_has_passed() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1, "B": 2}))
    # An invocation claimed the version and died without recording an outcome.
    assert svc.ledger.claim(ref, partner="acme", parser_label="generic-xml/1", ttl_s=3).granted
    assert svc.ingest(ref).in_progress

    svc.ledger.advance(4)
    retried = svc.ingest(ref)
    assert (retried.status, retried.events) == ("published", 2)
    assert svc.sink.keys == [b"A", b"B"]


class Killed(BaseException):
    """Lambda killing the invocation mid-publish: no ``except Exception`` runs, no outcome is recorded."""


def test_the_service_claims_a_version_only_as_long_as_its_invocation_can_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1}))

    def killed(*args: object, **kwargs: object) -> object:
        raise Killed

    monkeypatch.setattr(svc.sink, "publish", killed)
    with pytest.raises(Killed):
        svc.ingest(ref, deadline=time.monotonic() + 60)
    monkeypatch.undo()

    svc.ledger.advance(30)
    assert svc.ingest(ref).in_progress  # the dead invocation's claim still stands ...
    svc.ledger.advance(50)
    assert svc.ingest(ref).status == "published"  # ... but not past its deadline and a margin


def test_an_overwrite_in_an_unversioned_bucket_is_processed_the_same_bytes_again_are_not() -> None:
    svc = make_service()
    first = svc.drop("acme/latest.xml", inventory({"K": 1}), versioned=False)
    assert first.version_id is None
    assert svc.ingest(first).status == "published"
    assert svc.ingest(first).status == "duplicate"
    second = svc.drop("acme/latest.xml", inventory({"K": 2}, day=17), versioned=False)
    assert (svc.ingest(second).status, len(svc.sink.messages)) == ("published", 2)


# -- a failed publish -----------------------------------------------------------------------------
def test_a_failed_publish_propagates_releases_the_claim_and_the_retry_publishes() -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1, "B": 2, "C": 3}))
    svc.sink.fail_after = 1
    with pytest.raises(PublishError, match="broker went away"):
        svc.ingest(ref, trigger="sqs")

    row = svc.row(ref)
    assert (row.status, row.claim_until, row.event_count) == ("received", None, 0)
    assert "broker went away" in (row.last_error or "")
    assert row.attempts[-1]["outcome"] == "failed"
    assert svc.quarantine.diagnostics == {}
    assert svc.key_index.objects == {}  # the guard remembers nothing the broker did not acknowledge
    assert svc.lock.leases == {}

    svc.sink.fail_after = None
    retried = svc.ingest(ref, trigger="sqs")
    assert (retried.status, retried.events, retried.stale) == ("published", 3, 0)
    assert svc.sink.keys == [b"A", b"A", b"B", b"C"]  # A from the failed attempt, then the whole file
    row = svc.row(ref)
    assert (row.status, row.event_count, row.attempt_count, row.last_error) == ("published", 3, 2, None)


def test_a_failed_republish_of_a_quarantined_file_leaves_it_quarantined() -> None:
    svc = make_service()
    ref = svc.drop("lenient/mon.xml", inventory({"A": 1, "B": "x"}))
    assert svc.ingest(ref).status == "quarantined"
    svc.sink.fail_after = 0
    with pytest.raises(PublishError):
        svc.ingest(ref, trigger="reprocess", force=True)
    row = svc.row(ref)
    assert (row.status, row.event_count, row.claim_until) == ("quarantined", 1, None)
    assert row.diagnostics == "s3://drops/quarantine/files/lenient/mon.xml"
    assert "broker went away" in (row.last_error or "")


# -- quarantine failure ---------------------------------------------------------------------------
def test_a_failed_quarantine_propagates_and_the_retry_quarantines() -> None:
    svc = make_service()
    ref = svc.drop("acme/bad.xml", inventory({"A": 1, "B": "x"}))
    svc.quarantine.fail = ConnectionError("S3 refused the copy")
    with pytest.raises(ConnectionError, match="S3 refused the copy"):
        svc.ingest(ref)

    row = svc.row(ref)
    assert (row.status, row.claim_until, row.diagnostics) == ("received", None, None)
    assert row.last_error == "quarantine failed: S3 refused the copy"
    assert svc.sink.messages == []

    svc.quarantine.fail = None
    retried = svc.ingest(ref)
    assert retried.status == "quarantined"
    assert [p.product_id for p in svc.quarantine.diagnostics[("drops", "acme/bad.xml")].problems] == ["B"]
    row = svc.row(ref)
    assert (row.status, row.diagnostics, row.attempt_count) == ("quarantined", retried.diagnostics, 2)


# -- not drops ------------------------------------------------------------------------------------
def test_a_key_under_the_quarantine_prefix_is_ignored_with_the_command_to_use() -> None:
    svc = make_service()
    ref = svc.drop("quarantine/files/acme/mon.xml", inventory({"A": 1}))
    outcome = svc.ingest(ref)
    assert outcome.status == "ignored"
    assert "is a quarantine copy, not a drop" in (outcome.reason or "")
    assert "dropgate reprocess s3://drops/acme/mon.xml" in (outcome.reason or "")
    assert svc.sink.messages == [] and svc.quarantine.diagnostics == {}
    assert (svc.row(ref).status, svc.row(ref).reason) == ("ignored", outcome.reason)


@pytest.mark.parametrize("how", ["delete-marker", "version-deleted"])
def test_an_object_deleted_before_it_was_processed_is_ignored(how: str) -> None:
    svc = make_service()
    ref = svc.drop("acme/mon.xml", inventory({"A": 1}))
    if how == "delete-marker":
        svc.store.delete("drops", ref.key)
        ref = ref.with_version(None)  # the notification of the latest object
    else:
        svc.store.delete("drops", ref.key, ref.version_id)
    outcome = svc.ingest(ref)
    assert outcome.status == "ignored"
    assert "does not exist (deleted before it was processed?)" in (outcome.reason or "")
    assert svc.sink.messages == []
    assert svc.row(ref).status == "ignored"
