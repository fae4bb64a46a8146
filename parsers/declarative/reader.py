"""One record of a declarative format, read by the compiled rules, with every problem located."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from parsers import fields
from parsers.base import Item, ParserFailed, Problem, Record, truncate
from parsers.declarative.compiler import Compiled, FieldRule, RulePath
from parsers.declarative.transforms import SubfieldError, quantity_value
from parsers.diagnostics import check_attributes, check_depth, has_entity_reference, too_much_text
from parsers.fields import FieldError
from parsers.limits import Limits
from parsers.records import RecordReader
from parsers.xml_stream import source_line

#: A field the record does not carry (and the spec gives no default for); ``None`` means a problem.
MISSING = object()


class DeclaredRecordReader(RecordReader):
    """Reads one record's fields and collects its problems; a record with any problem yields no Record.

    Sub-paths here are the spec's own paths, relative to the record (``s:Code``, ``@id``).
    """

    def __init__(self, rules: Compiled, element: Any, index: int, limits: Limits) -> None:
        super().__init__(element, index, limits, f"{rules.record_path}[{index}]")
        self.rules = rules
        self.element = element
        #: Tag → first child with it (reversed, so an earlier child wins), for one-step paths.
        self.children: dict[Any, Any] = {child.tag: child for child in reversed(element)}

    def problem_at(self, field: str, message: str, *, value: object = None, node: Any = None, sub: str = "") -> None:
        """A validation problem at ``node``'s line (the record's when unknown), at ``sub`` below the record."""
        line = source_line(node) if node is not None else None
        where = self.at(line or self.line, f"/{sub}" if sub else "")
        self.problems.append(Problem(kind="validation", message=message, field=field, value=truncate(value), **where))

    def raw(self, path: RulePath, field: str, context: Any, sub: str) -> tuple[str | None, Any]:
        """The path's first result as text (``None`` when nothing or empty), checked against the limits."""
        raw, node, is_text = path.hit(context, self.children if context is self.element else None)
        if is_text and len(node) and has_entity_reference(node):
            message = (
                f"{field} ({path.text}) contains an entity reference; entities are never expanded: send literal text"
            )
            self.entity_problem(field, message, self.at(source_line(node), f"/{sub}"))
            return None, node
        if raw is not None and len(raw) > self.limits.max_text_chars:
            line = (source_line(node) if node is not None else None) or self.line
            raise too_much_text(f"{field} ({path.text})", len(raw), self.limits, **self.at(line, f"/{sub}"))
        return (raw or None), node

    def value(self, rule: FieldRule) -> Any:
        """The field's contract value; ``MISSING`` when absent (no default); ``None`` after a problem."""
        raw, node = self.raw(rule.path, rule.name, self.element, rule.path.text)
        if raw is not None:
            try:
                value = rule.convert(raw)
            except SubfieldError as error:
                self.problem_at(error.field, str(error), value=raw, node=node, sub=rule.path.text)
                return None
            except FieldError as error:
                self.problem_at(rule.name, f"{rule.name} {error}", value=raw, node=node, sub=rule.path.text)
                return None
            except Exception as error:  # a transform or converter bug: quarantine naming the field
                where = {"record": self.index, "product_id": self.product_id or None}
                raise ParserFailed(error, field=rule.name, **where) from error
            if value is not None:
                return value
        if rule.default_value is not None:
            return rule.default_value
        if rule.required and rule.name != "productId":
            self.problem_at(
                rule.name,
                f"{rule.name} is required, but '{rule.path.text}' finds nothing (or only blanks) in this record",
                value=raw,
                node=node,
                sub=rule.path.text,
            )
        return MISSING

    def read(self) -> Iterator[Item]:
        rules = self.rules
        element = self.element
        check_attributes(element, self.limits, path=self.path, record=self.index)
        check_depth(element, self.limits, path=self.path, record=self.index)
        id_rule = rules.fields["productId"]
        product_id = self.value(id_rule)
        if product_id is MISSING:
            self.problem_at(
                "productId",
                f"record has no productId: '{id_rule.path.text}' finds nothing (or only blanks); "
                "every record needs a non-empty id",
                sub=id_rule.path.text,
            )
        elif isinstance(product_id, str):
            self.product_id = product_id
        if rules.deleted is not None and self.deleted(*rules.deleted):
            if not self.problems and self.product_id:
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
            quantity = self.quantity(values.get("quantity", MISSING), location_list)
        availability = values.get("availability", MISSING)
        if availability is MISSING:
            if quantity is MISSING:
                self.problem_at(
                    "availability",
                    "record has neither a quantity nor an availability"
                    + self.configured(("quantity", "availability"))
                    + "; send at least one of them",
                )
            elif quantity is not None:
                availability = "in_stock" if quantity > 0 else "out_of_stock"
        price = self.price(values.get("price", MISSING), values.get("currency", MISSING))
        if self.problems or not self.product_id:
            yield from self.problems
            return
        yield Record(
            index=self.index,
            product_id=self.product_id,
            fields={
                "sku": _given(values.get("sku", MISSING)),
                "name": _given(values.get("name", MISSING)),
                "quantity": _given(quantity),
                "availability": availability,
                "price": price,
                "locations": location_list or [],
            },
            line=self.line,
            path=self.path,
        )

    def configured(self, names: tuple[str, ...]) -> str:
        rules = self.rules.fields
        paths = [f"'{rules[name].path.text}'" for name in names if name in rules]
        return f" (nothing at {' or '.join(paths)})" if paths else ""

    def deleted(self, path: RulePath, equals: frozenset[str]) -> bool:
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
            self.problem_at("quantity", too_large, value=total)
            return None
        if "quantity" not in self.rules.fields or (quantity is MISSING and location_list):
            return total
        if isinstance(quantity, int) and location_list and quantity != total:
            rule = self.rules.fields["quantity"]
            parts = " + ".join(str(q) for q in located)
            self.problem_at(
                "quantity",
                f"quantity {quantity} does not equal the sum of its locations ({parts} = {total}); "
                f"send the total, or nothing at '{rule.path.text}' to use the sum",
                value=quantity,
                sub=rule.path.text,
            )
        return quantity

    def price(self, amount: Any, currency: Any) -> dict[str, str] | None:
        if amount is MISSING or amount is None:
            return None
        if isinstance(amount, tuple):
            return {"amount": amount[0], "currency": amount[1]}
        if currency is MISSING:
            rule = self.rules.fields["currency"]
            self.problem_at(
                "price.currency",
                f"price {amount} has no currency: '{rule.path.text}' finds nothing; send an ISO 4217 code such as USD",
                value=amount,
                sub=rule.path.text,
            )
            return None
        if currency is None:
            return None
        return {"amount": amount, "currency": currency}

    def locations(self, path: RulePath, id_path: RulePath, quantity_path: RulePath) -> list[dict[str, Any]] | None:
        nodes = path.elements(self.element)
        if not nodes:
            return [] if "quantity" not in self.rules.fields else None
        found: dict[str, dict[str, Any]] = {}
        for position, node in enumerate(nodes, 1):
            sub = f"{path.text}[{position}]"
            if len(node.attrib) > self.limits.max_attributes:
                check_attributes(node, self.limits, path=f"{self.path}/{sub}", record=self.index)
            raw_id, id_node = self.raw(id_path, "locations.locationId", node, f"{sub}/{id_path.text}")
            loc_id = (raw_id or "").strip()
            if not loc_id:
                self.problem_at(
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
                quantity = quantity_value(raw_quantity if raw_quantity is not None else "")
            except FieldError as error:
                self.problem_at(
                    "locations.quantity",
                    f"locations.quantity {error}",
                    value=raw_quantity,
                    node=quantity_node if quantity_node is not None else node,
                    sub=f"{sub}/{quantity_path.text}",
                )
                continue
            if loc_id in found:
                self.problem_at(
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
    return None if value is MISSING else value
