"""Parse time: a declarative format's documents streamed through the shared front end.

The record path is restricted to child steps precisely so that records can be recognised while
streaming (their ancestor chain is compared with the path) instead of evaluating XPath over a whole
document. Records may sit in several containers, so each is freed with its whole ancestor chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

from lxml import etree

from parsers.base import Document, Item, Problem, truncate
from parsers.declarative.compiler import Compiler
from parsers.declarative.reader import DeclaredRecordReader
from parsers.declarative.spec import DeclarativeFormat
from parsers.diagnostics import check_attributes, foreign_root_problem, snapshot_time
from parsers.front_end import Items, RecordScan, release_chain
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.xml_stream import Sniffed, local_name, source_line


class XPathParser:
    """Parser for one declarative format; ``version`` is the spec's, so a spec change reprocesses."""

    def __init__(self, name: str, spec: DeclarativeFormat) -> None:
        self.name = name
        self.version = spec.version
        self.spec = spec
        self.rules = Compiler(spec).compile()
        where = f" in namespace {spec.namespace}" if spec.namespace else " with no namespace"
        self.expects = f"<{spec.root}>{where} (declarative format {name})"

    def matches(self, sniffed: Sniffed) -> bool:
        return sniffed.root == self.spec.root and sniffed.namespace == self.spec.namespace

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        return _Scan(self, limits).items(stream, accepts=self.matches)


class _Scan(RecordScan):
    """One document of a declarative format: a record per element at the record path."""

    release = staticmethod(release_chain)

    def __init__(self, parser: XPathParser, limits: Limits) -> None:
        super().__init__(limits, parser.expects)
        self.parser = parser
        rules = parser.rules
        self.step_tag = rules.step_tags[-1]
        # ``{*}`` also yields same-named records in another namespace: a likely prefix mistake, reported once.
        self.tags = (rules.root_tag, "{*}" + rules.step_locals[-1])
        self.seen_root = False
        self.misplaced_reported = False

    def start(self, element: Any) -> Items:
        rules = self.parser.rules
        if not self.seen_root:
            if element.getparent() is not None or element.tag != rules.root_tag:
                self.stopped = True
                return (foreign_root_problem(element.getroottree().getroot(), self.expects),)
            self.seen_root = True
            check_attributes(element, self.limits, path=f"/{self.parser.spec.root}")
            return self._document(element)
        if element.tag == self.step_tag and self._is_record(element, rules.step_tags):
            self.open(element)
            self.last_id = self._early_id(element)
        elif not self.misplaced_reported and self._is_record(element, rules.step_locals, local=True):
            self.misplaced_reported = True
            return (self._misplaced(element),)
        return ()

    def read(self, element: Any) -> Items:
        reader = DeclaredRecordReader(self.parser.rules, element, self.index, self.limits)
        items = list(reader.read())
        self.last_id = reader.product_id or None  # for "after record N, productId …" in later errors
        return items

    def cut_id(self, element: Any) -> str | None:
        return self.last_id or self._partial_id(element)

    def finish(self, root: Any) -> Items:
        if not self.seen_root and root is not None:
            return (foreign_root_problem(root, self.expects),)
        return ()

    @staticmethod
    def _is_record(element: Any, tags: tuple[str, ...], *, local: bool = False) -> bool:
        """Whether the ancestor chain is exactly root + the record steps (same-named elements elsewhere are not)."""
        node = element
        for tag in reversed(tags):
            if node is None or (local_name(node.tag) if local else node.tag) != tag:
                return False
            node = node.getparent()
        return node is not None and node.getparent() is None

    def _early_id(self, element: Any) -> str | None:
        """The productId when it is an attribute of the record, known at its start (for syntax errors)."""
        path = self.parser.rules.fields["productId"].path
        if path.steps == "" and path.attribute is not None:
            return (element.get(path.attribute) or "").strip() or None
        return None

    def _partial_id(self, element: Any) -> str | None:
        """The productId from the part of a broken record that was read, if it got that far."""
        try:
            raw, _, _ = self.parser.rules.fields["productId"].path.hit(element)
        except (etree.XPathError, ValueError):
            return None
        return (raw or "").strip() or None

    def _misplaced(self, element: Any) -> Problem:
        """The record path's local names match but a namespace does not: name the first step that differs."""
        chain = [element]
        while len(chain) < len(self.parser.rules.step_tags):
            chain.append(chain[-1].getparent())
        chain.reverse()
        position, node = next((i, node) for i, node in enumerate(chain) if node.tag != self.parser.rules.step_tags[i])

        def namespace_of(tag: str) -> str:
            return f"namespace {tag[1:].partition('}')[0]}" if tag.startswith("{") else "no namespace"

        found, wanted = str(node.tag), self.parser.rules.step_tags[position]
        at = "/" + "/".join((self.parser.spec.root, *self.parser.rules.step_locals[: position + 1]))
        return Problem(
            kind="validation",
            message=(
                f"<{local_name(found)}> at {at} is in {namespace_of(found)}, but the record path "
                f"'{self.parser.spec.record}' of declarative format {self.parser.name} expects "
                f"{namespace_of(wanted)} there; "
                "these elements are not read as records (check the record path's prefixes and namespaces)"
            ),
            line=source_line(node),
            path=at,
            field="record",
            value=truncate(found),
        )

    def _document(self, root: Any) -> Iterator[Item]:
        as_of: datetime | None = None
        attribute = self.parser.rules.as_of_attribute
        if attribute is not None:
            raw = root.get(attribute)
            if raw is not None:
                what = f"asOf ({self.parser.spec.as_of})"
                as_of, problem = snapshot_time(
                    raw, what, line=source_line(root), path=self.parser.rules.as_of_path, field="asOf"
                )
                if problem is not None:
                    yield problem
        yield Document(root=self.parser.spec.root, namespace=self.parser.spec.namespace, as_of=as_of)
