"""The code that deploys, run as Lambda runs it: `make test` builds build/lambda/<arch> first.

The host's twin of the package (same lock, same code, the host's architecture) is imported by the
template's runtime Python with nothing else on its path, and one file goes through the ingest
handler against moto's server and the local broker. The arm64 package that deploys is checked for
what it holds: only aarch64 binaries, the runtime's bytecode, no CLI-only packages.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from devstack.sqs_runner import lambda_sqs_event
from dropgate.adapters.dynamo_ledger import DynamoLedger
from dropgate.storage import ObjectRef
from tests.conftest import REPO, TopicProbe, fixture_bytes, values_by_key
from tests.e2e.conftest import Stack
from tools.lambda_package import EXCLUDED, default_out, foreign_binaries, host_arch, runtime_python, template_arch
from tools.lockfile import lambda_python

pytestmark = pytest.mark.e2e
BUCKET = "dropgate-package-drops"
HOST_ARCH = host_arch()
RUNTIME_TAG = "cpython-" + lambda_python().replace(".", "")


def built(arch: str) -> Path:
    package = default_out(arch)
    assert (package / "handlers" / "ingest.py").exists(), f"no Lambda package in {package}: run `make package-both`"
    return package


def test_the_host_twin_ingests_a_file_with_the_runtime_python(
    local_stack: Stack, kafka_bootstrap: str, topic_probe: TopicProbe
) -> None:
    package = built(HOST_ARCH)
    s3, sqs = local_stack.clients["s3"], local_stack.clients["sqs"]
    version = s3.put_object(Bucket=BUCKET, Key="acme/from-package.xml", Body=fixture_bytes("good/acme-2026-11-20.xml"))[
        "VersionId"
    ]
    queue_arn = sqs.get_queue_attributes(QueueUrl=local_stack.queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    received = sqs.receive_message(QueueUrl=local_stack.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])
    uploads = [m for m in received["Messages"] if "from-package.xml" in m["Body"]]
    assert len(uploads) == 1, received
    event = lambda_sqs_event(uploads, queue_arn, "us-east-1")

    environment = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(("AWS_", "DROPGATE_", "KAFKA_", "POWERTOOLS_")) or name in ("PATH", "HOME")
    }
    environment.update(
        PYTHONPATH=str(package), PYTHONNOUSERSITE="1", DROPGATE_PARTNERS="partners.yaml", POWERTOOLS_LOG_LEVEL="ERROR"
    )
    done = subprocess.run(
        [runtime_python(), "-S", str(REPO / "tests" / "e2e" / "lambda_invoke.py")],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        cwd=package,  # Lambda's working directory is the code's: DROPGATE_PARTNERS=partners.yaml is found there
        env=environment,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["response"] == {"batchItemFailures": []}
    assert result["python"] == [int(part) for part in lambda_python().split(".")]
    assert all(Path(file).is_relative_to(package) for file in result["files"]), result["files"]
    assert result["cli_loaded"] == []

    values = values_by_key(topic_probe.messages())
    assert values["P0000001"]["quantity"] == 12
    assert values["P0000001"]["source"]["key"] == "acme/from-package.xml"
    ledger = DynamoLedger(boto3.client("dynamodb"), local_stack.ledger_table)
    row = ledger.get(ObjectRef(BUCKET, "acme/from-package.xml", version))
    assert row is not None and row.status == "published"


def test_the_package_that_deploys_holds_only_aarch64_binaries() -> None:
    assert template_arch() == "arm64"
    package = built("arm64")
    binaries = list(package.rglob("*.so"))
    assert any("lxml" in str(path) for path in binaries), "the package lost lxml's compiled parser"
    assert foreign_binaries(package, "arm64") == []
    assert foreign_binaries(package, "x86_64"), "the x86_64 check must be able to fail"


@pytest.mark.parametrize("arch", sorted({template_arch(), HOST_ARCH}))
def test_the_package_holds_what_the_functions_import_and_nothing_of_the_cli(arch: str) -> None:
    package = built(arch)
    assert (package / "partners.yaml").read_bytes() == (REPO / "partners.yaml").read_bytes()
    for absent in ("typer", "rich", "tests", "bench", "fixtures", "README.md", "pytest", "moto", "devstack", *EXCLUDED):
        assert not (package / absent).exists(), absent
    compiled = list((package / "dropgate" / "__pycache__").glob("*.pyc"))
    assert compiled and all(RUNTIME_TAG in path.name for path in compiled)
    own_sources = [path for name in ("dropgate", "parsers", "handlers") for path in (package / name).rglob("*.py")]
    for source in own_sources:
        text = source.read_text()
        for forbidden in (
            "import typer",
            "from rich",
            "import rich",
            "import devstack",
            "from devstack",
            "dropgate.cli",
        ):
            assert forbidden not in text, f"{source.relative_to(package)} imports {forbidden}"
