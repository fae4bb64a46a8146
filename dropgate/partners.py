"""Partner configuration: who drops where, in which format, under which policy.

One declarative file (``partners.yaml``; a path or an ``s3://`` URL in ``DROPGATE_PARTNERS``) so
that a new partner in a known format is configuration, not code, and a partner in a new XML
shape is configuration too (a declarative format under ``formats:``). It is validated at
start-up: a bad entry fails loudly, naming the partner (or format), the field and what is
allowed, instead of failing the first file of that partner.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import parsers
from dropgate.quarantine import QUARANTINE_PREFIX
from dropgate.state_objects import STATE_PREFIX
from dropgate.terminal import shown
from parsers.base import Parser
from parsers.limits import Limits

if TYPE_CHECKING:
    from parsers.google.row_spill import RowSpill, RowSpillFactory
    from parsers.xml_stream import Sniffed


#: The placeholders a key_template may use.
KEY_FIELDS = frozenset({"productId", "partnerId"})
#: The built-in format whose partners may set ``cxml:`` options.
CXML_FORMAT = "cxml-product-activity"
#: Where dropgate keeps its own objects in the drop bucket: no partner may drop files there.
RESERVED_PREFIXES = (QUARANTINE_PREFIX, STATE_PREFIX)


class PartnerConfigError(ValueError):
    """The partner configuration is unusable; the message says where and why."""


class CxmlOptions(BaseModel):
    """A cXML partner's options (docs/formats.md "cXML ProductActivityMessage"), passed to its parser."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``<Inventory>`` quantity types, tried in order: the first a product holds is its quantity.
    available_quantity: tuple[str, ...]

    @field_validator("available_quantity")
    @classmethod
    def _sellable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Imported here: loading the configuration should not import a format's module.
        from parsers.cxml_inventory import available_rule

        return available_rule(value)


class HoldDeletions(BaseModel):
    """When a full snapshot's tombstones wait for a person (docs/operating.md "Held deletions"): it would delete
    more than ``fraction`` of the partner's live keys AND more than ``minimum`` keys. ``fraction: 1``
    never holds (a snapshot cannot delete more than every key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float = Field(default=0.10, ge=0.0, le=1.0)
    minimum: int = Field(default=100, ge=0)


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    prefix: str = Field(min_length=1, description="Key prefix in the drop bucket, e.g. 'acme/'.")
    format: str
    key_template: str = "{productId}"
    policy: Literal["strict", "skip_invalid"] = "strict"
    #: full: every file is the whole catalogue, so products missing from it are deleted (tombstones).
    snapshot: Literal["full", "delta"] = "delta"
    #: A full snapshot deleting more than this holds its tombstones until approved (defaults: 10 %, 100).
    hold_deletions: HoldDeletions = HoldDeletions()
    #: Overrides of the deployment's safety limits for this partner, e.g. {max_records: 20000000}.
    limits: dict[str, int] | None = None
    #: Options of the cxml-product-activity format, e.g. which stock is available quantity.
    cxml: CxmlOptions | None = None

    @model_validator(mode="after")
    def _options_fit_the_format(self) -> Partner:
        if self.cxml is not None and self.format != CXML_FORMAT:
            raise ValueError(f"cxml options apply only to format {CXML_FORMAT}, and this partner's is '{self.format}'")
        return self

    def parser_options(self) -> dict[str, Any]:
        """What this partner's parser is built with beyond its format (nothing for most partners)."""
        return self.cxml.model_dump() if self.cxml is not None else {}

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value:
            unknown = sorted(set(value) - set(Limits.names()))
            if unknown:
                raise ValueError(f"unknown limit(s) {', '.join(unknown)}; known: {', '.join(Limits.names())}")
            if any(v < 1 for v in value.values()):
                raise ValueError("limits must be positive whole numbers")
        return value

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        """Plain ``{productId}`` and ``{partnerId}`` only: str.format would also run attribute access
        (``{productId.__class__}``) and format specs (``{productId:>3000000000}`` allocates 3 GB)."""
        try:
            parts = list(string.Formatter().parse(value))
        except ValueError as error:
            raise ValueError(f"key_template '{shown(value)}' is not a template ({error})") from None
        for _literal, name, spec, conversion in parts:
            if name is not None and (name not in KEY_FIELDS or spec or conversion):
                placeholder = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                raise ValueError(
                    f"key_template '{shown(value)}' uses {shown(placeholder)}; only the plain placeholders "
                    "{productId} and {partnerId} are allowed"
                )
        if "{productId}" not in value:
            raise ValueError("key_template must contain {productId}")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        prefix = value if value.endswith("/") else value + "/"
        segments = prefix[:-1].split("/")
        if prefix.startswith("/") or any(segment in ("", ".", "..") for segment in segments) or shown(prefix) != prefix:
            raise ValueError(f"prefix '{shown(value)}' must be a relative key prefix of plain segments, e.g. 'acme/'")
        for reserved in RESERVED_PREFIXES:
            if prefix.startswith(reserved):
                raise ValueError(f"prefix '{prefix}' lies inside {reserved}, where dropgate keeps its own objects")
        return prefix


