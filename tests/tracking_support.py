"""Helpers for the tracking tests: an example workspace, a test ECDSA P-256 key that signs
webhook bodies the way SendGrid does, a real ``outreach serve`` subprocess, and a raw HTTP
client that can send what a well-behaved client would not (truncated, oversized bodies).

Signed timestamps and the servers' clocks default to :data:`tests.dates.WEBHOOK_NOW`, so that
no test depends on the day it runs."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.dates import CIRCULAR_DUE, WEBHOOK_NOW
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
    """A test key pair; ``public_b64`` is what SendGrid shows as the verification key.
    Headers carry the timestamp ``now`` unless told otherwise."""

    private: ec.EllipticCurvePrivateKey
    now: int = WEBHOOK_NOW

    @classmethod
    def new(cls, now: int = WEBHOOK_NOW) -> Signer:
        return cls(ec.generate_private_key(ec.SECP256R1()), now)

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
        ts = str(self.now if timestamp is None else timestamp)
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
def run_server(
    root: Path,
    env_extra: dict[str, str],
    *args: str,
    now: int | None = WEBHOOK_NOW,
    command: tuple[str, ...] = ("serve",),
):
    """A real ``outreach serve`` subprocess on a free loopback port, its clock fixed at ``now``
    (``None``: the real clock). ``command`` may be the old ``("events", "serve")``."""
    port = free_port()
    if now is not None:
        args = (*args, "--now", datetime.fromtimestamp(now, UTC).isoformat())
    log_path = root / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGRID_")}
    env.setdefault("OUTREACH_SECRET_KEY", "test-secret-key-of-a-real-server-process")
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
                *command,
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


# ------------------------------------------------------------------------------------------
# SendGrid-shaped events for the example circular's sends

MODEL_LETTER = "https://www.escr-net.org/"
# an hour after the 2026 circular went out (events of the 2026 edition, before WEBHOOK_NOW)
EVENTS_T0 = int(datetime.fromisoformat(CIRCULAR_DUE).timestamp()) + 3600
SHARE_X = "https://x.com/intent/post?text=Move%20forward%20%23Chile%20and%20%23RatifyOPICESCR"


class Events:
    """Events for ledger rows, with custom_args as top-level keys (as SendGrid posts them)."""

    def __init__(self, rows: list[dict], t0: int) -> None:
        self.rows = rows
        self.t0 = t0
        self.n = 0

    def ev(self, i: int, event: str, minutes: int = 0, **extra) -> dict:
        r = self.rows[i]
        self.n += 1
        return {
            "email": r["email"],
            "timestamp": self.t0 + minutes * 60,
            "smtp-id": f"<{r['send_id']}@escr-net.org>",
            "event": event,
            "category": ["op-icescr", "december", "circular"],
            "sg_event_id": f"ev-{i}-{event}-{self.n}",
            "sg_message_id": f"msg{i:03d}.filterdrecv-1-{self.n}.0",
            "send_id": r["send_id"],
            "campaign": r["campaign"],
            "step": r["step"],
            **extra,
        }


def circular_batches(
    rows: list[dict], t0: int = EVENTS_T0
) -> tuple[list[dict], list[dict], list[dict]]:
    """Three webhook batches for the circular's 57 rows (ordered by address).

    1. processed for all; hard bounces for 0 and 1, a block (soft) for 2, a drop for 3, a
       deferral for 34; delivered for 4…56.
    2. human opens by 4…23 (4…7 twice); machine opens by 20…29 (24…29 only machines); clicks on
       the model letter by 4…9 and 30 (30 with the pixel blocked), on a share link by 4, 10,
       11; a spam report by 12; group unsubscribes by 32 and 33; two events that match nothing.
    3. a group resubscribe by 32.
    """
    E = Events(rows, t0)
    b1: list[dict] = [E.ev(i, "processed") for i in range(len(rows))]
    b1 += [
        E.ev(0, "bounce", 1, type="bounce", status="5.1.1", reason="550 5.1.1 user unknown"),
        E.ev(1, "bounce", 1, type="bounce", status="5.1.1", reason="550 5.1.1 no such user"),
        E.ev(2, "bounce", 1, type="blocked", status="4.0.0", reason="greylisted"),
        E.ev(3, "dropped", 1, reason="Invalid"),
        E.ev(34, "deferred", 1, response="451 try later", attempt="1"),
    ]
    b1 += [E.ev(i, "delivered", 2, response="250 OK") for i in range(4, len(rows))]
    b2: list[dict] = []
    for i in range(4, 24):
        b2.append(E.ev(i, "open", 60 + i, sg_machine_open=False, useragent="Mozilla/5.0"))
    for i in range(4, 8):
        b2.append(E.ev(i, "open", 600 + i, sg_machine_open=False))
    for i in range(20, 30):
        b2.append(E.ev(i, "open", 5 + i, sg_machine_open=True, useragent="Mozilla/5.0 (proxy)"))
    for i in range(4, 10):
        b2.append(
            E.ev(i, "click", 90 + i, url=MODEL_LETTER, url_offset={"index": 0, "type": "html"})
        )
    for i in (4, 10, 11):
        b2.append(E.ev(i, "click", 95 + i, url=SHARE_X))
    b2.append(E.ev(30, "click", 120, url=MODEL_LETTER))
    b2.append(E.ev(12, "spamreport", 200))
    b2.append(E.ev(32, "group_unsubscribe", 300, asm_group_id=4242))
    b2.append(E.ev(33, "group_unsubscribe", 300, asm_group_id=4242))
    stray = E.ev(5, "open", 61, sg_machine_open=False)
    stray.update(send_id="f" * 32, sg_event_id="stray-1")  # this campaign, no such message
    b2.append(stray)
    other = E.ev(6, "delivered", 2)
    other.update(send_id="0" * 32, campaign="some-other-campaign", sg_event_id="stray-2")
    b2.append(other)
    b3 = [E.ev(32, "group_resubscribe", 400, asm_group_id=4242)]
    return b1, b2, b3


def body(events: list[dict]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()


def cli_report(cli, ws, *args: str) -> dict:
    """``outreach report december --format json`` of ``ws`` at the webhook tests' "now"."""
    from tests.dates import webhook_now

    r = cli(
        ws.root, "report", "december", "--format", "json", "--now", webhook_now().isoformat(), *args
    )
    assert r.exit_code == 0, r.output
    return json.loads(r.output)
