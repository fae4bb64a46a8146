"""Problems about the document as a whole or the elements a record is made of, located for a partner engineer.

libxml2's syntax and encoding errors, a root in another format, and the safety limits checked per
element (attributes, nesting, text length) are worded here once, so every format reports them alike.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from lxml import etree

from parsers import fields
from parsers.base import LimitExceeded, Problem, ProblemKind, truncate
from parsers.limits import Limits
from parsers.xml_stream import Sniffed, local_name, source_line

_LOCATION_SUFFIX = re.compile(r", line \d+, column \d+$")
#: libxml2's words when a document hits one of its resource limits (we never lift them).
_LIMIT_MARKERS = ("amplification", "XML_PARSE_HUGE", "Excessive depth", "huge input lookup", "Maximum entity")
#: libxml2's words for a character reference (``&#x1b;``) to a character XML forbids.
_CHAR_REF = re.compile(r"xmlParseCharRef: invalid xmlChar value (\d+)")
#: libxml2 error codes that mean "the bytes are not what the declared encoding says".
_ENCODING_ERROR_CODES = frozenset({9, 31, 32, 81})  # INVALID_CHAR, UNKNOWN/UNSUPPORTED/INVALID_ENCODING


def syntax_problem(error: etree.XMLSyntaxError, *, record: int | None = None, product_id: str | None = None) -> Problem:
    """Turn libxml2's error into a problem a partner engineer can act on."""
    message = _LOCATION_SUFFIX.sub("", str(error.msg or error))
    line, column = error.position if error.position else (error.lineno, None)
    kind: ProblemKind = "encoding" if error.code in _ENCODING_ERROR_CODES else "xml_syntax"
    character_reference = _CHAR_REF.search(message)
    if any(marker in message for marker in _LIMIT_MARKERS):
        kind = "security_limit"
        message = (
            "the document exceeds a safety limit of the XML parser (entity amplification, nesting depth or "
            f"text length); send plain, flat XML without entities. Parser said: {message}"
        )
    elif character_reference:
        # &#x1b; is well-encoded text that names a character XML 1.0 forbids: a syntax problem, not encoding.
        kind = "xml_syntax"
        code = int(character_reference.group(1))
        message = (
            f"a character reference names U+{code:04X}, a character XML does not allow (control characters other "
            "than tab, line feed and carriage return); remove it or send the text without it"
        )
    elif (line, column) == (1, 1) and "Start tag expected" in message:
        message = "the file is not XML: it does not start with '<' (is it another format, or compressed?)"
    elif kind == "encoding":
        message += " (the bytes do not match the declared encoding; declare the real one, e.g. UTF-8)"
    return Problem(
        kind=kind,
        message=message,
        line=line or None,
        column=column if column and column > 0 else None,
        record=record,
        product_id=product_id,
    )


def syntax_problem_after(
    error: etree.XMLSyntaxError, index: int, last_id: str | None, *, record: str = "record", key: str = "productId"
) -> Problem:
    """A syntax error outside any record, said to come after record ``index`` (``key`` ``last_id``), if any.

    ``record`` and ``key`` are the format's words, e.g. ``message`` and ``SKU`` for Amazon feeds.
    """
    problem = syntax_problem(error)
    if not index:
        return problem
    after = f" (after {record} {index}" + (f", {key} {last_id})" if last_id else ")")
    return replace(problem, message=problem.message + after)


def has_entity_reference(element: Any) -> bool:
    """True if an element holds an unexpanded entity reference (we never expand them)."""
    return any(isinstance(child, etree._Entity) for child in element)


def unknown_format_problem(sniffed: Sniffed, expected: str, *, known: str | None = None) -> Problem:
    """The file is not in the format it was routed to (or in any format, when ``known`` lists them)."""
    message = f"root element is {sniffed.describe()}, expected {expected}"
    if known:
        message += f"; formats known: {known}"
    return Problem(
        kind="unknown_format",
        message=message,
        line=1 if sniffed.root else None,
        path=f"/{sniffed.root}" if sniffed.root else None,
        value=sniffed.namespace or sniffed.root,
    )


def sniffed_from(root: Any) -> Sniffed:
    """The root element the parser found, described as if sniffed (``<?>`` when there is none)."""
    tag = str(root.tag) if root is not None else "?"
    found = Sniffed()
    namespace, _, found.root = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    found.namespace = namespace or None
    return found


def foreign_root_problem(root: Any, expects: str, *, truncate_value: bool = False) -> Problem:
    """``unknown_format`` for the root found while parsing, when sniffing could not read it (UTF-16, a long prolog).

    ``truncate_value`` cuts the value like other offending values; the Amazon and cXML parsers do,
    the RSS and declarative ones never did.
    """
    problem = unknown_format_problem(sniffed_from(root), expects)
    line = source_line(root) if root is not None else None
    if truncate_value:
        return replace(problem, line=line, value=truncate(problem.value))
    return replace(problem, line=line)


def utf32_problem() -> Problem:
    return Problem(
        kind="encoding",
        message=(
            "the file is UTF-32 encoded (by its first four bytes); dropgate reads UTF-8 and UTF-16: send it as UTF-8"
        ),
        line=1,
    )


def check_attributes(
    element: Any, limits: Limits, *, path: str, record: int | None = None, product_id: str | None = None
) -> None:
    count = len(element.attrib)
    if count > limits.max_attributes:
        raise LimitExceeded(
            "max_attributes",
            limits.max_attributes,
            f"<{local_name(element.tag)}> has {count:,} attributes, over the limit of {limits.max_attributes:,}",
            line=source_line(element),
            record=record,
            product_id=product_id,
            path=path,
        )


def check_depth(
    record_element: Any, limits: Limits, *, path: str, record: int | None = None, product_id: str | None = None
) -> None:
    """Nesting inside one record; cheap for flat records (the usual case: children without children)."""
    stack = [(child, 2) for child in record_element if len(child)]
    while stack:
        element, depth = stack.pop()
        if depth >= limits.max_depth:
            raise LimitExceeded(
                "max_depth",
                limits.max_depth,
                f"elements nest {depth + 1} deep inside one record, over the limit of {limits.max_depth}",
                line=source_line(element),
                record=record,
                product_id=product_id,
                path=path,
            )
        stack.extend((child, depth + 1) for child in element if len(child))


def too_much_text(what: str, length: int, limits: Limits, **where: Any) -> LimitExceeded:
    """The ``max_text_chars`` refusal of ``what`` (e.g. ``<name>``), to raise once the caller found it too long.

    Callers compare the length themselves, so the usual short text costs no call.
    """
    return LimitExceeded(
        "max_text_chars",
        limits.max_text_chars,
        f"{what} holds {length:,} characters, over the limit of {limits.max_text_chars:,} per field",
        **where,
    )


def snapshot_time(
    raw: str, what: str, *, line: int | None, path: str | None, field: str, advice: str = ""
) -> tuple[datetime | None, Problem | None]:
    """The document's snapshot time from ``raw``, or the problem that says why it is none.

    ``what`` starts the message (the attribute as the partner knows it), ``advice`` ends it.
    """
    try:
        return fields.timestamp(raw), None
    except fields.FieldError as error:
        message = f"{what} {error}{advice}"
        return None, Problem(kind="validation", message=message, line=line, path=path, field=field, value=truncate(raw))
