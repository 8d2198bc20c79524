"""A TCP proxy in front of the test PostgreSQL server that the test can take down and bring
back: "the database is unreachable" without stopping a server other tests use.

One thread forwards bytes with ``selectors`` (timed ``select`` is fine under libfaketime);
:meth:`Proxy.down` closes every connection and stops listening (connections are refused),
:meth:`Proxy.up` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class Proxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._parts = parts
        self.sel = selectors.DefaultSelector()
        self.pairs: dict[socket.socket, socket.socket] = {}
        self.listener: socket.socket | None = None
        self.port = 0
        self._want_up = True
        self._stop = False
        self._changed = threading.Event()  # set by the loop after it applied up/down
        self._listen()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The target URL, through the proxy."""
        p = self._parts
        auth = p.netloc.rsplit("@", 1)[0] + "@" if "@" in p.netloc else ""
        return urlunsplit((p.scheme, f"{auth}127.0.0.1:{self.port}", p.path, p.query, ""))

    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.setblocking(False)
        self.port = s.getsockname()[1]
        self.listener = s
        self.sel.register(s, selectors.EVENT_READ)

    def _close_all(self) -> None:
        for a in list(self.pairs):
            self._drop(a)
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None

    def _drop(self, a: socket.socket) -> None:
        b = self.pairs.pop(a, None)
        for s in (a, b):
            if s is None:
                continue
            self.pairs.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(s)
            s.close()

    def _loop(self) -> None:
        while not self._stop:
            if not self._want_up and self.listener is not None:
                self._close_all()
                self._changed.set()
            elif self._want_up and self.listener is None:
                self._listen()
                self._changed.set()
            for key, _ in self.sel.select(0.02):
                sock = key.fileobj
                if sock is self.listener:
                    try:
                        client, _ = self.listener.accept()
                    except BlockingIOError:
                        continue
                    try:
                        server = socket.create_connection(self.target)
                    except OSError:
                        client.close()
                        continue
                    self.pairs[client], self.pairs[server] = server, client
                    self.sel.register(client, selectors.EVENT_READ)
                    self.sel.register(server, selectors.EVENT_READ)
                    continue
                if sock not in self.pairs:
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                try:
                    self.pairs[sock].sendall(data)
                except OSError:
                    self._drop(sock)
        self._close_all()

    def _set(self, up: bool) -> None:
        if self._want_up == up and (self.listener is not None) == up:
            return
        self._changed.clear()
        self._want_up = up
        self._changed.wait()  # untimed: the loop always signals within one select period

    def down(self) -> None:
        """Cut every connection and refuse new ones."""
        self._set(False)

    def up(self) -> None:
        self._set(True)

    def close(self) -> None:
        self._stop = True
        self.thread.join()
