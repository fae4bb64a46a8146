"""How dropgate shows files to a person: ledger history, file lists, diagnostics with context.

Two layouts, chosen by where stdout goes (:class:`Screen`): on a terminal, rich tables whose cells
fold onto more lines when the window is narrow (nothing is cut); piped or redirected, plain lines
(a title, then a tab-separated header and one record per line) that no width wraps, so ``grep``,
``cut -f`` and a pager see each key, status and time whole. ``NO_COLOR`` is honoured (rich reads it).
Scripts should use ``--json`` instead (:mod:`dropgate.cli.documents`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from dropgate.ledger import LedgerEntry
from dropgate.quarantine import reprocess_command, sidecar_location
from dropgate.terminal import shown

# Partner-controlled text (keys, ids, values, messages quoting them) goes in as Text, never as a
# str: rich reads markup in a str, and a key like acme/[/].xml is not markup. shown() escapes
# control characters (tabs and line breaks included, so a plain record stays one line) and cuts
# values at 120 characters first; an S3 URI is shown whole (S3 bounds a key at 1,024 bytes and an
# operator pastes it into the next command).

CONTEXT_BEFORE = 2
CONTEXT_AFTER = 1
CONTEXT_PROBLEMS = 10
_LINE_CHARS = 160
_READ_LIMIT = 64 * 1024
_STATUS_STYLE = {"published": "green", "quarantined": "red"}

Cell = str | Text
_UNBOUNDED = 100_000


class Screen:
    """Human output on stdout: tables on a terminal, plain lines when piped (see the module's doc)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.plain = not self.console.is_terminal

    def line(self, text: Cell = "") -> None:
        """One line of our own making (a str is never read as markup)."""
        text = text if isinstance(text, Text) else Text(text)
        if self.plain:
            self._out(text.plain)
        else:  # the terminal wraps it: a URI or a command copied from the screen stays one line
            self.console.print(text, highlight=False, soft_wrap=True)

    def rows(self, columns: Sequence[str], rows: Iterable[Sequence[Cell]], *, title: str | None = None) -> None:
        """A table on a terminal; piped, the title, a tab-separated header and one line per row."""
        if self.plain:
            if title:
                self._out(title)
            self._out("\t".join(columns))
            for row in rows:
                self._out("\t".join(_plain(cell) for cell in row))
            return
        cells = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]
        if title:  # its own line: a table's title wraps at the table's width
            self.console.print(Text(title, style="italic"))
        table = Table(highlight=False, box=box.SIMPLE_HEAD, show_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*row)
        natural = Measurement.get(self.console, self.console.options.update_width(_UNBOUNDED), table).maximum
        if natural <= self.console.width:  # every cell on one line
            self.console.print(table)
        else:  # squeezed, columns fold to slivers (quaranti/ned): one block per record reads at any width
            self._blocks(columns, cells)

    def _out(self, line: str) -> None:
        """A plain line as it is: rich would expand its tabs and wrap it at the console's width."""
        self.console.file.write(line + "\n")

    def _blocks(self, columns: Sequence[str], rows: list[list[Text]]) -> None:
        for row in rows:
            block = Table.grid(padding=(0, 2))
            block.add_column(style="bold", no_wrap=True)
            block.add_column(overflow="fold")
            for column, cell in zip(columns, row, strict=True):
                block.add_row(column, cell)
            self.console.print(Rule(style="dim"), block)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, "yellow"))


def uri(bucket: str | None, key: str) -> Text:
    """An S3 URI from a partner's key, whole and safe to show."""
    return Text(shown(f"s3://{bucket}/{key}" if bucket is not None else key, limit=None))


def print_history(screen: Screen, entries: Iterable[LedgerEntry]) -> None:
    """``dropgate status``: each version of a file, then its attempts."""
    for entry in entries:
        screen.line(
            Text.assemble(
                status_text(entry.status),
                "  ",
                uri(entry.bucket, entry.key),
                f"  version {shown(entry.version)}  partner {shown(entry.partner or '-')}  "
                f"parser {entry.parser_label if entry.parser_name else '-'}  events {entry.event_count}  "
                f"problems {entry.problem_count}  updated {entry.updated_at}",
            )
        )
        if entry.diagnostics:
            screen.line(f"  diagnostics: {shown(sidecar_location(entry.diagnostics), limit=None)}")
        if entry.reason:
            screen.line(f"  reason: {shown(entry.reason, limit=None)}")
        if entry.deletions:  # a full snapshot's held tombstones (docs/operating.md "Held deletions")
            screen.line(f"  deletions: {entry.held_deletes} held, {entry.deletions}")
        columns = ("at", "trigger", "parser", "outcome", "events", "invalid", "stale", "seconds", "error")
        screen.rows(
            columns,
            ([shown(attempt.get(name, ""), limit=None) for name in columns] for attempt in entry.attempts),
        )


