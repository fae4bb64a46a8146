"""Declarative XPath formats: a partner in a new XML shape is onboarded by configuration alone.

A format is described under ``formats:`` in partners.yaml (see :class:`DeclarativeFormat`): the
root element, the child-step path to each record, and one XPath per contract field, with a few
transforms and an optional value map. Everything that can be checked without a file is checked when
the configuration loads (XPath syntax, namespace prefixes, transforms, map values, defaults), so a
mistake fails the deployment, not the partner's first drop.

Streaming and hardening are the generic parser's: ``secure_iterparse`` filtered to the root and the
record tag, each record released once emitted, the same limits and located diagnostics. The record
path is restricted to child steps precisely so that records can be recognised while streaming
(their ancestor chain is compared with the path) instead of evaluating XPath over a whole document.

XPath 1.0 rule worth knowing: an unprefixed name means "no namespace". When the partner's document
uses a default namespace (``xmlns="urn:…"``), declare a prefix for it under ``namespaces`` and use
it in every path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, BinaryIO, cast

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parsers import fields
from parsers.base import Document, Item, ParserFailed, Problem, Record, truncate
from parsers.doctype import DoctypeRefused
from parsers.fields import AVAILABILITY_VALUES, FieldError
from parsers.limits import DEFAULT_LIMITS, Limits
from parsers.xml_stream import (
    RecordWindow,
    Sniffed,
    check_attributes,
    check_depth,
    foreign_root_problem,
    has_entity_reference,
    local_name,
    secure_iterparse,
    sniff_document,
    source_line,
    syntax_problem,
    syntax_problem_after,
    too_much_text,
)

#: Contract fields a format may map, in the order they are read. ``currency`` is the price's.
FIELD_NAMES = ("productId", "sku", "name", "quantity", "availability", "price", "currency")
TRANSFORMS = ("trim", "lower", "upper", "integer", "decimal", "currency", "price")
_TEXT_TRANSFORMS = ("trim", "lower", "upper")
#: Transforms that turn text into a contract value: the only field each is valid on, and what it makes.
_CONVERTING = {
    "integer": ("quantity", "a whole number"),
    "decimal": ("price", "a decimal amount"),
    "currency": ("currency", "an ISO 4217 currency code"),
    "price": ("price", "an amount and a currency from a value such as '15.00 USD'"),
}
_NCNAME = r"[A-Za-z_][\w.\-]*"
_QNAME = re.compile(rf"(?:({_NCNAME}):)?({_NCNAME})")
_ATTRIBUTE = re.compile(rf"@(?:({_NCNAME}):)?({_NCNAME})")
_YAML_BOOLEAN_HINT = "YAML reads yes/no/on/off/true/false unquoted as booleans; quote it"
#: A call of a prefixed function (an extension such as EXSLT's ``re:test(``), and XPath string literals.
_EXTENSION_CALL = re.compile(r"(?<![\w.:-])([A-Za-z_][\w.-]*:[A-Za-z_][\w.-]*)\s*\(")
_STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")


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
        if not re.fullmatch(_NCNAME, value):
            raise ValueError(f"root '{value}' must be the root element's local name without prefix, e.g. StockReport")
        return value

    @field_validator("namespaces")
    @classmethod
    def _prefixes(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, uri in value.items():
            if not re.fullmatch(_NCNAME, prefix) or prefix.lower().startswith("xml"):
                raise ValueError(f"namespaces: '{prefix}' is not a usable prefix; use letters such as s or inv")
            if not uri:
                raise ValueError(f"namespaces: prefix '{prefix}' needs a namespace URI, e.g. urn:partner:stock:1")
        return value

    @model_validator(mode="after")
    def _compiles(self) -> DeclarativeFormat:
        # Compiled here only to fail at load; the parser compiles its own copy. Keeping the compiled
        # XPath objects out of the model keeps it a plain value (equality, copies, JSON schema).
        _Compiler(self).compile()
        return self


# -- load time: every path compiled and checked once --------------------------------------------


class _SubfieldError(FieldError):
    """A conversion error that belongs to a sub-field (``price.currency``) rather than the field itself."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class _Path:
    """A compiled path; simple child steps (optionally ending in ``@attr``) skip XPath for speed."""

    text: str
    xpath: etree.XPath
    #: ElementPath for ``find`` (``{ns}A/{ns}B``), ``""`` for the element itself, ``None`` for XPath.
    steps: str | None
    attribute: str | None
    #: ``steps`` is one child step.
    single: bool = False

    def hit(self, element: Any, children: dict[Any, Any] | None = None) -> tuple[str | None, Any, bool]:
        """First result as text, the element it came from (for its line), and whether it is element text.

        ``children`` (tag → first child of ``element``) turns one-step paths into a dict lookup: a
        record is read by several paths, and one pass over its children is cheaper than a ``find`` each.
        """
        if self.steps is not None:
            if not self.steps:
                node = element
            elif children is not None and self.single:
                node = children.get(self.steps)
            else:
                node = element.find(self.steps)
            if node is None:
                return None, None, False
            if self.attribute is None:
                return node.text, node, True
            return node.get(self.attribute), node, False
        result = self.xpath(element)
        if isinstance(result, list):
            if not result:
                return None, None, False
            first = result[0]
            if isinstance(first, etree._Element):
                return first.text, first, True
            owner = first.getparent() if hasattr(first, "getparent") else None
            return str(first), owner, False
        if isinstance(result, bool):
            return ("true" if result else "false"), None, False
        if isinstance(result, float):
            return (str(int(result)) if result.is_integer() else str(result)), None, False
        return str(result), None, False

    def elements(self, element: Any) -> list[Any]:
        if self.steps is not None and self.attribute is None:
            return cast(list[Any], element.findall(self.steps)) if self.steps else [element]
        result = self.xpath(element)
        return [node for node in result if isinstance(node, etree._Element)] if isinstance(result, list) else []


