"""Local https servers for the doctor's endpoint checks: a throw-away CA (trustme) whose root is
trusted through ``SSL_CERT_FILE``, and uvicorn serving an ASGI app over TLS in a thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Route

from tests.waiting import wait_until

HOST = "127.0.0.1"


@contextmanager
def serve_https(app, ca: trustme.CA, folder: Path) -> Iterator[str]:
    """Serve ``app`` over https on 127.0.0.1 with a certificate from ``ca``; yields the origin."""
    cert = ca.issue_cert(HOST, "localhost")
    key_path, chain_path = folder / "server.key", folder / "server.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    chain_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        ssl_keyfile=str(key_path),
        ssl_certfile=str(chain_path),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started or not thread.is_alive(), 20), "no https server"
        assert server.started, "the https server did not start"
        yield f"https://{HOST}:{port}"
    finally:
        server.should_exit = True
        wait_until(lambda: not thread.is_alive(), 20)
        sock.close()


def broken_app() -> Starlette:
    """An unsubscribe endpoint done wrong: the one-click POST redirects, /healthz fails."""

    async def page(request):
        if request.method == "POST":
            return RedirectResponse("/thanks", status_code=303)
        return PlainTextResponse("unsubscribe?")

    async def health(request):
        return PlainTextResponse("database down", status_code=500)

    return Starlette(
        routes=[
            Route("/u/{token}", page, methods=["GET", "POST"]),
            Route("/healthz", health),
        ]
    )
