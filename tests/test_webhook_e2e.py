"""End to end: send the example campaign (outbox transport: real ledger rows and send ids),
sign SendGrid-style events for those sends with a test ECDSA P-256 key, POST them to a real
``outreach events serve`` subprocess together with duplicates, forgeries, replays, truncated,
non-JSON and oversized bodies, use the one-click unsubscribe endpoint, then check
``outreach report --format json`` to the unit and the plans of the following steps."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from outreach.exclusions import Exclusion, Reason
from tests.dates import CIRCULAR_DUE, LAST_CALL_DUE
from tests.tracking_support import Signer, http, make_workspace, run_server, send_outbox

pytestmark = pytest.mark.slow

MODEL_LETTER = "https://www.escr-net.org/"
SHARE_X = "https://x.com/intent/post?text=Move%20forward%20%23Chile%20and%20%23RatifyOPICESCR"
MAX_BODY = 200_000


def _rows(root: Path) -> list[dict]:
    conn = sqlite3.connect(root / ".outreach" / "outreach.db")
    conn.row_factory = sqlite3.Row
    rows = [
        dict(r)
        for r in conn.execute(
            "SELECT send_id, email, campaign, step, contact_id, language FROM sends WHERE step = 'circular' ORDER BY email"
        )
    ]
    conn.close()
    return rows


class Events:
    """SendGrid-shaped events for the circular's sends, with custom_args as top-level keys."""

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
            "contact_id": r["contact_id"],
            "campaign": r["campaign"],
            "step": r["step"],
            **extra,
        }


