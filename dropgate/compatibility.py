"""Is the model's schema backward compatible with a schema version already published?

BACKWARD, as the AWS Glue Schema Registry means it: a consumer holding the new schema must read
every value written under an older one. On a compacted topic that is literal: the oldest value of
a key that never changed stays on the topic for ever. So the new schema must accept everything the
old one accepted, and each way it does not is a *breaking change*, named by the field it touches:
a removed or renamed field (the schemas are closed: ``additionalProperties: false``), a new required
field, a narrowed type, enum, constant, bound, length or pattern.

Pure: two JSON Schemas in (the subset pydantic writes: ``$ref`` into ``$defs``, ``anyOf``,
``type``, ``enum``, ``const``, bounds, ``properties``, ``required``, ``items``), sentences out.
Where containment cannot be decided (two different patterns), it is reported: the gate errs on
the side of a person looking.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

#: Keywords that only describe: they never change what a schema accepts.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$id", "$schema", "$defs", "$comment"})
#: (keyword, is a lower bound): a lower bound that rises, or an upper bound that falls, narrows.
_BOUNDS = (
    ("minimum", True),
    ("exclusiveMinimum", True),
    ("minLength", True),
    ("minItems", True),
    ("maximum", False),
    ("exclusiveMaximum", False),
    ("maxLength", False),
    ("maxItems", False),
)
#: Deep enough for any schema pydantic writes; a cycle of $refs stops here instead of recursing for ever.
_MAX_DEPTH = 64


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Each way ``new`` refuses a value ``old`` accepts, as one sentence naming the field."""
    return _Comparison(old, new).node(old, new, "", 0)


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root

    def node(self, old: Any, new: Any, path: str, depth: int) -> list[str]:
        if depth > _MAX_DEPTH:
            return [f"{_where(path)}: nested too deeply to compare"]
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        if not _constrains(new):
            return []
        old_branches = [_resolve(b, self.old_root) for b in old.get("anyOf", [old])]
        new_branches = [_resolve(b, self.new_root) for b in new.get("anyOf", [new])]
        changes: list[str] = []
        for branch in old_branches:
            changes += self._branch(branch, new_branches, path, depth)
        return changes

    def _branch(self, old: Schema, candidates: list[Schema], path: str, depth: int) -> list[str]:
        """An old alternative must be accepted by some new one: the closest one names what is lost."""
        kinds = _types(old)
        fitting = [c for c in candidates if _overlaps(kinds, _types(c))]
        if not fitting:
            return [f"{_where(path)}: type narrowed: {_type_text(kinds)} no longer accepted"]
        attempts = [self._single(old, candidate, path, depth) for candidate in fitting]
        return min(attempts, key=len)

    def _single(self, old: Schema, new: Schema, path: str, depth: int) -> list[str]:
        changes = _narrowed_types(old, new, path) + _narrowed_values(old, new, path) + _narrowed_bounds(old, new, path)
        if "items" in new:
            changes += self.node(old.get("items", {}), new["items"], f"{path}[]", depth + 1)
        if "object" in (_types(new) or ()) or "properties" in new:
            changes += self._object(old, new, path, depth)
        return changes

    def _object(self, old: Schema, new: Schema, path: str, depth: int) -> list[str]:
        old_fields: dict[str, Any] = old.get("properties", {})
        new_fields: dict[str, Any] = new.get("properties", {})
        extra = new.get("additionalProperties", True)
        changes: list[str] = []
        added = [name for name in new_fields if name not in old_fields]
        for name, schema in old_fields.items():
            field = _join(path, name)
            if name in new_fields:
                changes += self.node(schema, new_fields[name], field, depth + 1)
            elif extra is False:
                renamed = f" (renamed to {_quoted(added)}?)" if added else ""
                changes.append(f"field '{field}' removed{renamed}")
            elif isinstance(extra, dict):
                changes += self.node(schema, extra, field, depth + 1)
        if old.get("additionalProperties", True) is not False and extra is False:
            changes.append(f"{_where(path)}: fields beyond those named are no longer accepted")
        old_required = set(old.get("required", []))
        for name in new.get("required", []):
            if name in old_required:
                continue
            what = "is now required" if name in old_fields else "is a new required field"
            changes.append(f"field '{_join(path, name)}' {what}")
        return changes


def _resolve(node: Any, root: Schema) -> Schema:
    """``{"$ref": "#/$defs/X"}`` → the definition (only local references: that is what pydantic writes)."""
    for _ in range(_MAX_DEPTH):
        if not isinstance(node, dict):
            return {} if node is True else {"not": {}}
        reference = node.get("$ref")
        if not isinstance(reference, str) or not reference.startswith("#/"):
            return node
        target: Any = root
        for part in reference[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
    return {}


def _constrains(schema: Schema) -> bool:
    return any(keyword not in _ANNOTATIONS for keyword in schema)


def _types(schema: Schema) -> frozenset[str] | None:
    """The JSON types a schema accepts (``None``: any), from ``type``, else its ``const`` or ``enum``."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(declared)
    values = _values(schema)
    if values is not None:
        return frozenset(_json_type(value) for value in values)
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "string")


def _overlaps(old: frozenset[str] | None, new: frozenset[str] | None) -> bool:
    if old is None or new is None:
        return True
    return bool(_widened(old) & _widened(new))


def _widened(kinds: frozenset[str]) -> frozenset[str]:
    """An integer is a number: a schema of numbers accepts every integer."""
    return kinds | {"number"} if "integer" in kinds else kinds


def _narrowed_types(old: Schema, new: Schema, path: str) -> list[str]:
    old_kinds, new_kinds = _types(old), _types(new)
    if new_kinds is None:
        return []
    if old_kinds is None:
        return [f"{_where(path)}: type narrowed: any → {_type_text(new_kinds)}"]
    lost = {kind for kind in old_kinds if kind not in new_kinds and not (kind == "integer" and "number" in new_kinds)}
    if lost:
        return [f"{_where(path)}: type narrowed: {_type_text(frozenset(lost))} no longer accepted"]
    return []


def _values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    enum = schema.get("enum")
    return list(enum) if isinstance(enum, list) else None


def _narrowed_values(old: Schema, new: Schema, path: str) -> list[str]:
    new_values = _values(new)
    if new_values is None:
        return []
    old_values = _values(old)
    if old_values is None:
        return [f"{_where(path)}: narrowed to the values {_quoted(new_values)}"]
    lost = [value for value in old_values if value not in new_values]
    if not lost:
        return []
    return [f"{_where(path)}: value(s) {_quoted(lost)} no longer accepted (allowed: {_quoted(new_values)})"]


def _narrowed_bounds(old: Schema, new: Schema, path: str) -> list[str]:
    changes = []
    for keyword, lower in _BOUNDS:
        if keyword not in new:
            continue
        before, after = old.get(keyword), new[keyword]
        if before is None or (after > before if lower else after < before):
            shown_before = "none" if before is None else before
            changes.append(f"{_where(path)}: {keyword} narrowed from {shown_before} to {after}")
    for keyword in ("pattern", "format"):
        if keyword in new and old.get(keyword) != new[keyword]:
            changes.append(f"{_where(path)}: {keyword} changed from {old.get(keyword)!r} to {new[keyword]!r}")
    return changes


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"field '{path}'" if path else "the value"


def _type_text(kinds: frozenset[str] | None) -> str:
    return "any" if kinds is None else " or ".join(sorted(kinds))


def _quoted(values: list[Any]) -> str:
    return ", ".join(repr(value) for value in values)
