"""What ``outreach send`` checks in its plan, and the guard that stops a real send.

The plan runs the fast checks, the ones that need no network: the unsubscribe endpoint marked
deployed, SendGrid's category limits, unfilled links, Gmail's clipping size, images without
alt text, and, for a real transport, the reputation of the previous step of the campaign (its
complaint and hard-bounce rates, :mod:`outreach.reputation`). DNS, the SendGrid account, the
endpoints over https and SpamAssassin are ``outreach doctor``'s (:mod:`outreach.doctor`).

A real send (not the outbox, not ``--test-to``) with a ✗ stops before anything is handed over
and says why; ``--force`` proceeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach.checks import Check, Checkup
from outreach.content_checks import alt_text, categories, clipping, todo_links, unsubscribe_ready
from outreach.exceptions import SendAborted
from outreach.reputation import health_check, previous_step

if TYPE_CHECKING:
    from outreach.ledger import Ledger
    from outreach.send import SendPlan


def plan_checks(plan: SendPlan, ledger: Ledger) -> Checkup:
    """The fast checks for the steps of ``plan``."""
    campaign = plan.campaign
    checkup = Checkup(campaign.name)
    checkup.extend(
        [
            unsubscribe_ready(campaign),
            categories(campaign),
            todo_links(campaign),
            clipping(plan),
            alt_text(plan),
        ]
    )
    if plan.transport.real:
        checkup.extend(reputation_checks(plan, ledger))
    checkup.notes.append(
        f"DNS, the SendGrid account, the endpoints and SpamAssassin: outreach doctor {campaign.name}"
    )
    return checkup


def reputation_checks(plan: SendPlan, ledger: Ledger) -> list[Check]:
    """For each planned step, the health of the step of the same edition sent before it (once
    per such step)."""
    campaign, transport = plan.campaign, plan.transport.name
    ids = [s.id for s in campaign.steps]
    counts = ledger.step_counts(campaign.name, campaign.edition, transport)
    sent = {k: v.get("sent", 0) for k, v in counts.items()}
    out: dict[str, Check] = {}
    for sp in plan.steps:
        if not sp.recipients:
            continue
        prev = previous_step(ids, sent, sp.step.id)
        if prev is None or prev in out:
            continue
        # imported here: the report needs pandas and numpy (~50 MB, seconds to import), which a
        # send of a first step never uses
        from outreach.report import step_health

        out[prev] = health_check(step_health(ledger, campaign, transport, prev), sp.step.id)
    return list(out.values())


def refuse_unready(plan: SendPlan) -> None:
    """Stop a real send whose plan has a failed check, unless ``--force``."""
    checkup = plan.checks
    options = plan.options
    if checkup is None or not plan.transport.real or options.force or options.test_to:
        return
    failed = checkup.failures
    if not failed:
        return
    details = []
    for c in failed:
        details.append(f"✗ {c.title}: {c.result}")
        details += [f"    {d}" for d in c.details[:8]]
        if c.fix:
            details.append(f"    → {c.fix}")
    guard = any(c.id == "reputation" for c in failed)
    raise SendAborted(
        ("reputation guard: " if guard else "")
        + f"not sent: {len(failed)} readiness check(s) failed; nothing was handed to "
        f"{plan.transport.describe()}",
        details=details,
        hint=f"fix them and run the same command again (outreach doctor {plan.campaign.name} "
        "explains each), or pass --force to send anyway",
    )
