"""``python -m devstack``: the demo, a local FTP drop and the soak run, on the local stack.

Not part of the product: ``dropgate`` (dropgate/cli/) is the CLI that ships. Messages keep the
``dropgate:`` prefix, and the exit codes their meaning: 0 done, 1 the demo or soak found something
wrong, 2 usage or infrastructure error (the message says what to fix).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dropgate.cli.root import debugging, echo, fail, run
from dropgate.config import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)


@app.command()
def demo() -> None:
    """Start a local broker and moto, drop the sample files, and show what happened to each."""
    from devstack.demo import run_demo

    raise typer.Exit(run_demo())


@app.command()
def ftp(
    host: Annotated[str, typer.Option(help="Address to listen on (keep it on loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="FTP control port.")] = 2121,
    passwords_file: Annotated[
        str | None, typer.Option(help="YAML 'partner: password' file, mode 600 (else the environment).")
    ] = None,
) -> None:
    """A local FTP endpoint: each partner logs in with its id and its uploads land in the drop bucket.

    Each partner has its own password: from --passwords-file, else DROPGATE_FTP_PASSWORD_<PARTNER>
    (e.g. DROPGATE_FTP_PASSWORD_ACME), else one made up for this run and printed once. Uses the
    configured endpoints (AWS_ENDPOINT_URL for moto's server) and DROPGATE_BUCKET.
    """
    from devstack.ftp_drop import exposure_warning, partner_passwords, start_ftp_drop
    from dropgate.app import aws_client
    from dropgate.partners import PartnerDirectory

    settings = Settings()
    if not settings.bucket:
        raise fail("DROPGATE_BUCKET is not set: it names the drop bucket uploads land in")
    partners = PartnerDirectory.load(settings.partners)
    try:
        passwords, generated = partner_passwords(partners, passwords_file)
    except (OSError, ValueError) as error:
        raise fail(str(error)) from None
    warning = exposure_warning(host)
    if warning:
        echo(f"dropgate: warning: {warning}", err=True)
    users = ", ".join(p.id for p in partners)
    echo(f"FTP drop on ftp://{host}:{port}/ for partners {users} → s3://{settings.bucket}/<prefix>; Ctrl-C stops")
    for partner_id in generated:
        echo(f"  {partner_id}: password {passwords[partner_id]} (made up for this run)")
    start_ftp_drop(
        partners, aws_client("s3"), settings.bucket, passwords=passwords, host=host, port=port, background=False
    )


@app.command()
def soak(
    files: Annotated[int, typer.Option(help="How many small files to drop.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the files' contents and upload order.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Many small files through S3 → SQS → handler, with duplicate notifications and a broker outage.

    Then the topic is checked against what the files say: exit 1 if a key ends wrong or a file is lost.
    """
    from devstack.soak import run_soak

    report = run_soak(files, seed=seed)
    if as_json:
        typer.echo(json.dumps({**report.__dict__, "ok": report.ok}, indent=2))
    else:
        typer.echo("\n".join(report.lines()))
        for example in report.examples:
            typer.echo(f"  ! {example}")
        typer.echo("OK" if report.ok else "FAILED")
    raise typer.Exit(0 if report.ok else 1)


def main() -> None:
    """An unexpected error (no tansu binary, a port in use) is one line and exit 2, as in ``dropgate``."""
    run(app, debug=debugging)
