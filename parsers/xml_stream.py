"""The one way dropgate opens partner XML: streaming, hardened, with located errors.

Partner files are untrusted. Every parser gets its events from :func:`secure_iterparse`, which
never expands entities, never loads a DTD, never touches the network and refuses libxml2's
"huge" mode, so a hostile file can at worst be rejected, not read ``/etc/passwd`` or exhaust
memory. ``lxml>=6.1.0`` is required: older releases resolved external entities inside
``iterparse`` despite ``resolve_entities=False``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any, BinaryIO

from lxml import etree

from parsers.base import LimitExceeded, Problem, ProblemKind, truncate
from parsers.doctype import DoctypeRefused, refuse_doctype
from parsers.limits import Limits

_LOCATION_SUFFIX = re.compile(r", line \d+, column \d+$")
#: libxml2's words when a document hits one of its resource limits (we never lift them).
_LIMIT_MARKERS = ("amplification", "XML_PARSE_HUGE", "Excessive depth", "huge input lookup", "Maximum entity")
#: libxml2's words for a character reference (``&#x1b;``) to a character XML forbids.
_CHAR_REF = re.compile(r"xmlParseCharRef: invalid xmlChar value (\d+)")
#: libxml2 error codes that mean "the bytes are not what the declared encoding says".
_ENCODING_ERROR_CODES = frozenset({9, 31, 32, 81})  # INVALID_CHAR, UNKNOWN/UNSUPPORTED/INVALID_ENCODING


#: How much :class:`SecureEvents` feeds the parser before it hands out the events that chunk made.
FEED_BYTES = 32 * 1024


class SecureEvents:
    """``(event, element)`` pairs of a partner document, with every network, DTD and entity feature off.

    Why not ``lxml.etree.iterparse``: how far it reads ahead before it raises a syntax error is its
    own business, and it changed between lxml 6.1 and 6.2 (6.2 raises before handing out the records
    that precede the error, so a diagnostic lost "after record N"). Here we feed bounded chunks to a
    pull parser and hand out every event a chunk made before we raise what that chunk did, so the
    records before an error, and where memory is released, do not depend on the library's buffering.
    ``root`` is the document's root element once the stream is read to its end (as iterparse's).
    """

    def __init__(self, stream: BinaryIO, *, events: tuple[str, ...], tag: Iterable[str] | None) -> None:
        self._stream = stream
        self._parser = etree.XMLPullParser(events=events, tag=list(tag) if tag is not None else None, **_SECURE)
        self._doctype_checked = False
        self.root: Any = None

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        parser = self._parser
        while True:
            data = self._stream.read(FEED_BYTES)
            if not data:
                break
            try:
                parser.feed(data)
            except etree.XMLSyntaxError:
                yield from self._drain()  # what came before the error, as the chunk's own
                raise
            yield from self._drain()
        # A document that ends early fails here, and libxml2 then closes every open element: those
        # "end" events are not the document's, so none of close()'s events outlive its error.
        self.root = parser.close()
        if not self._doctype_checked and self.root is not None:
            refuse_doctype(self.root)
        yield from self._drain()

    def _drain(self) -> Iterator[tuple[str, Any]]:
        events = self._parser.read_events()
        if not self._doctype_checked:
            # The first event comes after the whole DOCTYPE is parsed: judge it before handing out anything.
            first = next(events, None)
            if first is None:
                return
            refuse_doctype(first[1])
            self._doctype_checked = True
            yield first
        yield from events


def secure_iterparse(
    stream: BinaryIO, *, events: tuple[str, ...] = ("start", "end"), tag: Iterable[str] | None = None
) -> SecureEvents:
    """The document's events, driven chunk by chunk (see :class:`SecureEvents`)."""
    return SecureEvents(stream, events=events, tag=tag)


def secure_parser() -> etree.XMLParser:
    """A parser for a whole (small) document with the same settings as :func:`secure_iterparse`."""
    return etree.XMLParser(**_SECURE)


#: Every network, DTD and entity feature off; libxml2's own depth and text-size limits on.
_SECURE: dict[str, bool] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    # Not collect_ids=False: with it libxml2 opens a DOCTYPE's external DTD (a local path is read,
    # a URL fails the parse); without it, nothing is opened. The ID table it saves is freed with
    # the elements we release.
}


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


