"""The staff dashboard (outreach/web/dashboard.py) through Starlette's TestClient, on every
store backend: each page, its figures against ``outreach report --format json``, roles and
CSRF on the suppression forms, the report cache and its invalidation, and that every staff
route needs a login."""

from __future__ import annotations

import csv
import io
import re

import pytest

from outreach.web import live
from tests import stores
from tests.dates import webhook_now
from tests.tracking_support import EVENTS_T0, cli_report
from tests.waiting import wait_until

pytestmark = [pytest.mark.both_backends, pytest.mark.usefixtures("fast_argon2")]

PAGES = (
    "/",
    "/campaigns",
    "/campaigns/december",
    "/campaigns/december/report.csv",
    "/contacts",
    "/suppressions",
)


def metric(page: str, step: str, name: str) -> str:
    """The figure of a key-figure card (``data-metric``) in a step's section of the page."""
    section = page.split(f'id="step-{step}"', 1)[1].split("</section>", 1)[0]
    found = re.search(rf'data-metric="{name}"><dt>[^<]*</dt><dd>([^<]*)</dd>', section)
    assert found, name
    return found.group(1)


def bar_figure(page: str, step: str, label: str) -> str:
    section = page.split(f'id="step-{step}"', 1)[1].split("</section>", 1)[0]
    found = re.search(
        rf'<tr data-metric="{re.escape(label)}">.*?<td class="figure">([^<]*)</td>', section, re.S
    )
    assert found, label
    return found.group(1)


def num(text: str) -> int:
    return int(text.replace(",", ""))


# ------------------------------------------------------------------------------------------
# Every page needs a login; every staff route says which role


@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_visit_goes_to_the_login_page(serve_app, path) -> None:
    r = serve_app().get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("http://testserver/login?next=")


def test_every_staff_route_requires_a_login(serve_app) -> None:
    """The route table: everything but the public routes is guarded by ``requires``."""
    public = {
        "healthz",
        "static",
        "events",
        "login",
        "login_submit",
        "logout",
    }
    app = serve_app().app
    unguarded = []
    for route in app.routes:
        name = getattr(route, "name", None)
        path = getattr(route, "path", "")
        if name in public or path.startswith(("/u", "/events")):
            continue
        if getattr(getattr(route, "endpoint", None), "staff_role", None) is None:
            unguarded.append((name, path))
    assert unguarded == []
    names = {getattr(r, "name", None) for r in app.routes}
    assert {"home", "campaigns", "campaign", "contacts", "suppressions"} <= names


