"""The one way dropgate opens partner XML: streaming, hardened, and sniffed before it is parsed.

Partner files are untrusted. Every parser gets its events from :func:`secure_iterparse`, which
never expands entities, never loads a DTD, never touches the network and refuses libxml2's
"huge" mode, so a hostile file can at worst be rejected, not read ``/etc/passwd`` or exhaust
memory. ``lxml>=6.1.0`` is required: older releases resolved external entities inside
``iterparse`` despite ``resolve_entities=False``. What a format does with the events is the front
end's (``parsers.front_end``); how problems are worded and located, ``parsers.diagnostics``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from lxml import etree

from parsers.doctype import DoctypeRefused, refuse_doctype

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
