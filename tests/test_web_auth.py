"""Staff logins of ``outreach serve`` through Starlette's TestClient, on every store backend:
who may reach what, sessions and their cookie, CSRF, the login rate limit, API tokens, the
audit log, and that no secret is ever stored or shown in clear."""

from __future__ import annotations

import logging
from http.cookies import SimpleCookie

import pytest

from outreach import accounts
from outreach.accounts import FAILURE_LIMIT
from outreach.exceptions import ConfigError
from outreach.web.app import create_app
from outreach.web.auth import LOGIN_COOKIE, SESSION_COOKIE
from outreach.web.services import ServerSettings
from tests import stores
from tests.conftest import SECRET_KEY, STAFF_PASSWORD
from tests.dates import WEBHOOK_NOW

pytestmark = [pytest.mark.both_backends, pytest.mark.usefixtures("fast_argon2")]

PROXY = ("127.0.0.1", 40000)
HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
STAFF_PAGES = ("/account", "/audit", "/", "/campaigns/december", "/contacts", "/suppressions")
API_READS = ("/api/me", "/api/campaigns", "/api/campaigns/december/report", "/api/suppressions")


def cookies(response) -> dict:
    """The response's Set-Cookie headers: {name: morsel}."""
    jar: dict = {}
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        jar.update(parsed)
    return jar


def clock_at(start: float = WEBHOOK_NOW):
    """A clock the test moves: ``clock.now[0] += seconds``."""
    now = [float(start)]

    def clock() -> float:
        return now[0]

    clock.now = now  # type: ignore[attr-defined]
    return clock


def landing(app) -> str:
    """Where a login lands by default: the dashboard at /, or (without one) the account page."""
    if any(getattr(route, "path", None) == "/" for route in app.routes):
        return "/"
    return app.url_path_for("account")


def store_rows(ws, table: str) -> list[dict]:
    return stores.rows(ws.root, table)


