"""Routing: the partner from the key prefix, else the format from the root element and namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropgate.app import build_ingestor
from dropgate.config import Settings
from dropgate.ingest.service import Ingestor
from dropgate.storage import ObjectRef
from tests.conftest import REPO, fixture_bytes


@pytest.fixture
def ingestor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ingestor:
    monkeypatch.chdir(tmp_path)  # local keys are relative paths, so partner prefixes apply
    return build_ingestor(Settings(partners=str(REPO / "partners.yaml")), local=True, publish=False)


def drop(key: str, body: bytes) -> ObjectRef:
    path = Path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return ObjectRef(None, key)


def route(ingestor: Ingestor, ref: ObjectRef) -> tuple[str | None, str, str]:
    found = ingestor.route(ref, ingestor.store.head(ref))
    return (found.partner.id if found.partner else None, found.parser.name, found.how)


@pytest.mark.parametrize(
    ("fixture", "fmt", "parser"),
    [
        ("good/acme-2026-11-20.xml", "generic", "generic-xml"),
        ("good/inventory-update.xml", "amazon", "amazon-inventory"),
        ("good/product-activity.xml", "cxml", "cxml-product-activity"),
    ],
)
def test_a_file_under_no_prefix_is_routed_by_its_root_element(
    ingestor: Ingestor, fixture: str, fmt: str, parser: str
) -> None:
    assert route(ingestor, drop(f"inbox/{Path(fixture).name}", fixture_bytes(fixture, fmt))) == (
        None,
        parser,
        "detected",
    )


def test_a_declarative_format_routes_to_the_one_partner_that_uses_it(ingestor: Ingestor) -> None:
    ref = drop("inbox/stock.xml", fixture_bytes("good/initech-stock.xml", "declarative"))
    assert route(ingestor, ref) == ("initech", "initech-stock", "detected")
    prepared = ingestor.prepare(ref)
    with prepared.spool:
        assert prepared.problems == []
        assert [e.key for e in prepared.spool.replay(prepared.sha256)][:2] == [b"initech:INI-1001", b"initech:INI-1002"]


def test_the_prefix_wins_and_a_wrong_format_under_it_is_unknown_format(ingestor: Ingestor) -> None:
    ref = drop("tailspin/feed.xml", fixture_bytes("good/acme-2026-11-20.xml"))
    assert route(ingestor, ref) == ("tailspin", "amazon-inventory", "prefix")
    prepared = ingestor.prepare(ref)
    with prepared.spool:
        [problem] = prepared.problems
    assert problem.kind == "unknown_format"
    assert problem.message.startswith("root element is <inventory> with no namespace, expected <AmazonEnvelope>")


def test_a_file_matching_no_format_names_its_root_namespace_and_the_known_formats(ingestor: Ingestor) -> None:
    ref = drop("inbox/orders.xml", b'<?xml version="1.0"?>\n<Orders xmlns="urn:example:orders:2"><Order/></Orders>')
    assert route(ingestor, ref) == (None, "unknown-format", "unknown")
    prepared = ingestor.prepare(ref)
    with prepared.spool:
        [problem] = prepared.problems
    assert problem.kind == "unknown_format" and problem.path == "/Orders" and problem.value == "urn:example:orders:2"
    assert "root element is <Orders> in namespace urn:example:orders:2" in problem.message
    for known in ("generic (<inventory>", "amazon-inventory (", "cxml-product-activity (", "initech-stock ("):
        assert known in problem.message


def test_bytes_that_are_not_xml_under_no_prefix_say_so(ingestor: Ingestor) -> None:
    ref = drop("inbox/export.csv.xml", b"sku,quantity\nA,1\n")
    assert route(ingestor, ref) == (None, "generic-xml", "unknown")
    prepared = ingestor.prepare(ref)
    with prepared.spool:
        [problem] = prepared.problems
    assert problem.kind == "xml_syntax" and "the file is not XML" in problem.message


def test_a_detected_built_in_format_without_a_partner_is_quarantined_with_the_fix(ingestor: Ingestor) -> None:
    prepared = ingestor.prepare(drop("inbox/feed.xml", fixture_bytes("good/inventory-update.xml", "amazon")))
    with prepared.spool:
        assert prepared.parser.name == "amazon-inventory"
        [problem] = prepared.problems
    assert "no partner for this file" in problem.message and "tailspin/" in problem.message


def test_a_document_cannot_claim_a_partner_of_another_format(ingestor: Ingestor) -> None:
    """Otherwise a file under no prefix could publish, and in full mode delete, as any partner."""
    body = b'<inventory partner="initech"><product id="Z"><quantity>1</quantity></product></inventory>'
    prepared = ingestor.prepare(drop("misc/other.xml", body))
    with prepared.spool:
        assert prepared.spool.count == 0 and prepared.partner is None
        [problem] = prepared.problems
    assert problem.field == "partner" and problem.path == "/inventory/@partner"
    assert "the document says partner 'initech', whose format is 'initech-stock'" in problem.message


def test_a_file_of_no_partner_without_records_is_not_published(ingestor: Ingestor) -> None:
    empty_purge = (
        b"<AmazonEnvelope><Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>M</MerchantIdentifier>"
        b"</Header><MessageType>Inventory</MessageType><PurgeAndReplace>true</PurgeAndReplace></AmazonEnvelope>"
    )
    prepared = ingestor.prepare(drop("inbox/purge.xml", empty_purge))
    with prepared.spool:
        [problem] = prepared.problems
    assert prepared.fatal and "no partner for this file" in problem.message


def test_a_utf16_file_under_no_prefix_is_routed_by_its_real_root(ingestor: Ingestor) -> None:
    feed = fixture_bytes("good/merchant-feed.xml", "google-merchant").decode("utf-8")
    body = feed.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    ref = drop("inbox/feed-utf16.xml", body)
    assert route(ingestor, ref) == (None, "google-merchant", "detected")


def test_the_deadline_stops_a_parser_that_reads_without_yielding(ingestor: Ingestor) -> None:
    """A local inventory feed groups every row before its first record: the deadline still applies."""
    import time

    from dropgate.ingest.reading import DeadlineReached

    rows = "".join(
        f"<item><g:store_code>S{n % 7}</g:store_code><g:id>P{n // 7}</g:id><g:quantity>1</g:quantity></item>"
        for n in range(20_000)
    )
    body = f'<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>{rows}</channel></rss>'.encode()
    ref = drop("contoso/big.xml", body)
    with pytest.raises(DeadlineReached, match=r"stopped reading contoso/big.xml after 0 products"):
        ingestor.prepare(ref, deadline=time.monotonic() - 1)
