"""SendGrid transport: payload shape, tracking, unsubscribe modes, substitution equivalence,
ledger message ids, and the request count, against an in-process fake SendGrid."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import main
from outreach.transports import choose
from outreach.transports.sendgrid import SUBSCRIPTION_TAG, display_name
from outreach.workspace import Workspace
from tests.sendgrid_fake import ASM_TAG, FakeSendGrid
from tests.sendgrid_helpers import (
    KEY,
    REPO,
    copy_example,
    copy_fixture,
    direct_render,
    edit,
    no_markers,
    plan_only,
    rows,
    run_send,
    use_fake,
)

OAI = REPO.parent / "shared" / "sendgrid-oai"


@pytest.fixture
def sg(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small fixture campaign, pointed at the fake."""
    use_fake(monkeypatch, fake.url)
    return copy_fixture(tmp_path / "ws")


@pytest.fixture
def example(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake(monkeypatch, fake.url)
    return copy_example(tmp_path / "ws")


def fake_plan(ws: Path):
    """The circular's plan for the example (nothing sent)."""
    return plan_only(ws, "december", steps=("circular",))


def min_requests(plan, cap: int) -> int:
    per_variant = Counter(
        b.variant.id for sp in plan.steps for b in sp.batches for _ in b.recipients
    )
    return sum(-(-n // cap) for n in per_variant.values())


# ------------------------------------------------------------------------------------------
# The shipped example


def test_example_campaign_one_request_per_variant(example: Path, fake: FakeSendGrid) -> None:
    summary, plan = run_send(example, "december", steps=("circular",))
    sp = plan.steps[0]
    assert summary.sent == len(sp.recipients) == 57
    assert summary.failed == summary.unknown == 0
    # requests ≤ Σ⌈n_v/1000⌉ (here: one per variant), and one MJML compile per variant
    assert (
        len(fake.mail_requests) == summary.requests == min_requests(plan, 1000) == len(sp.variants)
    )
    assert plan.renderer.compiles == len(sp.variants)
    # every planned recipient received exactly once
    assert fake.received_by() == Counter({r.contact.email.lower(): 1 for r in sp.recipients})
    # the X-Message-Id of each request is on each ledger row of its batch
    mid_of = {m.custom_args["send_id"]: m.message_id for m in fake.messages}
    ledger = rows(example)
    assert {r["status"] for r in ledger} == {"sent"}
    assert {r["send_id"]: r["message_id"] for r in ledger} == mid_of
    assert all(mid_of.values())


def test_example_substitutions_equal_direct_render(example: Path, fake: FakeSendGrid) -> None:
    run_send(example, "december", steps=("circular",))
    assert len(fake.messages) == 57
    for m in fake.messages:
        send_id = m.custom_args["send_id"]
        want = direct_render(
            example, "december", "circular", m.to, f"https://outreach.escr-net.org/u/{send_id}"
        )
        assert (m.subject, m.html, m.text) == (want.subject, want.html, want.text), m.to
        assert no_markers(m.html + m.text + m.subject)


def test_done_when_cli_send_delivers_the_example(example: Path, fake: FakeSendGrid) -> None:
    """`SENDGRID_API_KEY=x SENDGRID_API_HOST=… outreach send december --yes` on the due date."""
    n, v = 57, len(fake_plan(example).steps[0].variants)  # one request per variant (≤ 1000 each)
    result = CliRunner().invoke(
        main,
        [
            *("-C", str(example), "send", "december", "--yes", "--skip-invalid"),
            *("--now", "2026-12-01T14:30:00+00:00"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Transport: SendGrid at http://127.0.0.1" in result.output
    assert f"SendGrid: {v} request(s) for {n} recipient(s) in {v} variant(s)" in result.output
    assert len(fake.mail_requests) == v
    assert sum(fake.received_by().values()) == n
    assert KEY not in result.output


def test_dry_run_sends_nothing_and_says_how_it_batches(example: Path, fake: FakeSendGrid) -> None:
    result = CliRunner().invoke(
        main,
        [
            *("-C", str(example), "send", "december", "--step", "circular"),
            *("--dry-run", "--skip-invalid"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    v = len(fake_plan(example).steps[0].variants)
    assert f"SendGrid: {v} request(s) for 57 recipient(s) in {v} variant(s)" in result.output
    assert "unsubscribe: own one-click endpoint https://outreach.escr-net.org/u/<send_id>" in (
        result.output
    )
    assert fake.requests == []


def test_key_in_dotenv_chooses_sendgrid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SENDGRID_API_KEY", "SENDGRID_API_HOST"):
        monkeypatch.delenv(var, raising=False)
    ws = copy_example(tmp_path / "ws")
    assert choose(Workspace.open(ws), None) == "outbox"
    (ws / ".env").write_text(f"SENDGRID_API_KEY={KEY}\n")
    assert choose(Workspace.open(ws), None) == "sendgrid"
    assert choose(Workspace.open(ws), "outbox") == "outbox"


# ------------------------------------------------------------------------------------------
# Payload shape


def test_payload_shape(sg: Path, fake: FakeSendGrid) -> None:
    summary, plan = run_send(sg, "sg", steps=("note",))
    sp = plan.steps[0]
    assert summary.sent == 7
    # batch_size 2: ≤ 2 personalizations per request, and no more requests than needed
    sizes = [len(r.json()["personalizations"]) for r in fake.mail_requests]
    assert max(sizes) <= 2
    assert len(sizes) == min_requests(plan, 2)
    ledger = {r["send_id"]: r for r in rows(sg)}
    for req in fake.mail_requests:
        assert req.headers["authorization"] == f"Bearer {KEY}"
        assert req.headers["content-type"].startswith("application/json")
        body = req.json()
        assert set(body) == {
            "personalizations",
            "custom_args",
            "headers",
            "from",
            "reply_to",
            "subject",
            "content",
            "categories",
            "tracking_settings",
            "mail_settings",
        }
        assert body["from"] == {"email": "sender@example.org", "name": "Coalition Test"}
        assert body["reply_to"] == {
            "email": "coordinator@example.org",
            "name": '"Coordinator, Test Desk"',
        }
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert "[[t:" not in body["subject"]  # markers become short keys, or their value
        # what every recipient shares travels once
        assert body["custom_args"] == {"campaign": "sg", "step": "note"}
        # (the campaign's List-Id, RFC 2919, and List-Unsubscribe-Post; List-Unsubscribe is
        # per recipient)
        assert body["headers"] == {
            "List-Id": "SendGrid fixture <sg.example.org>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert body["categories"] == ["fixture", "sg", "note"]
        assert body["tracking_settings"] == {
            "click_tracking": {"enable": True, "enable_text": False},
            "open_tracking": {"enable": True},
            "subscription_tracking": {"enable": False},
        }
        assert body["mail_settings"] == {"sandbox_mode": {"enable": False}}
        emails = [p["to"][0]["email"] for p in body["personalizations"]]
        assert len(emails) == len(set(emails))
        for p in body["personalizations"]:
            assert set(p) <= {"to", "substitutions", "custom_args", "headers"}
            sid = p["custom_args"]["send_id"]
            row = ledger[sid]
            assert p["custom_args"] == {"contact_id": row["contact_id"], "send_id": sid}
            assert p["to"][0]["email"] == row["email"]
            assert p["headers"] == {
                "List-Unsubscribe": f"<https://unsub.example.org/u/{sid}>, "
                f"<mailto:unsub@example.org?subject=unsubscribe%20{sid}>",
            }
            subs = p.get("substitutions", {})
            assert all(re.fullmatch(r"\[\[\d+\]\]", k) for k in subs)
            assert all(isinstance(v, str) for v in subs.values())
    # what each message carries once SendGrid merged the shared and the own parts
    for m in fake.messages:
        sid = m.custom_args["send_id"]
        assert m.custom_args == {
            "campaign": "sg",
            "step": "note",
            "contact_id": ledger[sid]["contact_id"],
            "send_id": sid,
        }
        assert m.headers == {
            "List-Unsubscribe": f"<https://unsub.example.org/u/{sid}>, "
            f"<mailto:unsub@example.org?subject=unsubscribe%20{sid}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": "SendGrid fixture <sg.example.org>",
        }
    names = {
        p["to"][0]["email"]: p["to"][0].get("name")
        for r in fake.mail_requests
        for p in r.json()["personalizations"]
    }
    assert names["ana@example.org"] == '"Ana Pérez, Jr."'
    assert names["eve@example.org"] == '"Eve Smith;Jones"'
    assert names["ben@example.org"] == "Ben Okafor"
    # one request per variant here (one variant has two recipients, batch_size is 2)
    assert len(fake.mail_requests) == len(sp.variants) == 6


def test_html_values_escaped_text_values_raw(sg: Path, fake: FakeSendGrid) -> None:
    plan = plan_only(sg, "sg", steps=("note",))
    run_send(sg, "sg", steps=("note",))
    ana = next(m for m in fake.messages if m.to == "ana@example.org")
    assert "Médicos &amp; Amigos" in ana.html and "Médicos & Amigos" not in ana.html
    assert "Médicos & Amigos" in ana.text
    assert "quotes &#34; and &lt;angle&gt; and &amp; amp" in ana.html
    assert 'quotes " and <angle> and & amp' in ana.text
    assert "PÉREZ, JR." in ana.html
    # the reference personalization (what the payload encodes) has each form under its marker
    batch = next(
        b
        for b in plan.steps[0].batches
        for r in b.recipients
        if r.contact.email == "ana@example.org"
    )
    r = next(r for r in batch.recipients if r.contact.email == "ana@example.org")
    subs = plan.transport.personalization(batch, r)["substitutions"]
    assert subs["[[h:contact.organization]]"] == "Médicos &amp; Amigos"
    assert subs["[[t:contact.organization]]"] == "Médicos & Amigos"
    assert subs["[[h:contact.note]]"] == "quotes &#34; and &lt;angle&gt; and &amp; amp"
    assert subs["[[t:contact.note]]"] == 'quotes " and <angle> and & amp'
    assert subs["[[h:contact.last_name|upper]]"] == "PÉREZ, JR."


def test_fixture_substitutions_equal_direct_render(sg: Path, fake: FakeSendGrid) -> None:
    run_send(sg, "sg", steps=("note",))
    assert len(fake.messages) == 7
    for m in fake.messages:
        sid = m.custom_args["send_id"]
        want = direct_render(sg, "sg", "note", m.to, f"https://unsub.example.org/u/{sid}")
        assert (m.subject, m.html, m.text) == (want.subject, want.html, want.text), m.to
        assert f"https://unsub.example.org/u/{sid}" in m.html
        assert "1 Example Street, 1201 Geneva, Switzerland" in m.html


def test_display_name_quotes_commas_and_semicolons() -> None:
    assert display_name("Ana Pérez") == "Ana Pérez"
    assert display_name("Pérez, Ana") == '"Pérez, Ana"'
    assert display_name('A "B"; C') == '"A \\"B\\"; C"'


def test_tracking_follows_the_campaign(sg: Path, fake: FakeSendGrid) -> None:
    edit(
        sg / "campaigns/sg.yaml",
        "  categories: [fixture]\n",
        "  categories: [fixture]\n  tracking: {opens: false, clicks: false}\n  ip_pool: outreach-pool\n",
    )
    run_send(sg, "sg", steps=("note",))
    body = fake.mail_requests[0].json()
    assert body["tracking_settings"]["open_tracking"] == {"enable": False}
    assert body["tracking_settings"]["click_tracking"] == {"enable": False, "enable_text": False}
    assert body["ip_pool_name"] == "outreach-pool"


def test_eight_categories_plus_campaign_and_step_make_ten(sg: Path, fake: FakeSendGrid) -> None:
    cats = [f"c{i}" for i in range(7)] + ["sg"]  # one repeats the campaign name
    edit(sg / "campaigns/sg.yaml", "categories: [fixture]", f"categories: [{', '.join(cats)}]")
    run_send(sg, "sg", steps=("note",))
    assert fake.mail_requests[0].json()["categories"] == [*cats, "note"]


# ------------------------------------------------------------------------------------------
# Unsubscribe modes


def _no_own_unsubscribe(ws: Path) -> None:
    edit(
        ws / "campaigns/sg.yaml",
        "unsubscribe:\n  url: https://unsub.example.org/u\n  mailto: unsub@example.org\n",
        "",
    )


def test_asm_group_mode(sg: Path, fake: FakeSendGrid) -> None:
    _no_own_unsubscribe(sg)
    edit(
        sg / "campaigns/sg.yaml", "  batch_size: 2\n", "  batch_size: 2\n  unsubscribe_group: 42\n"
    )
    summary, _ = run_send(sg, "sg", steps=("note",))
    assert summary.sent == 7
    for req in fake.mail_requests:
        body = req.json()
        assert body["asm"] == {"group_id": 42}
        assert body["tracking_settings"]["subscription_tracking"] == {"enable": False}
        assert ASM_TAG in body["content"][1]["value"]
        assert "[[h:unsubscribe_url]]" not in body["content"][1]["value"]
        for p in body["personalizations"]:
            assert "headers" not in p  # SendGrid adds its own List-Unsubscribe for the group
            assert not any("unsubscribe_url" in k for k in p["substitutions"])
    for m in fake.messages:
        assert f"{fake.url}/asm/unsubscribe?group=42&amp;to={m.to}" not in m.html
        assert f'href="{fake.url}/asm/unsubscribe?group=42&to={m.to}"' in m.html
        assert m.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert m.headers["List-Id"] == "SendGrid fixture <sg.example.org>"


def test_subscription_tracking_mode(sg: Path, fake: FakeSendGrid) -> None:
    _no_own_unsubscribe(sg)
    run_send(sg, "sg", steps=("note",))
    for req in fake.mail_requests:
        body = req.json()
        assert "asm" not in body
        assert body["tracking_settings"]["subscription_tracking"] == {
            "enable": True,
            "substitution_tag": SUBSCRIPTION_TAG,
        }
        assert SUBSCRIPTION_TAG in body["content"][1]["value"]
        assert all("headers" not in p for p in body["personalizations"])
    for m in fake.messages:
        assert f'href="{fake.url}/subscription/unsubscribe?to={m.to}"' in m.html
        assert m.headers["List-Unsubscribe"].startswith(f"<{fake.url}/subscription/")
        assert m.headers["List-Id"] == "SendGrid fixture <sg.example.org>"


def test_own_endpoint_with_group_keeps_our_headers(sg: Path, fake: FakeSendGrid) -> None:
    edit(sg / "campaigns/sg.yaml", "  batch_size: 2\n", "  batch_size: 2\n  unsubscribe_group: 7\n")
    run_send(sg, "sg", steps=("note",))
    body = fake.mail_requests[0].json()
    assert body["asm"] == {"group_id": 7}
    assert body["tracking_settings"]["subscription_tracking"] == {"enable": False}
    p = body["personalizations"][0]
    assert p["headers"]["List-Unsubscribe"].startswith("<https://unsub.example.org/u/")


# ------------------------------------------------------------------------------------------
# Sandbox


def test_sandbox_is_recorded_apart_from_real_sends(sg: Path, fake: FakeSendGrid) -> None:
    edit(sg / "campaigns/sg.yaml", "  batch_size: 2\n", "  batch_size: 2\n  sandbox: true\n")
    summary, plan = run_send(sg, "sg", steps=("note",))
    assert summary.sent == 7 and summary.transport == "sendgrid-sandbox"
    assert "SANDBOX" in plan.transport.describe()
    assert all(
        r.json()["mail_settings"] == {"sandbox_mode": {"enable": True}} for r in fake.mail_requests
    )
    assert {r["transport"] for r in rows(sg)} == {"sendgrid-sandbox"}
    # the real send afterwards still goes to everyone
    edit(sg / "campaigns/sg.yaml", "  sandbox: true\n", "")
    summary, _ = run_send(sg, "sg", steps=("note",))
    assert summary.sent == 7
    assert len(rows(sg, transport="sendgrid")) == 7


# ------------------------------------------------------------------------------------------
# SendGrid's own OpenAPI description


def _request_schema(spec: dict) -> dict:
    ref = spec["paths"]["/v3/mail/send"]["post"]["requestBody"]["$ref"]
    assert ref == "#/components/requestBodies/PostMailSend"
    body = spec["components"]["requestBodies"]["PostMailSend"]
    schema = copy.deepcopy(body["content"]["application/json"]["schema"])
    # The spec's quirk: top-level custom_args is typed as a string, but the API takes an object
    # (and the official Python helper sends one). Per-personalization custom_args is an object.
    assert schema["properties"]["custom_args"]["type"] == "string", "the spec changed: revisit"
    schema["properties"]["custom_args"]["type"] = ["object", "string"]
    schema["components"] = spec["components"]  # so that "#/components/…" resolves
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@pytest.mark.skipif(not (OAI / "tsg_mail_v3.json").is_file(), reason="SendGrid OpenAPI spec absent")
def test_payload_validates_against_sendgrids_openapi_spec(sg: Path, fake: FakeSendGrid) -> None:
    from jsonschema import Draft202012Validator, FormatChecker

    spec = json.loads((OAI / "tsg_mail_v3.json").read_text())
    schema = _request_schema(spec)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    edit(
        sg / "campaigns/sg.yaml",
        "  batch_size: 2\n",
        "  batch_size: 2\n  unsubscribe_group: 7\n  ip_pool: outreach-pool\n",
    )
    run_send(sg, "sg", steps=("note",))
    assert fake.mail_requests
    for req in fake.mail_requests:
        body = req.json()
        assert body["custom_args"] == {"campaign": "sg", "step": "note"}  # an object (quirk)
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, errors[0].message
    # the validator is not a rubber stamp: SendGrid's limits are in the schema
    body = fake.mail_requests[0].json()
    too_many = dict(body, personalizations=[body["personalizations"][0]] * 1001)
    assert not validator.is_valid(too_many)
    assert not validator.is_valid(dict(body, categories=[f"c{i}" for i in range(11)]))
    assert not validator.is_valid({k: v for k, v in body.items() if k != "from"})
    # and a top-level custom_args object, as the API takes it, passes once the quirk is handled
    assert validator.is_valid(dict(body, custom_args={"campaign": "sg"}))


@pytest.mark.skipif(
    not (OAI / "tsg_scheduled_sends_v3.json").is_file(), reason="SendGrid OpenAPI spec absent"
)
def test_cancel_body_validates_against_the_scheduled_sends_spec() -> None:
    from jsonschema import Draft202012Validator

    spec = json.loads((OAI / "tsg_scheduled_sends_v3.json").read_text())
    schema = copy.deepcopy(
        spec["paths"]["/v3/user/scheduled_sends"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
    )
    schema["components"] = spec["components"]
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"batch_id": "HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi", "status": "cancel"})
    assert not validator.is_valid({"batch_id": "x", "status": "delete"})


# ------------------------------------------------------------------------------------------
# Test sends


def test_test_sends_go_to_staff_with_a_test_subject(sg: Path, fake: FakeSendGrid) -> None:
    from outreach.ledger import Ledger
    from outreach.send import QuietUI, SendOptions, send

    ws = Workspace.open(sg)
    summary = send(
        ws,
        "sg",
        SendOptions(steps=("note",), test_to=("staff@example.org",), yes=True, skip_invalid=True),
        QuietUI(True),
    )
    plan_variants = len(plan_only(sg, "sg", steps=("note",)).steps[0].variants)
    assert summary.test_sends == plan_variants
    assert {m.to for m in fake.messages} == {"staff@example.org"}
    assert all(m.subject.startswith("[TEST] ") for m in fake.messages)
    assert all(m.name is None for m in fake.messages)
    assert all("/u/test>" in m.headers["List-Unsubscribe"] for m in fake.messages)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        assert ledger.editions("sg") == {}  # not a campaign send
