"""The streaming front end that every record-per-element format plugs into.

A format says what a record is and how to read one, in a :class:`RecordScan` subclass; the front
end does the rest the same way for all of them: sniff the head and refuse another format's root
before anything is parsed, read the events through ``secure_iterparse`` behind a
:class:`RecordWindow`, count the records, free each one once it is read, and turn a syntax error or
a refused DOCTYPE into the one problem that ends the document, located inside the record it cut off
or after the last record read. Keeping this in one place is what makes "after record 3, productId
P3" and the memory bound mean the same in every format.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, cast

from lxml import etree

from parsers.base import Item, LimitExceeded, Problem, Record
from parsers.diagnostics import syntax_problem, syntax_problem_after, unknown_format_problem, utf32_problem
from parsers.doctype import DoctypeRefused
from parsers.limits import Limits
from parsers.xml_stream import Sniffed, secure_iterparse, sniff

#: What a hook gives the front end to yield; usually an empty tuple.
Items = Iterable[Item]


def release(element: Any) -> None:
    """Free an element and everything before it, so memory stays flat however long the file."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


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


def release_chain(element: Any) -> None:
    """Free the record and everything before it, at every level up to the root.

    Records may come in several containers (``<Items>`` repeated); clearing only the record's own
    siblings would keep every earlier container.
    """
    element.clear(keep_tail=False)
    node = element
    parent = node.getparent()
    while parent is not None:
        while node.getprevious() is not None:
            del parent[0]
        node, parent = parent, parent.getparent()


class RecordScan:
    """One document read record by record. A format subclasses it; each parse makes a new one.

    The hooks, called in document order (each returns what to yield, usually nothing):

    - :meth:`start` sees every start event (but a :attr:`record_tag` record's, which the front end opens
      itself) and calls :meth:`open` when the element starts a record;
    - :meth:`read` turns the record just ended into its record or its problems, and sets
      ``last_id`` when the format learns the id only by reading it;
    - :meth:`end` sees the end of every other element;
    - :meth:`cut_id` names the record a syntax error cut off, from what was read of it;
    - :meth:`finish` runs once the whole document is read.

    A hook that has reached the document's verdict sets ``stopped`` and returns its last items:
    nothing more is read, and :meth:`finish` does not run.
    """

    #: The tags the events are filtered to: the root, the records and whatever else the format reads.
    tags: tuple[str, ...] = ()
    #: The format's words for where an error between records is, as in "after record 3, productId P3".
    record_word = "record"
    id_word = "productId"
    #: Where too many bytes are read before the first record, as in "before the first product".
    before_first = "before the first record"
    #: Frees a record once it is read, with everything before it.
    release: Callable[[Any], None] = staticmethod(release)
    #: Formats whose records are every element with this tag (wherever it is) name it here: the front
    #: end then opens their records itself, without a call to :meth:`start` per record.
    record_tag: str | None = None
    #: The record's start-tag attribute that holds its id (with :attr:`record_tag`): the id is then
    #: known from the record's start, for an error inside it or a window overflow.
    id_attribute: str | None = None

    def __init__(self, limits: Limits, expects: str = "") -> None:
        self.limits = limits
        #: What the format's documents look like (the parser's ``expects``), for refusals.
        self.expects = expects
        #: Records started so far: the current record's number while it is read.
        self.index = 0
        #: The id of the record last read (or, for formats that know it early, being read).
        self.last_id: str | None = None
        #: The record element being read, between its start and its end.
        self.current: Any = None
        self.stopped = False
        self.sniffed = Sniffed()
        self.window: RecordWindow | None = None

    def items(
        self,
        stream: BinaryIO,
        *,
        accepts: Callable[[Sniffed], bool],
        refuse: Callable[[Sniffed, str], Problem] = unknown_format_problem,
    ) -> Iterator[Item]:
        """The document's items; ``accepts`` and ``refuse`` as for :func:`sniff_document`."""
        stream, self.sniffed, refused = sniff_document(stream, accepts=accepts, expects=self.expects, refuse=refuse)
        if refused is not None:
            yield refused
            return
        window = self.window = RecordWindow(stream, self.limits.max_record_bytes, after=self._after)
        events = secure_iterparse(cast(BinaryIO, window), events=("start", "end"), tag=self.tags)
        # The hot loop: one start and one end event per record, so the hooks are bound once.
        start, read, end, release_record = self.start, self.read, self.end, self.release
        record_tag, id_attribute = self.record_tag, self.id_attribute
        try:
            for event, element in events:
                if event == "start":
                    if element.tag == record_tag:
                        self.index += 1
                        self.current = element
                        if id_attribute is not None:
                            self.last_id = (element.get(id_attribute) or "").strip() or None
                        continue
                    found = start(element)
                    if found:
                        yield from found
                        if self.stopped:
                            return
                elif element is self.current:
                    self.current = None
                    window.mark()
                    yield from read(element)
                    if self.stopped:
                        return
                    release_record(element)
                else:
                    found = end(element)
                    if found:
                        yield from found
                        if self.stopped:
                            return
        except DoctypeRefused as doctype:  # before any record: nothing of the document was read
            yield doctype.problem()
            return
        except etree.XMLSyntaxError as error:
            yield self._syntax_problem(error)
            return
        yield from self.finish(events.root)

    def open(self, element: Any) -> None:
        """``element`` starts the next record."""
        self.index += 1
        self.current = element

    def read_ids(self, items: list[Record | Problem]) -> list[Record | Problem]:
        """``items`` (one record's), remembering the product id they name for "after record N" later."""
        self.last_id = items[-1].product_id if items else None
        return items

    def close(self, element: Any) -> list[Item]:
        """Read and free a record that ends other than as :attr:`current` (see the generic format)."""
        assert self.window is not None
        self.current = None
        self.window.mark()
        items = list(self.read(element))
        self.release(element)
        return items

    # -- hooks -----------------------------------------------------------------------------------

    def start(self, element: Any) -> Items:
        return ()

    def read(self, element: Any) -> Items:
        raise NotImplementedError

    def end(self, element: Any) -> Items:
        return ()

    def cut_id(self, element: Any) -> str | None:
        """The id of the record a syntax error cut off; by default the one known when it started."""
        return self.last_id

    def finish(self, root: Any) -> Items:
        """After the whole document; ``root`` is its root element (``None`` when there was none)."""
        return ()

    # -- locating ----------------------------------------------------------------------------------

    def _after(self) -> str:
        if not self.index:
            return self.before_first
        return f"after {self.record_word} {self.index}, {self.id_word} {self.last_id}"

    def _syntax_problem(self, error: etree.XMLSyntaxError) -> Problem:
        if self.current is not None:
            return syntax_problem(error, record=self.index, product_id=self.cut_id(self.current))
        return syntax_problem_after(error, self.index, self.last_id, record=self.record_word, key=self.id_word)
