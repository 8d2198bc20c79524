"""``POST /events`` (the signed Event Webhook) through Starlette's TestClient, on a workspace
whose circular went out through the outbox: signatures, timestamps against the app's fixed
clock, malformed and oversized bodies, deduplication, matching, suppressions, and what the
report and the next plans make of the stored events. The real server is in test_serve.py."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import pytest

from outreach.exclusions import Exclusion, Reason
from outreach.ledger import Ledger
from outreach.report import report
from outreach.send import SendOptions, prepare
from outreach.suppressions import history
from outreach.web.app import create_app
from outreach.web.services import ServerSettings
from outreach.web.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests import stores
from tests.conftest import SECRET_KEY
from tests.dates import LAST_CALL_DUE, WEBHOOK_NOW, webhook_now
from tests.tracking_support import EVENTS_T0, Signer, body, circular_batches

NOW = webhook_now()  # reports and plans as of the webhook's clock


@pytest.fixture
def batches(circular_rows):
    return circular_batches(circular_rows)


def stored_events(ws) -> int:
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        return ledger.events_count("december", 2026)


def rejections(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected ")]


# ------------------------------------------------------------------------------------------
# Stored once, answered after the commit


def test_batches_are_stored_and_answered_with_counts(webhook, batches, sent_ws) -> None:
    b1, b2, b3 = batches
    r = webhook(b1)
    assert r.status_code == 200
    assert r.json() == {"stored": len(b1), "duplicates": 0, "unmatched": 0}
    # the answer came after the commit: another connection sees every event
    assert stored_events(sent_ws) == len(b1)
    assert webhook(b2).json() == {"stored": len(b2), "duplicates": 0, "unmatched": 2}
    assert webhook(b3).json()["stored"] == 1


@pytest.mark.parametrize(
    ("again", "duplicates"),
    [
        pytest.param(lambda b1, b2, b3: b2, "all", id="the-same-batch-retried"),
        pytest.param(lambda b1, b2, b3: b1[:10] + b3, 11, id="an-overlapping-batch"),
        pytest.param(lambda b1, b2, b3: b3 + b3, 2, id="a-repeat-inside-one-batch"),
    ],
)
def test_retries_are_acknowledged_and_not_stored_twice(
    webhook, batches, sent_ws, again, duplicates
) -> None:
    for b in batches:
        assert webhook(b).status_code == 200
    before = stored_events(sent_ws)
    events = again(*batches)
    r = webhook(events)
    assert r.status_code == 200
    want = len(events) if duplicates == "all" else duplicates
    assert r.json() == {"stored": len(events) - want, "duplicates": want, "unmatched": 0}
    assert stored_events(sent_ws) == before + len(events) - want


def test_a_repeat_inside_a_fresh_batch_is_stored_once(webhook, batches, sent_ws) -> None:
    _b1, _b2, b3 = batches
    r = webhook(b3 + b3)
    assert r.json() == {"stored": 1, "duplicates": 1, "unmatched": 0}


# ------------------------------------------------------------------------------------------
# Forgeries and replays: 403, nothing stored


def _evil(batches, circular_rows) -> list[dict]:
    """A spam report forged for someone who never complained."""
    e = dict(batches[1][0])
    e.update(
        event="spamreport",
        sg_event_id="forged-1",
        email=circular_rows[40]["email"],
        send_id=circular_rows[40]["send_id"],
    )
    return [e]


SIGNATURE_CASES = {
    # name: (headers for the evil body, the logged reason)
    "body-swapped": (lambda s, evil, good: s.headers(good), "bad-signature"),
    "signed-by-another-key": (lambda s, evil, good: Signer.new().headers(evil), "bad-signature"),
    "no-headers": (lambda s, evil, good: {}, "missing-signature"),
    "no-timestamp": (
        lambda s, evil, good: {SIGNATURE_HEADER: s.headers(evil)[SIGNATURE_HEADER]},
        "missing-signature",
    ),
    "no-signature": (
        lambda s, evil, good: {TIMESTAMP_HEADER: s.headers(evil)[TIMESTAMP_HEADER]},
        "missing-signature",
    ),
    "short-base64": (
        lambda s, evil, good: {**s.headers(evil), SIGNATURE_HEADER: "abc"},
        "bad-signature",
    ),
    "not-base64": (
        lambda s, evil, good: {**s.headers(evil), SIGNATURE_HEADER: "%%%not base64"},
        "bad-signature",
    ),
    "timestamp-not-a-number": (
        lambda s, evil, good: {**s.headers(evil), TIMESTAMP_HEADER: "yesterday"},
        "bad-timestamp",
    ),
    "signature-of-another-timestamp": (
        lambda s, evil, good: {
            **s.headers(evil, WEBHOOK_NOW - 1),
            TIMESTAMP_HEADER: str(WEBHOOK_NOW),
        },
        "bad-signature",
    ),
}


@pytest.mark.parametrize("case", list(SIGNATURE_CASES))
def test_forgeries_are_refused(
    webhook, signer, batches, circular_rows, sent_ws, caplog, case
) -> None:
    make_headers, reason = SIGNATURE_CASES[case]
    evil = body(_evil(batches, circular_rows))
    good = body(batches[1][:3])
    caplog.set_level(logging.INFO, "outreach.server")
    r = webhook(evil, headers=make_headers(signer, evil, good))
    assert r.status_code == 403
    assert r.text == f"403 {reason}\n"
    assert stored_events(sent_ws) == 0
    assert rejections(caplog) == [
        f"rejected 403 {reason} from testclient (rejections so far: {reason}=1)"
    ]


@pytest.mark.parametrize(
    ("offset", "status"),
    [
        pytest.param(-3600, 403, id="an-hour-old-replay"),
        pytest.param(+3600, 403, id="an-hour-in-the-future"),
        pytest.param(-301, 403, id="just-outside-the-window"),
        pytest.param(+301, 403, id="just-outside-the-window-ahead"),
        pytest.param(-300, 200, id="at-the-edge-of-the-window"),
        pytest.param(+299, 200, id="a-little-ahead-clock-skew"),
        pytest.param(0, 200, id="now"),
    ],
)
def test_timestamps_outside_the_window_are_replays(
    serve_app, signer, batches, sent_ws, caplog, offset, status
) -> None:
    client = serve_app(max_age=300)  # the app's clock is WEBHOOK_NOW, whatever today is
    data = body(batches[2])
    caplog.set_level(logging.INFO, "outreach.server")
    r = client.post("/events", content=data, headers=signer.headers(data, WEBHOOK_NOW + offset))
    assert r.status_code == status
    if status == 403:
        assert r.text == "403 stale-timestamp\n"
        assert f"{-offset:+d} s, window ±300 s" in rejections(caplog)[0]
    assert stored_events(sent_ws) == (1 if status == 200 else 0)


def test_an_injected_clock_is_read_per_request(sent_ws, signer, batches) -> None:
    from starlette.testclient import TestClient

    now = [WEBHOOK_NOW]
    app = create_app(
        sent_ws,
        ServerSettings(public_key=signer.public_b64, secret_key=SECRET_KEY),
        clock=lambda: now[0],
    )
    data = body(batches[2])
    headers = signer.headers(data, WEBHOOK_NOW)
    with TestClient(app) as client:
        assert client.post("/events", content=data, headers=headers).status_code == 200
        now[0] += 601  # ten minutes later the same signed request is a replay
        assert client.post("/events", content=data, headers=headers).status_code == 403


# ------------------------------------------------------------------------------------------
# Malformed bodies: 400 (signed, so only the shape is wrong), nothing stored


def _truncated(batches) -> bytes:
    whole = body(batches[0][:3])
    return whole[: len(whole) // 2]


MALFORMED = {
    "truncated-json": (_truncated, "bad-json"),
    "not-json": (lambda b: b"this is not json", "bad-json"),
    "empty": (lambda b: b"", "bad-json"),
    "not-an-array": (lambda b: b'{"event": "open"}', "not-array"),
    "not-event-objects": (lambda b: b"[1, 2, 3]", "bad-event"),
    "no-event-field": (lambda b: b'[{"email": "a@b.org"}]', "bad-event"),
    "one-bad-event-among-good-ones": (
        lambda b: body([*b[2], {"email": "a@b.org"}]),
        "bad-event",
    ),
    "not-utf8": (
        lambda b: '[{"event":"open","email":"jos\xe9@example.org"}]'.encode("latin-1"),
        "bad-utf8",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_bodies_are_refused(webhook, batches, sent_ws, caplog, case) -> None:
    make, reason = MALFORMED[case]
    caplog.set_level(logging.INFO, "outreach.server")
    r = webhook(make(batches))
    assert (r.status_code, r.text) == (400, f"400 {reason}\n")
    assert stored_events(sent_ws) == 0
    assert f"rejected 400 {reason} from testclient" in rejections(caplog)[0]


def _asgi_post(app, chunks: list[bytes], headers: dict[str, str]) -> int:
    """POST /events straight through ASGI: the body arrives in ``chunks``, then the client
    disconnects (what no HTTP client library lets a test do). Returns the status sent."""
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.disconnect"})
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.7", 40000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_a_client_that_hangs_up_mid_body_is_refused(sent_ws, signer, batches, caplog) -> None:
    app = create_app(
        sent_ws,
        ServerSettings(public_key=signer.public_b64, secret_key=SECRET_KEY, now=WEBHOOK_NOW),
    )
    services = app.state.services
    services.open()  # what the lifespan does
    try:
        whole = body(batches[0][:5])
        headers = {**signer.headers(whole), "Content-Length": str(len(whole))}
        caplog.set_level(logging.INFO, "outreach.server")
        assert _asgi_post(app, [whole[:20], whole[20:40]], headers) == 400
        assert "truncated" in rejections(caplog)[0]
        assert services.ledger.events_count("december", 2026) == 0
        # a Content-Length that is not a number
        assert _asgi_post(app, [], {**headers, "Content-Length": "12x"}) == 400
        assert "bad-content-length" in rejections(caplog)[1]
    finally:
        services.close()


# ------------------------------------------------------------------------------------------
# Oversized: 413, by Content-Length before reading, and by what is actually streamed


def test_oversized_bodies_are_refused(serve_app, signer, batches, caplog) -> None:
    client = serve_app(max_body=10_000)
    big = body(batches[0])
    assert len(big) > 10_000
    caplog.set_level(logging.INFO, "outreach.server")
    r = client.post("/events", content=big, headers=signer.headers(big))
    assert (r.status_code, r.text) == (413, "413 too-large\n")
    assert "Content-Length" in rejections(caplog)[0]
    # no Content-Length (chunked): refused once the streamed body passes the limit
    r = client.post("/events", content=iter([big[:6000], big[6000:]]), headers=signer.headers(big))
    assert r.status_code == 413
    assert "over 10000 bytes" in rejections(caplog)[1]
    # the size is checked before the signature: an unsigned giant costs nothing to refuse
    assert client.post("/events", content=big).status_code == 413
    small = body(batches[2])
    assert client.post("/events", content=small, headers=signer.headers(small)).status_code == 200


# ------------------------------------------------------------------------------------------
# Matching, suppressions, and what reports and plans make of it


def test_events_matching_no_message_are_kept_apart(webhook, batches, sent_ws) -> None:
    b2 = batches[1]
    strays = [e for e in b2 if e["sg_event_id"].startswith("stray-")]
    assert webhook(strays).json() == {"stored": 2, "duplicates": 0, "unmatched": 2}
    rep = report(sent_ws, "december", now=NOW)
    assert (rep.events_matched, rep.events_unmatched) == (0, 1)  # one names this campaign
    assert rep.steps[0].totals["opens_unique"] == 0
    assert any("match no message" in n for n in rep.notes)


@pytest.mark.parametrize(
    ("event", "extra", "reason"),
    [
        ("bounce", {"type": "bounce"}, "bounce"),
        ("bounce", {"type": "blocked"}, None),  # soft: try again next time
        ("dropped", {"reason": "Invalid"}, "dropped"),
        ("dropped", {"reason": "Spam Content"}, None),
        ("spamreport", {}, "spamreport"),
        ("unsubscribe", {}, "unsubscribe"),
        ("group_unsubscribe", {"asm_group_id": 4242}, "group_unsubscribe"),
        ("delivered", {}, None),
    ],
)
def test_events_update_the_suppressions(
    webhook, circular_rows, sent_ws, event, extra, reason
) -> None:
    r = circular_rows[7]
    ev = {
        "event": event,
        "email": r["email"],
        "send_id": r["send_id"],
        "campaign": "december",
        "timestamp": EVENTS_T0,
        "sg_event_id": "s1",
        **extra,
    }
    assert webhook([ev]).status_code == 200
    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        active = ledger.suppressed()
        log = history(ledger)
    assert active == ({r["email"].lower(): reason} if reason else {})
    if reason:
        assert [(e["action"], e["who"]) for e in log] == [("add", "SendGrid Event Webhook")]


def test_report_counts_exactly_what_was_stored(webhook, batches, circular_rows, sent_ws) -> None:
    b1, b2, b3 = batches
    for b in (b1, b2, b3, b2, b1[:10]):  # with SendGrid's retries
        assert webhook(b).status_code == 200
    for i, extra in ((13, b""), (31, b"&via=page")):  # two recipients use the link
        r = webhook.client.post(
            f"/u/{circular_rows[i]['send_id']}", content=b"List-Unsubscribe=One-Click" + extra
        )
        assert r.status_code == 200
    rep = report(sent_ws, "december", now=NOW).as_dict()
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


def test_the_next_steps_follow_the_stored_events(webhook, batches, circular_rows, sent_ws) -> None:
    for b in batches:
        assert webhook(b).status_code == 200
    for i in (13, 31):
        sid = circular_rows[i]["send_id"]
        assert webhook.client.post(f"/u/{sid}", content=b"List-Unsubscribe=One-Click").is_success
    rows = circular_rows
    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        active = ledger.suppressed()
        log_rows = history(ledger)
        plan = prepare(
            sent_ws,
            "december",
            SendOptions(
                steps=("last-call", "human-rights-day"),
                dry_run=True,
                skip_invalid=True,
                transport="outbox",
                now=datetime.fromisoformat(LAST_CALL_DUE),  # every step of 2026 has come
            ),
            ledger,
        )
    expected = {
        rows[0]["email"]: "bounce",
        rows[1]["email"]: "bounce",
        rows[3]["email"]: "dropped",
        rows[12]["email"]: "spamreport",
        rows[13]["email"]: "unsubscribe",
        rows[31]["email"]: "unsubscribe",
        rows[33]["email"]: "group_unsubscribe",  # 32 resubscribed
    }
    assert active == {k.lower(): v for k, v in expected.items()}
    lifted = [r for r in log_rows if r["email"] == rows[32]["email"].lower()]
    assert [r["action"] for r in lifted] == ["add", "remove"]

    by_step = {sp.step.id: sp for sp in plan.steps}
    last = by_step["last-call"]
    engaged = set(range(4, 24)) | {30}  # people who opened, or clicked (a click is a human open)
    suppressed = {0, 1, 3, 12, 13, 31, 33}
    want = {rows[i]["email"] for i in range(57) if i not in engaged and i not in suppressed}
    got = {r.contact.email for r in last.recipients}
    assert got == want and len(got) == 31
    assert {rows[i]["email"] for i in range(24, 30)} <= got  # machine opens are not opens
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "bounce")] == 2
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "dropped")] == 1
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "spamreport")] == 1
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "unsubscribe")] == 2
    assert last.exclusions[Exclusion(Reason.SUPPRESSED, "group_unsubscribe")] == 1
    assert last.exclusions[Exclusion(Reason.OPENED, step="circular")] == 19
    hrd = by_step["human-rights-day"]
    assert not {r.contact.email for r in hrd.recipients} & set(expected)
    assert hrd.excluded(Reason.SUPPRESSED) == 7


# ------------------------------------------------------------------------------------------
# The store cannot be written; unsigned mode; the log


def test_a_locked_store_answers_503_so_that_sendgrid_retries(
    serve_app, signer, circular_rows, sent_ws, caplog, monkeypatch
) -> None:
    import outreach.store.sqlite

    monkeypatch.setattr(outreach.store.sqlite, "BUSY_TIMEOUT_MS", 50)  # fail fast, not in 10 s
    client = serve_app()
    data = body(circular_batches(circular_rows)[2])
    with stores.open_store(sent_ws.root) as other, other.transaction():
        # another process holds the write lock
        caplog.set_level(logging.INFO, "outreach.server")
        r = client.post("/events", content=data, headers=signer.headers(data))
        assert (r.status_code, r.text) == (503, "503 storage-error\n")
        assert any("could not store 1 event(s)" in m.getMessage() for m in caplog.records)
    r = client.post("/events", content=data, headers=signer.headers(data))
    assert r.status_code == 200  # and the retry is stored


def test_unsigned_mode_accepts_and_warns_on_every_request(serve_app, caplog) -> None:
    client = serve_app(public_key=None, insecure=True)
    caplog.set_level(logging.INFO, "outreach.server")
    data = body([{"event": "open", "email": "a@example.org", "sg_event_id": "x1"}])
    for _ in range(2):
        assert client.post("/events", content=data).status_code == 200
    warnings = [
        r for r in caplog.records if "UNVERIFIED webhook request accepted" in r.getMessage()
    ]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)


def test_without_a_key_the_app_refuses_to_start(sent_ws) -> None:
    from outreach.exceptions import ConfigError

    with pytest.raises(ConfigError, match="SENDGRID_WEBHOOK_PUBLIC_KEY is not set") as exc:
        create_app(sent_ws, ServerSettings(public_key=None))
    assert "--insecure-no-verify" in exc.value.hint
    with pytest.raises(ConfigError, match="not a valid public key"):
        create_app(sent_ws, ServerSettings(public_key="bm90IGEga2V5"))


def test_rejections_are_counted_per_reason_and_totals_logged_at_shutdown(
    sent_ws, signer, batches, caplog
) -> None:
    from starlette.testclient import TestClient

    caplog.set_level(logging.INFO, "outreach.server")
    settings = ServerSettings(public_key=signer.public_b64, secret_key=SECRET_KEY, now=WEBHOOK_NOW)
    with TestClient(create_app(sent_ws, settings)) as client:
        ok = body(batches[2])
        client.post("/events", content=ok, headers=signer.headers(ok))
        for data in (b"nope", b"nope", b"{}"):
            client.post("/events", content=data, headers=signer.headers(data))
        client.post("/events", content=ok)
        assert rejections(caplog)[-1].endswith(
            "(rejections so far: bad-json=2, missing-signature=1, not-array=1)"
        )
    # the lifespan has ended: the worker logged its totals
    [stopped] = [r.getMessage() for r in caplog.records if "stopped:" in r.getMessage()]
    assert stopped.endswith(
        "stopped: 1 batch(es), 1 event(s), 1 stored, 0 duplicate, 0 unmatched, 0 unsubscribe(s); "
        "rejections: bad-json=2, missing-signature=1, not-array=1"
    )
