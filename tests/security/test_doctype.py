"""Nothing in a DOCTYPE may change what a document says.

An internal DTD subset can declare entities (text substituted into content and attributes) and
attribute lists (defaults lxml reports as if sent, fixed values, whitespace normalised for non-CDATA
types). A document declaring either is refused whole, however the declaration is written: judged
from libxml2's model of the DTD, so the text tricks that fooled a scan of the head (a ``]`` in a
comment, a ``>`` in a quoted system id, a subset past the sniffed 64 KiB, a parameter entity) change
nothing. Declarations that change nothing (elements, notations) and external DTD references
(never fetched) are let through. Each case goes through ``dropgate inspect`` and the S3 path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.security.test_attack_corpus import run_inspect

PRODUCT = '<product id="A"><name>Widget</name><quantity>7</quantity><locations><location id="W1" quantity="7"/></locations></product>'
BODY = f'<inventory partner="acme">{PRODUCT}</inventory>'
PADDING = "<!ELEMENT pad ANY>\n" * 4_000  # 76 KB of harmless declarations: past any sniffed head

ATTLISTS = "the document declares attribute lists (<!ATTLIST …>) in its DOCTYPE"
ENTITIES = "the document declares entities (<!ENTITY …>) in its DOCTYPE"

REFUSED: dict[str, tuple[str, str]] = {
    # attribute lists: a default turns a full product into a tombstone, or injects what was not sent
    "default_deleted": (f'<!DOCTYPE inventory [<!ATTLIST product deleted CDATA "true">]>{BODY}', ATTLISTS),
    "default_product_id": (
        '<!DOCTYPE inventory [<!ATTLIST product id CDATA "INJECTED">]>'
        "<inventory><product><quantity>1</quantity></product></inventory>",
        ATTLISTS,
    ),
    "default_location_quantity": (
        '<!DOCTYPE inventory [<!ATTLIST location quantity CDATA "999999">]>'
        '<inventory><product id="A"><locations><location id="W1"/></locations></product></inventory>',
        ATTLISTS,
    ),
    "fixed_partner": (f'<!DOCTYPE inventory [<!ATTLIST inventory partner CDATA #FIXED "globex">]>{BODY}', ATTLISTS),
    "normalised_id": (
        "<!DOCTYPE inventory [<!ATTLIST product id NMTOKENS #IMPLIED>]>"
        '<inventory><product id="  A   B "><quantity>1</quantity></product></inventory>',
        ATTLISTS,
    ),
    "attlist_past_the_head": (
        f'<!DOCTYPE inventory [{PADDING}<!ATTLIST product deleted CDATA "true">]>{BODY}',
        ATTLISTS,
    ),
    # entities: however the declaration is written, it is seen
    "bracket_in_comment": (
        '<!DOCTYPE inventory [<!-- ] --><!ENTITY e "EXPANDED">]>'
        '<inventory partner="&e;"><product id="A"><quantity>1</quantity></product></inventory>',
        ENTITIES,
    ),
    "gt_in_system_id": (
        '<!DOCTYPE inventory SYSTEM "a>b.dtd" [<!ENTITY e "EXPANDED">]>'
        '<inventory><product id="A&e;"><quantity>1</quantity></product></inventory>',
        ENTITIES,
    ),
    "entity_past_the_head": (
        f'<!DOCTYPE inventory [{PADDING}<!ENTITY e "EXPANDED">]>'
        '<inventory><product id="A&e;"><quantity>1</quantity></product></inventory>',
        ENTITIES,
    ),
    "parameter_entity": (
        "<!DOCTYPE inventory [<!ENTITY % p \"<!ATTLIST product deleted CDATA 'true'>\"> %p;]>" + BODY,
        ENTITIES,
    ),
    "unused_entity": (f'<!DOCTYPE inventory [<!ENTITY unused "x">]>{BODY}', ENTITIES),
}

ALLOWED = {
    "element_declarations": f"<!DOCTYPE inventory [<!ELEMENT product ANY><!NOTATION n SYSTEM 'n'>]>{BODY}",
    "external_dtd_only": f'<!DOCTYPE inventory SYSTEM "http://127.0.0.1:9/inventory.dtd">{BODY}',
    "bare_doctype": f"<!DOCTYPE inventory>{BODY}",
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + text)
    return path


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_inspect_refuses_a_doctype_that_would_change_the_document(name: str, tmp_path: Path) -> None:
    text, message = REFUSED[name]
    stats, stdout, stderr, _ = run_inspect(write(tmp_path, name, text))
    assert stats["code"] == 1, stderr
    assert stdout == ""  # no event, no tombstone
    assert stderr.splitlines()[0] == f"[security_limit] {message}" + stderr.splitlines()[0].partition(message)[2]
    assert "EXPANDED" not in stderr and "INJECTED" not in stderr and "globex" not in stderr


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_a_doctype_that_changes_nothing_is_let_through(name: str, tmp_path: Path) -> None:
    stats, stdout, stderr, _ = run_inspect(write(tmp_path, name, ALLOWED[name]))
    assert stats["code"] == 0, stderr
    (event,) = [json.loads(line) for line in stdout.splitlines()]
    assert event["key"] == "A" and event["value"]["quantity"] == 7 and event["value"]["name"] == "Widget"
