"""The per-record bookkeeping that every format shares.

Each parser reads one record element at a time into a reader (this class, or the format's subclass
of it) that knows where the record is (index, line, path, product id so far) and collects its
problems; a record with any problem yields no :class:`~parsers.base.Record`. Locating a problem the
same way in every format is what this module is for; what a field means, and how a format words
its messages, stays in the format's module.
"""

from __future__ import annotations

from typing import Any

from parsers.base import Problem, truncate
from parsers.diagnostics import has_entity_reference, too_much_text
from parsers.limits import Limits
from parsers.xml_stream import source_line


class RecordReader:
    """One record's location and problems. ``product_id`` is ``""`` until the format has read it."""

    #: How the entity-reference problem of :meth:`text` ends (a format's wording).
    entity_advice = "send literal text"

    def __init__(self, element: Any, index: int, limits: Limits, path: str, product_id: str = "") -> None:
        self.index = index
        self.limits = limits
        self.line: int | None = source_line(element)
        self.path = path
        self.product_id = product_id
        self.problems: list[Problem] = []

    def at(self, line: int | None, sub: str = "") -> dict[str, Any]:
        """A problem's location: ``line``, this record, and ``sub`` below the record's path."""
        return {"line": line, "record": self.index, "product_id": self.product_id or None, "path": self.path + sub}

    def where(self, element: Any, sub: str) -> dict[str, Any]:
        """Locates ``element`` (the record itself when ``None``) at ``sub`` below the record's path."""
        return self.at(source_line(element) if element is not None else self.line, sub)

    def problem(self, field: str, message: str, *, value: object = None, element: Any = None, sub: str = "") -> None:
        self.problems.append(
            Problem(kind="validation", message=message, field=field, value=truncate(value), **self.where(element, sub))
        )

    def entity_problem(self, field: str, message: str, where: dict[str, Any]) -> None:
        """An element holds an entity reference (never expanded): its text is not the partner's value."""
        self.problems.append(Problem(kind="security_limit", message=message, field=field, **where))

    def text(self, element: Any, field: str, sub: str) -> str | None:
        """Direct text of an element; ``None`` (with a problem) when it holds an entity reference."""
        text: str | None = element.text
        if (text is None or len(text) <= self.limits.max_text_chars) and not len(element):
            return text  # the usual short leaf: nothing to check
        if len(element) and has_entity_reference(element):
            message = f"<{element.tag}> holds an entity reference; entities are never expanded: " + self.entity_advice
            self.entity_problem(field, message, self.where(element, sub))
            return None
        if text is not None and len(text) > self.limits.max_text_chars:
            raise too_much_text(f"<{element.tag}>", len(text), self.limits, **self.where(element, sub))
        return text