def test_every_page_answers_a_viewer(staff_client, tracked) -> None:
    c = staff_client("viewer")
    for path in PAGES:
        r = c.get(path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-store", path
    nav = c.get("/").text.split("<nav", 1)[1].split("</nav>", 1)[0]
    assert 'href="/campaigns" aria-current="page"' in nav
    assert 'href="/contacts"' in nav and 'href="/suppressions"' in nav
    assert "/audit" not in nav  # a viewer's header has no audit log
    assert 'href="/audit"' in staff_client("admin").get("/").text


# ------------------------------------------------------------------------------------------
# Campaigns


def test_the_campaigns_page_counts_each_step(staff_client, tracked) -> None:
    page = staff_client("viewer").get("/").text
    assert "December reminder-action circular" in page
    assert "2026 edition" in page
    row = page.split('data-step="circular"', 1)[1].split("</tr>", 1)[0]
    counts = dict(re.findall(r'data-count="(\w+)"[^>]*>([^<]*)<', row))
    assert counts == {
        "sent": "57",
        "scheduled": "0",
        "pending": "0",
        "failed": "0",
        "unknown": "0",
        "cancelled": "0",
    }
    assert "1 Dec 2026, 09:00 EST" in row  # the due time, in the campaign's zone
    later = page.split('data-step="human-rights-day"', 1)[1].split("</tr>", 1)[0]
    assert "each recipient's local time" in later
    assert re.findall(r'data-count="sent"[^>]*>([^<]*)<', later) == ["0"]


def test_scheduled_sends_are_counted_apart(sent_ws) -> None:
    """A send accepted for a delivery time still ahead is 'scheduled', not 'sent'; once that
    time has passed it is 'sent'."""
    from datetime import timedelta

    from outreach.campaign import load_campaign
    from outreach.ledger import Ledger

    now = webhook_now()
    c = load_campaign(sent_ws.root, "december", now=now)
    ahead = (now + timedelta(hours=5)).isoformat()
    rows = [("circular", "sent", None, 50), ("circular", "sent", ahead, 7)]
    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        real = live.step_counts(ledger, c, now)[1]["circular"]
        soon = live.step_counts(_Proxy(ledger, rows), c, now)[1]["circular"]
        later = live.step_counts(_Proxy(ledger, rows), c, now + timedelta(hours=6))[1]
    assert (real["sent"], real["scheduled"]) == (57, 0)
    assert (soon["sent"], soon["scheduled"]) == (50, 7)
    assert (later["circular"]["sent"], later["circular"]["scheduled"]) == (57, 0)


class _Proxy:
    """A ledger whose step_send_times answers ``rows`` (everything else is the real one)."""

    def __init__(self, ledger, rows) -> None:
        self._ledger = ledger
        self._rows = rows

    def step_send_times(self, *args):
        return self._rows

    def __getattr__(self, name):
        return getattr(self._ledger, name)


# ------------------------------------------------------------------------------------------
# The campaign's report


@pytest.mark.parametrize(
    ("query", "options"),
    [
        pytest.param("", (), id="every-step"),
        pytest.param("?step=circular", ("--step", "circular"), id="one-step"),
        pytest.param("?edition=2026", ("--edition", "2026"), id="edition"),
    ],
)
def test_the_report_page_shows_the_clis_figures(staff_client, tracked, cli, query, options):
    doc = cli_report(cli, tracked, *options)
    page = staff_client("viewer").get("/campaigns/december" + query)
    assert page.status_code == 200
    text = page.text
    assert f"{doc['edition']} edition" in text
    assert doc["steps"], "the report has steps"
    for step in doc["steps"]:
        t = step["totals"]
        sid = step["step"]
        assert num(metric(text, sid, "sent")) == t["sent"]
        assert num(metric(text, sid, "delivered")) == t["delivered"]
        assert num(metric(text, sid, "opened")) == t["opens_unique"]
        assert num(metric(text, sid, "clicked")) == t["clicks_unique"]
        assert num(bar_figure(text, sid, "opened by a machine")) == t["machine_opens_unique"]
        for label, key in [
            ("hard bounces", "bounced_hard"),
            ("soft bounces", "bounced_soft"),
            ("dropped", "dropped"),
            ("unsubscribed", "unsubscribes"),
            ("spam reports", "spam_reports"),
        ]:
            assert num(bar_figure(text, sid, label)) == t[key], label
        for link in step["links"]:
            assert f">{link['link']}</th>" in text
        for dim, rows in step["by"].items():
            for row in rows:
                assert f'<th scope="row" class="text">{row["value"]}</th>' in text, (dim, row)
    for bucket in doc["timeline"]:
        assert f">{bucket['bucket']}</th><td>{bucket['opens']}</td>" in text


def test_the_report_page_has_what_the_report_has(staff_client, tracked) -> None:
    """The comparison above is about something: the circular's events are on the page."""
    text = staff_client("viewer").get("/campaigns/december?step=circular").text
    assert (metric(text, "circular", "sent"), metric(text, "circular", "opened")) == ("57", "20")
    assert metric(text, "circular", "delivered") == "53"
    assert "model_letter" in text and "share:x" in text  # clicks per named link
    assert "spam complaints (of delivered)" in text and "0.30 %" in text  # the limit
    assert "Last updated" in text and "2 Dec 2026, 12:00 UTC" in text
    assert "newest event counted" in text
    assert "By country status" in text and "By language" in text
    assert '<svg viewBox="0 0' in text  # the timeline chart
    assert "<style" not in text and "style=" not in text  # the CSP allows no inline style


def test_the_csv_download_is_the_clis_csv(staff_client, tracked, cli) -> None:
    r = staff_client("viewer").get("/campaigns/december/report.csv?step=circular")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="december-2026-circular.csv"' in r.headers["content-disposition"]
    out = cli(
        tracked.root,
        "report",
        "december",
        "--step",
        "circular",
        "--format",
        "csv",
        "--now",
        webhook_now().isoformat(),
    )
    assert r.text == out.output
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["dimension"] == "all" and rows[0]["sent"] == "57"


def test_the_json_download_is_the_apis_document(staff_client, tracked) -> None:
    c = staff_client("viewer")
    page = c.get("/campaigns/december?step=circular").text
    href = re.search(r'<a href="([^"]+)">JSON</a>', page).group(1).replace("&amp;", "&")
    assert href.startswith("http://testserver/api/campaigns/december/report?")
    doc = c.get(href).json()
    assert doc["step_filter"] == "circular" and doc["edition"] == 2026


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/campaigns/nope", 404, "no campaign named"),
        ("/campaigns/december?step=nope", 400, "nope"),
        ("/campaigns/december?edition=next", 400, "must be a number"),
        ("/campaigns/nope/report.csv", 404, "no campaign named"),
        ("/campaigns/december/report.csv?step=nope", 400, "nope"),
    ],
)
def test_bad_report_requests(staff_client, path, status, words) -> None:
    r = staff_client("viewer").get(path)
    assert r.status_code == status and words in r.text


