"""Cut a plain record-per-element document into segments that parse on their own.

One Python process reads about one product per ten microseconds however lean the code, so a large
drop is parsed in several processes (see ``dropgate.parallel``), each given whole segments: runs of
records cut right after a record's end tag and wrapped in the root element, with the line and the
record number they start at. Cutting bytes is only safe for documents whose bytes hold no surprises,
so the cutter accepts the plain shape and nothing else: no DOCTYPE, no comments, CDATA sections or
processing instructions after the prolog (any of them could hide an end tag), and a record end
within ``max_record_bytes``. Anything else raises :class:`NotPlain`, and the caller reads the file
with the streaming parser, whose diagnostics are the product's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from lxml import etree

from parsers.xml_stream import secure_parser

#: Bytes read per cut; a segment is this plus the partial record carried over from the last one.
SEGMENT_BYTES = 512 * 1024
_UTF8 = frozenset({"UTF-8", "US-ASCII", "ASCII"})


class NotPlain(Exception):
    """The document is not one the segmented path reads exactly like the streaming parser."""

    #: Not the document's doing (a parsing process failed): worth a warning in the logs.
    unexpected = False


@dataclass(frozen=True, slots=True)
class Segment:
    """Well-formed XML holding ``records`` record elements as the root's children.

    ``first_index`` is the 1-based number of its first record in the file, ``line_offset`` what to
    add to a ``sourceline`` in it for the line in the file. The first segment is the document's own
    start (its root element's attributes are the document's).
    """

    text: bytes
    first_index: int
    records: int
    line_offset: int
    first: bool


def parser() -> etree.XMLParser:
    """The streaming parser's settings (see ``xml_stream.secure_iterparse``) for a whole segment."""
    return secure_parser()


def parse_segment(text: bytes, xml_parser: Any) -> Any:
    """The segment's root element; a segment that does not parse is not plain."""
    try:
        return etree.fromstring(text, xml_parser)
    except etree.XMLSyntaxError as error:
        raise NotPlain(f"a segment does not parse: {error}") from None


def check_first_root(root: Any, tag: str) -> None:
    encoding = str(root.getroottree().docinfo.encoding or "UTF-8").upper()
    if encoding not in _UTF8 or root.tag != tag or root.nsmap:
        raise NotPlain("not a UTF-8 document with a plain root")


def segments(
    stream: BinaryIO, *, root: str, record: str, max_record_bytes: int, segment_bytes: int | None = None
) -> Iterator[Segment]:
    """The document as segments, in file order."""
    end_tag = f"</{record}>".encode()
    starts = re.compile(rb"<" + re.escape(record.encode()) + rb"[\s/>]")
    size = segment_bytes or SEGMENT_BYTES
    lines = 0
    index = 1
    first = True
    carry = b""
    while True:
        block = stream.read(size)
        final = not block
        if final:
            piece, carry = carry, b""
        else:
            carry += block
            cut = carry.rfind(end_tag)
            if cut < 0:
                if len(carry) > max_record_bytes:
                    raise NotPlain(f"no {end_tag.decode()} within {max_record_bytes:,} bytes")
                continue
            cut += len(end_tag)
            piece, carry = carry[:cut], carry[cut:]
        close = b"" if final else f"</{root}>".encode()
        if first:
            body = piece.find(b"<" + root.encode())
            if body < 0 or b"<!" in piece or b"<?" in piece[body:]:
                raise NotPlain("a DOCTYPE, comments or processing instructions")
            text = piece + close
        else:
            if b"<!" in piece or b"<?" in piece:
                raise NotPlain("comments, CDATA or processing instructions between records")
            text = f"<{root}>".encode() + piece + close
        count = len(starts.findall(piece))
        yield Segment(text, index, count, lines, first)
        lines += piece.count(b"\n")
        index += count
        first = False
        if final:
            return