#: libxml2 keeps an element's line in 16 bits: from this line on, it reports a neighbour's line.
BIG_LINE = 65535


def source_line(node: Any) -> int | None:
    """The line ``node`` starts on, past line 65,534 too (lxml's ``sourceline`` is not, there).

    libxml2 keeps an element's line in 16 bits. Past that it reports the line of the node after the
    start tag: the first child, else the next sibling. Text keeps big lines, but as the line the
    text *ends* on. So an indented ``<product>`` deep in a large file was reported on its first
    field's line, one line late (more after blank lines), and a diagnostic pointed a partner at the
    wrong line. Here that text's newlines are taken back off. An empty element whose following text
    is not parsed yet has nothing to go by: its line is unknown, ``None`` rather than a wrong one.
    """
    line: int | None = node.sourceline
    if line is None or line < BIG_LINE or not isinstance(node.tag, str):
        return line
    text: str | None = node.text
    if text is not None:  # libxml2 reported the line this text ends on
        return line - text.count("\n")
    if len(node):
        first = node[0]
        return source_line(first) if isinstance(first.tag, str) else line
    tail: str | None = node.tail
    if tail is not None:  # no children: libxml2 reported the line the following text ends on
        return line - tail.count("\n")
    following = node.getnext()
    if following is not None and isinstance(following.tag, str):  # <a/><b>: b starts on a's line
        return source_line(following)
    return None


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


# -- sniffing the root before parsing ---------------------------------------------------------

#: ``sniff`` reads at most this much; a shorter head is the whole document.
SNIFF_BYTES = 64 * 1024
_NAME = re.compile(rb"<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)[\s/>]")
_XMLNS = re.compile(rb"""xmlns(?::([^\s=]+))?\s*=\s*(["'])(.*?)\2""", re.S)
_BOMS = (b"\xef\xbb\xbf",)
#: How a UTF-32 document starts: a byte order mark either way, or '<' in four bytes either way.
_UTF32_STARTS = frozenset({b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"<\x00\x00\x00", b"\x00\x00\x00<"})


class Sniffed:
    """What the first bytes say: the root element and its namespaces (for routing, never for safety)."""

    __slots__ = ("head", "namespace", "namespaces", "prefix", "root", "utf32")

    def __init__(self) -> None:
        self.root: str | None = None
        self.prefix: str | None = None
        self.namespace: str | None = None
        #: Every namespace declared on the root element: prefix (``None`` for the default) → URI.
        self.namespaces: dict[str | None, str] = {}
        #: The head is UTF-32 (by its byte order mark or its zero bytes), which libxml2 does not read here.
        self.utf32 = False
        #: The bytes read (at most 64 KiB), for formats told apart by an element near the top.
        self.head = b""

    def declares(self, uri: str) -> bool:
        """True if the root declares namespace ``uri`` under any prefix."""
        return uri in self.namespaces.values()

    def mentions(self, local: str) -> bool:
        """True if an element named ``local`` (any prefix) starts within the sniffed head."""
        return re.search(rb"<(?:[\w.\-]+:)?" + re.escape(local.encode()) + rb"[\s/>]", self.head) is not None

    def describe(self) -> str:
        """``<rss>`` or ``<cXML> in namespace urn:x`` for messages; ``an unreadable root`` when unknown."""
        if self.root is None:
            return "an unreadable root element"
        return f"<{self.root}>" + (f" in namespace {self.namespace}" if self.namespace else " with no namespace")


