"""What every route of ``outreach serve`` shares, through Starlette's TestClient: the route
table, ``/healthz`` (which reads the database), the stylesheet, security headers, the
trusted-proxy handling, the worker factory, and the command's options."""

from __future__ import annotations

import json

import pytest
from starlette.routing import Mount, Route

from outreach.web.app import SECURITY_HEADERS, create_app
from outreach.web.serve import WORKER_ENV, ServeOptions, settings_for, worker_app
from outreach.web.services import ServerSettings
from tests.conftest import SECRET_KEY

PROXY = ("127.0.0.1", 40000)  # where Caddy or nginx connects from
HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


def test_the_route_table(sent_ws, signer) -> None:
    """Every route the app serves; a new one must come with its tests (and this line)."""
    app = create_app(sent_ws, ServerSettings(public_key=signer.public_b64, secret_key=SECRET_KEY))
    table = {
        (r.path, tuple(sorted(r.methods or ())) if isinstance(r, Route) else "mount")
        for r in app.routes
        if isinstance(r, Route | Mount)
    }
    assert table == {
        ("/healthz", ("GET", "HEAD")),
        ("/static", "mount"),
        ("/events", ("POST",)),
        ("/u/{token}", ("GET", "HEAD", "POST")),
        ("/u/{token}/preferences", ("POST",)),
        ("/login", ("GET", "HEAD")),
        ("/login", ("POST",)),
        ("/logout", ("POST",)),
        ("/account", ("GET", "HEAD")),
        ("/audit", ("GET", "HEAD")),
        ("/api/me", ("GET", "HEAD")),
        ("/api/campaigns", ("GET", "HEAD")),
        ("/api/campaigns/{campaign}/report", ("GET", "HEAD")),
        ("/api/suppressions", ("GET", "HEAD")),
        ("/api/suppressions", ("POST",)),
        ("/api/suppressions/{email}", ("DELETE",)),
        ("/api/audit", ("GET", "HEAD")),
        ("/", ("GET", "HEAD")),
        ("/campaigns", ("GET", "HEAD")),
        ("/campaigns/{campaign}", ("GET", "HEAD")),
        ("/campaigns/{campaign}/report.csv", ("GET", "HEAD")),
        ("/contacts", ("GET", "HEAD")),
        ("/suppressions", ("GET", "HEAD")),
        ("/suppressions", ("POST",)),
        ("/suppressions/remove", ("POST",)),
    }


# ------------------------------------------------------------------------------------------
# /healthz


def test_healthz_reads_the_database(serve_app) -> None:
    r = serve_app().get("/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")


def test_healthz_is_503_when_the_database_cannot_be_read(serve_app, sent_ws, caplog) -> None:
    client = serve_app()
    db = sent_ws.root / ".outreach" / "outreach.db"
    # the file is overwritten under the running app (a bad restore, a broken disk)
    db.write_bytes(b"this is not a database" * 1000)
    for path in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)
    r = client.get("/healthz")
    assert (r.status_code, r.text) == (503, "database unavailable\n")
    assert any("health check failed: not an outreach database" in m for m in caplog.messages)


def test_healthz_is_503_when_the_connection_is_gone(serve_app) -> None:
    client = serve_app()
    client.app.state.services.ledger.conn.close()
    assert client.get("/healthz").status_code == 503


# ------------------------------------------------------------------------------------------
# The stylesheet and the headers


def test_the_stylesheet_is_served_and_linked(serve_app) -> None:
    client = serve_app()
    css = client.get("/static/outreach.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":root" in css.text
    page = client.get("/u/test").text
    assert '<link rel="stylesheet" href="http://testserver/static/outreach.css">' in page
    assert client.get("/static/nope.css").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/u/test", "/static/outreach.css", "/nope", "/login", "/api/me", "/account"],
)
def test_every_answer_carries_the_security_headers(serve_app, path) -> None:
    r = serve_app().get(path)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value, name
    assert "server" not in r.headers or "uvicorn" not in r.headers["server"]


# ------------------------------------------------------------------------------------------
# Behind a reverse proxy


def test_behind_a_trusted_proxy_urls_and_redirects_stay_https(serve_app, circular_rows, sent_ws):
    client = serve_app(proxy_headers=True, client=PROXY)
    page = client.get("/u/test", headers=HTTPS).text
    assert 'href="https://testserver/static/outreach.css"' in page
    r = client.get("/healthz/", headers=HTTPS, follow_redirects=False)  # a slash too many
    assert r.status_code in (307, 308)
    assert r.headers["location"] == "https://testserver/healthz"
    # the recipient's address, not the proxy's, is what an unsubscribe records
    sid = circular_rows[0]["send_id"]
    client.post(f"/u/{sid}", content=b"List-Unsubscribe=One-Click", headers=HTTPS)
    from outreach.ledger import Ledger
    from outreach.suppressions import history

    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        [entry] = history(ledger)
    assert entry["note"].endswith("from 203.0.113.9")


