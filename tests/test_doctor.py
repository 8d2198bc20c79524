"""``outreach doctor``: DNS from a local DNS server (good and broken zones), the SendGrid account
from the strict fake, the endpoints from the real ``outreach serve`` app over https with
a throw-away CA, the content from the rendered variants. Nothing reaches the internet."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from outreach.campaign import load_campaign
from outreach.checks import Status
from outreach.content_checks import alt_text, clipping, parse_spam_status, spamassassin
from outreach.endpoints import endpoint_checks
from outreach.exceptions import ConfigError
from outreach.ledger import Ledger
from outreach.mailauth import dns_checks
from outreach.send import SendOptions, prepare
from outreach.sendgrid_account import account_checks
from outreach.web.app import create_app
from outreach.web.services import ServerSettings
from outreach.workspace import Workspace
from tests.conftest import SECRET_KEY
from tests.dates import CIRCULAR_DUE
from tests.dns_fake import FakeDNS, broken_zone, good_zone, sendgrid_records
from tests.https_support import broken_app, serve_https
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import copy_example, copy_fixture, edit, use_fake
from tests.tracking_support import Signer

DOMAIN = "escr-net.org"
SHIPPED_UNSUBSCRIBE = "url: https://outreach.escr-net.org/u"


def fill_links(root: Path) -> None:
    """Paste 'real' addresses: drop the links' todo lines (as the coordinator would)."""
    path = root / "campaigns" / "december.yaml"
    path.write_text(re.sub(r"\n    todo: [^\n]*", "", path.read_text()))


def statuses(checkup) -> dict[str, Status]:
    return {c.id: c.status for c in checkup.checks}


def by_id(checks, id_: str):
    return next(c for c in checks if c.id == id_)


@dataclass
class World:
    root: Path
    fake: FakeSendGrid
    dns: FakeDNS
    origin: str
    signer: Signer


@pytest.fixture
def world(
    tmp_path: Path, fake: FakeSendGrid, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """The December campaign ready to send: good DNS, a verified domain, a signed webhook to the
    campaign's server, and that server (the real app) answering over https."""
    root = copy_example(tmp_path / "ws")
    fill_links(root)
    use_fake(monkeypatch, fake.url)
    signer = Signer.new()
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_b64)
    ws = Workspace.open(root)
    app = create_app(ws, ServerSettings(public_key=signer.public_b64, secret_key=SECRET_KEY))
    with (
        serve_https(app, ca, tmp_path) as origin,
        FakeDNS(good_zone(DOMAIN)) as dns,
    ):
        edit(root / "campaigns/december.yaml", SHIPPED_UNSUBSCRIBE, f"url: {origin}/u")
        fake.authenticate_domain(DOMAIN)
        fake.add_webhook(f"{origin}/events", public_key=signer.public_b64)
        monkeypatch.setenv("OUTREACH_DNS_SERVER", dns.address)
        yield World(root, fake, dns, origin, signer)


def run_doctor(cli, root: Path, *extra: str):
    return cli(root, "doctor", "december", "--skip", "spamassassin", "--now", CIRCULAR_DUE, *extra)


# ------------------------------------------------------------------------------------------
# The whole doctor: exit codes, output, JSON


@pytest.mark.slow
def test_doctor_all_good_exits_0(world: World, cli) -> None:
    r = run_doctor(cli, world.root)
    assert r.exit_code == 0, r.output
    for line in (
        "✓ SPF of escr-net.org: v=spf1 mx include:_spf.mailhost.test include:sendgrid.net ~all",
        "✓ SPF lookup limit: 3 of 10 DNS lookups",
        "✓ DMARC of escr-net.org: _dmarc.escr-net.org: p=quarantine",
        "✓ API key: send: has mail.send",
        "✓ Sender op-icescr@escr-net.org: escr-net.org is an authenticated domain",
        f"✓ Event Webhook: {world.origin}/events, enabled, signed (key matches "
        "SENDGRID_WEBHOOK_PUBLIC_KEY)",
        f"✓ Unsubscribe page: {world.origin}/u/test answers 200 over https",
        f"✓ One-click unsubscribe (RFC 8058): POST {world.origin}/u/test answers 200, no redirect",
        f"✓ Server health: {world.origin}/healthz answers 200",
        "✓ Links: all 11 links filled in",
        "✓ Reputation: no step of the 2026 edition has been emailed yet",
        "all checks passed: ready to send (exit 0)",
    ):
        assert line in r.output, line
    assert "✗" not in r.output and "\n  ! " not in r.output
    assert "not checked: spamassassin not checked (--skip spamassassin)" in r.output


