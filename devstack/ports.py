"""Free loopback ports and waiting for a listener, without sleeping blindly."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_listener(port: int, *, timeout: float = 20.0, alive: object = None) -> None:
    """Connect until the port accepts; ``alive`` (a callable) aborts early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if callable(alive) and not alive():
                raise RuntimeError(f"the process meant to listen on 127.0.0.1:{port} exited") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s") from None
            time.sleep(0.05)
