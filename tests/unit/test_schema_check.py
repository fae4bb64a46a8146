"""The compatibility gate: ``dropgate schema check`` against changed copies of the model.

Each breaking change is made to a copy of the real model (pydantic's ``create_model`` over its
fields), so the schemas compared are the ones pydantic would write, not hand-made fragments.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, create_model
from typer.testing import CliRunner

from dropgate import events
from dropgate.cli import app
from dropgate.compatibility import breaking_changes
from tests.conftest import REPO

SCHEMAS = REPO / "schemas"


def copy_of_model(*, drop: tuple[str, ...] = (), **fields: Any) -> type[BaseModel]:
    """The contract's model with fields dropped, replaced or added (annotation, FieldInfo or default)."""
    kept = {
        name: (info.annotation, info) for name, info in events.ProductState.model_fields.items() if name not in drop
    }
    return create_model(  # type: ignore[call-overload,no-any-return]
        "ProductState", __config__=ConfigDict(extra="forbid"), **{**kept, **fields}
    )


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$id"], schema["title"] = events.SCHEMA_ID, events.SCHEMA_NAME
    return schema


class NarrowAvailability(StrEnum):
    in_stock = "in_stock"
    out_of_stock = "out_of_stock"
    preorder = "preorder"
    backorder = "backorder"


CURRENT = events.json_schema()
BREAKING = {
    "a removed field": (copy_of_model(drop=("sku",)), ["field 'sku' removed"]),
    "a renamed field": (
        copy_of_model(drop=("sku",), stockKeepingUnit=(str | None, None)),
        ["field 'sku' removed (renamed to 'stockKeepingUnit'?)"],
    ),
    "a narrowed enum": (
        copy_of_model(availability=(NarrowAvailability, ...)),
        [
            "field 'availability': value(s) 'discontinued' no longer accepted "
            "(allowed: 'in_stock', 'out_of_stock', 'preorder', 'backorder')"
        ],
    ),
    "a narrowed type": (copy_of_model(name=(str, "")), ["field 'name': type narrowed: null no longer accepted"]),
    "a new required field": (copy_of_model(warehouse=(str, ...)), ["field 'warehouse' is a new required field"]),
    "a tighter bound": (
        copy_of_model(quantity=(int | None, Field(default=None, ge=0, le=1000))),
        ["field 'quantity': maximum narrowed from 999999999999999999 to 1000"],
    ),
}


@pytest.mark.parametrize("change", sorted(BREAKING))
def test_each_breaking_change_is_named(change: str) -> None:
    model, named = BREAKING[change]
    assert breaking_changes(CURRENT, schema_of(model)) == named


def test_additive_changes_are_compatible() -> None:
    wider = copy_of_model(
        warehouse=(str | None, None),  # a new optional field
        productId=(str, ...),  # a constraint dropped (minLength)
    )
    assert breaking_changes(CURRENT, schema_of(wider)) == []
    assert breaking_changes(CURRENT, CURRENT) == []


def test_a_changed_nested_field_is_named_by_its_path() -> None:
    class Price(BaseModel):
        model_config = ConfigDict(extra="forbid")
        amount: str = Field(pattern=r"^[0-9]+$")
        currency: str = Field(pattern=r"^[A-Z]{3}$")

    changes = breaking_changes(CURRENT, schema_of(copy_of_model(price=(Price | None, None))))
    assert changes == ["field 'price.amount': pattern changed from '^[0-9]+(\\\\.[0-9]+)?$' to '^[0-9]+$'"]


def run_check(monkeypatch: pytest.MonkeyPatch, schema: dict[str, Any], folder: Path = SCHEMAS) -> Any:
    monkeypatch.setattr(events, "json_schema", lambda: schema)
    return CliRunner().invoke(app, ["schema", "check", "--schemas", str(folder)])


def test_the_checked_in_versions_pass_the_gate_today(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_check(monkeypatch, CURRENT)
    assert result.exit_code == 0, result.output
    assert "schema inventory.product-state.v1: backward compatible with 2 version(s)" in result.output


def test_an_incompatible_model_fails_the_gate_naming_the_change_and_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run_check(monkeypatch, schema_of(copy_of_model(drop=("sku",))))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    for version in ("schemas/inventory.product-state.v1.json", "schemas/inventory.product-state.v1/1.json"):
        assert f"{REPO / version}: field 'sku' removed" in lines
    assert "not backward compatible" in result.output and "(v2)" in result.output


def test_a_v2_schema_is_not_held_to_v1_and_unreadable_versions_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "v1.json").write_text(json.dumps(CURRENT), encoding="utf-8")
    v2 = {**schema_of(copy_of_model(drop=("sku",))), "title": "inventory.product-state.v2"}
    result = run_check(monkeypatch, v2, tmp_path)
    assert result.exit_code == 0 and "backward compatible with 0 version(s)" in result.output
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    result = run_check(monkeypatch, v2, tmp_path)
    assert result.exit_code == 2 and "broken.json is not a readable JSON Schema" in result.output


def test_schema_without_a_subcommand_prints_what_schemas_holds() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert result.output == (SCHEMAS / "inventory.product-state.v1.json").read_text(encoding="utf-8")
