"""A TCP proxy in front of the local broker that can be cut and restored: a broker restart as the
clients see it (every connection dropped, new ones refused for a while), without tansu losing the
topics it keeps in memory. Used by the soak run and the fault tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from devstack.ports import free_port


class FaultProxy:
    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FaultProxy:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._open.set()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``restore``."""
        self._open.clear()
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._connections.clear()

    def restore(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        if self._thread:
            self._thread.join()
        if self._listener:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            if not self._open.is_set():
                client.close()  # refused while "restarting"
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for conn in (source, target):
                with contextlib.suppress(OSError):
                    conn.close()
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(target)
