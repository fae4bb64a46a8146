"""``dropgate inspect`` and ``dropgate ingest``: one file through the core, locally or from S3."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dropgate.cli.output import EXIT_NOT_FOUND, EXIT_QUARANTINED, JsonFlag, escape_invisible, print_json
from dropgate.cli.root import PartnerOption, app, echo, fail, problem_line, with_progress
from dropgate.config import Settings
from dropgate.storage import ObjectRef, parse_s3_uri
from dropgate.terminal import shown


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A local XML (or gzipped XML) drop.", exists=False)],
    partner: PartnerOption = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the verdict as one JSON document instead of the events (schemas/cli/)."),
    ] = False,
) -> None:
    """Parse a local file without AWS or Kafka: events on stdout (JSON lines), problems on stderr.

    --json prints the verdict (partner, parser, counts, problems) as one document instead.
    Exit: 0 clean, 1 it would be quarantined, 3 no such file, 2 usage error (an unknown partner).
    """
    from dropgate.app import build_ingestor
    from dropgate.ingest.preparing import PREVIEW_PARTNER
    from dropgate.partners import PartnerConfigError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    try:
        ingestor = build_ingestor(settings, local=True, publish=False)
        prepared = ingestor.prepare(ObjectRef(bucket=None, key=str(file)), partner_id=partner, preview=True)
    except PartnerConfigError as error:
        raise fail(str(error)) from None
    except ObjectMissing as error:
        raise fail(str(error), EXIT_NOT_FOUND) from None
    with prepared.spool:
        if as_json:
            from dropgate.cli.documents import inspect_document

            print_json(inspect_document(str(file), prepared))
            if prepared.problems:
                raise typer.Exit(EXIT_QUARANTINED)
            return
        policy, publishable = prepared.policy, prepared.publishable
        out = sys.stdout.buffer
        if publishable:
            for entry in prepared.spool.replay(prepared.sha256):
                # The value as published, but what a terminal must not get raw (a partner's product
                # name can hold U+202E or a C1 control) written as \uXXXX: the same JSON.
                value = escape_invisible((entry.value or b"null").decode()).encode()
                key = json.dumps(entry.key.decode()).encode()
                out.write(b'{"key":' + key + b',"value":' + value + b"}\n")
        out.flush()
        for problem in prepared.problems:
            echo(problem_line(problem), err=True)
        if prepared.problems:
            more = prepared.problem_count - len(prepared.problems)
            if more:
                echo(f"… and {more} more problem(s)", err=True)
            published = "valid records would be published" if publishable else "nothing would be published"
            echo(
                f"{file}: would be quarantined: {prepared.problem_count} problem(s); {published} (policy {policy})",
                err=True,
            )
            raise typer.Exit(EXIT_QUARANTINED)
        if prepared.partner is None:
            named = (
                f"the document names partner '{shown(prepared.partner_id)}', which is not configured"
                if prepared.partner_id
                else "the document names none"
            )
            echo(
                f"{file}: no partner claims this file (no --partner, and {named}); events are shown "
                f"with partnerId '{PREVIEW_PARTNER}' and key {{productId}}",
                err=True,
            )
        for note in prepared.notes:
            echo(f"{file}: {note}", err=True)
        if prepared.snapshot == "full":
            echo(f"{file}: a full snapshot: products missing from it will be deleted when it is ingested", err=True)
        echo(f"{file}: ok, {prepared.spool.count} event(s), parser {prepared.parser_label}", err=True)


@app.command()
def ingest(
    target: Annotated[str, typer.Argument(help="s3://BUCKET/KEY, or a local file with --partner.")],
    partner: PartnerOption = None,
    force: Annotated[bool, typer.Option(help="Process even if the ledger says this version is done.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run the same core the Lambda handler runs, for one file, and print its outcome.

    Exit: 0 published, a duplicate, or ignored (the line says why: a quarantine copy); 1
    quarantined; 3 no such object (it is still recorded as ignored, as the handler would); 2 usage
    or infrastructure error.
    """
    from dropgate.app import build_ingestor
    from dropgate.partners import PartnerConfigError
    from dropgate.publishing import PublishError, TopicError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    try:
        if target.startswith("s3://"):
            ref, local = parse_s3_uri(target), False
        else:
            ref, local = ObjectRef(bucket=None, key=target), True
        ingestor = build_ingestor(settings, local=local)
        outcome = with_progress(ingestor, lambda: ingestor.ingest(ref, trigger="cli", partner_id=partner, force=force))
    except (PartnerConfigError, ObjectMissing, ValueError, TopicError, PublishError) as error:
        raise fail(str(error)) from None
    if as_json:
        from dropgate.cli.documents import outcome_document

        print_json(outcome_document(outcome))
    else:
        for problem in outcome.problems:
            echo(problem_line(problem), err=True)
        for note in outcome.notes:
            echo(f"note: {note}", err=True)
        echo(outcome.summary())
    if outcome.status == "quarantined":
        raise typer.Exit(EXIT_QUARANTINED)
    if outcome.missing:
        raise typer.Exit(EXIT_NOT_FOUND)
