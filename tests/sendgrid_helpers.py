"""Helpers for the SendGrid transport tests: workspaces, a fake-backed send, direct renders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from outreach.ledger import Ledger
from outreach.render import Message
from outreach.send import QuietUI, SendOptions, SendPlan, SendSummary, execute, load, prepare
from outreach.transports import Transport
from outreach.workspace import Workspace
from tests import stores
from tests.dates import CIRCULAR_DUE

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sendgrid"
KEY = "SG.tEsT-kEy.Zq8x7w6v5u4t3s2r1q0p"  # never to be seen outside the Authorization header
ENV = (
    "SENDGRID_API_KEY",
    "SENDGRID_API_HOST",
    "OUTREACH_DB",
    "SENDGRID_WEBHOOK_PUBLIC_KEY",
    "OUTREACH_DNS_SERVER",
)

SEND_CIRCULAR = ("send", "december", "--step", "circular", "--skip-invalid", "--yes", "--now")


def start_send(root: Path, api_url: str, *extra: str) -> subprocess.Popen:
    """A real ``outreach send`` of the circular (due) against the SendGrid at ``api_url``."""
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env |= {"SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": api_url, "SENDGRID_TIMEOUT": "20"}
    return subprocess.Popen(
        [sys.executable, "-m", "outreach", "-C", str(root), *SEND_CIRCULAR, CIRCULAR_DUE, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_send(root: Path, api_url: str, *extra: str) -> str:
    """:func:`start_send` to its end, which must be a success that never shows the key."""
    proc = start_send(root, api_url, *extra)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert KEY not in out
    return out


UNSUBSCRIBE_TODO = (
    "  todo: deploy `outreach serve` at outreach.escr-net.org, then delete this line\n"
)


def copy_example(dest: Path) -> Path:
    """The shipped example workspace (campaigns/, lists/, templates/), its unsubscribe endpoint
    marked deployed: these tests send for real (to the fake), which a pending
    ``unsubscribe.todo`` refuses."""
    for name in ("campaigns", "lists", "templates"):
        shutil.copytree(REPO / name, dest / name)
    edit(dest / "campaigns" / "december.yaml", UNSUBSCRIBE_TODO, "")
    return stores.attach(dest)


def copy_fixture(dest: Path) -> Path:
    """The small ``sg`` campaign under tests/fixtures/sendgrid, with the real countries.csv."""
    shutil.copytree(FIXTURE, dest)
    shutil.copy(REPO / "lists" / "countries.csv", dest / "lists" / "countries.csv")
    return stores.attach(dest)


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace text in a workspace file (campaign YAML, CSV); the text must be there."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def use_fake(monkeypatch: pytest.MonkeyPatch, url: str, key: str = KEY) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SENDGRID_API_KEY", key)
    monkeypatch.setenv("SENDGRID_API_HOST", url)


def sendgrid_event(msg, kind: str, ts: int, n: int, **extra) -> dict:
    """An event as SendGrid posts it about a message the fake accepted: custom_args are
    top-level keys, ``sg_message_id`` starts with the X-Message-Id."""
    return {
        "email": msg.to,
        "timestamp": ts,
        "event": kind,
        "sg_event_id": f"ev-{n}",
        "sg_message_id": f"{msg.message_id}.filter0001.{n}.0",
        "category": msg.categories,
        **msg.custom_args,
        **extra,
    }


class Sleeps(list):
    """An injected ``sleep`` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def run_send(
    root: Path,
    name: str,
    *,
    steps: tuple[str, ...] = (),
    now: datetime | None = None,
    sleep: Callable[[float], None] | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    resend_unknown: bool = False,
    transport: str | None = "sendgrid",
    configure: Callable[[Transport], None] | None = None,
    ui: QuietUI | None = None,
    concurrency: int | None = None,
) -> tuple[SendSummary, SendPlan]:
    """Plan and execute a send in-process (the library path of ``outreach send --yes``)."""
    ws = Workspace.open(root)
    options = SendOptions(
        steps=steps,
        skip_invalid=True,
        yes=True,
        now=now or datetime.fromisoformat(CIRCULAR_DUE),
        transport=transport,
        resend_unknown=resend_unknown,
        allow_late=True,
        concurrency=concurrency,
    )
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        ledger.acquire_send_lock(name)
        plan = prepare(ws, name, options, ledger)
        t = plan.transport
        t.sleep = sleep if sleep is not None else Sleeps()
        if retries is not None:
            t.retries = retries
        if timeout is not None:
            t.timeout = timeout  # type: ignore[attr-defined]
        if configure is not None:
            configure(t)
        summary = execute(plan, ledger, ui or QuietUI(True))
    return summary, plan


def plan_only(root: Path, name: str, **kw) -> SendPlan:
    ws = Workspace.open(root)
    kw.setdefault("now", datetime.fromisoformat(CIRCULAR_DUE))
    options = SendOptions(dry_run=True, skip_invalid=True, transport="sendgrid", **kw)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        return prepare(ws, name, options, ledger)


def rows(root: Path, **where) -> list[dict]:
    """The store's ``sends`` rows as dicts (``where``: column = value)."""
    return stores.rows(root, "sends", **where)


def batches(root: Path) -> list[dict]:
    return stores.rows(root, "batches")


_LOADED: dict = {}


def direct_render(root: Path, name: str, step_id: str, email: str, unsubscribe_url: str) -> Message:
    """What one contact should receive, rendered on their own (no variants, no substitutions)."""
    key = (str(root), name)
    if key not in _LOADED:
        _LOADED[key] = load(Workspace.open(root), name, now=datetime.fromisoformat(CIRCULAR_DUE))
    loaded = _LOADED[key]
    campaign = loaded.campaign
    step = campaign.step(step_id)
    contact = next(c for c in loaded.contacts.contacts if c.email == email)
    _tpl, lang = loaded.renderer.resolve_template(step.spec.template, contact.language)
    subject, _ = step.spec.text_for("subject", lang, campaign.default_language)
    preheader, _ = step.spec.text_for("preheader", lang, campaign.default_language)
    data = loaded.builder.recipient(step, contact, lang, unsubscribe_url)
    return loaded.renderer.render_naive(step.spec.template, lang, data, subject, preheader)


def no_markers(text: str) -> bool:
    return re.search(r"\[\[[ht]:", text) is None
