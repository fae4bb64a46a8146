"""``dropgate key``: where a product's state on the topic came from (see :mod:`dropgate.key_lookup`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from dropgate.cli.output import EXIT_NOT_FOUND, print_json
from dropgate.cli.root import app, echo, fail
from dropgate.config import Settings
from dropgate.key_lookup import Event, KeyReport
from dropgate.terminal import shown


@app.command("key")
def key_command(
    key: Annotated[str, typer.Argument(help="The Kafka key, e.g. 'globex:P123' (UTF-8, as it is on the topic).")],
    partner: Annotated[
        str | None,
        typer.Option(
            "--partner", "-p", help="Read this partner's key index (default: every partner whose template fits)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document (schemas/cli/key.json).")] = False,
) -> None:
    """A key's current state as published (value, headers), the file, record and parser it came from, or
    the file that deleted it, and its recent events. Reads the partner's key index and one event per
    offset it records: never the whole topic.

    Exit codes: 0 found; 2 usage, configuration or infrastructure error; 3 no partner's key index holds the key.
    """
    from dropgate.adapters.kafka_topic_reader import events_at
    from dropgate.adapters.s3_state import S3KeyIndexStore
    from dropgate.app import aws_client, build_ledger, kafka_config, load_partners
    from dropgate.key_lookup import candidates, place, report
    from dropgate.partners import PartnerConfigError

    settings = Settings()
    raw = key.encode("utf-8", "surrogateescape")  # a key that is not UTF-8 arrives as the shell passed its bytes
    try:
        directory = load_partners(settings)
    except PartnerConfigError as error:
        raise fail(str(error)) from None
    if partner is not None:
        if partner not in {p.id for p in directory}:
            raise fail(f"no partner '{shown(partner)}' in {shown(settings.partners)}")
        asked = [partner]
    else:
        asked = [p.id for p in candidates(raw, directory)]
    if not settings.state_bucket and not settings.bucket:
        raise fail("no bucket for the key index: set DROPGATE_STATE_BUCKET or DROPGATE_BUCKET")
    store = S3KeyIndexStore(aws_client("s3"), settings.state_bucket or settings.bucket)
    placements = place(raw, asked, store, settings.bucket)
    if not placements:
        looked = ", ".join(asked) if asked else "no partner's key template fits it"
        raise fail(f"no key index holds key '{shown(key)}' (looked in: {shown(looked)})", code=EXIT_NOT_FOUND)
    with events_at(kafka_config(settings), settings.topic) as reader:
        answer = report(raw, placements, reader, build_ledger(settings))
    if as_json:
        print_json(answer.as_document())
    else:
        for line in human(answer, settings.topic):
            echo(line)


def human(answer: KeyReport, topic: str) -> list[str]:
    """Plain lines, one fact each (readable piped or at 80 columns); partner text through ``shown``."""
    from dropgate.key_lookup import iso_ms

    state = "deleted (tombstone)" if answer.deleted else "live"
    lines = [
        f"key      {shown(answer.key.decode('utf-8', errors='replace'))}",
        f"partner  {shown(answer.partner)}"
        + (f" (held by: {', '.join(answer.holders)})" if len(answer.holders) > 1 else ""),
        f"state    {state}, asOf {iso_ms(answer.as_of_ms)}",
    ]
    if answer.current is not None:
        lines += event_lines(answer.current, topic, current=True)
    for note in answer.notes:
        lines.append(f"note     {shown(note, limit=None)}")
    if answer.history:
        lines.append("earlier events (newest first):")
        for event in answer.history:
            lines += ["  " + line for line in event_lines(event, topic, current=False)]
    return lines


def event_lines(event: Event, topic: str, *, current: bool) -> list[str]:
    where = f"{shown(topic)} partition {event.partition} offset {event.offset}"
    if not event.on_topic:
        return [f"event    {where}: no longer on the topic"]
    lines = [f"event    {where}" + ("" if current else (": tombstone" if event.deleted else ": live"))]
    found = event.origin
    if found is not None:
        lines.append(f"file     {shown(found.uri)}" + (f", record {found.record}" if found.record is not None else ""))
        lines.append(f"parser   {shown(found.parser or '?')}, ingested {shown(found.ingested_at or '?')}")
        if found.ledger is not None:
            ledger = found.ledger
            lines.append(
                f"ledger   {shown(ledger['status'])} at {shown(ledger['updatedAt'])} ({shown(ledger['parser'])})"
            )
    if current:
        if event.deleted:  # a reason header, however it is spelled (explicit delete, snapshot, approved hold)
            lines += [
                f"why      {shown(name)}: {shown(value)}" for name, value in event.headers.items() if "reason" in name
            ]
        if isinstance(event.value, dict):
            lines.append("value")
            lines += [
                f"  {shown(name)}: {shown(_compact(value))}"
                for name, value in event.value.items()
                if name not in _SHOWN_ABOVE
            ]
        elif event.value is not None:
            lines.append(f"value    {shown(event.value)}")
        lines.append("headers")
        lines += [f"  {shown(name)}: {shown(value)}" for name, value in event.headers.items()]
    return lines


#: Value fields the file and parser lines already show.
_SHOWN_ABOVE = frozenset({"source", "parser"})


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
