"""Partner formats. Each module is pure: a byte stream in, documents, records and problems out."""

from __future__ import annotations

from parsers.base import Parser
from parsers.generic import GenericInventoryParser

#: Format name (as used in partners.yaml) → parser factory.
FORMATS: dict[str, type[Parser]] = {
    "generic": GenericInventoryParser,
}


def get_parser(format_name: str) -> Parser:
    """The parser for a configured format; an unknown name lists the ones that exist."""
    try:
        return FORMATS[format_name]()
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"unknown format '{format_name}'; known formats: {known}") from None
