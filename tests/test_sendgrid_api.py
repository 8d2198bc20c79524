"""The one SendGrid API client (outreach/sendgrid_api.py) against the strict fake: settings,
retries with an injected clock and sleep, the classification of failures, and the fake's answers
checked against SendGrid's OpenAPI specs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from outreach.exceptions import ConfigError, FatalError, PermanentError, UnknownOutcome
from outreach.sendgrid_api import API_HOST, DEFAULT_TIMEOUT, SendGridAPI, Settings
from outreach.workspace import Workspace
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import KEY, Sleeps

OAI = Path(__file__).resolve().parent.parent.parent / "shared" / "sendgrid-oai"


def api_for(fake: FakeSendGrid, **kw) -> SendGridAPI:
    return SendGridAPI(Settings(KEY, fake.url, 2.0), **kw)


def test_settings_come_from_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    ws = Workspace(tmp_path, {"SENDGRID_API_KEY": KEY})
    assert Settings.of(ws) == Settings(KEY, API_HOST, DEFAULT_TIMEOUT)
    ws.env.update(SENDGRID_API_HOST="http://127.0.0.1:4010/", SENDGRID_TIMEOUT="2.5")
    assert Settings.of(ws) == Settings(KEY, "http://127.0.0.1:4010", 2.5)
    ws.env.update(SENDGRID_TIMEOUT="-1")
    with pytest.raises(ConfigError, match="SENDGRID_TIMEOUT '-1' is not a number of seconds"):
        Settings.of(ws)
    ws.env.pop("SENDGRID_API_KEY")
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY is not set") as exc:
        Settings.of(ws, need="the key needs read access to Suppressions")
    assert "read access to Suppressions" in str(exc.value)


def test_rate_limit_waits_until_the_reset_by_the_injected_clock(fake: FakeSendGrid) -> None:
    fake.clock = lambda: 2_000_000_000.0  # SendGrid's clock (X-RateLimit-Reset)
    sleeps = Sleeps()
    api = api_for(fake, sleep=sleeps, clock=lambda: 2_000_000_000.0 - 12)
    fake.queue_at("GET /v3/scopes", (429, 30))
    notes: list[str] = []
    api.on_retry = notes.append
    assert api.get_json("scopes")["scopes"]
    assert sleeps == [42.0]  # the reset is 30 s after SendGrid's now, 42 s after ours
    assert "rate limit was reached (429); waiting until 03:33:50 UTC" in notes[0]
    assert api.requests == 2


def test_server_errors_back_off_exponentially_then_give_up(fake: FakeSendGrid) -> None:
    sleeps = Sleeps()
    api = api_for(fake, sleep=sleeps, retries=3, backoff=0.5, max_backoff=1.0)
    fake.queue_at("GET /v3/scopes", 500, 502, 503, 500)
    with pytest.raises(PermanentError, match=r"gave up after 4 attempts: SendGrid had a server"):
        api.get_json("scopes")
    assert len(sleeps) == 3
    for delay, cap in zip(sleeps, (0.5, 1.0, 1.0), strict=True):
        assert cap / 2 <= delay <= cap


def test_no_answer_after_sending_is_unknown_unless_the_call_is_a_read(fake: FakeSendGrid) -> None:
    fake.hang = 1.0
    api = SendGridAPI(Settings(KEY, fake.url, 0.3), sleep=Sleeps(), retries=1)
    fake.queue_at("POST /v3/mail/batch", "hang")
    with pytest.raises(UnknownOutcome, match="may or may not have taken effect"):
        api.request("POST", "mail/batch")
    assert len([r for r in fake.requests if r.path == "/v3/mail/batch"]) == 1  # not retried
    fake.queue_at("GET /v3/scopes", "hang", "hang")
    with pytest.raises(PermanentError, match="no answer to GET /v3/scopes"):
        api.get_json("scopes")


def test_errors_name_the_permission_and_never_the_key(fake: FakeSendGrid) -> None:
    api = api_for(fake)
    fake.scopes = ["mail.send"]
    with pytest.raises(FatalError) as exc:
        api.get_json("user/webhooks/event/settings/all", scope="user.webhooks.event.settings.read")
    assert exc.value.status == 403
    assert "'user.webhooks.event.settings.read' permission" in str(exc.value)
    fake.queue_at("GET /v3/scopes", (400, {"errors": [{"field": None, "message": f"bad {KEY}"}]}))
    with pytest.raises(FatalError) as exc:
        api.get_json("scopes")
    assert "bad [redacted]" in str(exc.value) and KEY not in str(exc.value)


# ------------------------------------------------------------------------------------------
# The fake's answers have SendGrid's documented shapes


def _response_schema(spec_file: str, path: str) -> dict:
    spec = json.loads((OAI / spec_file).read_text())
    content = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    schema = copy.deepcopy(content["schema"])
    schema["components"] = spec["components"]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@pytest.mark.skipif(not (OAI / "tsg_webhooks_v3.json").is_file(), reason="spec absent")
def test_fake_account_answers_validate_against_the_specs(fake: FakeSendGrid) -> None:
    from jsonschema import Draft202012Validator

    fake.add_webhook("https://outreach.example.org/events")
    fake.add_webhook("https://other.example.org/hook", public_key=None, enabled=False)
    fake.suppressions = {
        "/v3/suppression/bounces": [
            {"created": 1, "email": "a@example.org", "reason": "550", "status": "5.1.1"}
        ],
        "/v3/suppression/spam_reports": [{"created": 1, "email": "b@example.org", "ip": "1.2.3.4"}],
    }
    api = api_for(fake)
    checks = [
        ("tsg_webhooks_v3.json", "/v3/user/webhooks/event/settings/all"),
        ("tsg_suppressions_v3.json", "/v3/suppression/bounces"),
        ("tsg_suppressions_v3.json", "/v3/suppression/spam_reports"),
    ]
    for spec_file, path in checks:
        validator = Draft202012Validator(_response_schema(spec_file, path))
        answer = api.get_json(path.removeprefix("/v3/"))
        errors = sorted(validator.iter_errors(answer), key=str)
        assert not errors, (path, errors[0].message)
    hooks = api.get_json("user/webhooks/event/settings/all")["webhooks"]
    assert "public_key" in hooks[0] and "public_key" not in hooks[1]
