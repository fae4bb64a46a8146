"""Partner formats. Each module is pure: a byte stream in, documents, records and problems out.

Nothing here imports ``dropgate`` or touches a file or the network beyond the stream it is given;
what a parser needs from outside (a place to spill rows) is passed in by the caller.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from parsers.base import Parser

if TYPE_CHECKING:
    from parsers.google.row_spill import RowSpillFactory


def _on_first_use(module: str, name: str) -> Callable[..., Parser]:
    """A factory that imports its format's module when first asked for a parser, so importing the
    handler imports no format, and a cold start imports only the formats it reads."""

    def make(*needs: Any, **options: Any) -> Parser:
        factory: Callable[..., Parser] = getattr(importlib.import_module(module), name)
        return factory(*needs, **options)

    return make


#: Built-in format name (as used in partners.yaml) → parser factory. The factories of
#: :data:`ROW_SPILLING` formats take the row spill factory, the others nothing.
FORMATS: dict[str, Callable[..., Parser]] = {
    "generic": _on_first_use("parsers.generic", "GenericInventoryParser"),
    "google-merchant": _on_first_use("parsers.google.merchant", "GoogleMerchantParser"),
    "google-local-inventory": _on_first_use("parsers.google.local", "GoogleLocalInventoryParser"),
    "amazon-inventory": _on_first_use("parsers.amazon", "AmazonInventoryParser"),
    "cxml-product-activity": _on_first_use("parsers.cxml", "CxmlProductActivityParser"),
}
#: Formats that group rows which may not fit in memory, in a row spill the caller provides
#: (parsers do no I/O of their own; see ``parsers.google.row_spill``).
ROW_SPILLING = frozenset({"google-local-inventory"})


def get_parser(format_name: str, *, row_spill: RowSpillFactory, **options: Any) -> Parser:
    """The parser for a built-in format, given ``row_spill`` if it needs one and a partner's ``options`` for the
    format (the cXML available-quantity rule); an unknown name lists the ones that exist."""
    try:
        factory = FORMATS[format_name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"unknown format '{format_name}'; known formats: {known}") from None
    return factory(row_spill, **options) if format_name in ROW_SPILLING else factory(**options)


class DeclaredFormat(NamedTuple):
    """A declarative format from ``partners.yaml``: a parser factory and the root it claims."""

    make: Callable[[], Parser]
    root: str
    namespace: str | None


def declarative_format(name: str, spec: dict[str, Any]) -> DeclaredFormat:
    """A declarative (XPath) format described in ``partners.yaml``.

    The description is validated here, once; raises ``pydantic.ValidationError`` or ``ValueError``
    naming what is wrong. A factory, not an instance: compiled XPath objects must not be shared
    between threads, so each file gets its own parser.
    """
    from parsers.declarative.parser import XPathParser
    from parsers.declarative.spec import DeclarativeFormat

    validated = DeclarativeFormat.model_validate(spec)
    XPathParser(name, validated)  # compiles every path now, so a bad one fails at start-up

    def make() -> Parser:
        return XPathParser(name, validated)

    return DeclaredFormat(make, validated.root, validated.namespace)