@dataclass(frozen=True, slots=True)
class _FieldRule:
    name: str
    path: _Path
    transforms: tuple[str, ...]
    mapping: dict[str, str] | None
    required: bool
    finish: Callable[[Any], Any]
    #: The default, converted once at load; ``None`` for no default.
    default_value: Any = None

    def convert(self, raw: str) -> Any:
        """Transforms, then the map, then the contract conversion; raises FieldError with the reason."""
        value: Any = raw
        for name in self.transforms:
            value = _apply(name, value)
        if self.mapping is not None:
            try:
                value = self.mapping[value]
            except KeyError:
                keys = ", ".join(self.mapping)
                raise FieldError(f"'{value}' is not in the format's map; expected one of {keys}") from None
        return self.finish(value)


@dataclass(frozen=True, slots=True)
class _Compiled:
    root_tag: str
    #: Qualified tags of the record path's steps, outermost first (the last is the record's).
    step_tags: tuple[str, ...]
    step_locals: tuple[str, ...]
    record_path: str
    as_of_attribute: str | None
    as_of_path: str | None
    fields: dict[str, _FieldRule]
    deleted: tuple[_Path, frozenset[str]] | None
    locations: tuple[_Path, _Path, _Path] | None


def _apply(name: str, value: Any) -> Any:
    if name == "trim":
        return value.strip()
    if name == "lower":
        return value.lower()
    if name == "upper":
        return value.upper()
    if name == "integer":
        return _quantity(value)
    if name == "decimal":
        return fields.decimal_amount(value)
    if name == "currency":
        return fields.currency_code(value)
    return _price_pair(value)


def _quantity(value: Any) -> int:
    return value if isinstance(value, int) else fields.whole_number(value)


def _price_pair(value: Any) -> tuple[str, str]:
    """``15.00 USD`` or ``USD 15.00`` → (amount, currency)."""
    if isinstance(value, tuple):
        return cast(tuple[str, str], value)
    parts = str(value).split()
    if len(parts) != 2:
        raise FieldError(
            f"'{str(value).strip()}' is not a price with its currency; expected an amount and an ISO 4217 code "
            "separated by a space, e.g. 15.00 USD"
        )
    amount, currency = (parts[1], parts[0]) if parts[0].isalpha() else (parts[0], parts[1])
    try:
        currency = fields.currency_code(currency)
    except FieldError as error:
        raise _SubfieldError("price.currency", f"price.currency {error}") from None
    return fields.decimal_amount(amount), currency


