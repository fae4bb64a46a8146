"""Partner formats. Each module is pure: a byte stream in, documents, records and problems out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from parsers.amazon import AmazonInventoryParser
from parsers.base import Parser
from parsers.cxml import CxmlProductActivityParser
from parsers.generic import GenericInventoryParser
from parsers.google import GoogleLocalInventoryParser, GoogleMerchantParser

#: Built-in format name (as used in partners.yaml) → parser factory.
FORMATS: dict[str, type[Parser]] = {
    "generic": GenericInventoryParser,
    "google-merchant": GoogleMerchantParser,
    "google-local-inventory": GoogleLocalInventoryParser,
    "amazon-inventory": AmazonInventoryParser,
    "cxml-product-activity": CxmlProductActivityParser,
}


def get_parser(format_name: str) -> Parser:
    """The parser for a built-in format; an unknown name lists the ones that exist."""
    try:
        return FORMATS[format_name]()
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"unknown format '{format_name}'; known formats: {known}") from None


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
    from parsers.declarative import DeclarativeFormat, XPathParser

    validated = DeclarativeFormat.model_validate(spec)
    XPathParser(name, validated)  # compiles every path now, so a bad one fails at start-up

    def make() -> Parser:
        return XPathParser(name, validated)

    return DeclaredFormat(make, validated.root, validated.namespace)
