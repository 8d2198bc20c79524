"""The one-click unsubscribe links (``/u/<send_id>``) through Starlette's TestClient: RFC 8058
one-click POSTs, the confirmation page in the recipient's language, inert test tokens, unknown
ids, and what is recorded (who, when, how)."""

from __future__ import annotations

import re

import pytest

from outreach.events import SendInfo
from outreach.ledger import Ledger
from outreach.suppressions import history
from outreach.web.unsubscribe import language, mask
from tests import stores
from tests.dates import WEBHOOK_NOW, webhook_now

NOW = webhook_now()  # reports and plans as of the webhook's clock

ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ORG = "NGO Coalition for the OP-ICESCR"
DONE = {
    "en": "You are unsubscribed",
    "es": "Se ha dado de baja",
    "fr": "Votre désabonnement est enregistré",
}


@pytest.fixture
def client(serve_app):
    return serve_app()


def first_in(rows: list[dict], lang: str) -> dict:
    return next(r for r in rows if r["language"] == lang)


def state(ws) -> tuple[dict[str, str], list[dict], int]:
    """(active suppressions, suppression log, stored events) of the workspace."""
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        return ledger.suppressed(), history(ledger), ledger.events_count("december", 2026)


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_one_click_post_unsubscribes_and_answers_in_the_recipients_language(
    client, circular_rows, sent_ws, lang
) -> None:
    row = first_in(circular_rows, lang)
    r = client.post(f"/u/{row['send_id']}", content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    assert f'<html lang="{lang}">' in r.text
    assert DONE[lang] in r.text and ORG in r.text
    assert mask(row["email"]) in r.text and row["email"] not in r.text
    active, log, events = state(sent_ws)
    assert active == {row["email"].lower(): "unsubscribe"}
    [entry] = log
    assert entry["who"] == f"the recipient ({row['email']})"
    assert entry["note"].startswith("unsubscribe link (one-click (List-Unsubscribe-Post))")
    assert events == 1


def test_one_click_is_idempotent(client, circular_rows, sent_ws) -> None:
    sid = circular_rows[0]["send_id"]
    for _ in range(3):
        assert client.post(f"/u/{sid}", content=ONE_CLICK, headers=FORM).status_code == 200
    active, log, events = state(sent_ws)
    assert len(active) == 1 and len(log) == 1 and events == 1


def test_the_event_is_timed_by_the_apps_clock(client, circular_rows, sent_ws) -> None:
    from outreach.report import report

    sid = circular_rows[0]["send_id"]
    client.post(f"/u/{sid}", content=ONE_CLICK, headers=FORM)
    rep = report(sent_ws, "december", now=NOW)
    assert rep.steps[0].totals["unsubscribes"] == 1
    [event] = stores.rows(sent_ws.root, "events")
    assert event["timestamp"] == WEBHOOK_NOW


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_the_link_opens_a_confirmation_page_whose_button_posts(
    client, circular_rows, sent_ws, lang
) -> None:
    row = first_in(circular_rows, lang)
    r = client.get(f"/u/{row['send_id']}")
    assert r.status_code == 200
    page = r.text
    assert f'<html lang="{lang}">' in page
    assert {"en": "Unsubscribe", "es": "Darme de baja", "fr": "Me désabonner"}[lang] in page
    assert '<form method="post">' in page and '<button type="submit">' in page
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    assert mask(row["email"]) in page and row["email"] not in page  # the address is masked
    assert '<meta name="robots" content="noindex">' in page
    assert state(sent_ws)[0] == {}  # looking is not unsubscribing
    # the button
    r = client.post(f"/u/{row['send_id']}", content=ONE_CLICK + b"&via=page", headers=FORM)
    assert r.status_code == 200 and DONE[lang] in r.text
    active, log, _ = state(sent_ws)
    assert active == {row["email"].lower(): "unsubscribe"}
    assert "confirmation page" in log[0]["note"]


def test_head_answers_without_a_body_or_a_change(client, circular_rows, sent_ws) -> None:
    r = client.head(f"/u/{circular_rows[0]['send_id']}")
    assert r.status_code == 200 and r.content == b""
    assert state(sent_ws)[0] == {}


@pytest.mark.parametrize(
    ("recorded", "page"),
    [("es", "es"), ("fr-CA", "fr"), ("ES", "es"), ("pt", "en"), ("", "en"), (None, "en")],
)
def test_the_page_language_is_the_messages_when_there_are_texts_for_it(recorded, page) -> None:
    info = SendInfo("a" * 32, "a@b.org", "december", "circular", recorded)
    assert language(info) == page


@pytest.mark.parametrize("token", ["test", "preview"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_test_and_preview_links_change_nothing(client, sent_ws, token, method) -> None:
    r = client.request(method, f"/u/{token}", content=ONE_CLICK if method == "POST" else None)
    assert r.status_code == 200
    assert ("Test link: nothing was changed." if method == "POST" else "changes nothing") in r.text
    assert state(sent_ws) == ({}, [], 0)


@pytest.mark.parametrize(
    "path",
    [
        "/u/" + "a" * 32,  # well-formed, not in the ledger
        "/u/" + "A" * 32,
        "/u/abc",
        "/u/<script>",
        "/u/%3Cscript%3E",
        "/u/../../etc/passwd",
        "/u/" + "a" * 33,
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_links_are_404_and_say_nothing_more(client, sent_ws, path, method) -> None:
    r = client.request(method, path, content=ONE_CLICK if method == "POST" else None)
    assert r.status_code == 404
    assert r.text in ("Not found\n", "Not Found")  # ours, or the router's for other paths
    assert state(sent_ws) == ({}, [], 0)


def test_a_huge_form_is_read_only_so_far(client, circular_rows, sent_ws) -> None:
    sid = circular_rows[0]["send_id"]
    r = client.post(f"/u/{sid}", content=ONE_CLICK + b"&x=" + b"y" * 1_000_000, headers=FORM)
    assert r.status_code == 200
    assert len(state(sent_ws)[0]) == 1


def test_the_prefix_follows_the_campaigns_unsubscribe_url(serve_app, sent_ws, circular_rows):
    from outreach.web.services import ServerSettings
    from outreach.web.unsubscribe import unsubscribe_prefixes

    assert unsubscribe_prefixes(sent_ws) == ("/u",)  # https://outreach.escr-net.org/u
    path = sent_ws.root / "campaigns" / "december.yaml"
    text = path.read_text()
    path.write_text(
        text.replace("url: https://outreach.escr-net.org/u", "url: https://x.org/leave/")
    )
    assert unsubscribe_prefixes(sent_ws) == ("/leave",)
    path.write_text(
        text.replace("url: https://outreach.escr-net.org/u", "url: https://x.org/events")
    )
    assert unsubscribe_prefixes(sent_ws) == ("/u",)  # a path the app uses itself is not taken
    client = serve_app(unsubscribe_prefixes=("/leave",))
    assert ServerSettings().unsubscribe_prefixes == ("/u",)
    sid = circular_rows[0]["send_id"]
    assert client.post(f"/leave/{sid}", content=ONE_CLICK).status_code == 200
    assert client.post(f"/u/{sid}", content=ONE_CLICK).status_code == 404


def test_mask() -> None:
    assert mask("javier.martin@example.net") == "j•••@example.net"
    assert mask("not-an-address") == "•••"
    assert re.fullmatch(r"a•••@b\.org", mask("a@b.org"))
