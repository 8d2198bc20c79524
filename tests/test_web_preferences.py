"""The recipients' preference page (``GET /u/<send_id>``, ``POST /u/<send_id>/preferences``)
through Starlette's TestClient: each choice in each language, recorded for that recipient only
and honoured by the sends that follow; the signed form token, the rate limit, inert test
tokens, and the RFC 8058 one-click POST, which stays exactly as it was."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.web import unsubscribe
from outreach.web.unsubscribe import mask
from tests import stores
from tests.dates import LAST_CALL_DUE, WEBHOOK_NOW

ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NEXT_EDITION = "2027-12-01T14:30:00+00:00"  # the circular of the 2027 edition is due

TITLE = {
    "en": "Your email preferences",
    "es": "Sus preferencias de correo",
    "fr": "Vos préférences de courriel",
}
LEAVE = {"en": "Leave this campaign", "es": "Salir de esta campaña", "fr": "Quitter cette campagne"}
REJOIN = {
    "en": "Receive this campaign again",
    "es": "Volver a recibir esta campaña",
    "fr": "Recevoir à nouveau cette campagne",
}
LEFT_DONE = {"en": "Done: ", "es": "Hecho: ", "fr": "C’est fait : "}
LEFT_WORDS = {
    "en": "will not receive further messages of this campaign",
    "es": "no recibirá más mensajes de esta campaña",
    "fr": "ne recevra plus les messages de cette campagne",
}
REJOIN_WORDS = {
    "en": "will receive the messages of this campaign again",
    "es": "volverá a recibir los mensajes de esta campaña",
    "fr": "recevra à nouveau les messages de cette campagne",
}
# the language chosen → the done page, in that language
LANGUAGE_DONE = {
    "en": "will write to {email} in English",
    "es": "escribirá a {email} en español",
    "fr": "écrira à {email} en français",
}
EXPIRED = {
    "en": "This form has expired",
    "es": "Este formulario ha caducado",
    "fr": "Ce formulaire a expiré",
}
OTHER = {"en": "fr", "es": "en", "fr": "es"}  # a language to change to, from each


@pytest.fixture
def client(serve_app):
    return serve_app()


def first_in(rows: list[dict], lang: str, n: int = 0) -> dict:
    return [r for r in rows if r["language"] == lang][n]


def form_token(client, send_id: str) -> str:
    page = client.get(f"/u/{send_id}")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def choose(client, sid: str, choice: str, /, token: str | None = "page", **fields):
    """POST the page's form for send ``sid`` (``token="page"``: the one its page gives)."""
    data = {"choice": choice, **fields}
    if token == "page":
        token = form_token(client, sid)
    if token is not None:
        data["csrf_token"] = token
    return client.post(f"/u/{sid}/preferences", data=data)


def prefs(ws, email: str | None = None) -> list[dict]:
    with stores.open_store(ws.root) as store:
        return store.preference_rows(email)


# ------------------------------------------------------------------------------------------
# The footer's link


