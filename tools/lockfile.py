"""The lock files: every dependency pinned to one version with its hashes, made from pyproject.toml.

``requirements/dev.lock``    runtime + msk + lineage + dev + bench + build requirements, for Python 3.11 to 3.13
                             on any platform (uv's universal resolution): what ``make test``,
                             ``make demo`` and ``make bench`` install into .venv.
``requirements/lambda.lock`` what the Lambda functions need (runtime + msk + lineage, less the CLI-only
                             packages), at the versions dev.lock pins: what ``make package`` installs.

``python -m tools.lockfile write`` (``make lock``) resolves both with uv; ``install --python P``
puts dev.lock into P's environment (``make``'s venv); ``check`` (also a unit test) fails when
pyproject.toml changed since: each lock's header carries a digest of the requirements
it was made from, so adding, dropping or re-ranging a dependency without re-locking is caught.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCKS = REPO / "requirements"
#: Imported by the CLI only; the handlers never load them, so the Lambda package leaves them out.
CLI_ONLY = frozenset({"typer", "rich"})
#: The oldest Python the project supports; a universal lock holds for it and every newer one.
OLDEST_PYTHON = "3.11"
_DIGEST = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.M)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)==([^\s;\\]+)", re.M)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._\-]*)")


# Standard library only (no `packaging`): `make` runs this with the bare interpreter to fill the venv.
def canonical(name: str) -> str:
    """PEP 503's normal form of a distribution name (``Typing_Extensions`` → ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


@dataclass(frozen=True)
class Lock:
    path: Path
    requirements: list[str]
    python: str
    #: Another lock whose pins this one must keep (uv's ``--constraint``).
    constrained_by: Path | None = None

    def digest(self) -> str:
        text = "\n".join([f"python {self.python}", *self.requirements])
        return hashlib.sha256(text.encode()).hexdigest()


def _project() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _runtime(project: dict[str, object]) -> tuple[list[str], dict[str, list[str]]]:
    table = project["project"]
    assert isinstance(table, dict)
    return list(table["dependencies"]), dict(table["optional-dependencies"])


def template_setting(pattern: str) -> str:
    """The one value ``pattern``'s group takes in template.yaml (its functions share their Globals)."""
    values = set(re.findall(r"^\s+" + pattern + r"\s*$", (REPO / "template.yaml").read_text(), re.M))
    if len(values) != 1:
        raise SystemExit(f"template.yaml must set {pattern!r} once for its functions, found {sorted(values)}")
    return str(values.pop())


def lambda_python() -> str:
    """The Python version of the template's functions (``Runtime: python3.12`` → ``3.12``)."""
    return template_setting(r"Runtime: python(\d+\.\d+)")


def _build_requires() -> list[str]:
    build = _project()["build-system"]
    assert isinstance(build, dict)
    return list(build["requires"])


def locks() -> list[Lock]:
    dependencies, extras = _runtime(_project())
    dev = Lock(
        LOCKS / "dev.lock",
        [*dependencies, *extras["msk"], *extras["lineage"], *extras["dev"], *extras["bench"], *_build_requires()],
        OLDEST_PYTHON,
    )
    function = [r for r in dependencies if requirement_name(r) not in CLI_ONLY]
    # The functions carry every opt-in a deployment can switch on with a variable: MSK IAM, lineage.
    extras_on = [*extras["msk"], *extras["lineage"]]
    lam = Lock(LOCKS / "lambda.lock", [*function, *extras_on], lambda_python(), constrained_by=dev.path)
    return [dev, lam]


def pins(path: Path) -> dict[str, str]:
    """``name → version`` of every package a lock file pins."""
    return {canonical(name): version for name, version in _PIN.findall(path.read_text())}


def write(lock: Lock) -> None:
    command = [
        *(sys.executable, "-m", "uv", "pip", "compile", "-", "--quiet", "--no-header"),
        *("--universal", "--python-version", lock.python, "--generate-hashes"),
        # Only the public index: the lock must install on any machine, whatever its pip.conf says.
        *("--no-config", "--index-url", "https://pypi.org/simple"),
        *(("--constraint", str(lock.constrained_by.relative_to(REPO))) if lock.constrained_by else ()),
        *("--output-file", str(lock.path.relative_to(REPO))),
    ]
    subprocess.run(command, input="\n".join(lock.requirements) + "\n", text=True, check=True, cwd=REPO)
    header = (
        f"# Made by `make lock` (tools/lockfile.py) from pyproject.toml, for Python >= {lock.python}; do not edit.\n"
        f"# inputs-sha256: {lock.digest()}\n"
    )
    lock.path.write_text(header + lock.path.read_text())


def entries(path: Path) -> list[tuple[str, str]]:
    """``(name, its whole entry)`` for each pin of a lock file: a package pinned twice (numpy, one
    version per Python under a marker) has two entries."""
    found = []
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        pin = _PIN.match(entry)
        if pin:
            found.append((canonical(pin.group(1)), entry))
    return found


def install(python: str, path: Path) -> None:
    """Install exactly what ``path`` pins into ``python``'s environment, checking every hash.

    Two passes because a few packages (pyftpdlib) publish no wheel: the build requirements go in
    first, from the lock, and the rest is built with them, not with whatever build isolation would
    fetch unpinned.
    """
    build = {requirement_name(r) for r in _build_requires()}
    locked = entries(path)
    first = [entry for name, entry in locked if name in build]
    rest = [entry for name, entry in locked if name not in build]
    pip = [python, "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps"]
    with tempfile.TemporaryDirectory() as scratch:
        for number, (group, extra) in enumerate([(first, ["--only-binary=:all:"]), (rest, ["--no-build-isolation"])]):
            requirements = Path(scratch) / f"pass{number}.txt"
            requirements.write_text("\n".join(group) + "\n")
            subprocess.run([*pip, *extra, "-r", str(requirements)], check=True)


def stale() -> list[str]:
    """One sentence per lock that pyproject.toml (or the template's runtime) no longer matches."""
    found = []
    for lock in locks():
        if not lock.path.exists():
            found.append(f"{lock.path.relative_to(REPO)} is missing: run `make lock`")
            continue
        recorded = _DIGEST.search(lock.path.read_text())
        if recorded is None or recorded.group(1) != lock.digest():
            found.append(f"{lock.path.relative_to(REPO)} was made from other requirements: run `make lock`")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["write", "check", "install"])
    parser.add_argument("--python", help="install: the interpreter whose environment gets the dev lock")
    arguments = parser.parse_args()
    action = arguments.action
    if action == "install":
        install(arguments.python or sys.executable, LOCKS / "dev.lock")
    if action == "write":
        LOCKS.mkdir(exist_ok=True)
        for lock in locks():  # dev first: the Lambda lock is constrained by it
            write(lock)
    problems = stale()
    for problem in problems:
        print(problem, file=sys.stderr)
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
