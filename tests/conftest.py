"""Shared fixtures: a copy of the shipped example workspace, a CLI runner, and the store
backends (``tests/stores.py``): modules marked ``both_backends`` run every test once on SQLite
and once on PostgreSQL, through the one parametrized ``backend`` fixture."""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from outreach.cli import main
from tests import stores
from tests.dates import CIRCULAR_DUE

REPO = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-secret-key-of-forty-characters-long!"  # OUTREACH_SECRET_KEY of served apps
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def copy_workspace(dest: Path) -> Path:
    """Copy the example workspace (campaigns/, lists/, templates/) to ``dest``."""
    for name in ("campaigns", "lists", "templates"):
        shutil.copytree(REPO / name, dest / name)
    return stores.attach(dest)


# ------------------------------------------------------------------------------------------
# Store backends


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run on SQLite and on PostgreSQL (OUTREACH_TEST_PG_URL)"
    )
    config.addinivalue_line(
        "markers", "postgresql_only: run on PostgreSQL only (OUTREACH_TEST_PG_URL)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    pg = pytest.param(
        "postgresql",
        marks=() if os.environ.get(stores.PG_ENV) else pytest.mark.skip(reason=stores.SKIP_REASON),
    )
    if metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("backend", ["sqlite", pg], indirect=True, scope="module")
    elif metafunc.definition.get_closest_marker("postgresql_only"):
        metafunc.parametrize("backend", [pg], indirect=True, scope="module")


@pytest.fixture(scope="session")
def pg_server():
    """This run's PostgreSQL database (created now, dropped at the end)."""
    url = os.environ.get(stores.PG_ENV)
    if not url:
        pytest.skip(stores.SKIP_REASON)
    server = stores.PGServer(url)
    stores.SERVER[:] = [server]
    yield server
    stores.SERVER.clear()
    server.drop()


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of the module's tests: ``sqlite``, unless the module is marked
    ``both_backends`` (then each test runs once per backend)."""
    name = getattr(request, "param", "sqlite")
    if name == "postgresql":
        request.getfixturevalue("pg_server")
    stores.ACTIVE[0] = name
    yield name
    stores.ACTIVE[0] = "sqlite"


@pytest.fixture(autouse=True)
def _store_backend(backend: str) -> str:
    return backend


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI the PostgreSQL tests must run: a skip for want of a server fails the run."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if any(stores.PG_ENV in str(getattr(r, "longrepr", "")) for r in skipped):
        if reporter:
            reporter.write_line(
                f"CI: PostgreSQL tests were skipped ({stores.PG_ENV} is not set): failing the run",
                red=True,
            )
        session.exitstatus = 1


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the shipped example, with no SendGrid key in the environment."""
    for var in (
        "SENDGRID_API_KEY",
        "SENDGRID_API_HOST",
        "OUTREACH_DB",
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "OUTREACH_DNS_SERVER",
    ):
        monkeypatch.delenv(var, raising=False)
    return copy_workspace(tmp_path / "ws")


@pytest.fixture
def with_errors(workspace: Path) -> Path:
    """The shipped workspace whose campaign also reads lists/examples/with-errors.csv (five
    invalid rows and a duplicate, next to two valid contacts)."""
    path = workspace / "campaigns" / "december.yaml"
    text = path.read_text(encoding="utf-8")
    old = "contacts: [lists/contacts.csv]"
    assert old in text
    path.write_text(
        text.replace(old, "contacts: [lists/contacts.csv, lists/examples/with-errors.csv]"),
        encoding="utf-8",
    )
    return workspace


@pytest.fixture
def cli():
    """``cli(ws, *args)`` runs ``outreach -C ws args…`` in-process and returns the Result."""
    runner = CliRunner()

    def run(ws: Path, *args: str, input: str | None = None) -> Result:
        return runner.invoke(main, ["-C", str(ws), *args], input=input, catch_exceptions=False)

    return run


@pytest.fixture
def fake():
    """An in-process fake SendGrid (tests/sendgrid_fake.py) expecting the test key."""
    from outreach.send import clock_from
    from tests.sendgrid_fake import FakeSendGrid
    from tests.sendgrid_helpers import KEY

    # SendGrid's "now" is the tests' (send_at limits, X-RateLimit-Reset), not the wall clock's
    with FakeSendGrid(key=KEY, clock=clock_from(datetime.fromisoformat(CIRCULAR_DUE))) as f:
        yield f


@pytest.fixture(scope="module")
def sent_template(tmp_path_factory, backend: str) -> Path:
    """A workspace whose circular went out through the outbox (copy it, with its store,
    with :func:`tests.stores.copy_workspace` before changing it)."""
    from tests.tracking_support import make_workspace, send_outbox

    root = make_workspace(tmp_path_factory.mktemp("tpl") / "ws")
    send_outbox(root, "circular")
    return root


# ------------------------------------------------------------------------------------------
# The web service (outreach serve) under Starlette's TestClient


