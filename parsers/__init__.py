"""Partner formats. Each module is pure: a byte stream in, documents, records and problems out."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from parsers.base import Parser


def _on_first_use(module: str, name: str) -> Callable[[], Parser]:
    """A factory that imports its format's module when first asked for a parser, so importing the
    handler imports no format, and a cold start imports only the formats it reads."""

    def make() -> Parser:
        factory: Callable[[], Parser] = getattr(importlib.import_module(module), name)
        return factory()

    return make


#: Built-in format name (as used in partners.yaml) → parser factory.
FORMATS: dict[str, Callable[[], Parser]] = {
    "generic": _on_first_use("parsers.generic", "GenericInventoryParser"),
    "google-merchant": _on_first_use("parsers.google", "GoogleMerchantParser"),
    "google-local-inventory": _on_first_use("parsers.google", "GoogleLocalInventoryParser"),
    "amazon-inventory": _on_first_use("parsers.amazon", "AmazonInventoryParser"),
    "cxml-product-activity": _on_first_use("parsers.cxml", "CxmlProductActivityParser"),
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
