"""``outreach doctor CAMPAIGN``: is this campaign ready to send, and if not, what to fix?

One check per line, in five areas (:class:`~outreach.checks.Area`):

* **DNS** of the From domain (:mod:`outreach.mailauth`): SPF with SendGrid within 10 lookups,
  SendGrid's DKIM CNAMEs, DMARC and its alignment;
* **SendGrid** account (:mod:`outreach.sendgrid_account`): key permissions, sender verified,
  Event Webhook enabled, signed and pointing at the campaign's server; category limits;
* **Endpoints** (:mod:`outreach.endpoints`): the unsubscribe page over https, the one-click
  POST (2xx, no redirect), ``/healthz``;
* **Content** (:mod:`outreach.content_checks`): unfilled links, Gmail's clipping size, images
  without alt text, the SpamAssassin score of the worst variant (where spamassassin is
  installed);
* **Reputation** (:mod:`outreach.reputation`): the last sent step's complaint and hard-bounce
  rates against 0.3 % and 2 %.

Every step is planned as if sent now through the outbox (nothing is written), so the content
checks see each variant a recipient would get; a follow-up step whose reference step has not
been sent yet has nobody to check, and doctor says so. Exit codes: 0 all good, 1 a failure, 3 warnings only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from outreach.campaign import load_campaign
from outreach.checks import Area, Checkup, ok
from outreach.content_checks import (
    alt_text,
    categories,
    clipping,
    spamassassin,
    todo_links,
    unsubscribe_ready,
)
from outreach.endpoints import endpoint_checks
from outreach.exclusions import Reason
from outreach.ledger import Ledger
from outreach.mailauth import dns_checks
from outreach.report import choose_transport, step_health
from outreach.reputation import health_check
from outreach.send import SendOptions, prepare
from outreach.sendgrid_account import account_checks
from outreach.workspace import Workspace


class Part(StrEnum):
    """The parts of doctor that need the network or a slow tool (``--skip``)."""

    DNS = "dns"
    SENDGRID = "sendgrid"
    ENDPOINTS = "endpoints"
    SPAMASSASSIN = "spamassassin"


def doctor(
    ws: Workspace,
    name: str,
    *,
    now: datetime | None = None,
    edition: int | None = None,
    skip: Iterable[Part | str] = (),
) -> Checkup:
    """Run every check on campaign ``name``'s edition (default: the current one at ``now``),
    minus the parts in ``skip``."""
    skipped = {Part(p) for p in skip}
    now = now or datetime.now(UTC)
    campaign = load_campaign(ws.root, name, edition=edition, now=now)
    checkup = Checkup(campaign.name)
    steps = tuple(s.id for s in campaign.steps)
    # the outbox's plan: every variant of every step, as if nothing had been sent yet, and
    # local-time steps not held back by SendGrid's 72 h scheduling window
    options = SendOptions(
        steps=steps, dry_run=True, skip_invalid=True, now=now, edition=edition, transport="outbox"
    )
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        plan = prepare(ws, campaign.name, options, ledger)
        campaign = plan.campaign
        checkup.edition = campaign.edition
        emailed = choose_transport(ledger, campaign.name, campaign.edition, None)
        if emailed == "outbox":
            emailed = None  # nothing was emailed: the outbox only writes files
        counts = ledger.step_counts(campaign.name, campaign.edition, emailed) if emailed else {}
        last = next((s for s in reversed(steps) if counts.get(s, {}).get("sent")), None)
        health = step_health(ledger, campaign, emailed, last) if emailed and last else None
    plan.transport.close()

    if Part.DNS not in skipped:
        checkup.extend(dns_checks(ws, campaign.sender.from_email))
    if Part.SENDGRID not in skipped:
        checkup.extend(account_checks(ws, campaign))
    checkup.checks.append(categories(campaign))
    checkup.checks.append(unsubscribe_ready(campaign))
    if Part.ENDPOINTS not in skipped:
        checkup.extend(endpoint_checks(campaign))
    checkup.extend([todo_links(campaign), clipping(plan), alt_text(plan)])
    if Part.SPAMASSASSIN not in skipped:
        score = spamassassin(plan, ws)
        if score is None:
            checkup.notes.append(
                "SpamAssassin is not installed here: the spam score was not checked "
                "(Debian: apt-get install spamassassin)"
            )
        else:
            checkup.checks.append(score)
    for sp in plan.steps:
        if sp.recipients:
            continue
        if sp.excluded(Reason.ALREADY_SENT):
            why = f"everyone in its audience already has the {campaign.edition} edition's"
        else:
            why = "nobody to send it to yet (a follow-up of a step not sent yet, or an empty audience)"
        checkup.notes.append(f"step {sp.step.id}: {why}, so its messages were not checked")
    if health is None:
        checkup.checks.append(
            ok(
                "reputation",
                Area.REPUTATION,
                "Reputation",
                f"no step of the {campaign.edition} edition has been emailed yet",
            )
        )
    else:
        checkup.checks.append(health_check(health))
    for part in sorted(skipped):
        checkup.notes.append(f"{part} not checked (--skip {part})")
    order = list(Area)
    checkup.checks.sort(key=lambda c: order.index(c.area))  # stable: keeps order within an area
    return checkup
