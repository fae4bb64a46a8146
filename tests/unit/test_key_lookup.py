"""The rules of ``dropgate key`` that need no broker: which partners' templates fit a key, which
holder's event is the topic's newest, how the ``source-object`` header names a file, and what a
position that no longer holds the key's event means."""

from __future__ import annotations

from collections.abc import Mapping

from dropgate.key_lookup import Placement, candidates, newest, parse_source_object, read_event, report
from dropgate.ledger import NullLedger
from dropgate.partners import PartnerDirectory
from dropgate.storage import ObjectRef

PARTNERS = PartnerDirectory.from_yaml(
    """
partners:
  acme: {prefix: acme/, format: generic}
  globex: {prefix: globex/, format: generic, key_template: "{partnerId}:{productId}"}
  initech: {prefix: initech/, format: generic, key_template: "shop-{partnerId}/{productId}/v1"}
""",
    origin="test partners",
)


def ids(key: bytes) -> list[str]:
    return sorted(p.id for p in candidates(key, PARTNERS))


def test_a_template_naming_the_partner_fits_only_that_partner_s_keys() -> None:
    assert ids(b"globex:P1") == ["acme", "globex"]  # {productId} could have made any key
    assert ids(b"P1") == ["acme"]
    assert ids(b"globex:") == ["acme"]  # no product id after the partner's text
    assert ids(b"shop-initech/P1/v1") == ["acme", "initech"]
    assert ids(b"shop-initech/P1") == ["acme"]


def placement(partner: str, offsets: tuple[int, ...], as_of_ms: int = 0) -> Placement:
    return Placement(partner, as_of_ms, False, 0 if offsets else None, offsets)


def test_of_two_holders_the_topic_s_newest_event_is_the_one_at_the_higher_offset() -> None:
    assert newest([placement("acme", (40, 2)), placement("umbrella", (41,))]).partner == "umbrella"
    assert newest([placement("acme", (), 5), placement("umbrella", (), 9)]).partner == "umbrella"
    assert newest([placement("acme", (3,)), placement("umbrella", (), 9)]).partner == "acme"


def test_the_source_object_header_names_bucket_key_and_version() -> None:
    assert parse_source_object("s3://drops/acme/a?b.xml?versionId=v1") == ObjectRef("drops", "acme/a?b.xml", "v1")
    assert parse_source_object("s3://drops/acme/a.xml") == ObjectRef("drops", "acme/a.xml", None)
    assert parse_source_object("./local/file.xml") == ObjectRef(None, "./local/file.xml", None)


class Message:
    def __init__(self, key: bytes, offset: int) -> None:
        self.key: bytes | None = key
        self.value: bytes | None = None
        self.headers: Mapping[str, bytes] = {"source-object": b"s3://drops/acme/x.xml?versionId=v"}
        self.partition = 0
        self.offset = offset


class Topic:
    """Offsets 0..: what a recreated topic would hold at the offsets the index kept."""

    def __init__(self, *keys: bytes) -> None:
        self.keys = keys

    def event_at(self, partition: int, offset: int) -> Message | None:
        return Message(self.keys[offset], offset) if offset < len(self.keys) else None


def test_an_offset_that_holds_another_key_or_nothing_is_not_the_key_s_event() -> None:
    topic = Topic(b"OTHER", b"P1")
    assert not read_event(topic, NullLedger(), b"P1", 0, 0).on_topic
    assert not read_event(topic, NullLedger(), b"P1", 0, 7).on_topic
    found = read_event(topic, NullLedger(), b"P1", 0, 1)
    assert found.on_topic and found.deleted and found.origin is not None and found.origin.key == "acme/x.xml"
    answer = report(b"P1", [placement("acme", (0,))], topic, NullLedger())
    assert answer.current is not None and not answer.current.on_topic
    assert "no longer on the topic" in answer.notes[0]
    unpositioned = report(b"P1", [placement("acme", ())], topic, NullLedger())
    assert unpositioned.current is None and "no topic position" in unpositioned.notes[0]