@pytest.mark.slow
def test_doctor_broken_zone_exits_1_with_a_fix_per_problem(world: World, cli) -> None:
    world.dns.zone = broken_zone(DOMAIN)
    r = run_doctor(cli, world.root)
    assert r.exit_code == 1, r.output
    out = r.output
    assert "✗ SPF allows SendGrid: the SPF record does not include sendgrid.net" in out
    assert "→ add include:sendgrid.net before the all term of the TXT record at escr-net.org" in out
    assert "✗ SPF lookup limit: 11 of 10 DNS lookups: receivers stop at 10" in out
    assert "✗ SendGrid DKIM (s1/s2._domainkey): s2._domainkey.escr-net.org missing" in out
    assert "→ in SendGrid → Settings → Sender Authentication, authenticate escr-net.org" in out
    assert "! DMARC of escr-net.org: _dmarc.escr-net.org: p=none" in out
    assert "→ once the DMARC reports show only your own services, move to p=quarantine" in out
    assert "3 failure(s), 1 warning(s)" in out and "(exit 1)" in out


@pytest.mark.slow
def test_doctor_warnings_only_exit_3_and_json(world: World, cli) -> None:
    world.dns.zone = good_zone(DOMAIN) | {f"_dmarc.{DOMAIN}": [("TXT", "v=DMARC1; p=none")]}
    r = run_doctor(cli, world.root, "--json")
    assert r.exit_code == 3, r.output
    data = json.loads(r.output)
    assert data["exit_code"] == 3 and data["counts"] == {"ok": 18, "warning": 1, "failure": 0}
    warning = next(c for c in data["checks"] if c["status"] == "warning")
    assert warning["id"] == "dns.dmarc" and warning["area"] == "DNS"
    assert warning["fix"].startswith("once the DMARC reports show only your own services")
    assert [c["area"] for c in data["checks"]] == sorted(
        (c["area"] for c in data["checks"]),
        key=["DNS", "SendGrid", "Endpoints", "Content", "Reputation"].index,
    )


def test_doctor_help_names_the_exit_codes(cli, workspace: Path) -> None:
    r = cli(workspace, "doctor", "--help")
    assert r.exit_code == 0
    assert "Exit code: 0 all good, 1 a failure, 3 warnings only." in " ".join(r.output.split())


# ------------------------------------------------------------------------------------------
# DNS


def dns_ws(tmp_path: Path, server: FakeDNS) -> Workspace:
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    return Workspace(tmp_path, {"OUTREACH_DNS_SERVER": server.address})


def test_a_domain_that_does_not_exist_is_one_failure(tmp_path: Path) -> None:
    with FakeDNS(sendgrid_records()) as server:
        checks = dns_checks(dns_ws(tmp_path, server), "a@exampel.org")
    assert [(c.id, c.status) for c in checks] == [("dns.domain", Status.FAIL)]
    assert "exampel.org does not exist according to DNS (NXDOMAIN)" in checks[0].result
    assert "sender.from_email" in checks[0].fix


def test_dns_missing_records_fail_with_the_record_to_add(tmp_path: Path) -> None:
    zone = sendgrid_records() | {"example.org": [("TXT", "google-site-verification=abc123")]}
    with FakeDNS(zone) as server:
        checks = dns_checks(dns_ws(tmp_path, server), "a@example.org")
    assert {c.id: c.status for c in checks} == {
        "dns.spf": Status.FAIL,
        "dns.dkim": Status.FAIL,
        "dns.dmarc": Status.FAIL,
    }
    assert by_id(checks, "dns.spf").fix.startswith(
        "add a TXT record at example.org: v=spf1 include:sendgrid.net ~all"
    )
    assert "_dmarc.example.org: v=DMARC1; p=none" in by_id(checks, "dns.dmarc").fix