def _amount(value: Any) -> Any:
    return value if isinstance(value, tuple) else fields.decimal_amount(value)


def _currency(value: Any) -> str:
    return fields.currency_code(value)


def _availability_value(value: Any) -> str:
    return fields.availability(value)


#: The contract conversion each field's value goes through last (after transforms and map).
_FINISH: dict[str, Callable[[Any], Any]] = {
    "productId": fields.text_value,
    "sku": fields.text_value,
    "name": fields.text_value,
    "quantity": _quantity,
    "availability": _availability_value,
    "price": _amount,
    "currency": _currency,
}


class _Compiler:
    """Checks a spec as a whole; collects every mistake so one reload shows them all."""

    def __init__(self, spec: DeclarativeFormat) -> None:
        self.spec = spec
        self.errors: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def qualify(self, where: str, prefix: str | None, local: str) -> str:
        if prefix is None:
            return local
        uri = self.spec.namespaces.get(prefix)
        if uri is None:
            self.fail(where, f"prefix '{prefix}' is not declared; declare it under namespaces, e.g. {prefix}: urn:…")
            return local
        return f"{{{uri}}}{local}"

    def path(self, where: str, text: str, *, elements: bool = False) -> _Path | None:
        text = text.strip()
        if text.startswith("/"):
            self.fail(where, f"path '{text}' must be relative to the record element, e.g. s:Code or @id")
            return None
        try:
            # XPath 1.0 alone: lxml's EXSLT regular expressions (re:test, re:replace) backtrack without
            # bound on a partner's value (over 60 s on 31 characters), so they are not registered, and
            # a call to any prefixed (extension) function is refused now, not when a record reaches it.
            called = _EXTENSION_CALL.search(_STRING_LITERAL.sub("''", text))
            if called:
                raise etree.XPathSyntaxError(f"Unregistered function {called.group(1)}()")
            xpath = etree.XPath(text, namespaces=self.spec.namespaces, regexp=False, smart_strings=False)
            result = xpath(etree.Element("record"))
        except etree.XPathError as error:
            self.fail(
                where,
                f"'{text}' is not a usable XPath 1.0 expression ({error}; extension functions such as EXSLT's "
                "re: are not available); e.g. s:Code or @id",
            )
            return None
        if elements and not isinstance(result, list):
            self.fail(where, f"'{text}' must select elements, e.g. s:Stores/s:Store")
            return None
        steps: str | None = None
        attribute: str | None = None
        parts = text.removeprefix("./").split("/")
        last = _ATTRIBUTE.fullmatch(parts[-1])
        if last:
            parts = parts[:-1]
        matches = [_QNAME.fullmatch(part) for part in parts]
        if all(match is not None for match in matches):
            steps = "/".join(self.qualify(where, m.group(1), m.group(2)) for m in matches if m is not None)
            if last:
                attribute = self.qualify(where, last.group(1), last.group(2))
        single = steps is not None and len(parts) == 1
        return _Path(text=text.removeprefix("./"), xpath=xpath, steps=steps, attribute=attribute, single=single)

    def compile(self) -> _Compiled:
        spec = self.spec
        root_tag = f"{{{spec.namespace}}}{spec.root}" if spec.namespace else spec.root
        step_tags: list[str] = []
        step_locals: list[str] = []
        for step in spec.record.split("/"):
            match = _QNAME.fullmatch(step)
            if not match:
                self.fail(
                    "record",
                    f"'{spec.record}' must be child steps from the root such as s:Items/s:Item or Items/Item "
                    "(no //, predicates, axes or functions), so records can be recognised while streaming",
                )
                step_tags, step_locals = [], []
                break
            step_tags.append(self.qualify("record", match.group(1), match.group(2)))
            step_locals.append(match.group(2))
        as_of_attribute = None
        if spec.as_of is not None:
            match = _ATTRIBUTE.fullmatch(spec.as_of.strip())
            if match:
                as_of_attribute = self.qualify("as_of", match.group(1), match.group(2))
            else:
                self.fail(
                    "as_of", f"'{spec.as_of}' must be an attribute of the root element, written @name, e.g. @generated"
                )
        rules = self.field_rules()
        deleted = None
        if spec.deleted is not None:
            deleted_path = self.path("deleted.path", spec.deleted.path)
            if deleted_path is not None:
                deleted = (deleted_path, frozenset(value.strip() for value in spec.deleted.equals))
        locations = None
        if spec.locations is not None:
            found = (
                self.path("locations.path", spec.locations.path, elements=True),
                self.path("locations.id", spec.locations.id),
                self.path("locations.quantity", spec.locations.quantity),
            )
            if found[0] is not None and found[1] is not None and found[2] is not None:
                locations = (found[0], found[1], found[2])
        if self.errors:
            raise ValueError("; ".join(self.errors))
        return _Compiled(
            root_tag=root_tag,
            step_tags=tuple(step_tags),
            step_locals=tuple(step_locals),
            record_path="/" + "/".join((spec.root, *step_locals)),
            as_of_attribute=as_of_attribute,
            as_of_path=f"/{spec.root}/{spec.as_of.strip()}" if spec.as_of else None,
            fields=rules,
            deleted=deleted,
            locations=locations,
        )

    def field_rules(self) -> dict[str, _FieldRule]:
        spec = self.spec
        unknown = [name for name in spec.fields if name not in FIELD_NAMES]
        for name in unknown:
            self.fail(f"fields.{name}", f"unknown field '{name}'; fields allowed: {', '.join(FIELD_NAMES)}")
        if "productId" not in spec.fields:
            self.fail("fields.productId", "productId is required: the path to each record's id, e.g. {path: '@id'}")
        rules: dict[str, _FieldRule] = {}
        for name in FIELD_NAMES:
            entry = spec.fields.get(name)
            if entry is not None:
                rule = self.field_rule(name, entry)
                if rule is not None:
                    rules[name] = rule
        price = spec.fields.get("price")
        if price is not None and "price" in price.transforms:
            if "currency" in spec.fields:
                self.fail(
                    "fields.currency",
                    "price's 'price' transform reads the currency from the price value; remove fields.currency",
                )
        elif price is not None and "currency" not in spec.fields:
            self.fail(
                "fields.price",
                "without the 'price' transform a price is an amount, so fields.currency is required "
                "(a path, or a default such as USD); or add the 'price' transform for values like '15.00 USD'",
            )
        if price is None and "currency" in spec.fields:
            self.fail("fields.currency", "currency is the price's currency; it needs fields.price")
        return rules

    def field_rule(self, name: str, entry: FieldSpec) -> _FieldRule | None:
        where = f"fields.{name}"
        errors_before = len(self.errors)
        allowed = [t for t in TRANSFORMS if t in _TEXT_TRANSFORMS or _CONVERTING[t][0] == name]
        for position, transform in enumerate(entry.transforms):
            if transform not in TRANSFORMS:
                self.fail(
                    f"{where}.transforms", f"unknown transform '{transform}'; allowed on {name}: {', '.join(allowed)}"
                )
            elif transform in _CONVERTING:
                target, makes = _CONVERTING[transform]
                if target != name:
                    self.fail(
                        f"{where}.transforms",
                        f"'{transform}' makes {makes} and is only valid on {target}; "
                        f"allowed on {name}: {', '.join(allowed)}",
                    )
                elif position != len(entry.transforms) - 1:
                    self.fail(
                        f"{where}.transforms", f"'{transform}' converts the text, so it must be the last transform"
                    )
                elif entry.map is not None:
                    self.fail(
                        f"{where}.map",
                        f"a map applies to text after the transforms; remove '{transform}' "
                        f"({name} is converted after the map anyway)",
                    )
        if name == "availability" and entry.map is not None:
            bad = {k: v for k, v in entry.map.items() if v not in AVAILABILITY_VALUES}
            for key, value in bad.items():
                self.fail(
                    f"{where}.map",
                    f"'{key}' maps to '{value}', which is not a contract availability; "
                    f"expected one of {', '.join(AVAILABILITY_VALUES)}",
                )
        explicitly_optional = "required" in entry.model_fields_set and not entry.required
        if name == "productId" and (entry.default is not None or explicitly_optional):
            self.fail(where, "productId is always required and takes no default: every record carries its own id")
        if entry.required and entry.default is not None:
            self.fail(where, "required and default exclude each other: a default fills in a missing value")
        path = self.path(f"{where}.path", entry.path)
        if path is None or len(self.errors) > errors_before:
            return None
        rule = _FieldRule(
            name=name,
            path=path,
            transforms=tuple(entry.transforms),
            mapping=entry.map,
            required=entry.required or name == "productId",
            finish=_FINISH[name],
        )
        text_steps = [t for t in entry.transforms if t in _TEXT_TRANSFORMS]
        for key in entry.map or {}:
            transformed = key
            for transform in text_steps:
                transformed = _apply(transform, transformed)
            if transformed != key:
                self.fail(
                    f"{where}.map",
                    f"key '{key}' can never match: the transforms ({', '.join(text_steps)}) turn every value "
                    f"into something like '{transformed}'; write the key as '{transformed}'",
                )
        if entry.map is not None and name != "availability":
            for key, value in entry.map.items():
                try:
                    _FINISH[name](value)
                except FieldError as error:
                    self.fail(f"{where}.map", f"'{key}' maps to {name} {error}")
        if entry.default is not None:
            try:
                default_value = rule.convert(entry.default)
            except FieldError as error:
                self.fail(f"{where}.default", f"{name} {error}")
            else:
                rule = replace(rule, default_value=default_value)
        return rule


