"""The stand-in parser for a file that matches no known format.

Routing picks it when a file is under no partner prefix and its root element and namespace match
none of the formats; it yields the one ``unknown_format`` problem that quarantines the file, naming
what the file is and every format dropgate knows, so the partner engineer sees the choices.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from parsers.base import Item
from parsers.diagnostics import unknown_format_problem
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.xml_stream import Sniffed


class UnknownFormat:
    name = "unknown-format"
    version = "0"
    expects = "the root element of a format dropgate knows"

    def __init__(self, sniffed: Sniffed, known: str) -> None:
        self.sniffed = sniffed
        self.known = known

    def matches(self, sniffed: Sniffed) -> bool:
        return False

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        yield unknown_format_problem(self.sniffed, self.expects, known=self.known)