FOOTER = {
    "en": "Manage your preferences or unsubscribe",
    "es": "Gestionar sus preferencias o darse de baja",
    "fr": "Gérer vos préférences ou vous désabonner",
}


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_every_message_links_its_own_preference_page(circular_rows, sent_ws, lang) -> None:
    from email import message_from_bytes

    from outreach.transports.outbox import eml_name

    row = first_in(circular_rows, lang)
    path = sent_ws.root / "outbox" / "december" / "2026" / "circular"
    msg = message_from_bytes((path / eml_name(row["email"], row["send_id"])).read_bytes())
    url = f"https://outreach.escr-net.org/u/{row['send_id']}"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in msg.walk()
        if not p.is_multipart()
    }
    assert f"{FOOTER[lang]} ({url})" in parts["text/plain"]
    assert re.search(rf'<a href="{url}"[^>]*>{FOOTER[lang]}</a>', parts["text/html"])
    assert msg["List-Unsubscribe"].startswith(f"<{url}>")  # the one-click POST's target
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# ------------------------------------------------------------------------------------------
# The page


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_the_page_offers_the_three_choices_in_the_recipients_language(
    client, circular_rows, sent_ws, lang
) -> None:
    row = first_in(circular_rows, lang)
    r = client.get(f"/u/{row['send_id']}")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    page = r.text
    assert f'<html lang="{lang}">' in page and f"<h1>{TITLE[lang]}</h1>" in page
    assert mask(row["email"]) in page and row["email"] not in page
    # 1. this campaign only
    assert f'action="/u/{row["send_id"]}/preferences"' in page
    assert 'name="choice" value="leave_campaign"' in page and LEAVE[lang] in page
    # 2. the campaign's languages, the recipient's own selected, each named in itself
    options = re.findall(r'<option value="(\w+)" lang="\w+"( selected)?>([^<]+)</option>', page)
    assert options == [
        ("en", " selected" if lang == "en" else "", "English"),
        ("es", " selected" if lang == "es" else "", "Español"),
        ("fr", " selected" if lang == "fr" else "", "Français"),
    ]
    # 3. everything: the one-click form, as before
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    assert prefs(sent_ws) == [] and stores.rows(sent_ws.root, "suppressions") == []


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_leaving_this_campaign_is_recorded_and_can_be_undone(
    client, circular_rows, sent_ws, lang
) -> None:
    row = first_in(circular_rows, lang)
    sid, email = row["send_id"], row["email"]
    r = choose(client, sid, "leave_campaign")
    assert r.status_code == 200
    assert f'<html lang="{lang}">' in r.text
    assert LEFT_DONE[lang] + mask(email) + " " + LEFT_WORDS[lang] in r.text
    assert email not in r.text and f'href="/u/{sid}"' in r.text  # back to the page
    [choice] = prefs(sent_ws)
    assert choice == {
        "email": email.lower(),
        "campaign": "december",
        "kind": "leave_campaign",
        "language": None,
        "created_at": "2026-12-02T12:00:00.000+00:00",  # the app's clock
        "source": "page",
        "send_id": sid,
        "client": "testclient",
    }
    assert stores.rows(sent_ws.root, "suppressions") == []  # not a global unsubscribe
    # leaving again records nothing more; the page now offers to come back
    assert choose(client, sid, "leave_campaign").status_code == 200
    assert len(prefs(sent_ws)) == 1
    page = client.get(f"/u/{sid}").text
    assert REJOIN[lang] in page and LEAVE[lang] + "<" not in page
    r = choose(client, sid, "rejoin_campaign")
    assert r.status_code == 200 and REJOIN_WORDS[lang] in r.text
    assert [p["kind"] for p in prefs(sent_ws)] == ["leave_campaign", "rejoin_campaign"]
    assert LEAVE[lang] in client.get(f"/u/{sid}").text


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_a_language_change_is_recorded_and_confirmed_in_the_new_language(
    client, circular_rows, sent_ws, lang
) -> None:
    row = first_in(circular_rows, lang)
    sid, new = row["send_id"], OTHER[lang]
    r = choose(client, sid, "language", language=new)
    assert r.status_code == 200
    assert f'<html lang="{new}">' in r.text
    assert LANGUAGE_DONE[new].format(email=mask(row["email"])) in r.text
    [choice] = prefs(sent_ws)
    assert (choice["campaign"], choice["kind"], choice["language"]) == ("*", "language", new)
    # the page stays in the message's language, with the new choice selected
    page = client.get(f"/u/{sid}").text
    assert f'<html lang="{lang}">' in page
    assert re.search(rf'<option value="{new}" lang="{new}" selected>', page)
    # the same choice again records nothing
    choose(client, sid, "language", language=new)
    assert len(prefs(sent_ws)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"choice": "language", "language": "de"},  # not one of the campaign's languages
        {"choice": "language"},
        {"choice": "leave_all_and_more"},
        {},
    ],
)
def test_a_choice_the_page_does_not_offer_is_a_bad_request(
    client, circular_rows, sent_ws, fields
) -> None:
    sid = circular_rows[0]["send_id"]
    r = client.post(f"/u/{sid}/preferences", data={**fields, "csrf_token": form_token(client, sid)})
    assert r.status_code == 400
    assert prefs(sent_ws) == []


def test_the_page_says_when_the_address_left_every_mailing(client, circular_rows) -> None:
    row = first_in(circular_rows, "fr")
    client.post(f"/u/{row['send_id']}", content=ONE_CLICK, headers=FORM)
    page = client.get(f"/u/{row['send_id']}").text
    assert f"L’adresse {mask(row['email'])} est désabonnée de tous les envois" in page


# ------------------------------------------------------------------------------------------
# Later sends honour the choices


def status_of(cli, ws, step: str, now: str) -> dict:
    r = cli(ws.root, "status", "december", "--json", "--now", now)
    assert r.exit_code == 0, r.output
    return next(s for s in json.loads(r.output)["steps"] if s["id"] == step)


def send(cli, ws, step: str, now: str) -> None:
    r = cli(ws.root, "send", "december", "--step", step, "--transport", "outbox", "--yes",
            "--now", now)  # fmt: skip
    assert r.exit_code == 0, r.output


