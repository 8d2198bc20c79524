"""``outreach suppressions sync`` against the strict fake SendGrid (tests/sendgrid_fake.py), whose
suppression endpoints page like SendGrid's (tsg_suppressions_v3: limit/offset, 500 per page at
most), through the one API client: retries on 429 and 5xx, errors in plain words, no key shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import main
from outreach.ledger import Ledger
from outreach.suppressions import SyncError, history, sync
from outreach.workspace import Workspace
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import KEY, Sleeps
from tests.tracking_support import make_workspace

pytestmark = pytest.mark.both_backends


def _lists() -> dict[str, list]:
    return {
        "/v3/suppression/bounces": [
            {
                "created": 1796000000 + i,
                "email": f"bounce{i}@example.org",
                "reason": "550 5.1.1",
                "status": "5.1.1",
            }
            for i in range(1203)
        ],
        "/v3/suppression/blocks": [
            {
                "created": 1796000000,
                "email": f"block{i}@example.org",
                "reason": "421",
                "status": "4.0.0",
            }
            for i in range(3)
        ],
        "/v3/suppression/spam_reports": [
            {"created": 1796000000, "email": "Spam@Example.org", "ip": "10.63.202.100"},
            {"created": 1796000001, "email": "bounce1@example.org", "ip": "10.63.202.100"},
        ],
        "/v3/suppression/invalid_emails": [
            {"created": 1796000000, "email": "invalid@example", "reason": "Mail domain is unknown"}
        ],
        "/v3/suppression/unsubscribes": [
            {"created": 1796000000 + i, "email": f"unsub{i}@example.org"} for i in range(501)
        ],
        "/v3/asm/suppressions": [
            {
                "email": "group@example.org",
                "group_id": 4242,
                "group_name": "Circulars",
                "created_at": 1796000000,
            }
        ],
    }


@pytest.fixture
def ws(tmp_path: Path, fake: FakeSendGrid) -> Workspace:
    fake.suppressions = _lists()
    ws = Workspace.open(make_workspace(tmp_path / "ws"))
    ws.env.update(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=fake.url)
    return ws


def paths(fake: FakeSendGrid, path: str) -> list[str]:
    return [r.path for r in fake.requests if r.path.split("?")[0] == path]


def test_sync_pages_through_every_list(ws: Workspace, fake: FakeSendGrid) -> None:
    res = sync(ws, by="tester")
    again = sync(ws, by="tester")
    assert dict(res.fetched) == {
        "bounces": 1203,
        "blocks": 3,
        "spam_reports": 2,
        "invalid_emails": 1,
        "global_unsubscribes": 501,
        "group_suppressions": 1,
    }
    # bounce1 is both a bounce and a spam report: suppressed once, first reason kept
    assert dict(res.added) == {
        "bounce": 1203,
        "spamreport": 1,
        "dropped": 1,
        "unsubscribe": 501,
        "group_unsubscribe": 1,
    }
    assert res.blocks_not_suppressed == 3
    assert again.changed == 0
    assert paths(fake, "/v3/suppression/bounces")[:3] == [
        "/v3/suppression/bounces?limit=500&offset=0",
        "/v3/suppression/bounces?limit=500&offset=500",
        "/v3/suppression/bounces?limit=500&offset=1000",
    ]
    assert res.requests == 3 + 1 + 1 + 1 + 2 + 1
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fake.requests)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        active = ledger.suppressed()
        log = history(ledger, "spam@example.org")
    assert "block0@example.org" not in active  # soft
    assert active["spam@example.org"] == "spamreport"
    assert active["group@example.org"] == "group_unsubscribe"
    assert log[0]["source"] == "sendgrid-sync" and log[0]["who"] == "tester"


def test_sync_waits_for_the_rate_limit_and_retries_server_errors(
    ws: Workspace, fake: FakeSendGrid
) -> None:
    fake.queue_at("GET /v3/suppression/bounces", (429, 9), 500)
    fake.queue_at("GET /v3/asm/suppressions", 503, 502)
    sleeps = Sleeps()
    res = sync(ws, by="tester", sleep=sleeps, clock=fake.clock)
    assert res.fetched["bounces"] == 1203 and res.fetched["group_suppressions"] == 1
    assert res.added["bounce"] == 1203
    assert 7.5 <= sleeps[0] <= 10.0  # until X-RateLimit-Reset (whole seconds, rounded up)
    assert len(sleeps) == 4
    for delay, cap in zip(sleeps[1:], (2, 1, 2), strict=True):  # backoff 1·2^(n-1), jittered
        assert cap / 2 <= delay <= cap
    assert res.requests == 9 + 4  # every attempt is a request
    assert len(paths(fake, "/v3/suppression/bounces")) == 3 + 2


def test_sync_gives_up_on_a_list_that_keeps_failing_and_changes_nothing(
    ws: Workspace, fake: FakeSendGrid
) -> None:
    fake.queue_at("GET /v3/suppression/spam_reports", *[500] * 10)
    with pytest.raises(SyncError) as exc:
        sync(ws, sleep=Sleeps())
    text = str(exc.value)
    assert "reading SendGrid's spam_reports: gave up after 6 attempts" in text
    assert "SendGrid had a server error (500: internal server error)" in text
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        active = ledger.suppressed()
    assert "spam@example.org" not in active
    assert "bounce0@example.org" in active  # the lists read before it are kept


def test_sync_errors_are_clear_and_never_show_the_key(ws: Workspace, fake: FakeSendGrid) -> None:
    fake.key = "SG.another-key-entirely-0000"  # SendGrid refuses ours
    with pytest.raises(SyncError) as exc:
        sync(ws)
    assert "401" in str(exc.value) and "SENDGRID_API_KEY" in str(exc.value)
    assert KEY not in str(exc.value)
    fake.key = KEY
    fake.scopes = ["mail.send"]
    with pytest.raises(SyncError, match="403") as exc:
        sync(ws)
    assert "the API key needs the 'suppression.bounces.read' permission" in str(exc.value)
    fake.scopes.append("suppression.read")
    fake.hang = 1.0
    fake.queue_at("GET /v3/suppression/bounces", *["hang"] * 6)
    with pytest.raises(SyncError, match="cannot reach SendGrid") as exc:
        sync(ws, timeout=0.3, sleep=Sleeps())
    assert "no answer to GET /v3/suppression/bounces (timed out)" in str(exc.value)
    ws.env.update(SENDGRID_API_HOST="http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(SyncError, match="cannot reach"):
        sync(ws, timeout=2, sleep=Sleeps())
    ws.env.pop("SENDGRID_API_KEY")
    with pytest.raises(Exception, match="SENDGRID_API_KEY is not set"):
        sync(ws)


def test_sync_cli(ws: Workspace, fake: FakeSendGrid, monkeypatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.setenv("SENDGRID_API_HOST", fake.url)
    res = CliRunner().invoke(main, ["-C", str(ws.root), "suppressions", "sync", "--by", "me"])
    assert res.exit_code == 0, res.output
    assert "1707 new suppression(s) in 9 request(s); 3 block(s) not suppressed" in res.output
    assert KEY not in res.output
