"""Staff logins through a real ``outreach serve`` (subprocesses, raw HTTP): two worker processes
share sessions and the login rate limit through the store, and ``--insecure-no-auth`` warns.
Slow: each test starts a server."""

from __future__ import annotations

import json
import re
from http.client import HTTPConnection
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from outreach import accounts
from tests.conftest import STAFF_PASSWORD
from tests.tracking_support import Signer, http, run_server

pytestmark = pytest.mark.slow

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def request(port: int, method: str, path: str, body: bytes = b"", headers=None):
    """(status, headers, every Set-Cookie as {name: value}, body) of one request."""
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        jar = SimpleCookie()
        for header in resp.headers.get_all("set-cookie") or []:
            jar.load(header)
        return resp.status, resp.headers, {k: m.value for k, m in jar.items()}, resp.read()
    finally:
        conn.close()


def log_in(port: int, email: str, password: str):
    """(status, headers, cookies) of a login through the form."""
    status, _h, cookies, body = request(port, "GET", "/login")
    assert status == 200
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    form = urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    status, headers, cookies, _ = request(
        port,
        "POST",
        "/login",
        form,
        {**FORM, "Cookie": f"outreach_login={cookies['outreach_login']}"},
    )
    return status, headers, cookies


def test_two_workers_share_sessions_and_the_rate_limit(sent_ws) -> None:
    accounts.add_user(sent_ws, "admin@example.org", "admin", STAFF_PASSWORD, by="tests")
    env = {"SENDGRID_WEBHOOK_PUBLIC_KEY": Signer.new().public_b64}
    with run_server(sent_ws.root, env, "--workers", "2") as server:
        status, _h, cookies = log_in(server.port, "admin@example.org", STAFF_PASSWORD)
        assert status == 303, server.log
        session = cookies["outreach_session"]
        cookie = {"Cookie": f"outreach_session={session}"}
        # whichever worker answers knows the session (tests/test_web_auth.py proves the sharing
        # with two apps deterministically; here the kernel picks the worker)
        for _ in range(6):
            status, _h, body = http(server.port, "GET", "/api/me", headers=cookie)
            assert status == 200 and json.loads(body)["email"] == "admin@example.org"
        for i in range(accounts.FAILURE_LIMIT):
            status, _h, _c = log_in(server.port, "admin@example.org", "wrong")
            assert status == 401, (i, server.log)
        status, headers, _c = log_in(server.port, "admin@example.org", STAFF_PASSWORD)
        assert status == 429 and int(headers["retry-after"]) == 900
        assert "failed login for admin@example.org from 127.0.0.1" in server.log
        assert STAFF_PASSWORD not in server.log and session not in server.log
        # logged out on one worker, out on both
        csrf = json.loads(http(server.port, "GET", "/api/me", headers=cookie)[2])["csrf_token"]
        form = urlencode({"csrf_token": csrf}).encode()
        status, _h, _b = http(server.port, "POST", "/logout", form, {**FORM, **cookie})
        assert status == 303
        for _ in range(4):
            assert http(server.port, "GET", "/api/me", headers=cookie)[0] == 401


def test_insecure_no_auth_warns_loudly(sent_ws) -> None:
    """It warns; every request is a local admin; the workers agree on the CSRF token."""
    env = {"OUTREACH_SECRET_KEY": ""}
    args = ("--insecure-no-auth", "--insecure-no-verify", "--host", "127.0.0.1", "--workers", "2")
    with run_server(sent_ws.root, env, *args) as server:
        tokens = set()
        for _ in range(6):
            status, _h, _c, body = request(server.port, "GET", "/api/me")
            me = json.loads(body)
            assert status == 200 and me["role"] == "admin" and me["via"] == "insecure"
            tokens.add(me["csrf_token"])
        assert len(tokens) == 1
        body = json.dumps({"email": "local@example.org", "why": "a local test"}).encode()
        headers = {"Content-Type": "application/json", "X-CSRF-Token": tokens.pop()}
        for email in ("a@example.org", "b@example.org", "c@example.org", "d@example.org"):
            body = json.dumps({"email": email, "why": "a local test"}).encode()
            status, _h, _c, _b = request(server.port, "POST", "/api/suppressions", body, headers)
            assert status == 201, server.log
        log = server.log
    assert "STAFF LOGIN IS OFF (--insecure-no-auth)" in log
    assert "!" * 78 in log and "Local use only" in log
    assert "staff pages and /api/ WITHOUT A LOGIN" in log