@pytest.mark.parametrize(
    ("proxy_headers", "trusted", "client"),
    [
        pytest.param(False, "127.0.0.1", PROXY, id="proxy-headers-off"),
        pytest.param(True, "127.0.0.1", ("198.51.100.4", 40000), id="not-a-trusted-proxy"),
        pytest.param(True, "10.0.0.0/8", PROXY, id="another-network-trusted"),
    ],
)
def test_forwarded_headers_from_anyone_else_are_ignored(
    serve_app, proxy_headers, trusted, client
) -> None:
    c = serve_app(proxy_headers=proxy_headers, forwarded_allow_ips=trusted, client=client)
    assert 'href="http://testserver/static/outreach.css"' in c.get("/u/test", headers=HTTPS).text
    r = c.get("/healthz/", headers=HTTPS, follow_redirects=False)
    assert r.headers["location"] == "http://testserver/healthz"


def test_a_trusted_network_and_any_proxy(serve_app) -> None:
    c = serve_app(proxy_headers=True, forwarded_allow_ips="10.0.0.0/8", client=("10.1.2.3", 1))
    assert "https://testserver/static/" in c.get("/u/test", headers=HTTPS).text
    c = serve_app(proxy_headers=True, forwarded_allow_ips="*", client=("198.51.100.4", 1))
    assert "https://testserver/static/" in c.get("/u/test", headers=HTTPS).text


# ------------------------------------------------------------------------------------------
# Settings, the worker factory, the command


def test_settings_from_options(sent_ws) -> None:
    from outreach.exceptions import ConfigError

    s = settings_for(sent_ws, ServeOptions(proxy_headers=True))
    assert (s.proxy_headers, s.forwarded_allow_ips) == (True, "127.0.0.1,::1")
    assert s.unsubscribe_prefixes == ("/u",)
    s = settings_for(sent_ws, ServeOptions(proxy_headers=True, forwarded_allow_ips="10.0.0.1"))
    assert s.forwarded_allow_ips == "10.0.0.1"
    with pytest.raises(ConfigError, match="only matters with --proxy-headers"):
        settings_for(sent_ws, ServeOptions(forwarded_allow_ips="10.0.0.1"))


def test_a_worker_builds_its_app_from_the_environment(sent_ws, signer, monkeypatch) -> None:
    from starlette.testclient import TestClient

    from tests.dates import WEBHOOK_NOW

    settings = ServerSettings(
        public_key=signer.public_b64,
        secret_key=SECRET_KEY,
        max_age=30,
        proxy_headers=True,
        now=WEBHOOK_NOW,
    )
    shared = settings.shared()
    # the secrets are read again by the worker, never passed
    assert "public_key" not in shared and "secret_key" not in shared
    assert SECRET_KEY not in json.dumps(shared)
    monkeypatch.setenv(WORKER_ENV, json.dumps({"root": str(sent_ws.root), "settings": shared}))
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_b64)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", SECRET_KEY)
    app = worker_app()
    assert app.state.services.settings == settings
    with TestClient(app) as client:
        assert client.get("/healthz").text == "ok\n"
        data = b"[]"
        assert client.post("/events", content=data, headers=signer.headers(data)).json() == {
            "stored": 0,
            "duplicates": 0,
            "unmatched": 0,
        }


def test_serve_refuses_to_start_without_a_key(sent_ws, cli, monkeypatch) -> None:
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    for command in (["serve"], ["events", "serve"]):
        res = cli(sent_ws.root, *command, "--port", "1")
        assert res.exit_code == 1
        assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in res.output
        assert "--insecure-no-verify" in res.output
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")
    res = cli(sent_ws.root, "serve", "--port", "1")
    assert res.exit_code == 1 and "not a valid public key" in res.output


def test_the_old_command_says_what_replaced_it(sent_ws, cli, monkeypatch) -> None:
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    res = cli(sent_ws.root, "events", "serve", "--port", "1")
    assert "`outreach events serve` is now `outreach serve` (same options)" in res.output
    res = cli(sent_ws.root, "events", "serve", "--help")
    assert res.exit_code == 0 and "outreach serve" in res.output and "--workers" in res.output


def test_proxy_addresses_without_proxy_headers_is_an_error(sent_ws, cli) -> None:
    res = cli(sent_ws.root, "serve", "--forwarded-allow-ips", "10.0.0.1", "--insecure-no-verify")
    assert res.exit_code == 1
    assert "--forwarded-allow-ips only matters with --proxy-headers" in res.output


def test_serve_help_documents_every_option(cli, sent_ws) -> None:
    res = cli(sent_ws.root, "serve", "--help")
    for option in (
        "--host",
        "--port",
        "--workers",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "--max-age",
        "--max-body",
        "--insecure-no-verify",
        "--insecure-no-auth",
    ):
        assert option in res.output
    assert "--now" not in res.output  # for tests only
