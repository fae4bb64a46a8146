"""A declarative format as written under ``formats:`` in partners.yaml, validated when it loads.

Validation compiles every path (``parsers.declarative.compiler``), so a loaded spec can parse.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parsers.declarative.compiler import NCNAME, Compiler
from parsers.declarative.transforms import TRANSFORMS

_YAML_BOOLEAN_HINT = "YAML reads yes/no/on/off/true/false unquoted as booleans; quote it"


def _scalar_text(value: object, what: str) -> object:
    """Configuration values are text; YAML numbers are taken as written, YAML booleans refused."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is a boolean: {_YAML_BOOLEAN_HINT}, e.g. 'yes'")
    if isinstance(value, int):
        return str(value)
    return value


class FieldSpec(BaseModel):
    """How one contract field is read from a record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, description="XPath relative to the record element, e.g. 's:Code' or '@id'.")
    transforms: list[str] = Field(default_factory=list, description=f"Applied in order; from {', '.join(TRANSFORMS)}.")
    map: dict[str, str] | None = Field(default=None, description="Partner value → contract value, after transforms.")
    default: str | None = Field(default=None, description="Used when the path finds nothing.")
    required: bool = False

    @field_validator("map", mode="before")
    @classmethod
    def _map_text(cls, value: object) -> object:
        if isinstance(value, dict):
            return {_scalar_text(k, "map key"): _scalar_text(v, f"map value for {k!r}") for k, v in value.items()}
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _default_text(cls, value: object) -> object:
        return _scalar_text(value, "default")


class DeletedSpec(BaseModel):
    """A record is a tombstone when ``path`` (trimmed) equals one of ``equals``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    equals: list[str] = Field(min_length=1)

    @field_validator("equals", mode="before")
    @classmethod
    def _equals_text(cls, value: object) -> object:
        if isinstance(value, list):
            return [_scalar_text(v, "equals value") for v in value]
        return value


class LocationsSpec(BaseModel):
    """Per-location stock: ``path`` selects the location elements, ``id``/``quantity`` are relative to each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    id: str = Field(min_length=1)
    quantity: str = Field(min_length=1)


class DeclarativeFormat(BaseModel):
    """One ``formats:`` entry of partners.yaml. Validation compiles every path, so a loaded spec can parse."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, description="Goes into every event and the ledger; bump it with every change.")
    root: str = Field(description="Local name of the root element.")
    namespace: str | None = Field(default=None, min_length=1, description="The root's namespace URI; omit for none.")
    namespaces: dict[str, str] = Field(default_factory=dict, description="Prefixes used in the paths → URIs.")
    record: str = Field(description="Child steps from the root to each record, e.g. 's:Items/s:Item'.")
    as_of: str | None = Field(default=None, description="'@attribute' of the root holding the snapshot time.")
    deleted: DeletedSpec | None = None
    fields: dict[str, FieldSpec]
    locations: LocationsSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _required_keys(cls, data: object) -> object:
        if isinstance(data, dict):
            explain = {
                "version": 'version is required: quoted text such as "1", recorded with every event; '
                "bump it whenever the spec changes",
                "root": "root is required: the local name of the document's root element, e.g. StockReport",
                "record": "record is required: the child steps from the root to each record, e.g. s:Items/s:Item",
                "fields": "fields is required: at least productId, e.g. fields: {productId: {path: '@id'}}",
            }
            missing = [message for key, message in explain.items() if key not in data]
            if missing:
                raise ValueError("; ".join(missing))
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        if isinstance(value, int | float):
            raise ValueError(f'version must be quoted text, e.g. version: "{value}" (YAML reads {value} as a number)')
        return value

    @field_validator("root")
    @classmethod
    def _root_name(cls, value: str) -> str:
        if not re.fullmatch(NCNAME, value):
            raise ValueError(f"root '{value}' must be the root element's local name without prefix, e.g. StockReport")
        return value

    @field_validator("namespaces")
    @classmethod
    def _prefixes(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, uri in value.items():
            if not re.fullmatch(NCNAME, prefix) or prefix.lower().startswith("xml"):
                raise ValueError(f"namespaces: '{prefix}' is not a usable prefix; use letters such as s or inv")
            if not uri:
                raise ValueError(f"namespaces: prefix '{prefix}' needs a namespace URI, e.g. urn:partner:stock:1")
        return value

    @model_validator(mode="after")
    def _compiles(self) -> DeclarativeFormat:
        # Compiled here only to fail at load; the parser compiles its own copy. Keeping the compiled
        # XPath objects out of the model keeps it a plain value (equality, copies, JSON schema).
        Compiler(self).compile()
        return self
