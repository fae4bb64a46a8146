"""moto's server on a free loopback port: S3, SQS and DynamoDB speaking the real wire protocol.

boto3 reaches it through ``AWS_ENDPOINT_URL``, exactly as it would reach AWS, so the code under
test is the production code. moto delivers S3 → SQS notifications (URL-encoded keys and the
``s3:TestEvent`` a real bucket sends first).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from devstack.ports import free_port

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class LocalAws:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> LocalAws:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as error:
            raise RuntimeError("moto is not installed: pip install -e '.[dev]'") from error
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request drowns everything
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.reset()
        return self

    def reset(self) -> None:
        """Forget every bucket, queue and table: moto's state is per process, not per server, so
        without this a new local stack would inherit the previous one's leftovers."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own server on loopback
            pass

    def environment(self) -> dict[str, str]:
        """What to export so boto3 (and dropgate) talk to this server."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
