"""One state per key per file (issue 20, item 2): a product id a file gives twice is found in the
core, on the spooled keys, for every format and on both the streaming and the parallel path.

Two different states for one key are a problem on the later record naming both records (strict:
quarantined; skip_invalid: neither published); identical repeats are published once, with a note.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dropgate import parallel
from dropgate.config import Settings
from dropgate.events import SplitValue
from dropgate.ingest.outcome import FileOutcome
from dropgate.spool import EventSpool
from parsers import segments
from tests.conftest import FIXTURES
from tests.fakes import Service, make_service

STREAMING = Settings(parallel_parse_min_bytes=-1)
PARALLEL = Settings(parse_processes=2, parallel_parse_min_bytes=0)
PATHS = [pytest.param(STREAMING, id="streaming"), pytest.param(PARALLEL, id="parallel")]


def feed(*products: tuple[str, int | None]) -> str:
    """A generic-format file: (product id, quantity, or ``None`` for a delete); product N is on line N + 1."""
    lines = [
        f'<product id="{pid}" deleted="true"/>'
        if qty is None
        else f'<product id="{pid}"><name>{pid} name</name><quantity>{qty}</quantity></product>'
        for pid, qty in products
    ]
    return "\n".join(['<inventory generatedAt="2026-11-16T06:00:00Z">', *lines, "</inventory>"])


@pytest.fixture
def service(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[Service, list[int]]:
    """The service on the fakes, on the path the test is parametrized with; the parallel path cuts
    tiny segments (so duplicates land in different workers' output) and is watched to run."""
    settings: Settings = request.param
    calls: list[int] = []
    if settings.parallel_parse_min_bytes >= 0:
        original = parallel.parse_into_spool

        def spy(*args: Any, **kwargs: Any) -> int:
            records = original(*args, **kwargs)  # NotPlain (a fall back to streaming) is not counted
            calls.append(kwargs["processes"])
            return records

        monkeypatch.setattr(parallel, "parse_into_spool", spy)
        monkeypatch.setattr(segments, "SEGMENT_BYTES", 200)
    return make_service(settings=settings), calls


def _ingest(service: tuple[Service, list[int]], key: str, body: str) -> tuple[Service, FileOutcome]:
    """``body`` dropped at ``key`` and ingested, on the path the test is parametrized with."""
    svc, calls = service
    outcome = svc.ingest(svc.drop(key, body))
    expected = [2] if svc.ingestor.settings.parallel_parse_min_bytes >= 0 else []
    assert calls == expected, "the parallel path must read the whole file, not fall back to streaming"
    return svc, outcome


@pytest.mark.parametrize("service", PATHS, indirect=True)
def test_strict_two_states_for_one_id_quarantine_the_file_naming_both_records(service: Any) -> None:
    svc, outcome = _ingest(service, "acme/mon.xml", feed(("A", 1), ("B", 2), ("C", 3), ("A", 4), ("D", 5)))
    assert (outcome.status, outcome.events, outcome.problem_count) == ("quarantined", 0, 1)
    assert svc.sink.messages == []
    [problem] = svc.quarantine.diagnostics[("drops", "acme/mon.xml")].problems
    assert (problem.kind, problem.record, problem.line, problem.product_id) == ("validation", 4, 5, "A")
    assert problem.message.startswith(
        "product id 'A' is given two different states, by record 1 (line 2) and record 4 (line 5): "
        "a file may give one state per product"
    )
    assert (outcome.reason or "").startswith("1 problem(s); first: [validation] line 5, record 4 (A): product id 'A'")


@pytest.mark.parametrize("service", PATHS, indirect=True)
def test_skip_invalid_publishes_neither_state_of_a_conflicting_id_and_the_rest(service: Any) -> None:
    svc, outcome = _ingest(service, "lenient/mon.xml", feed(("A", 1), ("B", 2), ("A", 4), ("C", 3), ("A", 1)))
    assert (outcome.status, outcome.events, outcome.problem_count) == ("quarantined", 2, 1)
    assert svc.sink.keys == [b"B", b"C"]
    diagnostics = svc.quarantine.diagnostics[("drops", "lenient/mon.xml")]
    [problem] = diagnostics.problems
    assert (problem.record, problem.product_id) == (3, "A")
    assert "by record 1 (line 2) and record 3 (line 4); it is in 3 records of this file" in problem.message
    assert (diagnostics.policy, diagnostics.published) == ("skip_invalid", 2)
    assert (svc.row(svc.dropped[0]).status, svc.row(svc.dropped[0]).event_count) == ("quarantined", 2)


@pytest.mark.parametrize("service", PATHS, indirect=True)
def test_identical_repeats_are_published_once_from_the_first_record_with_a_note(service: Any) -> None:
    svc, outcome = _ingest(
        service, "acme/mon.xml", feed(("A", 1), ("B", 2), ("A", 1), ("C", None), ("B", 2), ("C", None))
    )
    assert (outcome.status, outcome.events, outcome.tombstones, outcome.problem_count) == ("published", 3, 1, 0)
    assert svc.sink.keys == [b"A", b"B", b"C"]
    values = [orjson.loads(m.value) if m.value else None for m in svc.sink.messages]
    assert [v["source"]["record"] for v in values if v] == [1, 2]
    assert outcome.notes == [
        "3 product id(s) appear more than once with identical states (e.g. product id 'A' in records 1 and 3); "
        "each is published once, from its first record"
    ]
    assert svc.quarantine.diagnostics == {}


@pytest.mark.parametrize("service", PATHS, indirect=True)
@pytest.mark.parametrize("folder", ["acme", "lenient"])
def test_a_delete_and_an_update_of_one_id_are_two_states(service: Any, folder: str) -> None:
    svc, outcome = _ingest(service, f"{folder}/mon.xml", feed(("A", None), ("B", 2), ("A", 7)))
    [problem] = outcome.problems
    assert (problem.record, problem.product_id) == (3, "A")
    assert "by record 1 (line 2, a delete) and record 3 (line 4)" in problem.message
    assert svc.sink.keys == ([b"B"] if folder == "lenient" else [])
    assert outcome.tombstones == 0


def test_the_problems_stay_bounded_however_many_ids_repeat() -> None:
    svc = make_service(settings=Settings(parallel_parse_min_bytes=-1, max_problems=5))
    products = [(f"P{n}", n) for n in range(300)] + [(f"P{n}", n + 1) for n in range(300)]
    ref = svc.drop("acme/mon.xml", feed(*products))
    outcome = svc.ingest(ref)

    assert (outcome.status, outcome.problem_count, len(outcome.problems)) == ("quarantined", 300, 5)
    assert [p.record for p in outcome.problems] == [301, 302, 303, 304, 305]
    assert [p.product_id for p in outcome.problems] == ["P0", "P1", "P2", "P3", "P4"]


def test_a_key_template_with_the_partner_still_names_the_product_id() -> None:
    svc = make_service('partners:\n  acme: {prefix: acme/, format: generic, key_template: "{partnerId}:{productId}"}\n')
    outcome = svc.ingest(svc.drop("acme/mon.xml", feed(("A", 1), ("A", 2))))
    [problem] = outcome.problems
    assert (problem.product_id, problem.record) == ("A", 2)
    assert problem.message.startswith("product id 'A' is given two different states")


def test_a_local_inventory_feed_repeats_ids_across_stores_and_is_published_as_it_is() -> None:
    """The format's own repetition: one product per id, its stores grouped (a guard, not a new rule)."""
    from dropgate.app import build_ingestor
    from dropgate.storage import ObjectRef
    from tests.conftest import REPO

    path = FIXTURES / "google-local" / "good" / "local-inventory.xml"
    ids = [line for line in path.read_text().splitlines() if "<g:id>" in line or "<g:itemid>" in line]
    assert len(ids) > len(set(ids)), "the fixture repeats ids across stores"
    settings = Settings(partners=str(REPO / "partners.yaml"), parallel_parse_min_bytes=-1)
    prepared = build_ingestor(settings, local=True, publish=False).prepare(
        ObjectRef(None, str(path)), partner_id="contoso"
    )
    with prepared.spool:
        assert (prepared.problems, prepared.notes) == ([], [])
        keys = [entry.key for entry in prepared.spool.replay(prepared.sha256)]
    assert keys and len(keys) == len(set(keys))


# -- the check and the spool, directly ----------------------------------------------------------------


def _spool(keys: list[bytes], heads: dict[bytes, bytes] | None = None) -> EventSpool:
    spool = EventSpool()
    for record, key in enumerate(keys, start=1):
        head = (heads or {}).get(key, b'{"productId":"' + key + b'"')
        spool.append(key, SplitValue(head, b'","record":%d}' % record), record, line=record + 1)
    return spool


@pytest.mark.parametrize("small", [False, True], ids=["one-bucket", "spilled-and-bucketed"])
def test_many_keys_with_few_repeats_find_exactly_the_repeats(small: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from dropgate import spool as spool_module
    from dropgate.ingest import duplicates, key_buckets
    from dropgate.ingest.problems import ProblemCollector

    if small:  # what a file of millions of products does: hashes on disk, sorted a bucket at a time
        monkeypatch.setattr(spool_module, "_SPILL_HASHES", 1_000)
        monkeypatch.setattr(key_buckets, "CHUNK", 776)
        monkeypatch.setattr(key_buckets, "BUCKET", 3_000)
        monkeypatch.setattr(duplicates, "_FLUSH", 5)

    keys = [b"P%07d" % n for n in range(50_000)]
    keys[40_000] = keys[7]  # identical state: published once
    keys[45_000] = keys[9]
    heads = {keys[9]: b'{"changed":1'}
    with _spool(keys[:45_000], heads) as spool:
        spool.append(keys[9], SplitValue(b'{"changed":2', b""), 45_001)
        for record, key in enumerate(keys[45_001:], start=45_002):
            spool.append(key, SplitValue(b"{", b""), record)
        problems = ProblemCollector(10)
        found = duplicates.check(spool, problems, key_template="{productId}", partner_id="acme")
        assert (found.conflicting, found.identical, found.excluded) == (1, 1, 3)
        [problem] = problems.kept
        assert (problem.record, problem.product_id) == (45_001, "P0000009")
        replayed = [entry.record for entry in spool.replay("0" * 64)]
        assert replayed == [r for r in range(1, 50_001) if r not in (10, 40_001, 45_001)]
        assert spool.count == 49_997


def test_a_parsing_process_that_hashes_keys_otherwise_is_not_trusted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Key hashes are Python's own, the same in a forked worker; a worker that disagrees (spawned,
    say) would hide a duplicate across segments, so the file is streamed instead."""
    monkeypatch.setattr(parallel, "hash_probe", lambda: 0)  # what the workers check; the caller's spec is right
    svc = make_service(settings=PARALLEL)
    with caplog.at_level("WARNING", logger="dropgate"):
        outcome = svc.ingest(svc.drop("acme/mon.xml", feed(("A", 1), ("A", 2))))
    assert "hashes keys unlike its parent" in caplog.text
    assert [p.record for p in outcome.problems] == [2]


def test_the_check_agrees_with_a_dictionary_on_random_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    from dropgate.ingest import duplicates, key_buckets
    from dropgate.ingest.problems import ProblemCollector

    monkeypatch.setattr(key_buckets, "CHUNK", 504)
    monkeypatch.setattr(key_buckets, "BUCKET", 1_000)
    monkeypatch.setattr(duplicates, "_FLUSH", 100)
    rng = random.Random(20)
    entries = [(b"K%d" % rng.randrange(6_000), rng.choice([None, b'{"a"', b'{"b"'])) for _ in range(10_000)]
    seen: dict[bytes, list[tuple[int, bytes | None]]] = {}
    with EventSpool() as spool:
        for record, (key, head) in enumerate(entries, start=1):
            spool.append(key, None if head is None else SplitValue(head, b"}"), record)
            seen.setdefault(key, []).append((record, head))
        problems = ProblemCollector(10_000)
        found = duplicates.check(spool, problems, key_template="{productId}", partner_id="acme")
        conflicting = {k for k, v in seen.items() if len({h for _, h in v}) > 1}
        identical = {k for k, v in seen.items() if len(v) > 1 and k not in conflicting}
        assert (found.conflicting, found.identical) == (len(conflicting), len(identical))
        assert {p.product_id for p in problems.kept} == {k.decode() for k in conflicting}
        later = {k: next(r for r, h in v if h != v[0][1]) for k, v in seen.items() if k in conflicting}
        assert sorted((p.record, p.product_id) for p in problems.kept) == sorted(
            (r, k.decode()) for k, r in later.items()
        )
        kept = {r for k, v in seen.items() if k not in conflicting for r, _ in v[:1]}
        assert [e.record for e in spool.replay("0" * 64)] == sorted(kept)
        assert spool.tombstones == sum(1 for r in kept if entries[r - 1][1] is None)


def test_a_file_without_repeated_ids_is_checked_without_numpy() -> None:
    """numpy's import would cost every local run ~14 MiB of peak memory: only a file with candidate
    repeats may load it (a local ingest imports nothing else that needs it)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dropgate.spool import EventSpool\n"
        "from dropgate.events import SplitValue\n"
        "from dropgate.ingest import duplicates, key_buckets\n"
        "from dropgate.ingest.problems import ProblemCollector\n"
        "key_buckets.BUCKET = 1000\n"
        "with EventSpool() as spool:\n"
        "    for n in range(20_000):\n"
        "        spool.append(b'P%07d' % n, SplitValue(b'{', b''), n + 1)\n"
        "    found = duplicates.check(spool, ProblemCollector(5), key_template='{productId}', partner_id='a')\n"
        "    assert found.conflicting == found.identical == 0, found\n"
        "print('numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
