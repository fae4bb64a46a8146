"""DynamoDB update expressions with every attribute name aliased, and attribute-value conversion.

The ledger's rows are written with it (claims and records): ``bucket``, ``status`` and many
ordinary words are reserved in DynamoDB's expression language, so every name goes through an
alias. Written here rather than taken from boto3's resource layer, whose ``UpdateExpression``
needs the same aliasing by hand, and whose Decimal numbers the rest of the code would have to undo.
"""

from __future__ import annotations

from typing import Any


class UpdateExpression:
    """Builds a DynamoDB ``SET`` expression with every attribute name aliased (``bucket``,
    ``status`` and many ordinary words are reserved)."""

    def __init__(self) -> None:
        self._clauses: list[str] = []
        self._removals: list[str] = []
        self._adds: list[str] = []
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}

    def _name(self, name: str) -> str:
        for alias, existing in self._names.items():
            if existing == name:
                return alias
        alias = f"#n{len(self._names)}"
        self._names[alias] = name
        return alias

    def names_for(self, *names: str) -> tuple[dict[str, str], dict[str, Any]]:
        """Aliases for attributes used in a condition, and a values dict to extend."""
        return {name: self._name(name) for name in names}, {}

    def add(self, name: str, amount: int) -> None:
        n, v = self._alias(name, {"N": str(amount)})
        self._adds.append(f"{n} {v}")

    def remove(self, name: str) -> None:
        self._removals.append(self._name(name))

    def _alias(self, name: str, value: Any) -> tuple[str, str]:
        alias = self._name(name)
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = value
        return alias, placeholder

    def set(self, name: str, value: Any) -> None:
        n, v = self._alias(name, value)
        self._clauses.append(f"{n} = {v}")

    def set_if_absent(self, name: str, value: Any) -> None:
        n, v = self._alias(name, value)
        self._clauses.append(f"{n} = if_not_exists({n}, {v})")

    def append(self, name: str, item: Any) -> None:
        n, v = self._alias(name, {"L": [item]})
        self._values[":empty"] = {"L": []}
        self._clauses.append(f"{n} = list_append(if_not_exists({n}, :empty), {v})")

    def build(self, extra_values: dict[str, Any] | None = None) -> dict[str, Any]:
        expression = "SET " + ", ".join(self._clauses)
        if self._adds:
            expression += " ADD " + ", ".join(self._adds)
        if self._removals:
            expression += " REMOVE " + ", ".join(self._removals)
        return {
            "UpdateExpression": expression,
            "ExpressionAttributeNames": self._names,
            "ExpressionAttributeValues": {**self._values, **(extra_values or {})},
        }


def to_attr_map(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, bool):
            out[name] = {"BOOL": value}
        elif isinstance(value, int | float):
            out[name] = {"N": str(value)}
        elif value is None:
            out[name] = {"NULL": True}
        else:
            out[name] = {"S": str(value)}
    return out


def from_attr(value: dict[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        return int(inner) if inner.lstrip("-").isdigit() else float(inner)
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "L":
        return [from_attr(v) for v in inner]
    if kind == "M":
        return {k: from_attr(v) for k, v in inner.items()}
    return inner
