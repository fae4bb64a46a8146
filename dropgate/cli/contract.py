"""``dropgate schema``: the event value's JSON Schema; ``check`` gates changes, ``register`` publishes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dropgate.cli.root import app, echo, fail
from dropgate.config import Settings
from dropgate.terminal import shown

schema_app = typer.Typer(
    help="The event value's JSON Schema: print it (no subcommand), check it against schemas/, register it.",
    invoke_without_command=True,
)
app.add_typer(schema_app, name="schema")

#: Where the checked-in versions live, relative to the checkout (``make test`` runs from there).
VERSIONS = Path("schemas")


@schema_app.callback()
def schema(context: typer.Context) -> None:
    """Print the JSON Schema of event values (as checked into schemas/)."""
    from dropgate.schema_registry import definition

    if context.invoked_subcommand is None:
        echo(definition())


@schema_app.command("check")
def check(
    versions: Annotated[
        Path, typer.Option("--schemas", help="The folder of schema versions (every *.json under it).")
    ] = VERSIONS,
) -> None:
    """Exit 1, naming each breaking change, unless the model is backward compatible with every version in schemas/."""
    from dropgate.compatibility import breaking_changes
    from dropgate.events import json_schema

    current = json_schema()
    name = current["title"]
    compared = _versions_of(name, versions)
    breaking = 0
    for path, old in compared:
        for change in breaking_changes(old, current):
            echo(f"{shown(path, limit=None)}: {change}", err=True)
            breaking += 1
    if breaking:
        raise fail(
            f"the model's schema {name} is not backward compatible with the versions in {shown(versions)} "
            f"({breaking} breaking change(s)). Consumers of the topic would fail on values already on it: "
            "make the change additive (a new optional field, a wider enum), or publish a new topic and "
            "schema name (v2); see docs/contract.md",
            code=1,
        )
    echo(f"schema {name}: backward compatible with {len(compared)} version(s) in {shown(versions)}")


def _versions_of(name: str, folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every checked-in version of the schema called ``name`` (a v2 schema leaves v1's files alone)."""
    if not folder.is_dir():
        raise fail(f"no folder {shown(folder)}: run from the checkout, or give --schemas DIR")
    found = []
    for path in sorted(folder.rglob("*.json")):
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise fail(f"{shown(path)} is not a readable JSON Schema: {shown(error)}") from None
        if isinstance(schema, dict) and schema.get("title") == name:
            found.append((path, schema))
    return found


@schema_app.command("register")
def register() -> None:
    """Register the schema in the Glue registry DROPGATE_SCHEMA_REGISTRY (idempotent: same schema, same version)."""
    from dropgate.app import build_schema_registry
    from dropgate.schema_registry import RegistryError, definition

    settings = Settings()
    if not settings.schema_registry:
        raise fail("no registry configured: set DROPGATE_SCHEMA_REGISTRY to the Glue registry's name")
    try:
        version = build_schema_registry(settings.schema_registry, settings).register(definition())
    except RegistryError as error:
        raise fail(str(error)) from None
    echo(version.describe())
