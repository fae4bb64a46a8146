"""``python -m devstack ftp``: a local FTP endpoint in front of the drop bucket, as partners use SFTP
on AWS.

Each configured partner logs in with its partner id and lands in its own home directory; a file
is put into the drop bucket, under the partner's prefix, only once its transfer completed. A
transfer the server knows failed (the client's ABOR, an error on the data connection) is discarded
and never lands. One whose connection just ends early (a cut line, a killed client) is
indistinguishable from a complete one in FTP's stream mode, which has no length: it lands, and the
parser quarantines it as truncated (XML that ends before its root closes, or a gzip stream without
its end marker). Either way a cut-off upload is never published as a complete file. (On AWS,
Transfer Family writes the object when the upload closes, with the same outcome.)
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropgate.partners import PartnerDirectory


@dataclass
class FtpDrop:
    """A running FTP drop; ``landed`` lists the S3 keys written, ``discarded`` the cut-off uploads."""

    host: str
    port: int
    landed: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    _server: Any = None
    _thread: threading.Thread | None = None
    _root: tempfile.TemporaryDirectory[str] | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()  # the server's own thread closes it (closing it from here races its poll)
            self._thread.join(timeout=10)
        elif self._server is not None:
            self._server.close_all()
        if self._root is not None:
            self._root.cleanup()

    def _serve(self) -> None:
        """The background thread: poll until told to stop, then close every socket from this thread."""
        try:
            while not self._stopping.is_set():
                self._server.serve_forever(timeout=0.1, blocking=False, handle_exit=False)
        finally:
            self._server.close_all()


def start_ftp_drop(
    partners: PartnerDirectory,
    s3: Any,
    bucket: str,
    *,
    passwords: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 2121,
    background: bool = True,
) -> FtpDrop:
    try:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer
    except ImportError as error:
        raise RuntimeError("the local FTP drop needs pyftpdlib: pip install -e '.[dev]'") from error

    if background:
        _quiet_ftp_log()
    root = tempfile.TemporaryDirectory(prefix="dropgate-ftp-")
    drop = FtpDrop(host=host, port=port, _root=root)
    authorizer = DummyAuthorizer()
    homes = _partner_homes(partners, Path(root.name), passwords, authorizer)
    handler = _drop_handler(FTPHandler, homes, s3, bucket, drop)
    handler.authorizer = authorizer
    handler.banner = "dropgate local FTP drop: files land in the drop bucket under your partner prefix"
    handler.permit_foreign_addresses = False
    server = FTPServer((host, port), handler)
    drop.port = server.address[1]
    drop._server = server
    if background:
        drop._thread = threading.Thread(target=drop._serve, daemon=True)
        drop._thread.start()
    else:
        server.serve_forever()
    return drop


def _quiet_ftp_log() -> None:
    """One line per command is for an operator watching `python -m devstack ftp`, not for demos and
    tests. A handler of our own also stops pyftpdlib from installing (and lowering the level of) its own."""
    import logging

    ftp_logger = logging.getLogger("pyftpdlib")
    ftp_logger.setLevel(logging.WARNING)
    if not ftp_logger.handlers:
        ftp_logger.addHandler(logging.NullHandler())


def _partner_homes(
    partners: PartnerDirectory, root: Path, passwords: Mapping[str, str], authorizer: Any
) -> dict[str, tuple[Path, str]]:
    """A home directory under ``root`` and a login per partner; returns each one's home and S3 prefix."""
    homes: dict[str, tuple[Path, str]] = {}
    for partner in partners:
        home = root / partner.id
        home.mkdir()
        homes[partner.id] = (home, partner.prefix)
        # Each partner its own password: one shared among all let any partner log in as any other.
        authorizer.add_user(partner.id, passwords[partner.id], str(home), perm="elwmd")  # list, write, mkdir, delete
    return homes


def _drop_handler(base: Any, homes: dict[str, tuple[Path, str]], s3: Any, bucket: str, drop: FtpDrop) -> Any:
    """pyftpdlib's ``FTPHandler`` (``base``, imported only when a drop starts) made to put each completed
    upload into ``bucket`` under the partner's prefix, and to discard failed ones."""

    class DropHandler(base):  # type: ignore[misc]
        def _target(self, file: str) -> tuple[Path, str]:
            home, prefix = homes[self.username]
            local = Path(file)
            return local, prefix + local.relative_to(home).as_posix()

        def on_file_received(self, file: str) -> None:
            local, key = self._target(file)
            with local.open("rb") as handle:
                s3.upload_fileobj(handle, bucket, key)  # the whole file, once: one S3 notification
            local.unlink()
            drop.landed.append(key)

        def on_incomplete_file_received(self, file: str) -> None:
            local, key = self._target(file)
            local.unlink(missing_ok=True)  # a transfer that failed never reaches the bucket
            drop.discarded.append(key)

    return DropHandler


def password_variable(partner_id: str) -> str:
    """``DROPGATE_FTP_PASSWORD_<PARTNER>``: the id upper-cased, anything but letters and digits as ``_``."""
    return "DROPGATE_FTP_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", partner_id.upper())


def partner_passwords(partners: PartnerDirectory, secrets_file: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Each partner's password, and the ids whose password was made up for this run.

    From ``secrets_file`` (YAML, ``partner: password``, readable by its owner only), else from
    ``DROPGATE_FTP_PASSWORD_<PARTNER>``, else a random one for this run, which the caller prints
    once. Never one password for everybody.
    """
    from_file: dict[str, str] = {}
    if secrets_file:
        from_file = _read_secrets(Path(secrets_file))
    passwords: dict[str, str] = {}
    generated: list[str] = []
    for partner in partners:
        given = from_file.get(partner.id) or os.environ.get(password_variable(partner.id))
        if given:
            passwords[partner.id] = given
        else:
            passwords[partner.id] = secrets.token_urlsafe(12)
            generated.append(partner.id)
    return passwords, generated


def _read_secrets(path: Path) -> dict[str, str]:
    import yaml

    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{path} is readable by others than its owner: chmod 600 it, it holds partners' passwords")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict) or not all(isinstance(v, str) and v for v in loaded.values()):
        raise ValueError(f"{path} must map partner ids to non-empty passwords, e.g. 'acme: s3cret'")
    return {str(key): value for key, value in loaded.items()}


def exposure_warning(host: str) -> str | None:
    """A warning when ``host`` is not loopback: FTP sends passwords and files in clear text."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: assume it is reachable
    return (
        f"listening on {host}, which other machines can reach: FTP carries passwords and files in clear text; "
        "this endpoint is for local development (partners use the template's SFTP server on AWS)"
    )
