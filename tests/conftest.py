"""Shared fixtures: a copy of the shipped example workspace, and a CLI runner."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from outreach.cli import main
from tests.dates import CIRCULAR_DUE

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def copy_workspace(dest: Path) -> Path:
    """Copy the example workspace (campaigns/, lists/, templates/) to ``dest``."""
    for name in ("campaigns", "lists", "templates"):
        shutil.copytree(REPO / name, dest / name)
    return dest


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
def sent_template(tmp_path_factory) -> Path:
    """A workspace whose circular went out through the outbox (copy it before changing it)."""
    from tests.tracking_support import make_workspace, send_outbox

    root = make_workspace(tmp_path_factory.mktemp("tpl") / "ws")
    send_outbox(root, "circular")
    return root


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
