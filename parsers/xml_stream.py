"""The one way dropgate opens partner XML: streaming, hardened, with located errors.

Partner files are untrusted. Every parser gets its events from :func:`secure_iterparse`, which
never expands entities, never loads a DTD, never touches the network and refuses libxml2's
"huge" mode, so a hostile file can at worst be rejected, not read ``/etc/passwd`` or exhaust
memory. ``lxml>=6.1.0`` is required: older releases resolved external entities inside
``iterparse`` despite ``resolve_entities=False``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, BinaryIO

from lxml import etree

from parsers.base import Problem, ProblemKind

_LOCATION_SUFFIX = re.compile(r", line \d+, column \d+$")
#: libxml2 error codes that mean "the bytes are not what the declared encoding says".
_ENCODING_ERROR_CODES = frozenset({9, 31, 32, 81})  # INVALID_CHAR, UNKNOWN/UNSUPPORTED/INVALID_ENCODING


def secure_iterparse(
    stream: BinaryIO, *, events: tuple[str, ...] = ("start", "end"), tag: Iterable[str] | None = None
) -> Any:
    """``lxml.etree.iterparse`` with every network, DTD and entity feature off."""
    return etree.iterparse(
        stream,
        events=events,
        tag=list(tag) if tag is not None else None,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def syntax_problem(error: etree.XMLSyntaxError, *, record: int | None = None, product_id: str | None = None) -> Problem:
    """Turn libxml2's error into a problem a partner engineer can act on."""
    message = _LOCATION_SUFFIX.sub("", str(error.msg or error))
    line, column = error.position if error.position else (error.lineno, None)
    kind: ProblemKind = "encoding" if error.code in _ENCODING_ERROR_CODES else "xml_syntax"
    if kind == "encoding":
        message += " (the bytes do not match the declared encoding; declare the real one, e.g. UTF-8)"
    return Problem(
        kind=kind,
        message=message,
        line=line or None,
        column=column if column and column > 0 else None,
        record=record,
        product_id=product_id,
    )


def has_entity_reference(element: Any) -> bool:
    """True if an element holds an unexpanded entity reference (we never expand them)."""
    return any(isinstance(child, etree._Entity) for child in element)


def local_name(tag: object) -> str | None:
    """``{ns}name`` → ``name``; comments and processing instructions → ``None``."""
    if not isinstance(tag, str):
        return None
    return tag.rpartition("}")[2]


def release(element: Any) -> None:
    """Free an element and everything before it, so memory stays flat however long the file."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]
