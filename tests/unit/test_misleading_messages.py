"""Messages that must say what is really wrong: a partner engineer acts on exactly these words."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from dropgate.cli import app
from parsers.amazon import AmazonInventoryParser
from parsers.base import Problem
from parsers.generic import GenericInventoryParser

DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-32"?><inventory><product id="A"><quantity>1</quantity></product></inventory>'
)


def problems(data: bytes, parser: object = None) -> list[Problem]:
    chosen = parser or GenericInventoryParser()
    return [item for item in chosen.parse(io.BytesIO(data)) if isinstance(item, Problem)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("codec", ["utf-32", "utf-32-le", "utf-32-be"])
def test_utf32_is_named_as_such_not_as_not_xml(codec: str) -> None:
    (problem,) = problems(DOCUMENT.encode(codec))
    assert problem.kind == "encoding"
    assert problem.message.startswith("the file is UTF-32 encoded")
    (amazon,) = problems(DOCUMENT.replace("inventory", "AmazonEnvelope").encode(codec), AmazonInventoryParser())
    assert amazon.message.startswith("the file is UTF-32 encoded")


def test_utf16_still_reads() -> None:
    assert problems(DOCUMENT.replace("UTF-32", "UTF-16").encode("utf-16")) == []


def test_a_character_reference_to_a_control_character_is_a_syntax_problem_not_an_encoding_one() -> None:
    (problem,) = problems(
        b'<inventory><product id="A"><name>x&#x1b;y</name><quantity>1</quantity></product></inventory>'
    )
    assert problem.kind == "xml_syntax"
    assert problem.message.startswith("a character reference names U+001B, a character XML does not allow")
    assert "declared encoding" not in problem.message


def test_inspect_names_the_partner_a_document_declares_when_it_is_not_configured(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "named.xml"
    path.write_text('<inventory partner="umbrella"><product id="A"><quantity>1</quantity></product></inventory>')
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0
    assert "the document names partner 'umbrella', which is not configured" in result.stderr
    assert "names none" not in result.stderr
