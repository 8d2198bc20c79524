"""The JSON API (docs/api.md) through Starlette's TestClient, on every store backend: the
report is the CLI's document, the campaign list, errors as JSON, and the suppressions."""

from __future__ import annotations

import json

import pytest

from tests.tracking_support import cli_report

pytestmark = [pytest.mark.both_backends, pytest.mark.usefixtures("fast_argon2")]


def without_time(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "generated_at"}


@pytest.mark.parametrize(
    ("query", "options"),
    [
        pytest.param("", (), id="every-step"),
        pytest.param("?step=circular", ("--step", "circular"), id="one-step"),
        pytest.param("?edition=2026", ("--edition", "2026"), id="edition"),
        pytest.param("?edition=2025", ("--edition", "2025"), id="an-edition-without-sends"),
        pytest.param(
            "?transport=outbox&step=last-call",
            ("--transport", "outbox", "--step", "last-call"),
            id="transport",
        ),
    ],
)
def test_the_report_is_the_clis_document(staff_client, tracked, cli, query, options) -> None:
    r = staff_client("viewer").get("/api/campaigns/december/report" + query)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    api = r.json()
    assert without_time(api) == without_time(cli_report(cli, tracked, *options))
    assert api["generated_at"].startswith("2026-12-02T12:00:00")  # the server's clock


def test_the_report_has_the_events(staff_client, tracked) -> None:
    """The comparison above is about something: the API's report counts the stored events."""
    doc = staff_client("viewer").get("/api/campaigns/december/report?step=circular").json()
    assert doc["has_events"] is True
    [step] = doc["steps"]
    totals = step["totals"]
    assert (totals["sent"], totals["bounced_hard"], totals["opens_unique"]) == (57, 2, 20)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/campaigns/nope/report", 404, "no campaign named 'nope'"),
        ("/api/campaigns/%2E%2E/report", 404, "no campaign named '..'"),
        ("/api/campaigns/..%2Fcampaigns%2Fdecember/report", 404, "Not Found"),
        ("/api/campaigns/december/report?step=nope", 400, "nope"),
        ("/api/campaigns/december/report?edition=next", 400, "?edition= must be a number"),
        ("/api/campaigns/december/report?edition=12", 400, "?edition= must be a number"),
        ("/api/campaigns/december/report?transport=smtp", 400, "?transport= must be"),
        ("/api/audit?limit=0", 400, "?limit= must be a number"),
    ],
)
def test_errors_are_json_with_their_status(staff_client, path, status, words) -> None:
    r = staff_client("admin").get(path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error", "message"} and words in body["message"]


def test_the_campaigns_and_their_editions(staff_client, tracked) -> None:
    r = staff_client("viewer").get("/api/campaigns")
    assert r.headers["cache-control"] == "no-store"
    data = r.json()
    assert data["unreadable"] == []
    [c] = data["campaigns"]
    assert (c["name"], c["title"], c["recurs"]) == (
        "december",
        "December reminder-action circular",
        "yearly",
    )
    assert (c["current_edition"], c["editions"]) == (2026, [2026])
    assert [s["step"] for s in c["steps"]] == ["circular", "human-rights-day", "last-call"]
    assert c["steps"][0]["send_at"] == "2026-12-01T09:00:00-05:00"
    assert c["steps"][1]["local_time"] is True


def test_a_broken_campaign_file_is_listed_apart(staff_client, sent_ws) -> None:
    (sent_ws.root / "campaigns" / "broken.yaml").write_text("name: [unclosed\n")
    data = staff_client("viewer").get("/api/campaigns").json()
    assert [c["name"] for c in data["campaigns"]] == ["december"]
    assert [p["name"] for p in data["unreadable"]] == ["broken"]


def test_suppressions_are_listed_with_their_history(staff_client, tracked) -> None:
    c = staff_client("viewer")
    listed = c.get("/api/suppressions").json()
    reasons = {s["reason"] for s in listed["suppressions"]}
    assert {"bounce", "spamreport"} <= reasons and listed["log"] == []
    email = next(s["email"] for s in listed["suppressions"] if s["reason"] == "bounce")
    one = c.get("/api/suppressions", params={"email": email.upper()}).json()
    assert [s["email"] for s in one["suppressions"]] == [email]
    assert [e["action"] for e in one["log"]] == ["add"]


def test_a_bad_suppression_request_is_400(staff_client) -> None:
    c = staff_client("admin")
    h = {"X-CSRF-Token": c.csrf, "Content-Type": "application/json"}
    for body, words in [
        (b"not json", "not JSON"),
        (b"[1]", "must be a JSON object"),
        (json.dumps({"email": "nope", "why": "x"}).encode(), "not a valid address"),
        (json.dumps({"email": "a@example.org"}).encode(), "say why"),
        (b"{" + b" " * 20_000 + b"}", "larger than"),
    ]:
        r = c.post("/api/suppressions", content=body, headers=h)
        assert (r.status_code, r.json()["error"]) == (400, "bad-request"), body[:20]
        assert words in r.json()["message"]