@pytest.fixture
def sent_ws(sent_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A Workspace whose circular went out through the outbox (a fresh copy per test)."""
    from outreach.workspace import Workspace

    for var in ("SENDGRID_API_KEY", "SENDGRID_API_HOST", "OUTREACH_DB"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "ws"
    stores.copy_workspace(sent_template, root)
    return Workspace.open(root)


@pytest.fixture
def circular_rows(sent_ws) -> list[dict]:
    """The circular's ledger rows (send_id, email, language, …) of the 2026 edition, ordered
    by address."""
    from outreach.ledger import Ledger

    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        rows = ledger.sent_rows_for_index("december", 2026, "circular", "outbox")
    return sorted(
        ({**dict(r), "campaign": "december", "step": "circular"} for r in rows),
        key=lambda r: r["email"],
    )


@pytest.fixture
def signer():
    """A test ECDSA P-256 key; its headers carry the timestamp tests.dates.WEBHOOK_NOW."""
    from tests.tracking_support import Signer

    return Signer.new()


@pytest.fixture
def serve_app(sent_ws, signer):
    """``serve_app(**settings)`` → a started TestClient of ``outreach serve``'s app on
    ``sent_ws``, its clock fixed at WEBHOOK_NOW and its webhook key the ``signer``'s.
    ``client=("127.0.0.1", 50000)``, ``ws=``, ``clock=`` and ``base_url=`` are passed on; the
    rest are ServerSettings (``secret_key`` defaults to :data:`SECRET_KEY`)."""
    from starlette.testclient import TestClient

    from outreach.web.app import create_app
    from outreach.web.services import ServerSettings
    from tests.dates import WEBHOOK_NOW

    with contextlib.ExitStack() as stack:

        def make(
            *, ws=None, client=("testclient", 50000), clock=None, base_url=None, **settings
        ) -> TestClient:
            settings.setdefault("public_key", signer.public_b64)
            settings.setdefault("secret_key", SECRET_KEY)
            settings.setdefault("now", WEBHOOK_NOW)
            app = create_app(ws or sent_ws, ServerSettings(**settings), clock=clock)
            extra = {"base_url": base_url} if base_url else {}
            return stack.enter_context(TestClient(app, client=client, **extra))

        yield make


@pytest.fixture
def fast_argon2(monkeypatch: pytest.MonkeyPatch):
    """Cheap argon2 parameters for tests that hash many passwords (the production hasher costs
    64 MiB and a third of a second; ``tests/test_accounts.py`` checks it is the default)."""
    from argon2 import PasswordHasher

    from outreach import accounts

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "HASHER", cheap)
    return cheap


STAFF_PASSWORD = "correct horse battery staple"
STAFF = {"admin": "admin@example.org", "viewer": "viewer@example.org"}


@pytest.fixture
def staff_accounts(sent_ws, fast_argon2) -> dict[str, str]:
    """Two accounts in ``sent_ws``: {role: email} (``admin@example.org``, ``viewer@example.org``),
    both with the password :data:`STAFF_PASSWORD`."""
    from outreach.accounts import add_user

    for role, email in STAFF.items():
        add_user(sent_ws, email, role, STAFF_PASSWORD, by="tests")
    return dict(STAFF)


@pytest.fixture
def login():
    """``login(client, email, password=STAFF_PASSWORD, next=None, headers=None)``: fill in and
    POST the login form like a browser (GET /login first, for its CSRF token); returns the
    POST's response, not followed."""
    import re

    def run(client, email, password=STAFF_PASSWORD, *, next=None, headers=None):
        client.cookies.delete("outreach_session")  # as a browser without a session would
        page = client.get("/login", headers=headers)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        form = {"email": email, "password": password, "csrf_token": token.group(1)}
        if next is not None:
            form["next"] = next
        return client.post("/login", data=form, headers=headers, follow_redirects=False)

    return run


@pytest.fixture
def staff_client(serve_app, staff_accounts, login):
    """``staff_client(role="viewer", **serve_app options)`` → a started TestClient logged in as
    that role's account; ``client.csrf`` is its session's CSRF token (for POSTs)."""

    def make(role: str = "viewer", **options):
        client = serve_app(**options)
        r = login(client, staff_accounts[role])
        assert r.status_code == 303, r.text
        client.csrf = client.get("/api/me").json()["csrf_token"]
        return client

    return make


@pytest.fixture
def tracked(webhook, circular_rows, sent_ws):
    """``sent_ws`` with the circular's delivery, open, click, bounce… events stored."""
    from tests.tracking_support import circular_batches

    for batch in circular_batches(circular_rows):
        assert webhook(batch).status_code == 200
    return sent_ws


@pytest.fixture
def webhook(serve_app, signer):
    """``webhook(body, timestamp=None, headers=None, client=None)`` POSTs ``body`` (bytes, or
    events to encode) to ``/events``, signed by ``signer`` unless ``headers`` are given."""
    import json

    default = serve_app(max_body=200_000)

    def post(body, *, timestamp=None, headers=None, client=None):
        if not isinstance(body, bytes):
            body = json.dumps(body, separators=(",", ":")).encode()
        hdrs = signer.headers(body, timestamp) if headers is None else headers
        return (client or default).post("/events", content=body, headers=hdrs)

    post.client = default
    return post


@pytest.fixture(scope="session")
def spamassassin(tmp_path_factory):
    """Debian's ``spamassassin -t -L`` (tests/spamassassin.py). Skips where it is missing,
    fails instead under ``OUTREACH_REQUIRE_SPAMASSASSIN=1`` (CI)."""
    from tests.spamassassin import require_spamassassin

    return require_spamassassin(tmp_path_factory.mktemp("spamassassin-home"))


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throw-away certificate authority that this process trusts (through SSL_CERT_FILE)."""
    import trustme

    authority = trustme.CA()
    path = tmp_path / "test-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return authority
