"""The planner's parts on their own: exclusion reasons (typed codes), schedule, variants and
requests, and the codes in ``status --json``."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from outreach.exclusions import Exclusion, Reason
from outreach.ledger import Row
from outreach.planner import FollowUp, exclusion, schedule
from outreach.send import SendOptions
from tests.dates import CIRCULAR_DUE
from tests.sendgrid_helpers import copy_example, plan_only, use_fake


@pytest.fixture
def plan(tmp_path: Path, fake, monkeypatch: pytest.MonkeyPatch):
    use_fake(monkeypatch, fake.url)
    root = copy_example(tmp_path / "ws")
    return plan_only(root, "december", steps=("circular", "human-rights-day"))


def _row(status: str) -> Row:
    return Row("s1", "c1", "a@example.org", status, "b1", None, None)


def test_exclusion_reasons_in_order(plan) -> None:
    contact = plan.contacts.contacts[0]
    opts = SendOptions()
    follow = FollowUp("circular", set(), {contact.contact_id}, Exclusion(Reason.OPENED, step="x"))

    def why(segment="members", excluded=None, suppressed=None, follow=None, row=None, o=opts):
        return exclusion(contact, segment, excluded, suppressed or {}, follow, row, o)

    assert why() is None
    assert why(segment=None) == Exclusion(Reason.NOT_IN_SEGMENTS)
    assert why(excluded="no-december") == Exclusion(Reason.EXCLUDED_SEGMENT, "no-december")
    assert why(suppressed={contact.key: "bounce"}) == Exclusion(Reason.SUPPRESSED, "bounce")
    # a follow-up: a recipient of the earlier step who engaged, or someone who never got it
    assert why(follow=follow) == Exclusion(Reason.OPENED, step="x")
    never = replace(follow, received=set())
    assert why(follow=never) == Exclusion(Reason.DID_NOT_RECEIVE, step="circular")
    assert why(row=_row("sent")) == Exclusion(Reason.ALREADY_SENT)
    assert why(row=_row("pending")) == Exclusion(Reason.IN_FLIGHT)
    assert why(row=_row("unknown")) == Exclusion(Reason.UNKNOWN_OUTCOME)
    assert why(row=_row("unknown"), o=SendOptions(resend_unknown=True)) is None
    assert why(row=_row("cancelled")) == Exclusion(Reason.CANCELLED)
    assert why(row=_row("cancelled"), o=SendOptions(resend_cancelled=True)) is None
    assert why(row=_row("failed")) is None  # retried
    # the first reason wins: a suppressed contact already sent is counted as suppressed
    assert why(suppressed={contact.key: "manual"}, row=_row("sent")).reason is Reason.SUPPRESSED
    # left the campaign on their preference page: after suppressions, before everything else
    left = frozenset({contact.key})
    assert exclusion(contact, "members", None, {}, None, None, opts, left) == Exclusion(
        Reason.LEFT_CAMPAIGN
    )
    assert exclusion(contact, "members", None, {}, follow, _row("sent"), opts, left) == (
        Exclusion(Reason.LEFT_CAMPAIGN)
    )
    assert exclusion(contact, "members", None, {contact.key: "bounce"}, None, None, opts, left) == (
        Exclusion(Reason.SUPPRESSED, "bounce")
    )
    assert Exclusion(Reason.LEFT_CAMPAIGN).code == "left_campaign"


def test_codes_and_words() -> None:
    e = Exclusion(Reason.SUPPRESSED, "bounce")
    assert e.code == "suppressed:bounce" and e.words() == "suppressed: bounce"
    assert Exclusion(Reason.DID_NOT_CLICK, "committee", "circular").code == (
        "did_not_click:circular:committee"
    )
    assert Exclusion(Reason.DID_NOT_CLICK, "committee", "circular").words() == (
        "did not click committee in circular"
    )
    assert Exclusion(Reason.UNKNOWN_OUTCOME).words() == (
        "outcome unknown (pass --resend-unknown to resend)"
    )
    for reason in Reason:  # every code has words; codes are stable identifiers
        assert reason.words and reason.value == reason.value.lower()
        Exclusion(reason, "d", "s").words()


def test_schedule_local_time_within_what_sendgrid_can_schedule(plan) -> None:
    hrd = next(sp.step for sp in plan.steps if sp.step.id == "human-rights-day")
    circular = next(sp.step for sp in plan.steps if sp.step.id == "circular")
    contact = plan.contacts.contacts[0]
    assert schedule(circular, contact, plan) == (None, None)  # not a local-time step
    at, held = schedule(hrd, contact, plan)  # on 1 December, 10 December is > 72 h ahead
    assert at is None and held == Exclusion(Reason.HELD)
    later = replace(plan, now=datetime.fromisoformat("2026-12-09T12:00:00+00:00"))
    at, held = schedule(hrd, contact, later)
    assert (held is None and at is not None and at.hour == 9) or at.tzinfo is not None


def test_variants_and_requests(plan) -> None:
    sp = next(sp for sp in plan.steps if sp.step.id == "circular")
    assert (
        len(sp.recipients) == 57
        and sp.exclusions[Exclusion(Reason.EXCLUDED_SEGMENT, "no-december")]
    )
    # every recipient is in exactly one batch, each batch one variant
    ids = [r.send_id for b in sp.batches for r in b.recipients]
    assert sorted(ids) == sorted(r.send_id for r in sp.recipients)
    assert {b.variant.id for b in sp.batches} == set(sp.variants)
    assert not any(b.resends_uncertain for b in sp.batches)


def test_each_recipient_gets_the_variant_its_full_template_data_picks(plan) -> None:
    """The planner finds a recipient's variant from its key and values alone (the full
    template data is built only to render or verify a variant): the full data must pick the
    same variant, and the variant filled with the recipient's values must equal a direct
    render."""
    renderer, builder, campaign = plan.renderer, plan.builder, plan.campaign
    checked = 0
    for sp in plan.steps:
        step = sp.step
        variant_of = {r.send_id: b.variant for b in sp.batches for r in b.recipients}
        for r in sp.recipients:
            subject, _ = step.spec.text_for("subject", r.language, campaign.default_language)
            preheader, _ = step.spec.text_for("preheader", r.language, campaign.default_language)
            url = plan.transport.unsubscribe_url(r.send_id)
            data = builder.recipient(step, r.contact, r.language, url)
            template = step.spec.template
            variant = renderer.variant(step.id, template, r.language, data, subject, preheader)
            assert variant_of[r.send_id] is variant
            direct = renderer.render_naive(template, r.language, data, subject, preheader)
            assert variant.fill(r.values) == direct
            checked += 1
    assert checked >= 57


def test_status_json_uses_codes(tmp_path: Path, cli) -> None:
    root = copy_example(tmp_path / "ws")
    r = cli(root, "status", "december", "--json", "--now", CIRCULAR_DUE)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    circular = next(s for s in data["steps"] if s["id"] == "circular")
    assert circular["excluded"] == {"excluded_segment:no-december": 1}
    r = cli(root, "send", "december", "--step", "circular", "--yes", "--now", CIRCULAR_DUE)
    assert r.exit_code == 0, r.output
    data = json.loads(cli(root, "status", "december", "--json", "--now", CIRCULAR_DUE).output)
    circular = next(s for s in data["steps"] if s["id"] == "circular")
    assert circular["excluded"]["already_sent"] == 57
