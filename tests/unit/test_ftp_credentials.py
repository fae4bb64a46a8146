"""The local FTP drop's credentials and where it listens (dropgate/local/ftp_drop.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropgate.local.ftp_drop import exposure_warning, partner_passwords, password_variable
from dropgate.partners import PartnerDirectory

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