def late_open(rows: list[dict], n: int) -> dict:
    """A human open of a circular message nobody had opened, as SendGrid posts it."""
    fresh = sorted((r for r in rows if r["step"] == "circular"), key=lambda r: r["email"])[40 + n]
    return {
        "email": fresh["email"],
        "timestamp": EVENTS_T0 + 7200 + n,
        "event": "open",
        "sg_event_id": f"late-open-{n}",
        "sg_machine_open": False,
        "send_id": fresh["send_id"],
        "campaign": "december",
        "step": "circular",
    }


def test_a_warm_view_does_not_recompute_and_new_events_do(staff_client, tracked, webhook):
    c = staff_client("viewer")
    cache = live.report_cache(c.app.state.services)
    first = c.get("/campaigns/december?step=circular").text
    assert (cache.misses, cache.hits) == (1, 0)
    again = c.get("/campaigns/december?step=circular").text
    assert (cache.misses, cache.hits) == (1, 1)
    assert metric(again, "circular", "opened") == metric(first, "circular", "opened") == "20"
    assert 'id="stale"' not in again
    # the API shares the cache: the same report, computed once
    assert c.get("/api/campaigns/december/report?step=circular").status_code == 200
    assert (cache.misses, cache.hits) == (1, 2)
    # a new event (through the webhook, as SendGrid sends it) invalidates it: the page shows
    # the figures it has at once, says they are being updated, and has them computed again
    rows = stores.rows(tracked.root, "sends")
    assert webhook([late_open(rows, 0)]).status_code == 200
    stale = c.get("/campaigns/december?step=circular").text
    assert cache.stale == 1 and 'id="stale"' in stale
    assert metric(stale, "circular", "opened") == "20"
    assert wait_until(lambda: cache.misses == 2 and not cache.running, 60, what="the update")
    after = c.get("/campaigns/december?step=circular").text
    assert metric(after, "circular", "opened") == "21" and 'id="stale"' not in after
    # the API waits for up-to-date figures
    assert webhook([late_open(rows, 1)]).status_code == 200
    doc = c.get("/api/campaigns/december/report?step=circular").json()
    assert doc["steps"][0]["totals"]["opens_unique"] == 22 and cache.misses == 3