# -- parse time -----------------------------------------------------------------------------------


class XPathParser:
    """Parser for one declarative format; ``version`` is the spec's, so a spec change reprocesses."""

    def __init__(self, name: str, spec: DeclarativeFormat) -> None:
        self.name = name
        self.version = spec.version
        self.spec = spec
        self.rules = _Compiler(spec).compile()
        where = f" in namespace {spec.namespace}" if spec.namespace else " with no namespace"
        self.expects = f"<{spec.root}>{where} (declarative format {name})"

    def matches(self, sniffed: Sniffed) -> bool:
        return sniffed.root == self.spec.root and sniffed.namespace == self.spec.namespace

    def parse(self, stream: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Iterator[Item]:
        stream, _, refused = sniff_document(stream, accepts=self.matches, expects=self.expects)
        if refused is not None:
            yield refused
            return
        rules = self.rules
        record_tag = rules.step_tags[-1]
        record_local = rules.step_locals[-1]
        index = 0
        current: Any = None
        current_id: str | None = None
        seen_root = False
        misplaced_reported = False
        window = RecordWindow(
            stream,
            limits.max_record_bytes,
            after=lambda: f"after record {index}, productId {current_id}" if index else "before the first record",
        )
        # ``{*}`` also yields same-named records in another namespace: a likely prefix mistake, reported once.
        context = secure_iterparse(
            cast(BinaryIO, window), events=("start", "end"), tag=(rules.root_tag, "{*}" + record_local)
        )
        try:
            for event, element in context:
                if not seen_root:
                    if element.getparent() is not None or element.tag != rules.root_tag:
                        yield foreign_root_problem(element.getroottree().getroot(), self.expects)
                        return
                    seen_root = True
                    check_attributes(element, limits, path=f"/{self.spec.root}")
                    yield from self._document(element)
                    continue
                if event == "start":
                    if element.tag == record_tag and self._is_record(element, rules.step_tags):
                        index += 1
                        current = element
                        current_id = self._early_id(element)
                    elif not misplaced_reported and self._is_record(element, rules.step_locals, local=True):
                        misplaced_reported = True
                        yield self._misplaced(element)
                    continue
                if element is current:
                    current = None
                    window.mark()
                    reader = _RecordReader(self, element, index, limits)
                    yield from reader.read()
                    current_id = reader.product_id  # for "after record N, productId …" in later errors
                    _release_chain(element)
        except DoctypeRefused as doctype:  # before any record: nothing of the document was read
            yield doctype.problem()
            return
        except etree.XMLSyntaxError as error:
            if current is not None:
                yield syntax_problem(error, record=index, product_id=current_id or self._partial_id(current))
            else:
                yield syntax_problem_after(error, index, current_id)
            return
        if not seen_root and context.root is not None:
            yield foreign_root_problem(context.root, self.expects)

    @staticmethod
    def _is_record(element: Any, tags: tuple[str, ...], *, local: bool = False) -> bool:
        """Whether the ancestor chain is exactly root + the record steps (same-named elements elsewhere are not)."""
        node = element
        for tag in reversed(tags):
            if node is None or (local_name(node.tag) if local else node.tag) != tag:
                return False
            node = node.getparent()
        return node is not None and node.getparent() is None

    def _early_id(self, element: Any) -> str | None:
        """The productId when it is an attribute of the record, known at its start (for syntax errors)."""
        path = self.rules.fields["productId"].path
        if path.steps == "" and path.attribute is not None:
            return (element.get(path.attribute) or "").strip() or None
        return None

    def _partial_id(self, element: Any) -> str | None:
        """The productId from the part of a broken record that was read, if it got that far."""
        try:
            raw, _, _ = self.rules.fields["productId"].path.hit(element)
        except (etree.XPathError, ValueError):
            return None
        return (raw or "").strip() or None

    def _misplaced(self, element: Any) -> Problem:
        """The record path's local names match but a namespace does not: name the first step that differs."""
        chain = [element]
        while len(chain) < len(self.rules.step_tags):
            chain.append(chain[-1].getparent())
        chain.reverse()
        position, node = next((i, node) for i, node in enumerate(chain) if node.tag != self.rules.step_tags[i])

        def namespace_of(tag: str) -> str:
            return f"namespace {tag[1:].partition('}')[0]}" if tag.startswith("{") else "no namespace"

        found, wanted = str(node.tag), self.rules.step_tags[position]
        at = "/" + "/".join((self.spec.root, *self.rules.step_locals[: position + 1]))
        return Problem(
            kind="validation",
            message=(
                f"<{local_name(found)}> at {at} is in {namespace_of(found)}, but the record path "
                f"'{self.spec.record}' of declarative format {self.name} expects {namespace_of(wanted)} there; "
                "these elements are not read as records (check the record path's prefixes and namespaces)"
            ),
            line=source_line(node),
            path=at,
            field="record",
            value=truncate(found),
        )

    def _document(self, root: Any) -> Iterator[Item]:
        as_of: datetime | None = None
        attribute = self.rules.as_of_attribute
        if attribute is not None:
            raw = root.get(attribute)
            if raw is not None:
                try:
                    as_of = fields.timestamp(raw)
                except FieldError as error:
                    yield Problem(
                        kind="validation",
                        message=f"asOf ({self.spec.as_of}) {error}",
                        line=source_line(root),
                        path=self.rules.as_of_path,
                        field="asOf",
                        value=truncate(raw),
                    )
        yield Document(root=self.spec.root, namespace=self.spec.namespace, as_of=as_of)


def _release_chain(element: Any) -> None:
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


_MISSING = object()


class _RecordReader:
    """Reads one record's fields and collects its problems; a record with any problem yields no Record."""

    def __init__(self, parser: XPathParser, element: Any, index: int, limits: Limits) -> None:
        self.parser = parser
        self.element = element
        self.index = index
        self.limits = limits
        self.line: int | None = source_line(element)
        self.path = f"{parser.rules.record_path}[{index}]"
        self.product_id: str | None = None
        self.problems: list[Problem] = []
        #: Tag → first child with it (reversed, so an earlier child wins), for one-step paths.
        self.children: dict[Any, Any] = {child.tag: child for child in reversed(element)}

    def problem(self, field: str, message: str, *, value: object = None, node: Any = None, sub: str = "") -> None:
        line = source_line(node) if node is not None else None
        self.problems.append(
            Problem(
                kind="validation",
                message=message,
                line=line or self.line,
                record=self.index,
                product_id=self.product_id,
                path=self.path + (f"/{sub}" if sub else ""),
                field=field,
                value=truncate(value),
            )
        )

    def raw(self, path: _Path, field: str, context: Any, sub: str) -> tuple[str | None, Any]:
        """The path's first result as text (``None`` when nothing or empty), checked against the limits."""
        raw, node, is_text = path.hit(context, self.children if context is self.element else None)
        if is_text and len(node) and has_entity_reference(node):
            self.problems.append(
                Problem(
                    kind="security_limit",
                    message=f"{field} ({path.text}) contains an entity reference; entities are never expanded: "
                    "send literal text",
                    line=source_line(node),
                    record=self.index,
                    product_id=self.product_id,
                    path=f"{self.path}/{sub}",
                    field=field,
                )
            )
            return None, node
        if raw is not None and len(raw) > self.limits.max_text_chars:
            raise too_much_text(
                f"{field} ({path.text})",
                len(raw),
                self.limits,
                line=(source_line(node) if node is not None else None) or self.line,
                record=self.index,
                product_id=self.product_id,
                path=f"{self.path}/{sub}",
            )
        return (raw or None), node

    def value(self, rule: _FieldRule) -> Any:
        """The field's contract value; ``_MISSING`` when absent (no default); ``None`` after a problem."""
        raw, node = self.raw(rule.path, rule.name, self.element, rule.path.text)
        if raw is not None:
            try:
                value = rule.convert(raw)
            except _SubfieldError as error:
                self.problem(error.field, str(error), value=raw, node=node, sub=rule.path.text)
                return None
            except FieldError as error:
                self.problem(rule.name, f"{rule.name} {error}", value=raw, node=node, sub=rule.path.text)
                return None
            except Exception as error:  # a transform or converter bug: quarantine naming the field
                where = {"record": self.index, "product_id": self.product_id}
                raise ParserFailed(error, field=rule.name, **where) from error
            if value is not None:
                return value
        if rule.default_value is not None:
            return rule.default_value
        if rule.required and rule.name != "productId":
            self.problem(
                rule.name,
                f"{rule.name} is required, but '{rule.path.text}' finds nothing (or only blanks) in this record",
                value=raw,
                node=node,
                sub=rule.path.text,
            )
        return _MISSING

    def read(self) -> Iterator[Item]:
        rules = self.parser.rules
        element = self.element
        check_attributes(element, self.limits, path=self.path, record=self.index)
        check_depth(element, self.limits, path=self.path, record=self.index)
        id_rule = rules.fields["productId"]
        product_id = self.value(id_rule)
        if product_id is _MISSING:
            self.problem(
                "productId",
                f"record has no productId: '{id_rule.path.text}' finds nothing (or only blanks); "
                "every record needs a non-empty id",
                sub=id_rule.path.text,
            )
        elif isinstance(product_id, str):
            self.product_id = product_id
        if rules.deleted is not None and self.deleted(*rules.deleted):
            if not self.problems and self.product_id is not None:
                yield Record(index=self.index, product_id=self.product_id, fields=None, line=self.line, path=self.path)
            yield from self.problems
            return
        values: dict[str, Any] = {}
        for name, rule in rules.fields.items():
            if name != "productId":
                values[name] = self.value(rule)
        problems_before = len(self.problems)
        location_list = self.locations(*rules.locations) if rules.locations is not None else None
        if len(self.problems) > problems_before:
            quantity = None  # the locations' sum is unknown; their problems say why
        else:
            quantity = self.quantity(values.get("quantity", _MISSING), location_list)
        availability = values.get("availability", _MISSING)
        if availability is _MISSING:
            if quantity is _MISSING:
                self.problem(
                    "availability",
                    "record has neither a quantity nor an availability"
                    + self.configured(("quantity", "availability"))
                    + "; send at least one of them",
                )
            elif quantity is not None:
                availability = "in_stock" if quantity > 0 else "out_of_stock"
        price = self.price(values.get("price", _MISSING), values.get("currency", _MISSING))
        if self.problems or self.product_id is None:
            yield from self.problems
            return
        yield Record(
            index=self.index,
            product_id=self.product_id,
            fields={
                "sku": _given(values.get("sku", _MISSING)),
                "name": _given(values.get("name", _MISSING)),
                "quantity": _given(quantity),
                "availability": availability,
                "price": price,
                "locations": location_list or [],
            },
            line=self.line,
            path=self.path,
        )

    def configured(self, names: tuple[str, ...]) -> str:
        rules = self.parser.rules.fields
        paths = [f"'{rules[name].path.text}'" for name in names if name in rules]
        return f" (nothing at {' or '.join(paths)})" if paths else ""

    def deleted(self, path: _Path, equals: frozenset[str]) -> bool:
        raw, _ = self.raw(path, "deleted", self.element, path.text)
        return raw is not None and raw.strip() in equals

    def quantity(self, quantity: Any, location_list: list[dict[str, Any]] | None) -> Any:
        """The generic format's rule: locations' sum when no quantity is sent; equal to it when one is."""
        if location_list is None:
            return quantity
        located = [loc["quantity"] for loc in location_list]
        total = sum(located)
        too_large = fields.total_too_large(total, "its locations")
        if too_large:
            self.problem("quantity", too_large, value=total)
            return None
        if "quantity" not in self.parser.rules.fields or (quantity is _MISSING and location_list):
            return total
        if isinstance(quantity, int) and location_list and quantity != total:
            rule = self.parser.rules.fields["quantity"]
            parts = " + ".join(str(q) for q in located)
            self.problem(
                "quantity",
                f"quantity {quantity} does not equal the sum of its locations ({parts} = {total}); "
                f"send the total, or nothing at '{rule.path.text}' to use the sum",
                value=quantity,
                sub=rule.path.text,
            )
        return quantity

    def price(self, amount: Any, currency: Any) -> dict[str, str] | None:
        if amount is _MISSING or amount is None:
            return None
        if isinstance(amount, tuple):
            return {"amount": amount[0], "currency": amount[1]}
        if currency is _MISSING:
            rule = self.parser.rules.fields["currency"]
            self.problem(
                "price.currency",
                f"price {amount} has no currency: '{rule.path.text}' finds nothing; send an ISO 4217 code such as USD",
                value=amount,
                sub=rule.path.text,
            )
            return None
        if currency is None:
            return None
        return {"amount": amount, "currency": currency}

    def locations(self, path: _Path, id_path: _Path, quantity_path: _Path) -> list[dict[str, Any]] | None:
        nodes = path.elements(self.element)
        if not nodes:
            return [] if "quantity" not in self.parser.rules.fields else None
        found: dict[str, dict[str, Any]] = {}
        for position, node in enumerate(nodes, 1):
            sub = f"{path.text}[{position}]"
            if len(node.attrib) > self.limits.max_attributes:
                check_attributes(node, self.limits, path=f"{self.path}/{sub}", record=self.index)
            raw_id, id_node = self.raw(id_path, "locations.locationId", node, f"{sub}/{id_path.text}")
            loc_id = (raw_id or "").strip()
            if not loc_id:
                self.problem(
                    "locations.locationId",
                    f"location has no id: '{id_path.text}' finds nothing (or only blanks) in this location",
                    node=id_node if id_node is not None else node,
                    sub=f"{sub}/{id_path.text}",
                )
                continue
            raw_quantity, quantity_node = self.raw(
                quantity_path, "locations.quantity", node, f"{sub}/{quantity_path.text}"
            )
            try:
                quantity = _quantity(raw_quantity if raw_quantity is not None else "")
            except FieldError as error:
                self.problem(
                    "locations.quantity",
                    f"locations.quantity {error}",
                    value=raw_quantity,
                    node=quantity_node if quantity_node is not None else node,
                    sub=f"{sub}/{quantity_path.text}",
                )
                continue
            if loc_id in found:
                self.problem(
                    "locations.locationId",
                    f"location '{loc_id}' appears more than once in this record",
                    value=loc_id,
                    node=id_node if id_node is not None else node,
                    sub=f"{sub}/{id_path.text}",
                )
                continue
            found[loc_id] = {"locationId": loc_id, "quantity": quantity}
        return [found[key] for key in sorted(found)]


def _given(value: Any) -> Any:
    return None if value is _MISSING else value