def test_a_follow_up_and_the_next_edition_honour_every_choice(
    client, circular_rows, sent_ws, cli
) -> None:
    leaver = first_in(circular_rows, "en")
    switcher = first_in(circular_rows, "es")  # wants French from now on
    quitter = first_in(circular_rows, "fr")  # leaves every mailing (one-click)
    assert choose(client, leaver["send_id"], "leave_campaign").status_code == 200
    assert choose(client, switcher["send_id"], "language", language="fr").status_code == 200
    client.post(f"/u/{quitter['send_id']}", content=ONE_CLICK, headers=FORM)

    # the follow-up (last call: to those who did not open the circular)
    excluded = status_of(cli, sent_ws, "last-call", LAST_CALL_DUE)["excluded"]
    assert excluded["left_campaign"] == 1  # counted apart from the global unsubscribe
    assert excluded["suppressed:unsubscribe"] == 1
    send(cli, sent_ws, "last-call", LAST_CALL_DUE)
    sent = {r["email"]: r for r in stores.rows(sent_ws.root, "sends", step="last-call")}
    assert leaver["email"] not in sent and quitter["email"] not in sent
    assert sent[switcher["email"]]["language"] == "fr"  # the choice beats the list's column
    others = [r for r in circular_rows if r["email"] not in (leaver["email"], quitter["email"])]
    assert all(sent[r["email"]]["language"] == r["language"] for r in others if r is not switcher)
    # the French variant went to them: the outbox holds their message in French
    outbox = sent_ws.root / "outbox" / "december" / "2026" / "last-call"
    mine = [p for p in outbox.rglob("*.eml") if switcher["email"] in p.read_text("utf-8", "ignore")]
    assert mine and "Il est encore temps" in mine[0].read_text("utf-8", "ignore")

    # the next edition: leaving the campaign lasts; the language too
    nxt = status_of(cli, sent_ws, "circular", NEXT_EDITION)["excluded"]
    assert nxt["left_campaign"] == 1 and nxt["suppressed:unsubscribe"] == 1
    send(cli, sent_ws, "circular", NEXT_EDITION)
    rows_2027 = {r["email"]: r for r in stores.rows(sent_ws.root, "sends", edition=2027)}
    assert leaver["email"] not in rows_2027 and quitter["email"] not in rows_2027
    assert rows_2027[switcher["email"]]["language"] == "fr"


def test_coming_back_to_the_campaign_gets_its_messages_again(
    client, circular_rows, sent_ws, cli
) -> None:
    row = first_in(circular_rows, "es")
    choose(client, row["send_id"], "leave_campaign")
    choose(client, row["send_id"], "rejoin_campaign")
    assert "left_campaign" not in status_of(cli, sent_ws, "last-call", LAST_CALL_DUE)["excluded"]
    send(cli, sent_ws, "last-call", LAST_CALL_DUE)
    assert stores.rows(sent_ws.root, "sends", step="last-call", email=row["email"])


# ------------------------------------------------------------------------------------------
# Security: one recipient per token, the form's token, the rate limit


def test_a_stolen_token_cannot_change_another_recipient(client, circular_rows, sent_ws) -> None:
    a, b = circular_rows[0], circular_rows[1]
    token_a = form_token(client, a["send_id"])
    # A's form token on B's link: refused, B unchanged
    r = choose(client, b["send_id"], "leave_campaign", token=token_a)
    assert r.status_code == 403
    assert prefs(sent_ws) == []
    # A's link and token, naming B in the form: only A's own choice is recorded
    r = choose(
        client, a["send_id"], "leave_campaign", token=token_a, email=b["email"],
        send_id=b["send_id"],
    )  # fmt: skip
    assert r.status_code == 200
    assert [p["email"] for p in prefs(sent_ws)] == [a["email"].lower()]
    assert prefs(sent_ws, b["email"]) == []
    # B's own page works for B (the refusal above was the token's)
    assert choose(client, b["send_id"], "leave_campaign").status_code == 200
    assert prefs(sent_ws, b["email"])[0]["send_id"] == b["send_id"]


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_a_form_without_its_token_is_refused(client, circular_rows, sent_ws, lang) -> None:
    sid = first_in(circular_rows, lang)["send_id"]
    r = choose(client, sid, "leave_campaign", token=None)
    assert r.status_code == 403
    assert f'<html lang="{lang}">' in r.text and EXPIRED[lang] in r.text
    assert choose(client, sid, "language", token="", language="fr").status_code == 403
    assert choose(client, sid, "language", token="1.x", language="fr").status_code == 403
    assert prefs(sent_ws) == []