def test_the_campaigns_page_starts_each_report(staff_client, tracked) -> None:
    """The page a login lands on has the campaign's report computed in the background: the
    view that follows finds it ready (or waits for that same computation)."""
    c = staff_client("viewer")
    cache = live.report_cache(c.app.state.services)
    assert c.get("/").status_code == 200
    assert wait_until(lambda: cache.misses == 1 and not cache.running, 60, what="the report")
    assert c.get("/campaigns/december").status_code == 200
    assert (cache.misses, cache.hits) == (1, 1)
    assert c.get("/").status_code == 200  # up to date: nothing more to compute
    assert (cache.misses, cache.running) == (1, {})


# ------------------------------------------------------------------------------------------
# One address


def test_a_contact_lookup(staff_client, tracked, circular_rows) -> None:
    c = staff_client("viewer")
    bounced = circular_rows[0]["email"]  # a hard bounce (circular_batches)
    page = c.get("/contacts", params={"email": bounced.upper()}).text
    assert f"<h2>{bounced}</h2>" in page
    assert "december · 2026 edition · step circular" in page
    assert "bounced" in page
    assert "Suppressed since" in page and "bounce" in page
    assert "<h3>Suppression history</h3>" in page and '<td class="text">add</td>' in page
    clicker = circular_rows[4]["email"]  # opened, clicked the model letter and a share link
    page = c.get("/contacts", params={"email": clicker}).text
    assert "Not suppressed" in page
    assert re.search(r"clicked model_letter[^;<]*, share:x", page)
    nobody = c.get("/contacts", params={"email": "nobody@example.org"}).text
    assert "Nothing was ever sent to this address." in nobody
    assert c.get("/contacts").status_code == 200


# ------------------------------------------------------------------------------------------
# Suppressions


def form_token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_viewers_see_the_list_but_no_forms(staff_client, tracked) -> None:
    c = staff_client("viewer")
    page = c.get("/suppressions").text
    assert 'id="add-form"' not in page and 'id="remove-form"' not in page
    assert "spamreport" in page or "spam" in page
    r = c.post("/suppressions", data={"email": "a@example.org", "why": "x", "csrf_token": c.csrf})
    assert r.status_code == 403 and "needs the admin role" in r.text
    r = c.post(
        "/suppressions/remove",
        data={"email": "a@example.org", "why": "x", "csrf_token": c.csrf},
    )
    assert r.status_code == 403
    assert all(s["email"] != "a@example.org" for s in stores.rows(tracked.root, "suppressions"))


def test_a_search_narrows_the_list(staff_client, tracked, circular_rows) -> None:
    c = staff_client("viewer")
    everyone = c.get("/suppressions").text
    total = len(stores.rows(tracked.root, "suppressions"))
    assert f"{total} suppressed address(es)" in everyone
    target = circular_rows[0]["email"]
    page = c.get("/suppressions", params={"q": target[:6]}).text
    assert target in page and f"of {total} suppressed addresses contain" in page
    none = c.get("/suppressions", params={"q": "zzz-nobody"}).text
    assert "0 of" in none and 'id="suppressions"' not in none


