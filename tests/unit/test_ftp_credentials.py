"""The local FTP drop's credentials and where it listens (devstack/ftp_drop.py, `python -m devstack ftp`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devstack.cli import app
from devstack.ftp_drop import exposure_warning, partner_passwords, password_variable
from dropgate.partners import PartnerDirectory
from tests.conftest import REPO

PARTNERS = PartnerDirectory.from_yaml(
    "partners:\n  acme: {prefix: acme/, format: generic}\n  globex-eu.2: {prefix: globex/, format: generic}\n"
)


def test_passwords_come_from_the_environment_per_partner(monkeypatch: pytest.MonkeyPatch) -> None:
    assert password_variable("globex-eu.2") == "DROPGATE_FTP_PASSWORD_GLOBEX_EU_2"
    monkeypatch.setenv("DROPGATE_FTP_PASSWORD_ACME", "acme-secret")
    monkeypatch.setenv("DROPGATE_FTP_PASSWORD", "the-old-shared-one")  # no longer read
    passwords, generated = partner_passwords(PARTNERS)
    assert passwords["acme"] == "acme-secret"
    assert generated == ["globex-eu.2"]
    assert passwords["globex-eu.2"] not in ("acme-secret", "the-old-shared-one", "dropgate-local")
    assert len(passwords["globex-eu.2"]) >= 16


def test_made_up_passwords_differ_between_partners_and_runs() -> None:
    first, _ = partner_passwords(PARTNERS)
    second, _ = partner_passwords(PARTNERS)
    assert first["acme"] != first["globex-eu.2"] and first["acme"] != second["acme"]


def test_a_passwords_file_must_be_private(tmp_path: Path) -> None:
    secrets = tmp_path / "ftp-passwords.yaml"
    secrets.write_text("acme: from-the-file\n")
    secrets.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others than its owner: chmod 600"):
        partner_passwords(PARTNERS, str(secrets))
    secrets.chmod(0o600)
    passwords, generated = partner_passwords(PARTNERS, str(secrets))
    assert passwords["acme"] == "from-the-file" and generated == ["globex-eu.2"]
    secrets.write_text("acme: ''\n")
    with pytest.raises(ValueError, match="must map partner ids to non-empty passwords"):
        partner_passwords(PARTNERS, str(secrets))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_is_quiet(host: str) -> None:
    assert exposure_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "ftp.example.com"])  # noqa: S104 - words only
def test_any_other_address_is_warned_about(host: str) -> None:
    warning = exposure_warning(host)
    assert warning is not None and f"listening on {host}, which other machines can reach" in warning


def test_the_ftp_command_needs_the_drop_bucket_and_a_private_passwords_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m devstack ftp` refuses, with exit 2 and the fix, before it listens."""
    runner = CliRunner()
    unset = runner.invoke(app, ["ftp"])
    assert unset.exit_code == 2
    assert unset.stderr == "dropgate: DROPGATE_BUCKET is not set: it names the drop bucket uploads land in\n"

    monkeypatch.setenv("DROPGATE_BUCKET", "drops")
    secrets = tmp_path / "ftp-passwords.yaml"
    secrets.write_text("acme: from-the-file\n")
    secrets.chmod(0o644)
    shared = runner.invoke(app, ["ftp", "--passwords-file", str(secrets)])
    assert shared.exit_code == 2
    assert shared.stderr.startswith(f"dropgate: {secrets} is readable by others than its owner: chmod 600 it")
    assert shared.stdout == ""


def test_the_ftp_command_on_a_port_in_use_is_one_line_and_exit_2() -> None:
    """Through `python -m devstack`, as a developer runs it: it names each partner's made-up password,
    then the error in one line, no traceback (exit 1 would mean "quarantined" to scripts)."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "devstack", "ftp", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, "DROPGATE_BUCKET": "drops"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith(f"FTP drop on ftp://127.0.0.1:{port}/ for partners acme, ")
    assert "→ s3://drops/<prefix>; Ctrl-C stops" in done.stdout
    assert "  acme: password " in done.stdout and "(made up for this run)" in done.stdout
    assert done.stderr.startswith("dropgate: OSError: ") and "Traceback" not in done.stderr
