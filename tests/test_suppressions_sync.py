"""``outreach suppressions sync`` against a real local HTTP server shaped like SendGrid's
suppression API (tsg_suppressions_v3: limit/offset paging, 500 per page at most)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from outreach.cli import main
from outreach.ledger import Ledger
from outreach.suppressions import SyncError, history, sync
from outreach.workspace import Workspace
from tests.tracking_support import make_workspace

KEY = "SG.test-key-that-must-never-be-printed"


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


class FakeSendGrid:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[tuple[str, dict, str]] = []
        data = _lists()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((url.path, q, self.headers.get("Authorization", "")))
                if fake.mode == "slow":
                    time.sleep(1)
                    return  # the client has given up by now
                if fake.mode == "401" or self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, {"errors": [{"message": "authorization required"}]})
                if url.path not in data:
                    return self._send(404, {"errors": [{"message": "not found"}]})
                items = data[url.path]
                if "limit" in q:
                    limit, offset = int(q["limit"]), int(q.get("offset", 0))
                    assert 1 <= limit <= 500
                    items = items[offset : offset + limit]
                self._send(200, items)

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(make_workspace(tmp_path / "ws"))


def test_sync_pages_through_every_list(ws: Workspace) -> None:
    with FakeSendGrid() as sg:
        ws.env.update(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=sg.url)
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
    bounce_pages = [q for p, q, _a in sg.requests if p == "/v3/suppression/bounces"]
    assert bounce_pages[:3] == [
        {"limit": "500", "offset": "0"},
        {"limit": "500", "offset": "500"},
        {"limit": "500", "offset": "1000"},
    ]
    assert res.requests == 3 + 1 + 1 + 1 + 2 + 1
    assert all(a == f"Bearer {KEY}" for _p, _q, a in sg.requests)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        active = ledger.suppressed()
        log = history(ledger, "spam@example.org")
    assert "block0@example.org" not in active  # soft
    assert active["spam@example.org"] == "spamreport"
    assert active["group@example.org"] == "group_unsubscribe"
    assert log[0]["source"] == "sendgrid-sync" and log[0]["who"] == "tester"


def test_sync_errors_are_clear_and_never_show_the_key(ws: Workspace) -> None:
    with FakeSendGrid("401") as sg:
        ws.env.update(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=sg.url)
        with pytest.raises(SyncError) as exc:
            sync(ws)
    assert "401" in str(exc.value) and "SENDGRID_API_KEY" in str(exc.value)
    assert KEY not in str(exc.value)
    with FakeSendGrid("slow") as sg:
        ws.env.update(SENDGRID_API_HOST=sg.url)
        with pytest.raises(SyncError, match="cannot reach SendGrid"):
            sync(ws, timeout=0.3)
    ws.env.update(SENDGRID_API_HOST="http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(SyncError, match="cannot reach"):
        sync(ws, timeout=2)
    ws.env.pop("SENDGRID_API_KEY")
    with pytest.raises(Exception, match="SENDGRID_API_KEY is not set"):
        sync(ws)


def test_sync_cli(ws: Workspace, monkeypatch) -> None:
    with FakeSendGrid() as sg:
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", sg.url)
        res = CliRunner().invoke(main, ["-C", str(ws.root), "suppressions", "sync", "--by", "me"])
    assert res.exit_code == 0, res.output
    assert "1707 new suppression(s) in 9 request(s); 3 block(s) not suppressed" in res.output
    assert KEY not in res.output
