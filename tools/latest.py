"""``make test-latest``: the parser, diagnostics and contract suites on the newest releases pyproject allows.

The lock keeps ``make test`` deterministic; this is how we hear about the next release that changes
behaviour (lxml 6.2 reading ahead before raising, a click release rewording help) before it is
locked: a throwaway venv, everything resolved fresh and eagerly upgraded, then the suites that pin
down what partners and consumers see. Standard library only: it runs with the bare interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: What partners (diagnostics) and consumers (the event contract) see, and the hostile-input corpus.
SUITES = [
    "tests/unit",
    "tests/security",
    "tests/integration/test_quarantine_and_claims.py",
]


#: The releases the summary line names: the ones that changed behaviour under us before.
WATCHED = {"lxml", "pydantic", "typer", "click", "confluent-kafka", "boto3", "aws-lambda-powertools"}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dropgate-latest-") as scratch:
        venv = Path(scratch) / "venv"
        python = str(venv / "bin" / "python")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        upgrade = [python, "-m", "pip", "install", "--quiet", "--upgrade"]
        subprocess.run([*upgrade, "pip", "setuptools", "wheel"], check=True)
        subprocess.run(
            [*upgrade, "--upgrade-strategy", "eager", "-e", ".[dev,msk]"],
            cwd=REPO,
            check=True,
        )
        listed = subprocess.run(
            [python, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True, text=True
        ).stdout.splitlines()
        shown = [line for line in listed if line.split("==")[0].lower() in WATCHED]
        print("newest releases:", ", ".join(shown), flush=True)
        # The checkout's code (installed editable), with every library at its newest.
        environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES]
        done = subprocess.run(command, cwd=REPO, env=environment, check=False)
        raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
