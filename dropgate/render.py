"""How dropgate shows files to a person: ledger history, quarantine lists, diagnostics with context."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from dropgate.ledger import LedgerEntry
from dropgate.quarantine import reprocess_command, sidecar_location
from dropgate.terminal import shown

# Partner-controlled text (keys, ids, values, messages quoting them) goes in as Text, never as a
# str: rich reads markup in a str, and a key like acme/[/].xml is not markup. shown() escapes
# control characters and cuts it at 120 characters first.

CONTEXT_BEFORE = 2
CONTEXT_AFTER = 1
CONTEXT_PROBLEMS = 10
_LINE_CHARS = 160
_READ_LIMIT = 64 * 1024


def history_table(entries: Iterable[LedgerEntry]) -> Group:
    parts: list[Any] = []
    for entry in entries:
        head = Text.assemble(
            (f"{entry.status}", {"published": "green", "quarantined": "red"}.get(entry.status, "yellow")),
            f"  {shown(f's3://{entry.bucket}/{entry.key}')}  version {entry.version}  partner {entry.partner or '-'}  "
            f"parser {entry.parser_label if entry.parser_name else '-'}  events {entry.event_count}  "
            f"problems {entry.problem_count}",
        )
        parts.append(head)
        if entry.diagnostics:
            parts.append(Text(f"  diagnostics: {shown(sidecar_location(entry.diagnostics), limit=None)}"))
        if entry.reason:
            parts.append(Text(f"  reason: {shown(entry.reason, limit=None)}"))
        if entry.deletions:  # a full snapshot's held tombstones (README "Held deletions")
            parts.append(Text(f"  deletions: {entry.held_deletes} held, {entry.deletions}"))
        table = Table(box=None, padding=(0, 1), show_edge=False)
        for column in ("at", "trigger", "parser", "outcome", "events", "invalid", "stale", "seconds", "error"):
            table.add_column(column, overflow="fold")
        for attempt in entry.attempts:
            table.add_row(
                str(attempt.get("at", "")),
                str(attempt.get("trigger", "")),
                str(attempt.get("parser", "")),
                str(attempt.get("outcome", "")),
                str(attempt.get("events", "")),
                str(attempt.get("invalid", "")),
                str(attempt.get("stale", "")),
                str(attempt.get("seconds", "")),
                Text(shown(attempt.get("error", "") or "", limit=None)),
            )
        parts.append(table)
    return Group(*parts)


def quarantine_table(entries: Iterable[LedgerEntry]) -> Table:
    table = Table(title="quarantined files", title_justify="left")
    for column in ("updated", "partner", "file", "version", "parser", "problems", "first problem"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        first = (entry.reason or "").split("first: ", 1)[-1]
        table.add_row(
            entry.updated_at,
            entry.partner or "-",
            Text(shown(f"s3://{entry.bucket}/{entry.key}")),
            entry.version,
            entry.parser_label,
            str(entry.problem_count),
            Text(shown(first, limit=200)),
        )
    return table


def file_context(raw: BinaryIO, problems: list[dict[str, Any]], *, max_bytes: int = 4 * 1024**3) -> dict[int, str]:
    """Lines around the first problems, read from an object as stored (gzip or not)."""
    from dropgate.byte_streams import Payload

    wanted = wanted_lines(problems)
    if not wanted:
        return {}
    payload = Payload(raw, max_object_bytes=max_bytes, max_decompressed_bytes=max_bytes)
    return context_lines(payload.stream, wanted)


def context_lines(stream: BinaryIO, wanted: set[int]) -> dict[int, str]:
    """The text of the requested line numbers, reading no further than the last one needed."""
    found: dict[int, str] = {}
    if not wanted:
        return found
    last = max(wanted)
    number = 1
    while number <= last:
        # Bounded reads: a one-line 2 GB document must not be read into memory to show 160 characters.
        raw = stream.readline(_READ_LIMIT)
        if not raw:
            break
        if number in wanted and number not in found:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            found[number] = text if len(text) <= _LINE_CHARS else text[:_LINE_CHARS] + " …"
        if raw.endswith(b"\n"):
            number += 1
    return found


def wanted_lines(problems: list[dict[str, Any]]) -> set[int]:
    lines: set[int] = set()
    for problem in problems[:CONTEXT_PROBLEMS]:
        line = problem.get("line")
        if isinstance(line, int):
            lines.update(range(max(1, line - CONTEXT_BEFORE), line + CONTEXT_AFTER + 1))
    return lines


def diagnostics_view(diagnostics: dict[str, Any], context: dict[int, str]) -> Group:
    """The sidecar for a person: what the file is, the problems grouped by kind, lines around them."""
    file = diagnostics["file"]
    parser = diagnostics["parser"]
    problems: list[dict[str, Any]] = diagnostics["problems"]
    parts: list[Any] = [
        Text.assemble(("quarantined ", "bold red"), shown(f"s3://{file['bucket']}/{file['key']}")),
        Text(
            f"version {file['versionId']}  size {file['size']:,} bytes  sha256 {file['sha256']}\n"
            f"partner {diagnostics['partner']}  parser {parser['name']}/{parser['version']}  "
            f"policy {diagnostics['policy']}  published events {diagnostics['publishedEvents']}"
        ),
        Text(
            f"{diagnostics['problemCount']} problem(s)"
            + (
                f", the first {diagnostics['problemsShown']} kept"
                if diagnostics["problemsShown"] < diagnostics["problemCount"]
                else ""
            )
        ),
    ]
    kinds: dict[str, list[dict[str, Any]]] = {}
    for problem in problems:
        kinds.setdefault(problem["kind"], []).append(problem)
    for kind, group in kinds.items():
        table = Table(title=f"{kind} ({len(group)})", title_justify="left")
        for column in ("line:col", "record", "productId", "where", "value", "what is wrong"):
            table.add_column(column, overflow="fold")
        for problem in group:
            where = str(problem.get("path") or "")
            table.add_row(
                f"{problem.get('line') or '-'}:{problem.get('column') or '-'}",
                str(problem.get("record") or "-"),
                Text(shown(problem.get("productId") or "-")),
                Text(shown(where)),
                Text(shown(problem.get("value") if problem.get("value") is not None else "")),
                Text(shown(problem["message"], limit=None)),
            )
        parts.append(table)
    located = [p for p in problems[:CONTEXT_PROBLEMS] if isinstance(p.get("line"), int)]
    if located and context:
        parts.append(Text("context", style="bold"))
        for problem in located:
            line = problem["line"]
            parts.append(Text(f"line {line}: {shown(problem['message'], limit=None)}", style="yellow"))
            for number in range(max(1, line - CONTEXT_BEFORE), line + CONTEXT_AFTER + 1):
                if number in context:
                    marker = ">" if number == line else " "
                    parts.append(Text(f" {marker} {number:>6} | {shown(context[number], limit=None)}"))
            caret = problem.get("column")
            if isinstance(caret, int) and line in context:
                parts.append(Text(" " * (11 + caret) + "^"))
    # Made again from the file's bucket and key: sidecars written before commands were quoted hold one
    # that a key with a quote in it turns into something else when pasted.
    parts.append(Text.assemble(("reprocess: ", "bold"), reprocess_command(file["bucket"], file["key"])))
    return Group(*parts)


def print_group(console: Console, group: Group) -> None:
    console.print(group, soft_wrap=False, highlight=False)
