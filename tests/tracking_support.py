"""Helpers for the tracking tests: an example workspace, a test ECDSA P-256 key that signs
webhook bodies the way SendGrid does, a real ``outreach events serve`` subprocess, and a raw
HTTP client that can send what a well-behaved client would not (truncated, oversized bodies)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.stores import attach

REPO = Path(__file__).resolve().parent.parent


def make_workspace(dest: Path) -> Path:
    """A copy of the shipped example workspace (campaigns, lists, templates)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("campaigns", "lists", "templates"):
        shutil.copytree(REPO / name, dest / name)
    return attach(dest)


def send_outbox(root: Path, step: str = "circular", now=None):
    """Send ``step`` of the example campaign with the outbox transport (real ledger rows)."""
    from datetime import datetime

    from outreach.send import QuietUI, SendOptions, send
    from outreach.workspace import Workspace
    from tests.dates import CIRCULAR_DUE

    ws = Workspace.open(root)
    ws.env.pop("SENDGRID_API_KEY", None)
    now = now or datetime.fromisoformat(CIRCULAR_DUE)
    opts = SendOptions(steps=(step,), skip_invalid=True, yes=True, transport="outbox", now=now)
    return send(ws, "december", opts, QuietUI(True))


@dataclass
class Signer:
    """A test key pair; ``public_b64`` is what SendGrid shows as the verification key."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls) -> Signer:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_b64(self) -> str:
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: str) -> str:
        sig = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(sig).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "X-Twilio-Email-Event-Webhook-Signature": self.sign(body, ts),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_server(root: Path, env_extra: dict[str, str], *args: str):
    """A real ``outreach events serve`` subprocess on a free loopback port."""
    port = free_port()
    log_path = root / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGRID_")}
    env.update(env_extra)
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outreach",
                "-C",
                str(root),
                "events",
                "serve",
                "--port",
                str(port),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(proc, port, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.log}")
            try:
                status, _h, _b = http(port, "GET", "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{server.log}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    content_length: int | None = None,
    chunked: bool = False,
    timeout: float = 20,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 request. ``content_length`` may lie (a truncated body); ``chunked``
    sends the body without a Content-Length. Returns (status, headers, body)."""
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if chunked:
        head.append("Transfer-Encoding: chunked")
        payload = b""
        for i in range(0, len(body), 65536):
            part = body[i : i + 65536]
            payload += f"{len(part):x}\r\n".encode() + part + b"\r\n"
        payload += b"0\r\n\r\n"
    else:
        n = len(body) if content_length is None else content_length
        if method != "GET" or body:
            head.append(f"Content-Length: {n}")
        payload = body
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        # the server may answer early (413) and close: then read what it said
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(raw)
        if content_length is not None and content_length > len(body):
            s.shutdown(socket.SHUT_WR)  # the client "dies" mid-body
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data:
        return 0, {}, b""
    head_raw, _, rest = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, rest
