"""``dropgate``: inspect a file, ingest one, provision a local stack, run the demo.

Exit codes: 0 clean/published, 1 the file is (or would be) quarantined, 2 usage or
infrastructure error (the message says what to fix).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dropgate.config import Settings
from dropgate.storage import ObjectRef, parse_s3_uri

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

PartnerOption = Annotated[
    str | None,
    typer.Option("--partner", "-p", help="Partner id from partners.yaml (default: from the key prefix)."),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"dropgate: {message}", err=True)
    return typer.Exit(code)


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A local XML (or gzipped XML) drop.", exists=False)],
    partner: PartnerOption = None,
) -> None:
    """Parse a local file without AWS or Kafka: events on stdout (JSON lines), problems on stderr."""
    from dropgate.app import build_ingestor
    from dropgate.partners import PartnerConfigError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    try:
        ingestor = build_ingestor(settings, local=True, publish=False)
        prepared = ingestor.prepare(ObjectRef(bucket=None, key=str(file)), partner_id=partner)
    except (PartnerConfigError, ObjectMissing) as error:
        raise _fail(str(error)) from None
    with prepared.spool:
        policy = prepared.partner.policy if prepared.partner else "strict"
        publishable = not prepared.problems or (policy == "skip_invalid" and not prepared.fatal)
        out = sys.stdout.buffer
        if publishable:
            for entry in prepared.spool.replay(prepared.sha256):
                key = json.dumps(entry.key.decode()).encode()
                out.write(b'{"key":' + key + b',"value":' + (entry.value or b"null") + b"}\n")
        out.flush()
        for problem in prepared.problems:
            typer.echo(problem.one_line(), err=True)
        if prepared.problems:
            more = prepared.problem_count - len(prepared.problems)
            if more:
                typer.echo(f"… and {more} more problem(s)", err=True)
            published = "valid records would be published" if publishable else "nothing would be published"
            typer.echo(
                f"{file}: would be quarantined: {prepared.problem_count} problem(s); {published} (policy {policy})",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"{file}: ok, {prepared.spool.count} event(s), parser {prepared.parser_label}", err=True)


@app.command()
def ingest(
    target: Annotated[str, typer.Argument(help="s3://BUCKET/KEY, or a local file with --partner.")],
    partner: PartnerOption = None,
    force: Annotated[bool, typer.Option(help="Process even if the ledger says this version is done.")] = False,
) -> None:
    """Run the same core the Lambda handler runs, for one file, and print its outcome."""
    from dropgate.app import build_ingestor
    from dropgate.partners import PartnerConfigError
    from dropgate.publisher import PublishError, TopicError
    from dropgate.storage import ObjectMissing

    settings = Settings()
    try:
        if target.startswith("s3://"):
            ref, local = parse_s3_uri(target), False
        else:
            ref, local = ObjectRef(bucket=None, key=target), True
        ingestor = build_ingestor(settings, local=local)
        outcome = ingestor.ingest(ref, trigger="cli", partner_id=partner, force=force)
    except (PartnerConfigError, ObjectMissing, ValueError, TopicError, PublishError) as error:
        raise _fail(str(error)) from None
    for problem in outcome.problems:
        typer.echo(problem.one_line(), err=True)
    typer.echo(outcome.summary())
    if outcome.status == "quarantined":
        raise typer.Exit(1)


@app.command()
def init() -> None:
    """Create bucket (versioned), queue + dead-letter queue, notifications, ledger table and topic."""
    from dropgate.app import aws_client
    from dropgate.provision import provision

    settings = Settings()
    try:
        done = provision(settings, {name: aws_client(name) for name in ("s3", "sqs", "dynamodb")})
    except Exception as error:
        raise _fail(f"init failed: {error}") from None
    typer.echo(f"bucket {done.bucket}, queue {done.queue_url}, ledger {done.table}, topic {done.topic}: ready")


@app.command()
def schema() -> None:
    """Print the JSON Schema of event values (as checked into schemas/)."""
    from dropgate.events import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


@app.command()
def demo() -> None:
    """Start a local broker and moto, drop the sample files, and show what happened to each."""
    from dropgate.demo import run_demo

    raise typer.Exit(run_demo())


if __name__ == "__main__":
    app()
