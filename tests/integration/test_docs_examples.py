"""Every example in docs/operating.md runs, on the local stack (moto in-process, the real broker),
and prints what the page says it prints, with the exit code it says: the operator's page cannot
drift from the product.

An example is a fenced block with the info string ``sh dropgate-example`` (``exit=N`` when it does
not exit 0) holding one command line, followed by an ``output`` block: what a person sees, stdout
and stderr as they interleave, piped (so lists are tab-separated lines). ``{{name}}`` in the output
stands for what varies from run to run (a time, an S3 version id, an offset) and matches any text
within one line. A command may pipe dropgate's stdout on (``| jq …``): dropgate runs in-process,
each later stage as a process. Each example runs against its own fresh stack (``stack``)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from dropgate.app import build_ingestor
from dropgate.cli import app
from dropgate.config import Settings
from dropgate.storage import ObjectRef
from tests.conftest import REPO, fixture_bytes

pytestmark = pytest.mark.integration
PAGE = REPO / "docs" / "operating.md"
BUCKET = "drops"
#: The topic the page shows: each test's own topic is written as the default name.
DOCUMENTED_TOPIC = "inventory.product-state.v1"


def stock_report(day: int, items: int) -> bytes:
    """An initech full snapshot (the declarative ``initech-stock`` format) of ``items`` products."""
    body = "".join(
        f'<s:Item status="active"><s:Code>INI-{2000 + i}</s:Code><s:OnHand>{i % 7}</s:OnHand></s:Item>'
        for i in range(items)
    )
    return (
        f'<s:StockReport xmlns:s="urn:initech:stock:1" generated="2026-11-{day:02d}T06:00:00Z">'
        f"<s:Items>{body}</s:Items></s:StockReport>"
    ).encode()


#: The drops every example runs against, through the real core, in order: acme's file that publishes
#: and the one that is quarantined; initech's full snapshot of 120 products, then Tuesday's export
#: cut short at 5 (its 115 deletions are held: more than 10 % and more than 100 keys).
DROPS = (
    ("acme/inventory-2026-11-20.xml", fixture_bytes("good/acme-2026-11-20.xml")),
    ("acme/erp-export.xml", fixture_bytes("bad/acme-thousands-separator.xml")),
    ("initech/mon.xml", stock_report(23, 120)),
    ("initech/tue.xml", stock_report(24, 5)),
)
EXAMPLE = re.compile(
    r"^```sh dropgate-example(?P<options>[^\n]*)\n(?P<command>.*?)\n```\n+"
    r"```output\n(?P<output>.*?)```$",
    re.MULTILINE | re.DOTALL,
)
PLACEHOLDER = re.compile(r"\{\{[^{}\n]+\}\}")


@dataclass(frozen=True)
class Example:
    line: int
    command: str
    exit_code: int
    output: str

    def __str__(self) -> str:
        return f"operating.md:{self.line}: {self.command}"


def examples(text: str) -> list[Example]:
    found = []
    for match in EXAMPLE.finditer(text):
        options = dict(option.split("=", 1) for option in match["options"].split())
        found.append(
            Example(
                line=text.count("\n", 0, match.start()) + 1,
                command=match["command"].strip(),
                exit_code=int(options.get("exit", "0")),
                output=match["output"],
            )
        )
    return found


def pattern(output: str) -> re.Pattern[str]:
    """The documented output as a regular expression: text literal, each ``{{…}}`` one line's text."""
    parts = PLACEHOLDER.split(normalised(output))
    return re.compile(r"[^\n]*?".join(re.escape(part) for part in parts))


def normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def stages(command: str) -> list[list[str]]:
    """The command line's pipeline stages, split as a POSIX shell would (a quoted ``|`` stays)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    split: list[list[str]] = [[]]
    for token in lexer:
        if token == "|":
            split.append([])
        else:
            split[-1].append(token)
    return split


def run(command: str) -> tuple[int, str]:
    """The command line as a shell would run it: dropgate in-process (so it meets moto), its stdout
    through the rest of the pipeline (``jq``, ``cut``, …) as processes; stderr as a terminal shows it."""
    (program, *argv), *pipeline = stages(command)
    assert program == "dropgate", f"an example runs dropgate, not {program}"
    result = CliRunner().invoke(app, argv)
    if not pipeline:
        return result.exit_code, result.output
    stdout = result.stdout
    for stage in pipeline:
        assert shutil.which(stage[0]), f"the example pipes into {stage[0]}, which is not installed here"
        piped = subprocess.run(stage, input=stdout, capture_output=True, text=True, check=False)
        assert piped.returncode == 0, f"{shlex.join(stage)}: {piped.stderr}"
        stdout = piped.stdout
    return result.exit_code, result.stderr + stdout


def mismatch(example: Example, code: int, output: str) -> str | None:
    """What is wrong with a run of ``example``, or None when it printed and exited as documented."""
    if code != example.exit_code:
        return f"exit {code}, the page says {example.exit_code}; output:\n{output}"
    if not pattern(example.output).fullmatch(normalised(output)):
        return f"the output differs from the page's:\n{normalised(output)}"
    return None


DOCUMENTED = examples(PAGE.read_text(encoding="utf-8"))


@pytest.fixture
def stack(aws: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's world: acme's files dropped and ingested through the real core, as SQS would."""
    monkeypatch.setenv("NO_COLOR", "1")
    for key, body in DROPS:
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)
        build_ingestor(settings).ingest(ObjectRef(BUCKET, key), trigger="sqs")


def test_the_page_has_examples_and_each_has_its_output() -> None:
    """A block marked as an example without an output block after it would never be checked."""
    text = PAGE.read_text(encoding="utf-8")
    assert len(DOCUMENTED) >= 5
    assert text.count("```sh dropgate-example") == len(DOCUMENTED)


@pytest.mark.parametrize("example", DOCUMENTED, ids=str)
def test_the_documented_example_prints_what_the_page_says(stack: None, settings: Settings, example: Example) -> None:
    code, output = run(example.command)
    problem = mismatch(example, code, output.replace(settings.topic, DOCUMENTED_TOPIC))
    assert problem is None, f"{example}: {problem}"


def test_a_changed_example_fails() -> None:
    """The comparison is strict where the page is literal and loose only at ``{{…}}``."""
    documented = Example(1, "dropgate files", 0, "file\t{{time}}\tpublished\n")
    assert mismatch(documented, 0, "file\t2026-12-06T15:00:00Z\tpublished\n") is None
    assert mismatch(documented, 0, "file\t2026-12-06T15:00:00Z\tquarantined\n")
    assert mismatch(documented, 0, "file\t2026-12-06\n15:00\tpublished\n")  # a placeholder is one line's text
    assert mismatch(documented, 0, "file\t2026-12-06T15:00:00Z\tpublished\nmore\n")
    assert mismatch(documented, 3, "file\t2026-12-06T15:00:00Z\tpublished\n")
