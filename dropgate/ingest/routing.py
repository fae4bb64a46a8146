"""Which partner a file belongs to and which parser reads it.

``--partner`` first, else the key prefix, else the format whose root element and namespace the
file's head matches (only the head is read), else ``unknown_format`` (the parse says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dropgate.ingest.source import open_object, payload_of
from dropgate.partners import Partner, PartnerDirectory
from dropgate.storage import ObjectMeta, ObjectRef, ObjectStore
from parsers.base import InputRejected, Parser
from parsers.limits import Limits
from parsers.unknown import UnknownFormat
from parsers.xml_stream import sniff, sniff_root

#: Parses a file under no prefix whose head cannot be read (not XML, UTF-16, …): its problems say why.
DEFAULT_FORMAT = "generic"


@dataclass(frozen=True, slots=True)
class Route:
    """Which partner a file belongs to and which parser reads it, and how that was decided."""

    partner: Partner | None
    parser: Parser
    #: given (--partner), prefix, detected (root element and namespace), unknown (no format matched)
    how: Literal["given", "prefix", "detected", "unknown"]


@dataclass(frozen=True, slots=True)
class Router:
    partners: PartnerDirectory
    store: ObjectStore
    limits: Limits

    def route(
        self, ref: ObjectRef, meta: ObjectMeta, *, partner_id: str | None = None, read_from: ObjectRef | None = None
    ) -> Route:
        """The partner and parser for a file (``read_from``: read the head from a byte-identical copy)."""
        partners = self.partners
        if partner_id is not None:
            partner = partners.get(partner_id)
            return Route(partner, partners.parser_for(partner), "given")
        owner = partners.for_key(ref.key)
        if owner is not None:
            return Route(owner, partners.parser_for(owner), "prefix")
        try:
            with open_object(self.store, ref, meta, read_from) as raw:
                stream, sniffed = sniff(payload_of(raw, self.limits).stream)
                if sniffed.root is None:
                    sniffed = sniff_root(stream)
        except InputRejected:
            sniffed = None  # the parse proper reports what is wrong with the bytes
        if sniffed is None or sniffed.root is None:
            return Route(None, partners.parser(DEFAULT_FORMAT), "unknown")
        found = partners.detect(sniffed)
        if found is None:
            return Route(None, UnknownFormat(sniffed, partners.known_formats()), "unknown")
        _, parser, detected_owner = found
        return Route(detected_owner, parser, "detected")