def build_events(rows: list[dict], t0: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Three webhook batches. Expected outcome is spelled out in test_webhook_end_to_end."""
    E = Events(rows, t0)
    b1: list[dict] = []
    for i in range(len(rows)):
        b1.append(E.ev(i, "processed"))
    b1 += [
        E.ev(0, "bounce", 1, type="bounce", status="5.1.1", reason="550 5.1.1 user unknown"),
        E.ev(1, "bounce", 1, type="bounce", status="5.1.1", reason="550 5.1.1 no such user"),
        E.ev(2, "bounce", 1, type="blocked", status="4.0.0", reason="greylisted"),
        E.ev(3, "dropped", 1, reason="Invalid"),
        E.ev(34, "deferred", 1, response="451 try later", attempt="1"),
    ]
    for i in range(4, len(rows)):
        b1.append(E.ev(i, "delivered", 2, response="250 OK"))
    b2: list[dict] = []
    for i in range(4, 24):  # 20 people open (4 of them twice)
        b2.append(E.ev(i, "open", 60 + i, sg_machine_open=False, useragent="Mozilla/5.0"))
    for i in range(4, 8):
        b2.append(E.ev(i, "open", 600 + i, sg_machine_open=False))
    for i in range(20, 30):  # machine opens: 24..29 only machines, 20..23 also people
        b2.append(E.ev(i, "open", 5 + i, sg_machine_open=True, useragent="Mozilla/5.0 (proxy)"))
    for i in range(4, 10):
        b2.append(
            E.ev(i, "click", 90 + i, url=MODEL_LETTER, url_offset={"index": 0, "type": "html"})
        )
    for i in (4, 10, 11):
        b2.append(E.ev(i, "click", 95 + i, url=SHARE_X))
    b2.append(E.ev(30, "click", 120, url=MODEL_LETTER))  # a click with the pixel blocked
    b2.append(E.ev(12, "spamreport", 200))
    b2.append(E.ev(32, "group_unsubscribe", 300, asm_group_id=4242))
    b2.append(E.ev(33, "group_unsubscribe", 300, asm_group_id=4242))
    # events that match nothing: kept and reported, never counted
    stray = E.ev(5, "open", 61, sg_machine_open=False)
    stray.update(send_id="f" * 32, campaign="december", sg_event_id="stray-1")
    b2.append(stray)
    other = E.ev(6, "delivered", 2)
    other.update(send_id="0" * 32, campaign="some-other-campaign", sg_event_id="stray-2")
    b2.append(other)
    b3 = [E.ev(32, "group_resubscribe", 400, asm_group_id=4242)]
    return b1, b2, b3


def body(events: list[dict]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()


def post(server, signer: Signer, data: bytes, *, timestamp: int | None = None, **kw):
    return http(server.port, "POST", "/events", data, signer.headers(data, timestamp), **kw)


def test_webhook_end_to_end(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    summary = send_outbox(root, "circular")
    assert summary.sent == 57
    rows = _rows(root)
    assert len(rows) == 57
    signer = Signer.new()
    t0 = int(datetime.fromisoformat(CIRCULAR_DUE).timestamp()) + 3600  # events of the 2026 edition
    b1, b2, b3 = build_events(rows, t0)

    with run_server(
        root,
        {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64},
        "--max-age",
        "300",
        "--max-body",
        str(MAX_BODY),
    ) as server:
        # --- the real batches, each answered only once stored
        status, _h, resp = post(server, signer, body(b1))
        assert status == 200, resp
        assert json.loads(resp) == {"stored": len(b1), "duplicates": 0, "unmatched": 0}
        status, _h, resp = post(server, signer, body(b2))
        assert status == 200, resp
        assert json.loads(resp) == {"stored": len(b2), "duplicates": 0, "unmatched": 2}
        status, _h, resp = post(server, signer, body(b3))
        assert status == 200 and json.loads(resp)["stored"] == 1

        # --- SendGrid retries: duplicates are acknowledged and not stored twice
        status, _h, resp = post(server, signer, body(b2))
        assert status == 200
        assert json.loads(resp) == {"stored": 0, "duplicates": len(b2), "unmatched": 0}
        status, _h, resp = post(server, signer, body(b1[:10] + b3))
        assert (status, json.loads(resp)["duplicates"]) == (200, 11)

        # --- forgeries and replays: 403, nothing stored
        forged = [dict(e) for e in b2[:3]]
        forged[0]["event"] = "spamreport"
        evil = forged[0] | {
            "sg_event_id": "forged-1",
            "email": rows[40]["email"],
            "send_id": rows[40]["send_id"],
        }
        good = body(b2[:3])
        hdrs = signer.headers(good)
        assert http(server.port, "POST", "/events", body([evil]), hdrs)[0] == 403  # body swapped
        other_key = Signer.new()
        assert post(server, other_key, body([evil]))[0] == 403  # signed by someone else
        assert http(server.port, "POST", "/events", body([evil]))[0] == 403  # no signature
        bad_b64 = {**signer.headers(body([evil])), "X-Twilio-Email-Event-Webhook-Signature": "abc"}
        assert http(server.port, "POST", "/events", body([evil]), bad_b64)[0] == 403
        junk = {
            **signer.headers(body([evil])),
            "X-Twilio-Email-Event-Webhook-Signature": "%%%not base64",
        }
        assert http(server.port, "POST", "/events", body([evil]), junk)[0] == 403
        now = int(time.time())
        assert post(server, signer, body([evil]), timestamp=now - 3600)[0] == 403  # replayed
        assert post(server, signer, body([evil]), timestamp=now + 3600)[0] == 403  # from the future
        bad_ts = {
            **signer.headers(body([evil])),
            "X-Twilio-Email-Event-Webhook-Timestamp": "yesterday",
        }
        assert http(server.port, "POST", "/events", body([evil]), bad_ts)[0] == 403

        # --- malformed bodies: 400 (signed, so only the shape is wrong)
        whole = body([evil])
        assert post(server, signer, whole[: len(whole) // 2])[0] == 400  # truncated JSON
        assert post(server, signer, b"this is not json")[0] == 400
        assert post(server, signer, b'{"event": "open"}')[0] == 400  # not an array
        assert post(server, signer, b"[1, 2, 3]")[0] == 400  # not event objects
        assert post(server, signer, b'[{"email": "a@b.org"}]')[0] == 400  # no event field
        latin1 = '[{"event":"open","email":"jos\xe9@example.org"}]'.encode("latin-1")
        assert post(server, signer, latin1)[0] == 400  # not UTF-8
        # the client dies mid-body (Content-Length promises more than arrives)
        status, _h, _b = http(
            server.port,
            "POST",
            "/events",
            whole[:20],
            signer.headers(whole),
            content_length=len(whole),
        )
        assert status in (400, 0)  # 0: the answer may not reach a client that hung up

        # --- oversized: 413 by Content-Length and by the streamed size
        big = body([evil] * (MAX_BODY // len(whole) + 5))
        assert len(big) > MAX_BODY
        assert post(server, signer, big)[0] == 413
        assert post(server, signer, big, chunked=True)[0] == 413

        # --- one-click unsubscribe (RFC 8058) and the confirmation page
        sid13, sid31 = rows[13]["send_id"], rows[31]["send_id"]
        one_click = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _h, page = http(
            server.port, "POST", f"/u/{sid13}", b"List-Unsubscribe=One-Click", one_click
        )
        # the page speaks the recipient's language
        done = {
            "en": "You are unsubscribed",
            "es": "Se ha dado de baja",
            "fr": "Votre désabonnement",
        }
        assert status == 200 and done[rows[13]["language"]].encode() in page
        assert (
            http(server.port, "POST", f"/u/{sid13}", b"List-Unsubscribe=One-Click", one_click)[0]
            == 200
        )
        conn = sqlite3.connect(root / ".outreach" / "outreach.db")
        with conn:
            conn.execute("UPDATE sends SET language = 'es' WHERE send_id = ?", (sid31,))
        conn.close()
        status, _h, page = http(server.port, "GET", f"/u/{sid31}")
        text = page.decode()
        assert status == 200 and 'lang="es"' in text and "Darme de baja" in text
        assert 'method="post"' in text and rows[31]["email"] not in text  # address masked
        status, _h, page = http(
            server.port, "POST", f"/u/{sid31}", b"List-Unsubscribe=One-Click&via=page", one_click
        )
        assert status == 200 and "Se ha dado de baja" in page.decode()
        # inert test tokens, unknown ids
        assert http(server.port, "GET", "/u/test")[0] == 200
        assert (
            http(server.port, "POST", "/u/preview", b"List-Unsubscribe=One-Click", one_click)[0]
            == 200
        )
        status, _h, page = http(
            server.port, "POST", "/u/" + "a" * 32, b"List-Unsubscribe=One-Click"
        )
        assert status == 404 and page == b"Not found\n"
        assert http(server.port, "GET", "/u/../../etc/passwd")[0] == 404
        assert http(server.port, "GET", "/u/<script>")[0] == 404

    log = server.log
    # every rejection was logged with its reason and the running count; the totals at exit
    for reason, n in {
        "bad-signature": 4,
        "missing-signature": 1,
        "stale-timestamp": 2,
        "bad-timestamp": 1,
        "bad-json": 2,
        "not-array": 1,
        "bad-event": 2,
        "bad-utf8": 1,
        "too-large": 2,
    }.items():
        assert f"{reason}={n}" in log, (reason, log[-3000:])
    assert "truncated=1" in log or "bad-json=3" in log
    assert any(
        line.startswith("stopped:") or ("stopped:" in line and "rejections:" in line)
        for line in log.splitlines()
    ), log[-2000:]

    # --- the report counts exactly what was stored, once
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "-C",
            str(root),
            "report",
            "december",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rep = json.loads(out.stdout)
    print(json.dumps(rep["steps"][0]["totals"], indent=1))
    assert rep["events"] == {"matched": len(b1) + len(b2) - 2 + len(b3) + 2, "unmatched": 1}
    [circ] = rep["steps"]
    totals = {k: v for k, v in circ["totals"].items() if not k.endswith("_rate")}
    assert totals == {
        "sent": 57,
        "delivered": 53,
        "deferred": 1,
        "bounced_hard": 2,
        "bounced_soft": 1,
        "dropped": 1,
        "opens_unique": 20,
        "opens_total": 24,
        "machine_opens_unique": 10,
        "clicks_unique": 9,
        "clicks_total": 10,
        "unsubscribes": 4,  # two links (one-click, page) and two group unsubscribes
        "spam_reports": 1,
    }
    assert circ["totals"]["open_rate"] == round(20 / 53, 4)
    assert circ["totals"]["bounce_rate"] == round(3 / 57, 4)
    for dim, groups in circ["by"].items():
        assert sum(g["sent"] for g in groups) == 57, dim
        assert sum(g["opens_unique"] for g in groups) == 20, dim
    links = {link["link"]: (link["clicks_unique"], link["clicks_total"]) for link in circ["links"]}
    assert links["share:x"] == (3, 3)
    assert [v for k, v in links.items() if k.startswith("model_letter")] == [(7, 7)]
    assert sum(b["opens"] for b in rep["timeline"]) == 24
    assert sum(b["clicks"] for b in rep["timeline"]) == 10

    # --- suppressions: who, when, why; the resubscribed address is lifted
    from outreach.ledger import Ledger
    from outreach.suppressions import history

    with Ledger.open(f"sqlite:///{root / '.outreach' / 'outreach.db'}", root) as ledger:
        active = ledger.suppressed()
        log_rows = history(ledger)
    expected = {
        rows[0]["email"]: "bounce",
        rows[1]["email"]: "bounce",
        rows[3]["email"]: "dropped",
        rows[12]["email"]: "spamreport",
        rows[13]["email"]: "unsubscribe",
        rows[31]["email"]: "unsubscribe",
        rows[33]["email"]: "group_unsubscribe",
    }
    assert active == {k.lower(): v for k, v in expected.items()}
    unsub_log = [r for r in log_rows if r["email"] == rows[13]["email"].lower()]
    assert unsub_log[0]["who"] == f"the recipient ({rows[13]['email']})"
    assert "one-click" in unsub_log[0]["note"] and unsub_log[0]["at"]
    lifted = [r for r in log_rows if r["email"] == rows[32]["email"].lower()]
    assert [r["action"] for r in lifted] == ["add", "remove"]

    # --- the next steps exclude the suppressed; last-call targets exactly the non-openers
    from outreach.send import SendOptions, prepare
    from outreach.workspace import Workspace

    ws = Workspace.open(root)
    ws.env.pop("SENDGRID_API_KEY", None)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        plan = prepare(
            ws,
            "december",
            SendOptions(
                steps=("last-call", "human-rights-day"),
                dry_run=True,
                skip_invalid=True,
                transport="outbox",
                now=datetime.fromisoformat(LAST_CALL_DUE),
            ),
            ledger,
        )
    by_step = {sp.step.id: sp for sp in plan.steps}
    last = by_step["last-call"]
    engaged = set(range(4, 24)) | {30}  # people who opened, or clicked (a click is a human open)
    suppressed = {0, 1, 3, 12, 13, 31, 33}
    want = {rows[i]["email"] for i in range(57) if i not in engaged and i not in suppressed}
    got = {r.contact.email for r in last.recipients}
    assert got == want
    assert len(got) == 31
    assert {rows[i]["email"] for i in range(24, 30)} <= got  # machine opens are not opens
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "bounce")] == 2
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "dropped")] == 1
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "spamreport")] == 1
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "unsubscribe")] == 2
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "group_unsubscribe")] == 1
    assert last.exclusions[Exclusion(Reason.OPENED, step="circular")] == 19
    hrd = by_step["human-rights-day"]
    hrd_emails = {r.contact.email for r in hrd.recipients}
    assert not hrd_emails & set(expected)
    assert hrd.excluded(Reason.SUPPRESSED) == 7


def test_serve_refuses_to_start_without_a_key(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from outreach.cli import main

    root = make_workspace(tmp_path / "ws")
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    res = CliRunner().invoke(main, ["-C", str(root), "events", "serve", "--port", "1"])
    assert res.exit_code == 1
    assert (
        "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in res.output
        and "--insecure-no-verify" in res.output
    )
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")
    res = CliRunner().invoke(main, ["-C", str(root), "events", "serve", "--port", "1"])
    assert res.exit_code == 1 and "not a valid public key" in res.output


def test_insecure_mode_warns_at_start_and_per_request(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    with run_server(root, {}, "--insecure-no-verify") as server:
        data = body([{"event": "open", "email": "a@example.org", "sg_event_id": "x1"}])
        status, _h, resp = http(server.port, "POST", "/events", data)
        assert status == 200 and json.loads(resp) == {"stored": 1, "duplicates": 0, "unmatched": 1}
    log = server.log
    assert "SIGNATURE VERIFICATION IS OFF" in log
    assert "UNVERIFIED webhook request accepted" in log
