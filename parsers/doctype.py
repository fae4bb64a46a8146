"""What a DOCTYPE may do in a partner's document: name the document type, nothing more.

An internal DTD subset can change what a document says: entities replace text (in content and
in attributes), attribute lists add default values that lxml reports as if sent, fix values, and
normalise the whitespace of non-CDATA ones. So a document that declares either is refused whole,
before any record is read. The decision is made from libxml2's model of the DTD once it is
parsed (``parsers.xml_stream.SecureEvents`` asks at its first event), never from the raw text.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from parsers.base import InputRejected, Problem, ProblemKind


class DoctypeRefused(InputRejected):
    """The DOCTYPE declares something that would change what the document says."""

    kind: ProblemKind = "security_limit"

    def problem(self) -> Problem:
        return Problem(kind=self.kind, message=self.message, field="DOCTYPE")


_ENTITIES_REFUSED = (
    "the document declares entities (<!ENTITY …>) in its DOCTYPE; dropgate never expands entities: send the "
    "document without an internal DTD subset and with literal text"
)
_ATTLISTS_REFUSED = (
    "the document declares attribute lists (<!ATTLIST …>) in its DOCTYPE, which would add default attribute "
    "values or rewrite the ones sent; dropgate applies no DTD: send the document without an internal DTD subset"
)


def refuse_doctype(element: Any) -> None:
    """Raise :class:`DoctypeRefused` if the document's internal DTD subset could change its content.

    Judged from libxml2's own model of the DTD, never from the raw text (a ``]`` in a comment, a
    ``>`` in a quoted system id, a subset longer than any head we sniff, a parameter entity that
    declares more: the model has them all as what they are). Entities (general or parameter) would
    replace text; attribute lists add defaults that lxml then reports as sent (``deleted="true"``
    turned a product into a tombstone) and normalise the values of non-CDATA attributes. Element
    and notation declarations change nothing and are let through, as is an external DTD reference
    (cXML's), which is never fetched.
    """
    tree = element.getroottree()
    dtd = tree.docinfo.internalDTD
    if dtd is None:
        return
    if dtd.entities():
        raise DoctypeRefused(_ENTITIES_REFUSED)
    # lxml lists attribute declarations only for declared elements; libxml2's serialisation of the
    # model has every one. Content is escaped there, so the marker can only come from the DTD.
    if b"<!ATTLIST" in etree.tostring(tree):
        raise DoctypeRefused(_ATTLISTS_REFUSED)
