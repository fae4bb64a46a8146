"""Every relative link and ``#anchor`` in README.md, ARCHITECTURE.md and docs/*.md resolves: the
reference moved to docs/ page by page, and a link that points at a section that moved (or was
renamed) fails here instead of on a reader."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]
#: ``[text](target)``; the text may hold backticks and nested brackets one level deep.
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors GitHub gives the page's headings (a repeated one gets ``-1``, ``-2``, …)."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose(page.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            base = slug(heading.group(1))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return frozenset(found)


def links(page: Path) -> list[str]:
    return [
        match.group(1)
        for line in prose(page.read_text(encoding="utf-8"))
        for match in LINK.finditer(INLINE_CODE.sub("``", line))
    ]


def broken(page: Path) -> list[str]:
    problems = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: — not ours to check
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: {path} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            shown = resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else resolved.name
            problems.append(f"{target}: no heading in {shown} has the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken(page) == []


def test_the_checker_finds_a_broken_anchor_and_a_missing_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Held deletions (`snapshot: full`)\n\n"
        "[ok](#held-deletions-snapshot-full) [bad](#held) [gone](nowhere.md) [web](https://example.com)\n"
        "```\n[in code](#not-checked)\n```\n",
        encoding="utf-8",
    )
    assert broken(page) == [
        "#held: no heading in page.md has the anchor #held",
        "nowhere.md: nowhere.md does not exist",
    ]


def test_the_docs_pages_are_linked_from_the_readme() -> None:
    readme = links(REPO / "README.md")
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README does not link {page.name}"