def print_files(screen: Screen, entries: Iterable[LedgerEntry], *, title: str) -> None:
    """``dropgate files`` and ``dropgate quarantine list``: one file version per row, newest first."""
    columns = ("updated", "status", "partner", "file", "version", "parser", "events", "problems", "reason")
    screen.rows(
        columns,
        (
            (
                entry.updated_at,
                status_text(entry.status),
                Text(shown(entry.partner or "-")),
                uri(entry.bucket, entry.key),
                Text(shown(entry.version, limit=None)),
                entry.parser_label if entry.parser_name else "-",
                str(entry.event_count),
                str(entry.problem_count),
                Text(shown((entry.reason or "").split("first: ", 1)[-1], limit=200)),
            )
            for entry in entries
        ),
        title=title,
    )


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


def print_diagnostics(screen: Screen, diagnostics: dict[str, Any], context: dict[int, str]) -> None:
    """The sidecar for a person: what the file is, the problems grouped by kind, lines around them."""
    file = diagnostics["file"]
    parser = diagnostics["parser"]
    problems: list[dict[str, Any]] = diagnostics["problems"]
    screen.line(Text.assemble(("quarantined ", "bold red"), uri(file["bucket"], file["key"])))
    screen.line(f"version {shown(file['versionId'])}  size {file['size']:,} bytes  sha256 {file['sha256']}")
    screen.line(
        f"partner {shown(diagnostics['partner'])}  parser {parser['name']}/{parser['version']}  "
        f"policy {diagnostics['policy']}  published events {diagnostics['publishedEvents']}"
    )
    kept = diagnostics["problemsShown"] < diagnostics["problemCount"]
    screen.line(
        f"{diagnostics['problemCount']} problem(s)"
        + (f", the first {diagnostics['problemsShown']} kept" if kept else "")
    )
    kinds: dict[str, list[dict[str, Any]]] = {}
    for problem in problems:
        kinds.setdefault(problem["kind"], []).append(problem)
    for kind, group in kinds.items():
        screen.rows(
            ("line:col", "record", "productId", "where", "value", "what is wrong"),
            (
                (
                    f"{problem.get('line') or '-'}:{problem.get('column') or '-'}",
                    str(problem.get("record") or "-"),
                    Text(shown(problem.get("productId") or "-")),
                    Text(shown(problem.get("path") or "")),
                    Text(shown(problem.get("value") if problem.get("value") is not None else "")),
                    Text(shown(problem["message"], limit=None)),
                )
                for problem in group
            ),
            title=f"{kind} ({len(group)})",
        )
    _print_context(screen, [p for p in problems[:CONTEXT_PROBLEMS] if isinstance(p.get("line"), int)], context)
    # Made again from the file's bucket and key: sidecars written before commands were quoted hold one
    # that a key with a quote in it turns into something else when pasted.
    screen.line(Text.assemble(("reprocess: ", "bold"), reprocess_command(file["bucket"], file["key"])))


def _print_context(screen: Screen, located: list[dict[str, Any]], context: dict[int, str]) -> None:
    if not (located and context):
        return
    screen.line(Text("context", style="bold"))
    for problem in located:
        line = problem["line"]
        screen.line(Text(f"line {line}: {shown(problem['message'], limit=None)}", style="yellow"))
        for number in range(max(1, line - CONTEXT_BEFORE), line + CONTEXT_AFTER + 1):
            if number in context:
                marker = ">" if number == line else " "
                screen.line(f" {marker} {number:>6} | {shown(context[number], limit=None)}")
        caret = problem.get("column")
        if isinstance(caret, int) and line in context:
            screen.line(" " * (11 + caret) + "^")
