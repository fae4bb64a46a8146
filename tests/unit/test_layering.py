"""The layers, read from the source with ``ast``: the core imports no entrypoint and nothing of the
local stack.

- ``dropgate`` (the core) imports neither ``handlers`` (the Lambda entrypoints) nor ``devstack``;
- ``parsers`` imports neither of those, nor ``dropgate``: a parser is a byte stream in, records and
  problems out;
- ``handlers`` ships too, so it imports no ``devstack`` (which neither the wheel nor the Lambda
  package holds).

Every import counts: at the top of a module, inside a function, under ``TYPE_CHECKING``, or by name
through ``importlib.import_module``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

#: package → the top-level packages its modules must not import.
FORBIDDEN = {
    "dropgate": ("handlers", "devstack"),
    "parsers": ("handlers", "devstack", "dropgate"),
    "handlers": ("devstack",),
}


def imports(source: str) -> Iterator[tuple[int, str]]:
    """(line, module name) of every absolute import in ``source``. A relative import stays inside its
    own top-level package (``from .. import x`` cannot leave it), so it never crosses a layer."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("import_module", "__import__"):
            named = node.args[0] if node.args else None
            if isinstance(named, ast.Constant) and isinstance(named.value, str):
                yield node.lineno, named.value


def violations(package: str, root: Path = REPO) -> list[str]:
    found = []
    sources = sorted((root / package).rglob("*.py"))
    assert len(sources) > 1, f"no sources under {root / package}"
    for path in sources:
        for line, name in imports(path.read_text(encoding="utf-8")):
            if name.split(".")[0] in FORBIDDEN[package]:
                found.append(f"{path.relative_to(root)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_the_layer_imports_nothing_it_must_not(package: str) -> None:
    assert violations(package) == []


def test_every_kind_of_import_is_seen(tmp_path: Path) -> None:
    """The rule can fail: top-level, lazy and by-name imports of a forbidden package are all found."""
    core = tmp_path / "dropgate"
    (core / "sub").mkdir(parents=True)
    (core / "fine.py").write_text("import json\nfrom dropgate.config import Settings\nfrom . import storage\n")
    (core / "sub" / "__init__.py").write_text("import handlers\n")
    (core / "lazy.py").write_text(
        "def run():\n    from handlers.ingest import handler\n    import devstack.broker\n    return handler\n"
    )
    (core / "by_name.py").write_text("import importlib\nimportlib.import_module('devstack.demo')\n")
    assert violations("dropgate", tmp_path) == [
        "dropgate/by_name.py:2 imports devstack.demo",
        "dropgate/lazy.py:2 imports handlers.ingest",
        "dropgate/lazy.py:3 imports devstack.broker",
        "dropgate/sub/__init__.py:1 imports handlers",
    ]


#: Where dropgate meets the outside world: the adapters, the composition root, the CLI and
#: ``dropgate init`` (which creates AWS resources). Everything else in ``dropgate`` is the core.
EDGES = ("dropgate/adapters/", "dropgate/app.py", "dropgate/cli/", "dropgate/provision.py")
#: What the core reaches only through ports.
CLIENT_LIBRARIES = ("boto3", "botocore", "confluent_kafka", "openlineage", "dropgate.adapters")


def core_violations(root: Path = REPO) -> list[str]:
    found = []
    for path in sorted((root / "dropgate").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(EDGES):
            continue
        for line, name in imports(path.read_text(encoding="utf-8")):
            if name == "dropgate.adapters" or name.startswith(CLIENT_LIBRARIES):
                found.append(f"{relative}:{line} imports {name}")
    return found


def test_the_core_reaches_aws_and_kafka_only_through_ports() -> None:
    assert core_violations() == []


def test_a_core_module_importing_an_adapter_is_caught(tmp_path: Path) -> None:
    (tmp_path / "dropgate" / "ingest").mkdir(parents=True)
    (tmp_path / "dropgate" / "ingest" / "service.py").write_text(
        "from dropgate.adapters.dynamo_ledger import DynamoLedger\ndef f():\n    import boto3\n"
    )
    (tmp_path / "dropgate" / "app.py").write_text("import boto3\n")  # an edge: allowed
    assert core_violations(tmp_path) == [
        "dropgate/ingest/service.py:1 imports dropgate.adapters.dynamo_ledger",
        "dropgate/ingest/service.py:3 imports boto3",
    ]


def test_importing_the_ingest_service_loads_no_aws_or_kafka_client() -> None:
    """What the issue promises a newcomer (and a fast test): the service is ports and rules only."""
    probe = (
        "import sys, dropgate.ingest.service\n"
        "print(','.join(sorted(m for m in ('boto3', 'botocore', 'confluent_kafka', 'openlineage') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == ""
