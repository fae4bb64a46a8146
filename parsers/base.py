"""What every partner-format parser produces, and nothing else.

Parsers are pure: a byte stream goes in, a stream of :class:`Document`, :class:`Record` and
:class:`Problem` items comes out. They never import boto3 or Kafka and never decide what happens
to a file; the core (``dropgate.ingest``) turns records into events and problems into an
outcome. Keeping them this small is what lets a parser fix be tested from a fixture alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

from parsers.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from parsers.xml_stream import Sniffed

ProblemKind = Literal[
    "xml_syntax",
    "validation",
    "unknown_format",
    "encoding",
    "security_limit",
    "empty",
    "parser_error",
    "authorization",  # not a parser's: the core's, for a key another partner owns (dropgate.ingest.ownership)
]

#: Offending values are cut to this many characters in problems, so a 50 MB text node cannot
#: end up in a log line or a diagnostics file.
MAX_VALUE_CHARS = 120
#: A problem's message quotes values too; it is cut here, so a sidecar and a ledger row stay small.
MAX_MESSAGE_CHARS = 1_000


_CUT = re.compile(r"… \(\d+ characters\)$")


def truncate(value: object, limit: int = MAX_VALUE_CHARS) -> str | None:
    """Render an offending value for a diagnostic, never longer than ``limit`` characters."""
    if value is None:
        return None
    text = str(value)
    if len(text) <= limit:
        return text
    cut = _CUT.search(text)
    if cut is not None and cut.start() <= limit:
        return text  # cut already (a problem is bounded again when stored): keep the true length
    return f"{text[:limit]}… ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file, located precisely enough to fix without a meeting."""

    kind: ProblemKind
    message: str
    line: int | None = None
    column: int | None = None
    record: int | None = None
    product_id: str | None = None
    path: str | None = None
    field: str | None = None
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "record": self.record,
            "productId": self.product_id,
            "path": self.path,
            "field": self.field,
            "value": self.value,
        }

    def bounded(self) -> Problem:
        """This problem with every part that can quote the file cut to size (what is stored is bounded)."""
        parts = (self.product_id, self.value, self.path, self.field)
        if len(self.message) <= MAX_MESSAGE_CHARS and all(p is None or len(p) <= MAX_VALUE_CHARS for p in parts):
            return self
        return replace(
            self,
            message=str(truncate(self.message, MAX_MESSAGE_CHARS)),
            product_id=truncate(self.product_id),
            value=truncate(self.value),
            path=truncate(self.path),
            field=truncate(self.field),
        )

    def one_line(self) -> str:
        """A compact human rendering: ``line 12, col 7, record 3 (P01), /inventory/product[3]: …``."""
        where = []
        if self.line is not None:
            where.append(f"line {self.line}" + (f", col {self.column}" if self.column is not None else ""))
        if self.record is not None:
            where.append(f"record {self.record}" + (f" ({truncate(self.product_id)})" if self.product_id else ""))
        if self.path:
            where.append(str(truncate(self.path)))
        prefix = ", ".join(where)
        return f"[{self.kind}] {prefix + ': ' if prefix else ''}{self.message}"


@dataclass(frozen=True, slots=True)
class Document:
    """What a parser learned from the document's root, emitted before any record."""

    root: str
    namespace: str | None
    partner: str | None = None
    #: The partner's snapshot time (e.g. ``generatedAt``), timezone-aware UTC, if the format has one.
    as_of: datetime | None = None
    #: Whether the file itself says it is the whole catalogue (``full``, e.g. Amazon's
    #: ``PurgeAndReplace``) or a change set (``delta``); ``None``: the partner's configuration decides.
    snapshot: Literal["full", "delta"] | None = None


@dataclass(slots=True)
class Record:
    """One product's state as the partner sent it, converted to contract field names.

    ``fields`` holds the camelCase contract fields the format carries (``sku``, ``name``,
    ``quantity``, ``availability``, ``price``, ``locations``); ``None`` means the partner deleted
    the product and the core emits a tombstone.
    """

    index: int
    product_id: str
    fields: dict[str, Any] | None
    line: int | None = None
    path: str | None = None

    @property
    def deleted(self) -> bool:
        return self.fields is None


Item = Document | Record | Problem


class Parser(Protocol):
    """A partner format. ``name`` and ``version`` go into every event and the ledger: bump the
    version with every behavioural fix so a reprocess republishes what the fix changes.
    ``limits`` bound what one file may make the parser do (see ``parsers.limits``)."""

    name: str
    version: str
    #: What the format's documents look like, for ``unknown_format`` messages and ``dropgate partners``,
    #: e.g. ``<inventory> with no namespace``.
    expects: str

    def matches(self, sniffed: Sniffed) -> bool:
        """Whether a document with this head is in this format (routing of files under no prefix)."""
        ...

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]: ...


class SegmentedParser(Parser, Protocol):
    """A format whose plain documents can be cut into segments and parsed in several processes
    (see ``parsers.segments``); its methods raise ``NotPlain`` for anything else."""

    root_tag: str
    record_tag: str

    def segment_document(self, root: Any, limits: Limits = DEFAULT_LIMITS) -> Document: ...

    def segment_records(self, segment: Any, xml_parser: Any, limits: Limits = DEFAULT_LIMITS) -> list[Record]:
        """The segment's records; the parser parses the segment's text (``xml_parser``) if it needs to."""
        ...


class InputRejected(Exception):
    """The bytes themselves are unusable (corrupt gzip, cut-off upload, …).

    Raised from inside the byte stream or a parser; the core turns it into a problem of
    ``kind`` that quarantines the whole file.
    """

    kind: ProblemKind = "encoding"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def problem(self) -> Problem:
        return Problem(kind=self.kind, message=self.message)


class LimitExceeded(InputRejected):
    """A safety limit was hit while reading untrusted input (size, depth, text length, …).

    ``where`` locates it (line, record, product_id, path) when known. The offending content itself
    is never carried: it may be 50 MB, or a secret an attacker hoped to echo back.
    """

    kind: ProblemKind = "security_limit"

    def __init__(self, limit: str, value: int, message: str, **where: Any) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.where = where

    def problem(self) -> Problem:
        return Problem(kind=self.kind, message=self.message, field=self.limit, value=str(self.value), **self.where)


class ParserFailed(InputRejected):
    """dropgate itself failed on a record: a bug in a parser (or the event builder), not a bad byte.

    Retrying cannot help (the same bytes fail the same way) and the file must not be lost, so it
    is quarantined with this problem naming the record, and the field when the parser knew it:
    fix the parser, bump its version, reprocess the file.
    """

    kind: ProblemKind = "parser_error"

    def __init__(self, error: BaseException, **where: Any) -> None:
        detail = truncate(f"{type(error).__name__}: {error}", 300)
        super().__init__(
            f"dropgate failed on this record ({detail}); this is a bug in dropgate's parser, not necessarily in "
            "the file: once the parser is fixed, reprocess the file"
        )
        self.where = where

    def problem(self) -> Problem:
        return Problem(kind=self.kind, message=self.message, **self.where)