@pytest.mark.parametrize(
    "records, status, words",
    [
        (["v=spf1 include:sendgrid.net ~all", "v=spf1 mx ~all"], Status.FAIL, "2 SPF records"),
        (["v=spf1 include:sendgrid.net +all"], Status.WARN, "ends with +all"),
    ],
)
def test_spf_record_problems(tmp_path: Path, records, status, words) -> None:
    zone = good_zone("example.org") | {"example.org": [("TXT", r) for r in records]}
    with FakeDNS(zone) as server:
        check = by_id(dns_checks(dns_ws(tmp_path, server), "a@example.org"), "dns.spf")
    assert check.status is status and words in check.result


def test_spf_include_without_a_record_and_missing_sendgrid(tmp_path: Path) -> None:
    zone = good_zone("example.org") | {"example.org": [("TXT", "v=spf1 include:gone.test ~all")]}
    for selector in ("s1", "s2"):  # and no SendGrid DKIM
        zone.pop(f"{selector}._domainkey.example.org")
    with FakeDNS(zone) as server:
        checks = dns_checks(dns_ws(tmp_path, server), "a@example.org")
    lookups = by_id(checks, "dns.spf.lookups")
    assert lookups.status is Status.FAIL and "include:gone.test has no SPF record" in lookups.result
    # without SendGrid's DKIM either, a missing include:sendgrid.net is a failure
    assert by_id(checks, "dns.spf.sendgrid").status is Status.FAIL
    assert by_id(checks, "dns.dmarc.alignment").status is Status.FAIL


def test_missing_sendgrid_include_is_a_warning_when_dkim_is_sendgrids(tmp_path: Path) -> None:
    zone = good_zone("example.org") | {"example.org": [("TXT", "v=spf1 mx ~all")]}
    with FakeDNS(zone) as server:
        check = by_id(dns_checks(dns_ws(tmp_path, server), "a@example.org"), "dns.spf.sendgrid")
    assert check.status is Status.WARN and "automated security" in check.result


@pytest.mark.parametrize("adkim, status", [("r", Status.OK), ("s", Status.FAIL)])
def test_dmarc_alignment_of_a_subdomain_sender(tmp_path: Path, adkim: str, status) -> None:
    """news.example.org sends; SendGrid signs for example.org, whose DMARC record applies."""
    zone = good_zone("example.org") | {
        "_dmarc.example.org": [("TXT", f"v=DMARC1; p=reject; adkim={adkim}")],
        "news.example.org": [("TXT", "v=spf1 include:sendgrid.net ~all")],
    }
    with FakeDNS(zone) as server:
        checks = dns_checks(dns_ws(tmp_path, server), "a@news.example.org")
    assert by_id(checks, "dns.dmarc").result == "_dmarc.example.org: p=reject"
    alignment = by_id(checks, "dns.dmarc.alignment")
    assert alignment.status is status
    assert "SendGrid signs with d=example.org" in alignment.result


def test_dns_that_cannot_answer_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    with FakeDNS(good_zone("example.org")) as server:
        server.resolver.servfail = True
        checks = dns_checks(dns_ws(tmp_path, server), "a@example.org")
    assert [(c.id, c.status) for c in checks] == [("dns", Status.WARN)]
    assert "could not be checked: the DNS server failed to answer" in checks[0].result