class _Replay(io.RawIOBase):
    """The sniffed head, then the rest of the stream: sniffing consumes nothing."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            size = min(len(buffer), len(self._head))
            memoryview(buffer)[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)


def sniff(stream: BinaryIO) -> tuple[BinaryIO, Sniffed]:
    """Read the document's head (at most 64 KiB) to learn its root; returns an equivalent stream.

    Best effort on purpose: anything it cannot read (UTF-16, a prolog longer than the head) leaves
    ``root`` unset and the caller parses as usual.
    """
    head = stream.read(SNIFF_BYTES)
    found = Sniffed()
    found.head = head
    found.utf32 = head[:4] in _UTF32_STARTS
    if b"\x00" in head[:4]:  # UTF-16/32 without a BOM: leave it to the parser's encoding detection
        return io.BufferedReader(_Replay(head, stream), buffer_size=SNIFF_BYTES), found
    text = head
    for bom in _BOMS:
        text = text.removeprefix(bom)
    position = 0
    while True:
        while position < len(text) and text[position : position + 1].isspace():
            position += 1
        if text.startswith(b"<?", position):
            end = text.find(b"?>", position)
            if end < 0:
                break
            position = end + 2
        elif text.startswith(b"<!--", position):
            end = text.find(b"-->", position)
            if end < 0:
                break
            position = end + 3
        elif text.startswith(b"<!DOCTYPE", position):
            # Skipped to find the root; what it declares is judged by the parser (refuse_doctype).
            close = text.find(b">", position)
            bracket = text.find(b"[", position)
            if 0 <= bracket < close or (bracket >= 0 and close < 0):
                subset_end = text.find(b"]", bracket)
                if subset_end < 0:
                    break
                close = text.find(b">", subset_end)
            if close < 0:
                break
            position = close + 1
        else:
            match = _NAME.match(text, position)
            if match:
                qname = match.group(1).decode("utf-8", errors="replace")
                prefix, _, local = qname.rpartition(":")
                found.root, found.prefix = local, prefix or None
                tag_end = text.find(b">", position)
                start_tag = text[position : tag_end if tag_end >= 0 else len(text)]
                for declared in _XMLNS.finditer(start_tag):
                    bound = (declared.group(1) or b"").decode("utf-8", errors="replace") or None
                    uri = declared.group(3).decode("utf-8", errors="replace")
                    found.namespaces[bound] = uri
                    if bound == found.prefix:
                        found.namespace = uri or None
            break
    return io.BufferedReader(_Replay(head, stream), buffer_size=SNIFF_BYTES), found


def sniff_root(stream: BinaryIO) -> Sniffed:
    """The root element by actually parsing up to it, for heads :func:`sniff` cannot read (UTF-16,
    a prolog longer than 64 KiB). Reads no further than the root's start tag; unparseable → empty."""
    found = Sniffed()
    try:
        for _event, element in secure_iterparse(stream, events=("start",)):
            tag = str(element.tag)
            namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
            found.root, found.namespace = local, namespace or None
            found.namespaces = {prefix: uri for prefix, uri in element.nsmap.items()}
            break
    except (etree.XMLSyntaxError, DoctypeRefused):
        pass  # the parser the file is routed to says what is wrong with it
    return found


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


def sniff_document(
    stream: BinaryIO,
    *,
    accepts: Callable[[Sniffed], bool],
    expects: str,
    refuse: Callable[[Sniffed, str], Problem] = unknown_format_problem,
) -> tuple[BinaryIO, Sniffed, Problem | None]:
    """Sniff the head and refuse what no parse should start on: another format's root.

    Stopping before parsing matters: a foreign document would otherwise be read to its end for
    nothing. ``accepts`` says whether a readable head is the format's; ``refuse(sniffed, expects)``
    words the refusal. A head the sniffer could not read is let through: the parser finds the root
    while streaming (see :func:`foreign_root_problem`). Returns the stream to parse (nothing is
    consumed), what was sniffed, and the problem to yield instead of parsing, if any.
    """
    stream, sniffed = sniff(stream)
    if sniffed.utf32:
        return stream, sniffed, utf32_problem()
    if sniffed.root is not None and not accepts(sniffed):
        return stream, sniffed, refuse(sniffed, expects)
    return stream, sniffed, None


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


class RecordWindow(io.RawIOBase):
    """Counts bytes read since the parser last completed a record; refuses to read past the window.

    lxml keeps every element it has not been told to release, and it is only told at record
    boundaries; so bytes between boundaries are what memory grows with. ``mark`` is called at each
    record end.
    """

    def __init__(self, stream: BinaryIO, limit: int, *, after: Callable[[], str]) -> None:
        self._stream = stream
        self._limit = limit
        self._since = 0
        self._after = after

    def readable(self) -> bool:
        return True

    def mark(self) -> None:
        self._since = 0

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        self._since += len(data)
        if self._since > self._limit:
            raise LimitExceeded(
                "max_record_bytes",
                self._limit,
                f"more than {self._limit:,} bytes of XML without completing a record ({self._after()}): a record "
                "this large, or content that is not records, is refused",
            )
        memoryview(buffer)[: len(data)] = data
        return len(data)