class _PartnerFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Declarative formats (parsers.declarative), by name; partners refer to them like built-in ones.
    formats: dict[str, dict[str, Any]] = Field(default_factory=dict)
    partners: dict[str, Partner]

    def overlapping_prefixes(self) -> list[str]:
        """A prefix inside another partner's lets that partner's uploads (and FTP home) publish as this one."""
        problems = []
        for inner in self.partners.values():
            for outer in self.partners.values():
                if inner.id != outer.id and inner.prefix.startswith(outer.prefix):
                    same = "is the same as" if inner.prefix == outer.prefix else "lies inside"
                    problems.append(
                        f"  partner '{inner.id}', field 'prefix': '{inner.prefix}' {same} partner '{outer.id}''s "
                        f"prefix '{outer.prefix}', so '{outer.id}' could drop files as '{inner.id}'; give each "
                        "partner a prefix of its own"
                    )
        return problems

    @model_validator(mode="before")
    @classmethod
    def _inject_ids(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("partners"), dict):
            data = dict(data)
            data["partners"] = {
                pid: ({"id": pid, **entry} if isinstance(entry, dict) else entry)
                for pid, entry in data["partners"].items()
            }
        return data


def _errors(error: ValidationError, where: str) -> list[str]:
    """pydantic's errors as ``partner 'acme', field 'format': …`` lines."""
    lines = []
    for err in error.errors():
        loc = [str(part) for part in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if where == "file" and len(loc) >= 2 and loc[0] in ("partners", "formats"):
            owner = f"{loc[0][:-1]} '{loc[1]}'"
            field = ".".join(loc[2:])
        else:
            owner, field = where, ".".join(loc)
        lines.append(f"  {owner}" + (f", field '{field}'" if field else "") + f": {message}")
    return lines


def _unwired_row_spill() -> RowSpill:
    raise RuntimeError(
        "this format groups rows on disk, but the partner directory was built without a row spill: "
        "build it with dropgate.app.load_partners (or pass row_spill=)"
    )


class PartnerDirectory:
    """Looks partners up by id or by the key a file was dropped under, and formats by name or by
    what a document's head looks like."""

    def __init__(
        self,
        partners: list[Partner],
        formats: dict[str, Callable[[], Parser]] | None = None,
        *,
        row_spill: RowSpillFactory | None = None,
    ) -> None:
        #: Where a format that groups rows keeps them while it reads (the composition root passes the
        #: SQLite one, dropgate.adapters.row_spill): parsers do no I/O of their own.
        self.row_spill: RowSpillFactory = row_spill or _unwired_row_spill
        self._by_id = {p.id: p for p in partners}
        # No prefix lies inside another's (the configuration refuses it), so at most one matches.
        self._by_prefix = sorted(partners, key=lambda p: len(p.prefix), reverse=True)
        #: Declarative formats from the configuration (parser factories); built-in ones are looked up in
        #: parsers.FORMATS at each call, so a parser fix (or the demo's stand-in) applies without a reload.
        self.declared = dict(formats or {})

    def __iter__(self) -> Iterator[Partner]:
        return iter(self._by_id.values())

    def get(self, partner_id: str) -> Partner:
        try:
            return self._by_id[partner_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id)) or "none"
            raise PartnerConfigError(f"unknown partner '{partner_id}'; configured partners: {known}") from None

    def for_key(self, key: str) -> Partner | None:
        return next((p for p in self._by_prefix if key.startswith(p.prefix)), None)

    def prefixes(self) -> list[str]:
        return sorted(p.prefix for p in self._by_id.values())

    # -- formats ---------------------------------------------------------------------------------
    def format_names(self) -> list[str]:
        return sorted(parsers.FORMATS) + sorted(self.declared)

    def parser(self, format_name: str) -> Parser:
        """The parser for a format name (declarative or built-in), as for a file no partner claims."""
        if format_name in self.declared:
            return self.declared[format_name]()
        return parsers.get_parser(format_name, row_spill=self.row_spill)

    def parser_for(self, partner: Partner) -> Parser:
        """The parser for a partner's files: its format, with the partner's options for it (``cxml:``)."""
        if partner.format in self.declared:
            return self.declared[partner.format]()
        return parsers.get_parser(partner.format, row_spill=self.row_spill, **partner.parser_options())

    def parsers(self) -> Iterator[tuple[str, Parser]]:
        """Every known format: declarative ones first (they are the more specific)."""
        for name in sorted(self.declared):
            yield name, self.declared[name]()
        for name in sorted(parsers.FORMATS):
            yield name, parsers.get_parser(name, row_spill=self.row_spill)

    def known_formats(self) -> str:
        """``generic (<inventory> with no namespace), …`` for unknown_format messages."""
        return "; ".join(f"{name} ({parser.expects})" for name, parser in self.parsers())

    def detect(self, sniffed: Sniffed) -> tuple[str, Parser, Partner | None] | None:
        """The format a document's head matches, and the partner when only one partner uses that
        format (a declarative format is usually one partner's); ``None`` when nothing matches."""
        for name, parser in self.parsers():
            if parser.matches(sniffed):
                users = [p for p in self._by_id.values() if p.format == name]
                return name, parser, users[0] if len(users) == 1 and name in self.declared else None
        return None

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_yaml(
        cls, text: str, *, origin: str = "partners.yaml", row_spill: RowSpillFactory | None = None
    ) -> PartnerDirectory:
        import yaml  # only when the configuration is read, not on every import of the handler

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PartnerConfigError(f"{origin} is not valid YAML: {error}") from None
        try:
            parsed = _PartnerFile.model_validate(data)
        except ValidationError as error:
            raise PartnerConfigError(f"{origin} is invalid:\n" + "\n".join(_errors(error, "file"))) from None
        problems: list[str] = parsed.overlapping_prefixes()
        declared: dict[str, Callable[[], Parser]] = {}
        roots: dict[tuple[str, str | None], str] = {}
        for name, spec in parsed.formats.items():
            if name in parsers.FORMATS:
                problems.append(f"  format '{name}': the name is a built-in format's; choose another")
                continue
            try:
                found = parsers.declarative_format(name, spec)
            except ValidationError as error:
                problems.extend(_errors(error, f"format '{name}'"))
                continue
            except ValueError as error:
                problems.append(f"  format '{name}': {error}")
                continue
            declared[name] = found.make
            other = roots.setdefault((found.root, found.namespace), name)
            if other != name:
                # A file under no prefix is routed by its root: two formats claiming one would be a coin toss.
                where = f"<{found.root}>" + (f" in namespace {found.namespace}" if found.namespace else "")
                problems.append(
                    f"  format '{name}', field 'root': format '{other}' already has root {where}; "
                    "partners that share a shape should share one format"
                )
        known = sorted(parsers.FORMATS) + sorted(parsed.formats)
        for partner in parsed.partners.values():
            if partner.format not in known:
                problems.append(
                    f"  partner '{partner.id}', field 'format': unknown format '{partner.format}'; "
                    f"known formats: {', '.join(known)}"
                )
        if problems:
            raise PartnerConfigError(f"{origin} is invalid:\n" + "\n".join(problems))
        return cls(list(parsed.partners.values()), declared, row_spill=row_spill)

    @classmethod
    def load(cls, location: str, *, row_spill: RowSpillFactory | None = None) -> PartnerDirectory:
        """Load from a local path (``s3://`` locations are read by :func:`dropgate.app.load_partners`)."""
        path = Path(location)
        if not path.exists():
            raise PartnerConfigError(f"partner configuration not found at {location} (set DROPGATE_PARTNERS)")
        return cls.from_yaml(path.read_text(encoding="utf-8"), origin=str(path), row_spill=row_spill)