# ------------------------------------------------------------------------------------------
# Nothing staff-facing without a login; the public routes stay public


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_an_anonymous_page_visit_goes_to_the_login_page(serve_app, path) -> None:
    r = serve_app().get(path + "?x=1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"http://testserver/login?next={path}%3Fx%3D1"


@pytest.mark.parametrize("path", API_READS)
def test_an_anonymous_api_call_is_401(serve_app, path) -> None:
    r = serve_app().get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="outreach"'
    assert r.json()["error"] == "unauthenticated"


def test_anonymous_writes_are_refused(serve_app) -> None:
    c = serve_app()
    assert (
        c.post("/api/suppressions", json={"email": "a@example.org", "why": "x"}).status_code == 401
    )
    assert c.delete("/api/suppressions/a@example.org").status_code == 401
    r = c.post("/logout", follow_redirects=False)  # nothing to end: back to the login page
    assert (r.status_code, r.headers["location"]) == (303, "http://testserver/login")


def test_the_public_routes_stay_public(serve_app, signer) -> None:
    c = serve_app()
    assert c.get("/healthz").text == "ok\n"
    assert c.get("/static/outreach.css").status_code == 200
    assert c.get("/u/test").status_code == 200
    assert c.get("/login").status_code == 200
    data = b"[]"
    assert c.post("/events", content=data, headers=signer.headers(data)).status_code == 200


def test_unknown_api_paths_answer_json(staff_client) -> None:
    c = staff_client()
    r = c.get("/api/nope")
    assert (r.status_code, r.json()["error"]) == (404, "not-found")
    r = c.put("/api/campaigns")
    assert r.status_code == 405 and r.json()["error"] == "http-error"


# ------------------------------------------------------------------------------------------
# Logging in and out


def test_a_login_lands_where_it_was_asked_for(serve_app, staff_accounts, login, sent_ws) -> None:
    c = serve_app()
    r = login(c, staff_accounts["viewer"], next="/account")
    assert (r.status_code, r.headers["location"]) == (303, "http://testserver/account")
    page = c.get("/account")
    assert page.status_code == 200
    assert "viewer@example.org" in page.text and 'name="csrf_token"' in page.text
    [row] = store_rows(sent_ws, "users")[1:]  # admin first, then viewer (by id)
    assert row["last_login_at"].startswith("2026-12-02T12:00:00")


def test_a_login_lands_on_the_dashboard_when_there_is_one(
    serve_app, staff_accounts, login, monkeypatch
) -> None:
    from outreach.web import app as web_app
    from outreach.web import dashboard

    c = serve_app()
    assert login(c, staff_accounts["viewer"]).headers["location"] == "http://testserver/"
    assert 'class="brand" href="/"' in c.get("/account").text
    # a service without the dashboard lands on the account page, and its header links no page
    # it does not serve
    without = tuple(m for m in web_app.ROUTE_MODULES if m is not dashboard)
    monkeypatch.setattr(web_app, "ROUTE_MODULES", without)
    c = serve_app()
    assert login(c, staff_accounts["viewer"]).headers["location"].endswith("/account")
    header = c.get("/account").text.split("</header>", 1)[0]
    assert 'class="brand" href="/account"' in header and "/campaigns" not in header


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil", ""])
def test_a_login_never_leaves_the_site(serve_app, staff_accounts, login, target) -> None:
    c = serve_app()
    r = login(c, staff_accounts["viewer"], next=target)
    assert r.headers["location"] == "http://testserver" + landing(c.app)


def test_a_wrong_password(serve_app, staff_accounts, login, sent_ws, caplog) -> None:
    caplog.set_level(logging.INFO)
    c = serve_app()
    r = login(c, staff_accounts["admin"], "not the password", next="/audit")
    assert r.status_code == 401
    assert "Wrong email or password." in r.text
    assert '<input type="hidden" name="next" value="/audit">' in r.text  # kept for the retry
    assert SESSION_COOKIE not in cookies(r)
    assert c.get("/account", follow_redirects=False).status_code == 303
    # an account that does not exist gets the same answer (see the next test)
    assert login(serve_app(), "nobody@example.org", "not the password").status_code == 401
    assert [f["email"] for f in store_rows(sent_ws, "login_failures")] == [
        "admin@example.org",
        "nobody@example.org",
    ]
    assert "not the password" not in caplog.text


def test_a_password_typed_as_the_email_is_neither_stored_nor_logged(
    serve_app, login, sent_ws, caplog
) -> None:
    caplog.set_level(logging.INFO)
    assert login(serve_app(), "Tr0ub4dor&3-horse", "Tr0ub4dor&3-horse").status_code == 401
    [failure] = store_rows(sent_ws, "login_failures")
    assert failure["email"] == accounts.NOT_AN_ADDRESS
    assert "Tr0ub4dor" not in caplog.text and "tr0ub4dor" not in caplog.text
    assert "failed login for (not an address) from testclient" in caplog.text


def test_the_two_failure_pages_are_the_same(serve_app, staff_accounts, login) -> None:
    """A known and an unknown account get the same status and words."""
    known = login(serve_app(), staff_accounts["admin"], "not the password")
    unknown = login(serve_app(), "nobody@example.org", "not the password")

    def words(r, email):
        import re

        text = r.text.replace(email, "EMAIL")
        return re.sub(r'name="csrf_token" value="[^"]+"', "", text)

    assert known.status_code == unknown.status_code == 401
    assert words(known, "admin@example.org") == words(unknown, "nobody@example.org")


def test_logout_ends_the_session_on_the_server(staff_client, sent_ws) -> None:
    c = staff_client("admin")
    stolen = c.cookies[SESSION_COOKIE]
    assert len(store_rows(sent_ws, "sessions")) == 1
    r = c.post("/logout", data={"csrf_token": c.csrf}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "http://testserver/login")
    assert cookies(r)[SESSION_COOKIE]["max-age"] == "0"
    assert store_rows(sent_ws, "sessions") == []
    # the old cookie, replayed (a copy kept by an attacker), no longer works
    c.cookies.set(SESSION_COOKIE, stolen)
    assert c.get("/account", follow_redirects=False).status_code == 303
    assert c.get("/api/me").status_code == 401


def test_logout_needs_the_csrf_token(staff_client, sent_ws) -> None:
    c = staff_client()
    assert c.post("/logout", follow_redirects=False).status_code == 403
    assert c.post("/logout", data={"csrf_token": "x" * 43}).status_code == 403
    assert c.get("/account").status_code == 200  # still logged in
    assert len(store_rows(sent_ws, "sessions")) == 1


def test_a_forged_or_tampered_cookie_is_nobody(staff_client) -> None:
    c = staff_client()
    good = c.cookies[SESSION_COOKIE]
    value, _, signature = good.rpartition(".")
    # (a signature's last base64 character carries 2 ignored bits: change one in the middle)
    other = "A" if signature[10] != "A" else "B"
    tampered = f"{value}.{signature[:10]}{other}{signature[11:]}"
    for bad in (value, f"{value}x.{signature}", tampered, f"{value}.", "garbage"):
        c.cookies.clear()
        c.cookies.set(SESSION_COOKIE, bad)
        assert c.get("/api/me").status_code == 401, bad


def test_each_login_is_a_new_session(serve_app, staff_accounts, login, sent_ws) -> None:
    c = serve_app()
    login(c, staff_accounts["viewer"])
    first = c.cookies[SESSION_COOKIE]
    login(c, staff_accounts["viewer"])
    assert c.cookies[SESSION_COOKIE] != first
    assert len(store_rows(sent_ws, "sessions")) == 2


# ------------------------------------------------------------------------------------------
# The session cookie


def test_the_session_cookie_flags_over_http(serve_app, staff_accounts, login) -> None:
    r = login(serve_app(), staff_accounts["viewer"])
    cookie = cookies(r)[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(int(accounts.SESSION_MAX.total_seconds()))
    assert not cookie["secure"]  # plain http (local use): a Secure cookie would not come back


def test_the_session_cookie_is_secure_over_https(serve_app, staff_accounts, login) -> None:
    c = serve_app(base_url="https://testserver")
    r = login(c, staff_accounts["viewer"])
    assert r.headers["location"] == "https://testserver" + landing(c.app)
    cookie = cookies(r)[SESSION_COOKIE]
    assert cookie["secure"] is True and cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    fresh = serve_app(base_url="https://testserver")
    assert cookies(fresh.get("/login"))[LOGIN_COOKIE]["secure"] is True
    assert c.get("/account").status_code == 200


def test_behind_a_trusted_proxy_cookies_are_secure_and_redirects_https(
    serve_app, staff_accounts
) -> None:
    """Caddy talks plain http to the app and says ``X-Forwarded-Proto: https``: the cookies
    are Secure and every redirect stays on https. (The cookies are carried by hand: the test
    client talks http, where a client keeps Secure cookies to itself.)"""
    import re

    c = serve_app(proxy_headers=True, client=PROXY)
    r = c.get("/account", headers=HTTPS, follow_redirects=False)
    assert r.headers["location"] == "https://testserver/login?next=/account"
    page = c.get("/login?next=/account", headers=HTTPS)
    assert 'href="https://testserver/static/outreach.css"' in page.text
    assert 'action="https://testserver/login"' in page.text
    nonce = cookies(page)[LOGIN_COOKIE]
    assert nonce["secure"] is True and nonce["httponly"] is True
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {
        "email": staff_accounts["viewer"],
        "password": STAFF_PASSWORD,
        "csrf_token": token,
        "next": "/account",
    }
    r = c.post(
        "/login",
        data=form,
        follow_redirects=False,
        headers={**HTTPS, "Cookie": f"{LOGIN_COOKIE}={nonce.value}"},
    )
    assert (r.status_code, r.headers["location"]) == (303, "https://testserver/account")
    session = cookies(r)[SESSION_COOKIE]
    assert session["secure"] is True and session["httponly"] is True
    assert session["samesite"].lower() == "lax"
    with_session = {**HTTPS, "Cookie": f"{SESSION_COOKIE}={session.value}"}
    csrf = c.get("/api/me", headers=with_session).json()["csrf_token"]
    r = c.post("/logout", data={"csrf_token": csrf}, headers=with_session, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "https://testserver/login")
    assert cookies(r)[SESSION_COOKIE]["secure"] is True  # the deletion matches the cookie


def test_an_untrusted_proxy_cannot_claim_https(serve_app, staff_accounts, login) -> None:
    c = serve_app(proxy_headers=True, client=("198.51.100.4", 1))
    r = login(c, staff_accounts["viewer"], headers=HTTPS)
    assert r.headers["location"] == "http://testserver" + landing(c.app)
    assert not cookies(r)[SESSION_COOKIE]["secure"]


# ------------------------------------------------------------------------------------------
# Expiry


def test_an_idle_session_expires(serve_app, staff_accounts, login, sent_ws) -> None:
    clock = clock_at()
    c = serve_app(clock=clock)
    login(c, staff_accounts["viewer"])
    idle = accounts.SESSION_IDLE.total_seconds()
    clock.now[0] += idle - 60
    assert c.get("/api/me").status_code == 200  # used: the idle limit starts again
    clock.now[0] += idle - 60
    assert c.get("/api/me").status_code == 200
    clock.now[0] += idle
    assert c.get("/api/me").status_code == 401
    assert c.get("/account", follow_redirects=False).status_code == 303
    assert store_rows(sent_ws, "sessions") == []  # deleted, not just refused


def test_a_session_ends_at_its_absolute_limit_even_in_use(serve_app, staff_accounts, login):
    clock = clock_at()
    c = serve_app(clock=clock)
    login(c, staff_accounts["viewer"])
    step = accounts.SESSION_IDLE.total_seconds() / 2
    used = 0.0
    while used + step < accounts.SESSION_MAX.total_seconds():
        clock.now[0] += step
        used += step
        assert c.get("/api/me").status_code == 200, used
    clock.now[0] += step
    assert c.get("/api/me").status_code == 401


def test_removing_a_user_or_a_new_password_ends_their_sessions(staff_client, sent_ws) -> None:
    admin = staff_client("admin")
    viewer = staff_client("viewer")
    accounts.set_password(sent_ws, "admin@example.org", "another long password", by="tests")
    assert admin.get("/api/me").status_code == 401
    assert viewer.get("/api/me").status_code == 200
    accounts.remove_user(sent_ws, "viewer@example.org", by="tests", why="left")
    assert viewer.get("/api/me").status_code == 401
    assert store_rows(sent_ws, "sessions") == []


# ------------------------------------------------------------------------------------------
# The login rate limit (shared through the store)


def test_eleven_failed_logins_for_one_account_are_429(serve_app, staff_accounts, login) -> None:
    """Per account: ten failures from ten addresses, then even the right password from an
    eleventh is refused until the window has passed."""
    clock = clock_at()
    c = serve_app(proxy_headers=True, client=PROXY, clock=clock)
    admin = staff_accounts["admin"]
    for i in range(FAILURE_LIMIT):
        r = login(c, admin, "wrong", headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
        assert r.status_code == 401, i
    r = login(c, admin, STAFF_PASSWORD, headers={"X-Forwarded-For": "198.51.100.99"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == str(int(accounts.FAILURE_WINDOW.total_seconds()))
    assert "Too many failed logins" in r.text and SESSION_COOKIE not in cookies(r)
    # another account from those addresses is not affected (each address failed once)
    ok = login(c, staff_accounts["viewer"], headers={"X-Forwarded-For": "198.51.100.1"})
    assert ok.status_code == 303
    clock.now[0] += accounts.FAILURE_WINDOW.total_seconds()
    r = login(c, admin, STAFF_PASSWORD, headers={"X-Forwarded-For": "198.51.100.99"})
    assert r.status_code == 303


def test_eleven_failed_logins_from_one_address_are_429(serve_app, staff_accounts, login) -> None:
    """Per address: ten failures for ten accounts (most of them unknown), then anything from
    that address is refused; other addresses still log in."""
    clock = clock_at()
    c = serve_app(proxy_headers=True, client=PROXY, clock=clock)
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    for i in range(FAILURE_LIMIT):
        clock.now[0] += 60
        assert login(c, f"guess{i}@example.org", "wrong", headers=attacker).status_code == 401
    r = login(c, staff_accounts["viewer"], headers=attacker)
    assert r.status_code == 429
    # the oldest failure leaves the window 15 min after it happened: 15 - 9 min from now
    assert r.headers["retry-after"] == str(15 * 60 - 9 * 60)
    elsewhere = {"X-Forwarded-For": "203.0.113.7"}
    assert login(c, staff_accounts["viewer"], headers=elsewhere).status_code == 303
    clock.now[0] += 15 * 60 - 9 * 60
    assert login(c, staff_accounts["viewer"], headers=attacker).status_code == 303


def test_a_good_login_forgets_the_accounts_failures(serve_app, staff_accounts, login) -> None:
    c = serve_app()
    viewer = staff_accounts["viewer"]
    for _ in range(FAILURE_LIMIT - 1):
        assert login(c, viewer, "wrong").status_code == 401
    assert login(c, viewer).status_code == 303
    # the count starts again: ten more failures before the limit
    for i in range(FAILURE_LIMIT):
        assert login(c, viewer, "wrong").status_code == 401, i
    assert login(c, viewer, "wrong").status_code == 429


def test_the_rate_limit_is_shared_by_every_worker(
    serve_app, staff_accounts, login, sent_ws
) -> None:
    """Two apps (two workers, each with its own store connection) count together."""
    one, two = serve_app(), serve_app()
    admin = staff_accounts["admin"]
    for i in range(FAILURE_LIMIT):
        assert login(one if i % 2 else two, admin, "wrong").status_code == 401
    assert login(one, admin).status_code == 429
    assert login(two, admin).status_code == 429


# ------------------------------------------------------------------------------------------
# CSRF and roles


def test_a_post_without_a_csrf_token_is_403(staff_client, sent_ws) -> None:
    c = staff_client("admin")
    body = {"email": "someone@example.org", "why": "asked by phone"}
    r = c.post("/api/suppressions", json=body)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert "CSRF" in r.json()["message"]
    r = c.post("/api/suppressions", json=body, headers={"X-CSRF-Token": "not-the-token"})
    assert r.status_code == 403
    assert store_rows(sent_ws, "suppressions") == []
    r = c.post("/api/suppressions", json=body, headers={"X-CSRF-Token": c.csrf})
    assert r.status_code == 201
    assert [s["email"] for s in store_rows(sent_ws, "suppressions")] == ["someone@example.org"]


def test_another_sessions_csrf_token_does_not_work(staff_client) -> None:
    mine, theirs = staff_client("admin"), staff_client("admin")
    assert mine.csrf != theirs.csrf
    r = mine.post(
        "/api/suppressions",
        json={"email": "a@example.org", "why": "x"},
        headers={"X-CSRF-Token": theirs.csrf},
    )
    assert r.status_code == 403


def test_the_login_form_needs_its_csrf_token(serve_app, staff_accounts) -> None:
    c = serve_app()
    form = {"email": staff_accounts["admin"], "password": STAFF_PASSWORD}
    r = c.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 403 and SESSION_COOKIE not in cookies(r)
    c.get("/login")  # the nonce cookie alone is not enough
    r = c.post("/login", data={**form, "csrf_token": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and SESSION_COOKIE not in cookies(r)


def test_a_viewer_trying_an_admin_action_is_403(staff_client, sent_ws) -> None:
    c = staff_client("viewer")
    r = c.post(
        "/api/suppressions",
        json={"email": "someone@example.org", "why": "x"},
        headers={"X-CSRF-Token": c.csrf},
    )
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert "admin" in r.json()["message"]
    r = c.request(
        "DELETE",
        "/api/suppressions/a@example.org",
        json={"why": "x"},
        headers={"X-CSRF-Token": c.csrf},
    )
    assert r.status_code == 403
    page = c.get("/audit")
    assert page.status_code == 403 and "needs the admin role" in page.text
    assert c.get("/api/audit").status_code == 403
    assert store_rows(sent_ws, "suppressions") == []
    assert store_rows(sent_ws, "audit_log")[-1]["action"] == "user_add"  # nothing new


def test_a_viewer_reads_everything(staff_client) -> None:
    c = staff_client("viewer")
    for path in API_READS:
        assert c.get(path).status_code == 200, path
    assert c.get("/account").status_code == 200


# ------------------------------------------------------------------------------------------
# Admin changes are recorded with who, when and why


def test_admin_changes_are_audited(staff_client, sent_ws, cli) -> None:
    c = staff_client("admin")
    h = {"X-CSRF-Token": c.csrf}
    assert (
        c.post("/api/suppressions", json={"email": "A@Example.org"}, headers=h).status_code == 400
    )
    r = c.post(
        "/api/suppressions", json={"email": "A@Example.org", "why": "asked by phone"}, headers=h
    )
    assert r.status_code == 201 and r.json() == {
        "email": "a@example.org",
        "suppressed": True,
        "changed": True,
    }
    again = c.post("/api/suppressions", json={"email": "a@example.org", "why": "x"}, headers=h)
    assert (again.status_code, again.json()["changed"]) == (200, False)
    r = c.request("DELETE", "/api/suppressions/a@example.org", json={"why": "typo"}, headers=h)
    assert r.status_code == 200 and r.json()["suppressed"] is False
    r = c.request("DELETE", "/api/suppressions/a@example.org", json={"why": "typo"}, headers=h)
    assert r.status_code == 404
    entries = c.get("/api/audit").json()["entries"]
    assert [
        (e["who"], e["action"], e["target"], e["why"], e["via"], e["at"]) for e in entries[:2]
    ] == [
        (
            "admin@example.org",
            "suppression_remove",
            "a@example.org",
            "typo",
            "api",
            "2026-12-02T12:00:00.000+00:00",
        ),
        (
            "admin@example.org",
            "suppression_add",
            "a@example.org",
            "asked by phone",
            "api",
            "2026-12-02T12:00:00.000+00:00",
        ),
    ]
    log = stores.rows(sent_ws.root, "suppression_log")
    assert [(e["who"], e["action"], e["note"]) for e in log] == [
        ("admin@example.org", "add", "asked by phone"),
        ("admin@example.org", "remove", "typo"),
    ]
    page = c.get("/audit").text
    assert "asked by phone" in page and "suppression remove" in page
    res = cli(sent_ws.root, "audit", "--json")
    assert json_loads(res.output)[0]["why"] == "typo"


def json_loads(text: str):
    import json

    return json.loads(text)


# ------------------------------------------------------------------------------------------
# API tokens


def test_api_tokens_good_bad_and_revoked(serve_app, staff_accounts, sent_ws) -> None:
    c = serve_app()
    made = accounts.new_token(sent_ws, staff_accounts["admin"], by="tests", label="monitoring")
    auth = {"Authorization": f"Bearer {made.token}"}
    r = c.get("/api/me", headers=auth)
    assert r.json() == {
        "email": "admin@example.org",
        "role": "admin",
        "via": "token",
        "csrf_token": None,
    }
    assert c.get("/api/campaigns/december/report", headers=auth).status_code == 200
    # a bearer token needs no CSRF token (no browser sends it by itself)
    r = c.post("/api/suppressions", json={"email": "b@example.org", "why": "bounce"}, headers=auth)
    assert r.status_code == 201
    [token] = store_rows(sent_ws, "api_tokens")
    assert token["last_used_at"].startswith("2026-12-02T12:00:00")
    altered = made.token[:-1] + ("x" if made.token[-1] != "x" else "y")
    for bad in (altered, "ot_nothing", "", made.id, made.token + " x"):
        r = c.get("/api/me", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, bad
    assert c.get("/api/me", headers={"Authorization": f"Basic {made.token}"}).status_code == 401
    accounts.revoke_token(sent_ws, made.id, by="tests", why="rotated")
    assert c.get("/api/me", headers=auth).status_code == 401


def test_a_viewers_token_reads_but_does_not_change(serve_app, staff_accounts, sent_ws) -> None:
    c = serve_app()
    made = accounts.new_token(sent_ws, staff_accounts["viewer"], by="tests")
    auth = {"Authorization": f"Bearer {made.token}"}
    assert c.get("/api/suppressions", headers=auth).status_code == 200
    r = c.post("/api/suppressions", json={"email": "b@example.org", "why": "x"}, headers=auth)
    assert r.status_code == 403


def test_a_removed_users_tokens_stop_working(serve_app, staff_accounts, sent_ws) -> None:
    c = serve_app()
    made = accounts.new_token(sent_ws, staff_accounts["viewer"], by="tests")
    accounts.remove_user(sent_ws, staff_accounts["viewer"], by="tests")
    assert c.get("/api/me", headers={"Authorization": f"Bearer {made.token}"}).status_code == 401
    [token] = store_rows(sent_ws, "api_tokens")
    assert token["revoked_at"] is not None


# ------------------------------------------------------------------------------------------
# Secrets: never stored, never shown


def test_passwords_sessions_and_tokens_are_never_stored_in_clear(
    staff_client, staff_accounts, sent_ws, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    c = staff_client("admin")
    session_cookie = c.cookies[SESSION_COOKIE]
    session_id = session_cookie.rpartition(".")[0]
    made = accounts.new_token(sent_ws, staff_accounts["viewer"], by="tests")
    c.get("/api/me", headers={"Authorization": f"Bearer {made.token}"})
    secrets = [
        STAFF_PASSWORD,
        session_id,
        made.token,
        made.token.split("_", 2)[2],
    ]  # ot_<id>_<secret>
    with stores.open_store(sent_ws.root) as store:
        dump = repr(
            {
                t: store.table_rows(t)
                for t in ("users", "sessions", "api_tokens", "audit_log", "login_failures")
            }
        )
        users = store.table_rows("users")
    for secret in secrets:
        assert secret not in dump
    assert all(u["password_hash"].startswith("$argon2id$") for u in users)
    assert accounts.digest(session_id) in dump and accounts.digest(made.token) in dump
    for secret in [*secrets, SECRET_KEY]:
        assert secret not in caplog.text


def test_the_production_hasher_is_argon2id_rfc9106(monkeypatch) -> None:
    """What is stored outside the tests: argon2id, 64 MiB, 3 passes, 4 lanes."""
    monkeypatch.undo()  # the cheap hasher of the fast_argon2 fixture
    h = accounts.HASHER
    assert (h.time_cost, h.memory_cost, h.parallelism) == (3, 65536, 4)
    assert h.type.name == "ID"
    assert accounts.hash_password("a long enough password").startswith(
        "$argon2id$v=19$m=65536,t=3,p=4$"
    )


def test_an_old_hash_is_replaced_at_the_next_login(
    serve_app, staff_accounts, login, sent_ws, monkeypatch
) -> None:
    from argon2 import PasswordHasher

    before = store_rows(sent_ws, "users")[0]["password_hash"]
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    monkeypatch.setattr(accounts, "HASHER", stronger)
    c = serve_app()
    assert login(c, staff_accounts["admin"], "wrong").status_code == 401
    assert store_rows(sent_ws, "users")[0]["password_hash"] == before  # not on a failure
    assert login(c, staff_accounts["admin"]).status_code == 303
    after = store_rows(sent_ws, "users")[0]["password_hash"]
    assert after != before and "m=16,t=2,p=1" in after
    assert login(serve_app(), staff_accounts["admin"]).status_code == 303


# ------------------------------------------------------------------------------------------
# The secret key, and --insecure-no-auth


def test_the_secret_key_is_required(sent_ws, signer) -> None:
    with pytest.raises(ConfigError, match="OUTREACH_SECRET_KEY is not set") as err:
        create_app(sent_ws, ServerSettings(public_key=signer.public_b64))
    assert "--insecure-no-auth" in str(err.value)
    with pytest.raises(ConfigError, match="OUTREACH_SECRET_KEY is too short"):
        create_app(sent_ws, ServerSettings(public_key=signer.public_b64, secret_key="short"))


def test_serve_says_when_the_secret_key_is_missing(sent_ws, cli, signer, monkeypatch) -> None:
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_b64)
    monkeypatch.delenv("OUTREACH_SECRET_KEY", raising=False)
    res = cli(sent_ws.root, "serve", "--port", "1")
    assert res.exit_code == 1
    [line, hint] = res.output.strip().splitlines()
    assert (
        line == "Error: OUTREACH_SECRET_KEY is not set: staff logins need it to sign their cookies"
    )
    assert "secrets.token_urlsafe" in hint


def test_a_different_secret_key_ends_every_session(serve_app, staff_accounts, login) -> None:
    c = serve_app()
    login(c, staff_accounts["viewer"])
    other = serve_app(secret_key="another-secret-key-of-forty-characters!!")
    other.cookies.set(SESSION_COOKIE, c.cookies[SESSION_COOKIE])
    assert other.get("/api/me").status_code == 401
    assert c.get("/api/me").status_code == 200


def test_insecure_no_auth_makes_everyone_a_local_admin(serve_app, sent_ws) -> None:
    c = serve_app(no_auth=True, secret_key=None)
    page = c.get("/account")
    assert page.status_code == 200
    assert "No login (--insecure-no-auth)" in page.text and "local:" in page.text
    me = c.get("/api/me").json()
    assert me["role"] == "admin" and me["via"] == "insecure"
    body = {"email": "c@example.org", "why": "local test"}
    assert c.post("/api/suppressions", json=body).status_code == 403  # CSRF still required
    r = c.post("/api/suppressions", json=body, headers={"X-CSRF-Token": me["csrf_token"]})
    assert r.status_code == 201
    [entry] = [e for e in store_rows(sent_ws, "audit_log") if e["action"] == "suppression_add"]
    assert entry["who"].startswith("local:")


def test_insecure_no_auth_warns(caplog) -> None:
    from outreach.web.serve import warn_no_auth

    caplog.set_level(logging.WARNING)
    warn_no_auth("0.0.0.0")
    text = caplog.text
    assert "STAFF LOGIN IS OFF (--insecure-no-auth)" in text
    assert "every address of this machine" in text and "Local use only" in text
