"""Load time: every path of a declarative spec compiled and checked once, every mistake collected.

Compiled paths that are plain child steps (optionally ending in ``@attr``) skip XPath when a record
is read; anything else is XPath 1.0 without extension functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from lxml import etree

from parsers.declarative.transforms import (
    CONVERTING,
    FIELD_NAMES,
    FINISH,
    TEXT_TRANSFORMS,
    TRANSFORMS,
    apply_transform,
)
from parsers.fields import AVAILABILITY_VALUES, FieldError

if TYPE_CHECKING:
    from parsers.declarative.spec import DeclarativeFormat, FieldSpec

NCNAME = r"[A-Za-z_][\w.\-]*"
QNAME = re.compile(rf"(?:({NCNAME}):)?({NCNAME})")
ATTRIBUTE = re.compile(rf"@(?:({NCNAME}):)?({NCNAME})")
#: A call of a prefixed function (an extension such as EXSLT's ``re:test(``), and XPath string literals.
_EXTENSION_CALL = re.compile(r"(?<![\w.:-])([A-Za-z_][\w.-]*:[A-Za-z_][\w.-]*)\s*\(")
_STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")


@dataclass(frozen=True, slots=True)
class RulePath:
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
class FieldRule:
    name: str
    path: RulePath
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
            value = apply_transform(name, value)
        if self.mapping is not None:
            try:
                value = self.mapping[value]
            except KeyError:
                keys = ", ".join(self.mapping)
                raise FieldError(f"'{value}' is not in the format's map; expected one of {keys}") from None
        return self.finish(value)


@dataclass(frozen=True, slots=True)
class Compiled:
    root_tag: str
    #: Qualified tags of the record path's steps, outermost first (the last is the record's).
    step_tags: tuple[str, ...]
    step_locals: tuple[str, ...]
    record_path: str
    as_of_attribute: str | None
    as_of_path: str | None
    fields: dict[str, FieldRule]
    deleted: tuple[RulePath, frozenset[str]] | None
    locations: tuple[RulePath, RulePath, RulePath] | None


class Compiler:
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

    def path(self, where: str, text: str, *, elements: bool = False) -> RulePath | None:
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
        last = ATTRIBUTE.fullmatch(parts[-1])
        if last:
            parts = parts[:-1]
        matches = [QNAME.fullmatch(part) for part in parts]
        if all(match is not None for match in matches):
            steps = "/".join(self.qualify(where, m.group(1), m.group(2)) for m in matches if m is not None)
            if last:
                attribute = self.qualify(where, last.group(1), last.group(2))
        single = steps is not None and len(parts) == 1
        return RulePath(text=text.removeprefix("./"), xpath=xpath, steps=steps, attribute=attribute, single=single)

    def compile(self) -> Compiled:
        spec = self.spec
        root_tag = f"{{{spec.namespace}}}{spec.root}" if spec.namespace else spec.root
        step_tags: list[str] = []
        step_locals: list[str] = []
        for step in spec.record.split("/"):
            match = QNAME.fullmatch(step)
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
            match = ATTRIBUTE.fullmatch(spec.as_of.strip())
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
        return Compiled(
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

    def field_rules(self) -> dict[str, FieldRule]:
        spec = self.spec
        unknown = [name for name in spec.fields if name not in FIELD_NAMES]
        for name in unknown:
            self.fail(f"fields.{name}", f"unknown field '{name}'; fields allowed: {', '.join(FIELD_NAMES)}")
        if "productId" not in spec.fields:
            self.fail("fields.productId", "productId is required: the path to each record's id, e.g. {path: '@id'}")
        rules: dict[str, FieldRule] = {}
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

    def field_rule(self, name: str, entry: FieldSpec) -> FieldRule | None:
        where = f"fields.{name}"
        errors_before = len(self.errors)
        self.check_transforms(name, entry, where)
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
        rule = FieldRule(
            name=name,
            path=path,
            transforms=tuple(entry.transforms),
            mapping=entry.map,
            required=entry.required or name == "productId",
            finish=FINISH[name],
        )
        self.check_map(name, entry, where)
        if entry.default is not None:
            try:
                default_value = rule.convert(entry.default)
            except FieldError as error:
                self.fail(f"{where}.default", f"{name} {error}")
            else:
                rule = replace(rule, default_value=default_value)
        return rule

    def check_map(self, name: str, entry: FieldSpec, where: str) -> None:
        """Every map key reachable after the text transforms, every value a valid contract value."""
        text_steps = [t for t in entry.transforms if t in TEXT_TRANSFORMS]
        for key in entry.map or {}:
            transformed = key
            for transform in text_steps:
                transformed = apply_transform(transform, transformed)
            if transformed != key:
                self.fail(
                    f"{where}.map",
                    f"key '{key}' can never match: the transforms ({', '.join(text_steps)}) turn every value "
                    f"into something like '{transformed}'; write the key as '{transformed}'",
                )
        if entry.map is not None and name != "availability":
            for key, value in entry.map.items():
                try:
                    FINISH[name](value)
                except FieldError as error:
                    self.fail(f"{where}.map", f"'{key}' maps to {name} {error}")

    def check_transforms(self, name: str, entry: FieldSpec, where: str) -> None:
        """Each transform known, valid on this field, and a converting one last and without a map."""
        allowed = [t for t in TRANSFORMS if t in TEXT_TRANSFORMS or CONVERTING[t][0] == name]
        for position, transform in enumerate(entry.transforms):
            if transform not in TRANSFORMS:
                self.fail(
                    f"{where}.transforms", f"unknown transform '{transform}'; allowed on {name}: {', '.join(allowed)}"
                )
            elif transform in CONVERTING:
                target, makes = CONVERTING[transform]
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