def test_the_form_token_expires_and_belongs_to_this_server(
    serve_app, circular_rows, sent_ws
) -> None:
    now = [float(WEBHOOK_NOW)]
    client = serve_app(clock=lambda: now[0])
    sid = circular_rows[0]["send_id"]
    token = form_token(client, sid)
    other = serve_app(secret_key="another-secret-key-of-forty-characters!!", clock=lambda: now[0])
    assert choose(other, sid, "leave_campaign", token=token).status_code == 403
    now[0] += unsubscribe.FORM_AGE + 1
    assert choose(client, sid, "leave_campaign", token=token).status_code == 403
    assert prefs(sent_ws) == []
    assert choose(client, sid, "leave_campaign").status_code == 200  # a fresh page's token


def test_pages_and_forms_are_rate_limited_per_client_but_one_click_is_not(
    serve_app, circular_rows, sent_ws, monkeypatch
) -> None:
    monkeypatch.setattr(unsubscribe, "PAGE_LIMIT", 3)
    now = [float(WEBHOOK_NOW)]
    client = serve_app(clock=lambda: now[0])
    sid = circular_rows[0]["send_id"]
    token = form_token(client, sid)  # 1
    assert client.get("/u/" + "a" * 32).status_code == 404  # 2: guesses count too
    assert choose(client, sid, "leave_campaign", token=token).status_code == 200  # 3
    for r in (
        client.get(f"/u/{sid}"),
        choose(client, sid, "rejoin_campaign", token=token),
        client.get("/u/test"),
    ):
        assert r.status_code == 429
        assert r.headers["retry-after"] == str(unsubscribe.PAGE_WINDOW)
    assert [p["kind"] for p in prefs(sent_ws)] == ["leave_campaign"]
    # another client address has its own count
    elsewhere = serve_app(clock=lambda: now[0], client=("198.51.100.7", 4000))
    assert elsewhere.get(f"/u/{sid}").status_code == 200
    # a mail provider's one-click POSTs are never limited
    for row in circular_rows[:5]:
        assert client.post(f"/u/{row['send_id']}", content=ONE_CLICK).status_code == 200
    assert len(stores.rows(sent_ws.root, "suppressions")) == 5
    # the wait it announced is enough
    now[0] += unsubscribe.PAGE_WINDOW - 1
    r = client.get(f"/u/{sid}")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    now[0] += 1
    assert client.get(f"/u/{sid}").status_code == 200


@pytest.mark.parametrize("token", ["test", "preview"])
def test_test_and_preview_links_change_no_preference(client, sent_ws, token) -> None:
    r = client.post(f"/u/{token}/preferences", data={"choice": "leave_campaign", "csrf_token": "x"})
    assert r.status_code == 200 and "Test link: nothing was changed." in r.text
    r = client.post(f"/u/{token}/preferences", data={"choice": "language", "language": "fr"})
    assert r.status_code == 200
    assert prefs(sent_ws) == [] and stores.rows(sent_ws.root, "suppressions") == []


@pytest.mark.parametrize("path", ["/u/" + "a" * 32, "/u/abc", "/u/" + "A" * 32])
def test_unknown_links_are_404_for_the_form_too(client, sent_ws, path) -> None:
    r = client.post(path + "/preferences", data={"choice": "leave_campaign"})
    assert r.status_code == 404 and r.text == "Not found\n"
    assert prefs(sent_ws) == []


# ------------------------------------------------------------------------------------------
# The RFC 8058 one-click POST is what it was


EXTRA_FIELDS = st.dictionaries(
    st.sampled_from(["choice", "language", "csrf_token", "email", "send_id", "x", "via"]),
    st.text(max_size=20),
    max_size=4,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(extra=EXTRA_FIELDS)
def test_one_click_post_is_unchanged_whatever_else_the_form_says(
    client, circular_rows, sent_ws, extra
) -> None:
    """Any body with ``List-Unsubscribe=One-Click`` unsubscribes the link's own recipient from
    everything, records no preference and needs no token, as before this page existed."""
    from urllib.parse import urlencode

    done = {r["email"].lower() for r in stores.rows(sent_ws.root, "suppressions")}
    row = next(r for r in circular_rows if r["email"].lower() not in done)
    body = ONE_CLICK + (b"&" + urlencode(extra).encode() if extra else b"")
    r = client.post(f"/u/{row['send_id']}", content=body, headers=FORM)
    assert r.status_code == 200
    assert mask(row["email"]) in r.text and row["email"] not in r.text
    after = {r["email"]: r["reason"] for r in stores.rows(sent_ws.root, "suppressions")}
    assert set(after) == done | {row["email"].lower()}
    assert after[row["email"].lower()] == "unsubscribe"
    assert prefs(sent_ws) == []