def test_an_admin_adds_and_lifts_a_suppression(staff_client, tracked) -> None:
    c = staff_client("admin")
    page = c.get("/suppressions").text
    assert 'id="add-form"' in page and 'id="remove-form"' in page
    token = form_token(page)
    r = c.post(
        "/suppressions",
        data={"email": "Someone@Example.org", "why": "asked by phone", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"].endswith("/suppressions?email=someone%40example.org&done=added")
    shown = c.get(r.headers["location"]).text
    assert "The address is now suppressed" in shown and "asked by phone" in shown
    r = c.post(
        "/suppressions/remove",
        data={"email": "someone@example.org", "why": "typo", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "done=lifted" in r.headers["location"]
    again = c.post(
        "/suppressions/remove",
        data={"email": "someone@example.org", "why": "typo", "csrf_token": token},
    )
    assert again.status_code == 404 and "is not suppressed" in again.text
    # recorded as the API records its changes: who, what, why, from where
    audit = stores.rows(tracked.root, "audit_log")[-2:]
    assert [(a["who"], a["action"], a["target"], a["why"], a["via"]) for a in audit] == [
        ("admin@example.org", "suppression_add", "someone@example.org", "asked by phone", "web"),
        ("admin@example.org", "suppression_remove", "someone@example.org", "typo", "web"),
    ]
    log = [
        e
        for e in stores.rows(tracked.root, "suppression_log")
        if e["email"] == "someone@example.org"
    ]
    assert [(e["who"], e["action"], e["note"]) for e in log] == [
        ("admin@example.org", "add", "asked by phone"),
        ("admin@example.org", "remove", "typo"),
    ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"email": "someone@example.org"}, "say why"),
        ({"email": "not an address", "why": "x"}, "not a valid address"),
    ],
)
def test_a_bad_form_says_what_is_wrong(staff_client, sent_ws, data, words) -> None:
    c = staff_client("admin")
    r = c.post("/suppressions", data={**data, "csrf_token": c.csrf})
    assert r.status_code == 400
    assert words in r.text.lower() or "give the address and say why" in r.text.lower()
    assert stores.rows(sent_ws.root, "suppressions") == []


def test_a_form_without_its_csrf_token_is_403(staff_client, sent_ws) -> None:
    c = staff_client("admin")
    for path in ("/suppressions", "/suppressions/remove"):
        r = c.post(path, data={"email": "someone@example.org", "why": "x"})
        assert r.status_code == 403 and "CSRF" in r.text, path
        r = c.post(path, data={"email": "someone@example.org", "why": "x", "csrf_token": "nope"})
        assert r.status_code == 403, path
    assert stores.rows(sent_ws.root, "suppressions") == []
    assert all(a["action"] == "user_add" for a in stores.rows(sent_ws.root, "audit_log"))


def test_what_is_typed_is_shown_escaped(staff_client) -> None:
    c = staff_client("viewer")
    page = c.get("/contacts", params={"email": "<script>x</script>@example.org"}).text
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;@example.org" in page
    page = c.get("/suppressions", params={"q": '"><b>bold'}).text
    assert "<b>bold" not in page and "&#34;&gt;&lt;b&gt;bold" in page


def test_the_data_version_moves_with_events_and_sends(sent_ws, circular_rows) -> None:
    """The cache key's store part (Store.data_version) changes when an event is stored or a
    send is written, and stays put otherwise."""
    from outreach.ledger import Ledger
    from outreach.store.base import EVENT_COLUMNS

    row = circular_rows[0]
    event = dict.fromkeys(EVENT_COLUMNS)
    event.update(
        sg_event_id="version-1",
        event="open",
        email=row["email"],
        timestamp=EVENTS_T0,
        send_id=row["send_id"],
        campaign="december",
        edition=2026,
        step="circular",
        machine_open=0,
        matched=1,
        source="test",
        received_at="2026-12-02T12:00:00.000+00:00",
    )
    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        before = ledger.data_version()
        assert before[1] == 57 and ledger.data_version() == before
        ledger.insert_events([tuple(event[c] for c in EVENT_COLUMNS)])
        after = ledger.data_version()
        assert after[0] > before[0] and after[1:] == before[1:]
        ledger.refresh_statistics()  # on either backend
        assert ledger.data_version() == after
        ledger.record_test_send("december", 2026, "circular", "v", "t@example.org", "outbox", None)
        assert ledger.data_version() == after  # a test send is no send of the campaign
        ledger.mark_cancelled(
            [row["send_id"]],
            "test",
            provider_batch_id="none",
            campaign="december",
            edition=2026,
            step="circular",
        )
        changed = ledger.data_version()
        assert changed[:2] == after[:2] and changed[2] > after[2]  # a send changed status
