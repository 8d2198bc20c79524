"""``outreach cancel``: stop scheduled SendGrid deliveries of a step that have not gone out.

Local-time steps are handed to SendGrid up to 72 h ahead with a per-recipient ``send_at`` and a
SendGrid *batch id* (stored in ``batches.provider_batch_id``). Cancelling posts each of the
step's batch ids to ``/v3/user/scheduled_sends`` with status ``cancel`` and marks the ledger rows
whose send time is still ahead ``cancelled``; rows already delivered stay ``sent``. SendGrid
does not guarantee a cancel less than 10 minutes before the send time: such rows are counted
apart so the coordinator knows they may still arrive.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from outreach.campaign import load_campaign
from outreach.exceptions import ConfigError
from outreach.ledger import Ledger
from outreach.transports import Capability, make_transport
from outreach.workspace import Workspace

LAST_MINUTE = timedelta(minutes=10)  # SendGrid: cancels closer than this are not guaranteed


@dataclass
class CancelResult:
    campaign: str
    edition: int
    step: str
    transport: str
    dry_run: bool
    cancelled: int = 0  # rows marked cancelled (or that would be)
    last_minute: int = 0  # of those, due within 10 minutes: may still go out
    delivered: int = 0  # rows of these batches whose send time has passed
    batches: list[tuple[str, str, int]] = field(default_factory=list)  # (id, outcome, rows)

    @property
    def nothing(self) -> bool:
        return not self.batches


def cancel(
    ws: Workspace,
    name: str,
    step: str,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    edition: int | None = None,
) -> CancelResult:
    """Cancel the step's scheduled SendGrid batches (of ``edition``, default the current one)
    and mark their future rows ``cancelled``."""
    now = now or datetime.now(UTC)
    campaign = load_campaign(ws.root, name, edition=edition, now=now)
    campaign.step(step)  # raises with the list of steps
    if not ws.setting("SENDGRID_API_KEY"):
        raise ConfigError(
            "cancelling scheduled sends needs SENDGRID_API_KEY",
            where="environment / .env",
            hint="use the key the step was sent with",
        )
    transport = make_transport(ws, campaign, "sendgrid")
    if not transport.can(Capability.CANCELS):
        raise ConfigError(f"the {transport.name} transport cannot cancel scheduled sends")
    result = CancelResult(campaign.name, campaign.edition, step, transport.name, dry_run)
    with Ledger.open(ws.db_url(), ws.root, purpose="outreach cancel") as ledger:
        if not dry_run:
            ledger.acquire_send_lock(name)  # not while a send runs
        ledger.date_old_rows(campaign)
        found = ledger.scheduled_rows(campaign.name, campaign.edition, step, transport.name)
        future: dict[str, list[str]] = defaultdict(list)
        for send_id, send_at, provider_id in found:
            at = datetime.fromisoformat(send_at) if send_at else None
            if at is None or at <= now:
                result.delivered += 1
                continue
            future[provider_id].append(send_id)
            if at - now < LAST_MINUTE:
                result.last_minute += 1
        for provider_id, send_ids in future.items():
            outcome = "to cancel" if dry_run else transport.cancel_scheduled(provider_id)
            result.batches.append((provider_id, outcome, len(send_ids)))
            result.cancelled += len(send_ids)
            if dry_run:
                continue
            reason = f"scheduled send cancelled ({now.isoformat(timespec='seconds')})"
            ledger.mark_cancelled(
                send_ids,
                reason,
                provider_batch_id=provider_id,
                campaign=campaign.name,
                edition=campaign.edition,
                step=step,
            )
    transport.close()
    return result