def test_bad_dns_server_setting_is_explained(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    ws = Workspace(tmp_path, {"OUTREACH_DNS_SERVER": "127.0.0.1"})
    with pytest.raises(ConfigError, match=r"OUTREACH_DNS_SERVER '127\.0\.0\.1' is not a reachable"):
        dns_checks(ws, "a@example.org")


# ------------------------------------------------------------------------------------------
# The SendGrid account


@pytest.fixture
def account(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sg fixture workspace against the fake, whose account has nothing set up yet."""
    root = copy_fixture(tmp_path / "ws")
    use_fake(monkeypatch, fake.url)
    return root


def account_run(root: Path):
    return account_checks(Workspace.open(root), load_campaign(root, "sg"))


def account_statuses(root: Path) -> dict[str, tuple[Status, str]]:
    return {c.id: (c.status, c.result) for c in account_run(root)}


def test_account_nothing_set_up(account, fake: FakeSendGrid) -> None:
    got = account_statuses(account)
    assert got["sendgrid.scopes.send"][0] is Status.OK
    assert got["sendgrid.scopes.sync"][0] is Status.OK
    assert got["sendgrid.sender"] == (
        Status.FAIL,
        "neither example.org nor sender@example.org is verified in SendGrid: it refuses mail "
        "from unverified senders",
    )
    assert got["sendgrid.webhook"][0] is Status.FAIL
    assert "none is set up" in got["sendgrid.webhook"][1]
    paths = {r.path for r in fake.requests}
    assert {
        "/v3/scopes",
        "/v3/whitelabel/domains",
        "/v3/verified_senders",
        "/v3/user/webhooks/event/settings/all",
    } <= paths


def test_account_sender_states(account, fake: FakeSendGrid) -> None:
    fake.verify_sender("sender@example.org", verified=False)
    status, result = account_statuses(account)["sendgrid.sender"]
    assert status is Status.FAIL and "registered as a sender but not verified yet" in result
    fake.authenticate_domain("example.org", valid=False)
    status, result = account_statuses(account)["sendgrid.sender"]
    assert "its DNS records are not validated yet" in result
    fake.verified_senders[0]["verified"] = True
    assert account_statuses(account)["sendgrid.sender"] == (
        Status.OK,
        "sender@example.org is a verified single sender",
    )


@pytest.mark.parametrize(
    "hook, local_key, status, words",
    [
        ({"url": "https://elsewhere.example/hook"}, None, Status.FAIL, "no webhook posts to"),
        ({"enabled": False}, None, Status.FAIL, "is disabled"),
        ({"public_key": None}, None, Status.FAIL, "is not signed"),
        ({}, "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE-other", Status.FAIL, "another key"),
        ({"events": ("delivered", "bounce")}, "SAME", Status.WARN, "does not send drops, opens"),
        ({}, None, Status.WARN, "SENDGRID_WEBHOOK_PUBLIC_KEY is not set here"),
        ({}, "SAME", Status.OK, "enabled, signed (key matches"),
    ],
)
def test_account_webhook(account, fake, monkeypatch, hook, local_key, status, words) -> None:
    key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE-fake-key"
    options = {"public_key": key} | hook
    fake.add_webhook(options.pop("url", "https://unsub.example.org/events/"), **options)
    if local_key:
        monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", key if local_key == "SAME" else local_key)
    got_status, result = account_statuses(account)["sendgrid.webhook"]
    assert got_status is status and words in result, result


def test_account_key_permissions(account, fake: FakeSendGrid) -> None:
    fake.scopes = ["suppression.bounces.read", "whitelabel.read"]
    got = account_statuses(account)
    assert got["sendgrid.scopes.send"][0] is Status.FAIL
    assert got["sendgrid.scopes.sync"][0] is Status.WARN
    assert "suppression.blocks.read" in got["sendgrid.scopes.sync"][1]
    # a check the key may not make is a warning that names the permission
    assert got["sendgrid.webhook"][0] is Status.WARN
    assert (
        "not checked: the API key may not read the Event Webhook settings"
        in (got["sendgrid.webhook"][1])
    )


def test_account_wrong_key_is_one_failure(account, fake: FakeSendGrid) -> None:
    fake.key = "SG.another-key-entirely-0000"
    checks = account_run(account)
    assert [(c.id, c.status) for c in checks] == [("sendgrid.key", Status.FAIL)]
    assert "did not accept the API key (401" in checks[0].result


def test_account_without_a_key_is_a_warning(account, monkeypatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY")
    [check] = account_run(account)
    assert check.status is Status.WARN and "SENDGRID_API_KEY is not set" in check.result


# ------------------------------------------------------------------------------------------
# Endpoints over https


def campaign_at(root: Path, origin: str):
    edit(root / "campaigns/sg.yaml", "url: https://unsub.example.org/u", f"url: {origin}/u")
    return load_campaign(root, "sg")


@pytest.mark.slow
def test_endpoints_of_the_real_server_pass(tmp_path: Path, ca: trustme.CA) -> None:
    root = copy_fixture(tmp_path / "ws")
    ws = Workspace.open(root)
    with serve_https(
        create_app(ws, ServerSettings(insecure=True, secret_key=SECRET_KEY)), ca, tmp_path
    ) as o:
        checks = endpoint_checks(campaign_at(root, o))
    assert [(c.id, c.status) for c in checks] == [
        ("endpoints.unsubscribe", Status.OK),
        ("endpoints.one_click", Status.OK),
        ("endpoints.health", Status.OK),
    ]
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        assert ledger.suppressed() == {}  # the test token unsubscribes nobody


@pytest.mark.slow
def test_endpoints_redirecting_one_click_and_failing_health(tmp_path: Path, ca) -> None:
    root = copy_fixture(tmp_path / "ws")
    with serve_https(broken_app(), ca, tmp_path) as origin:
        checks = endpoint_checks(campaign_at(root, origin))
    assert [(c.id, c.status) for c in checks] == [
        ("endpoints.unsubscribe", Status.OK),
        ("endpoints.one_click", Status.FAIL),
        ("endpoints.health", Status.FAIL),
    ]
    assert f"POST {origin}/u/test answers 303, a redirect to /thanks" in checks[1].result
    assert "answers 500" in checks[2].result


@pytest.mark.slow
def test_endpoints_with_an_untrusted_certificate(tmp_path: Path, ca, monkeypatch) -> None:
    root = copy_fixture(tmp_path / "ws")
    with serve_https(broken_app(), trustme.CA(), tmp_path) as origin:  # not the trusted CA
        checks = endpoint_checks(campaign_at(root, origin))
    assert [(c.id, c.status) for c in checks] == [("endpoints.unsubscribe", Status.FAIL)]
    assert "its TLS certificate is not valid" in checks[0].result


def test_endpoints_nothing_listening(tmp_path: Path) -> None:
    from tests.tracking_support import free_port

    root = copy_fixture(tmp_path / "ws")
    [check] = endpoint_checks(campaign_at(root, f"https://127.0.0.1:{free_port()}"))
    assert check.status is Status.FAIL
    assert "cannot be reached: the connection was refused" in check.result
    assert check.fix.startswith("deploy `outreach serve` behind https at https://127.0.0.1")


# ------------------------------------------------------------------------------------------
# Content


def sg_plan(root: Path):
    ws = Workspace.open(root)
    options = SendOptions(steps=("note",), dry_run=True, skip_invalid=True, transport="outbox")
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        return prepare(ws, "sg", options, ledger)


def test_gmail_clipping_margin(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path / "ws")
    check = clipping(sg_plan(root))
    assert check.status is Status.OK and "KB margin" in check.result
    template = root / "templates/en/note.mjml"
    filler = "<mj-text>" + "Long paragraph of the circular. " * 3300 + "</mj-text>"
    text = template.read_text()
    edit(template, "</mj-column>", filler + "</mj-column>")
    check = clipping(sg_plan(root))
    assert check.status is Status.FAIL and "Gmail will hide its end" in check.result
    template.write_text(text)
    edit(template, "</mj-column>", filler[: 90 * 1024] + "</mj-text></mj-column>")
    assert clipping(sg_plan(root)).status is Status.WARN


def test_images_without_alt_text(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path / "ws")
    assert alt_text(sg_plan(root)).result == "the messages have no images"
    edit(
        root / "templates/en/note.mjml",
        "</mj-column>",
        '<mj-raw><img src="https://example.org/stamp.png"><img src="x.png" alt=""></mj-raw>'
        "</mj-column>",
    )
    check = alt_text(sg_plan(root))
    assert check.status is Status.WARN
    assert check.result.startswith("1 image(s) without alt text")
    assert check.details[0].startswith("https://example.org/stamp.png (in note/")


def test_spamassassin_output_is_parsed() -> None:
    out = (
        "X-Spam-Status: No, score=2.7 required=5.0 tests=HTML_FONT_LOW_CONTRAST,\n"
        "\tHTML_MESSAGE,MIME_QP_LONG_LINE\n\tautolearn=no autolearn_force=no version=4.0.1\n"
        "...\nX-Spam-Status: No, score=-0.1 required=5.0 tests=none autolearn=ham version=4.0.1\n"
    )
    assert parse_spam_status(out) == [
        (2.7, ["HTML_FONT_LOW_CONTRAST", "HTML_MESSAGE", "MIME_QP_LONG_LINE"]),
        (-0.1, []),
    ]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="spamassassin is not installed")
def test_spamassassin_scores_every_variant(tmp_path: Path) -> None:
    root = copy_fixture(tmp_path / "ws")
    plan = sg_plan(root)
    check = spamassassin(plan, Workspace.open(root))
    n = len(plan.steps[0].variants)
    assert check is not None and f"{n} variants scored" in check.result
    assert re.search(r"worst variant scores -?\d+\.\d \(step note, variant \w+", check.result)
