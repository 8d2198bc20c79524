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
from outreach.ledger import Ledger, now_iso
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
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        if not dry_run:
            ledger.acquire_send_lock(name)  # not while a send runs
        ledger.date_old_rows(campaign)
        found = ledger.conn.execute(
            """SELECT s.send_id, s.send_at, b.provider_batch_id
               FROM sends s JOIN batches b ON b.batch_id = s.batch_id
               WHERE s.campaign = ? AND s.edition = ? AND s.step = ? AND s.transport = ?
                 AND s.status IN ('sent', 'unknown') AND b.provider_batch_id IS NOT NULL""",
            (campaign.name, campaign.edition, step, transport.name),
        ).fetchall()
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
            with ledger.transaction() as c:
                c.executemany(
                    "UPDATE sends SET status = 'cancelled', error = ?, updated_at = ? "
                    "WHERE send_id = ? AND status IN ('sent', 'unknown')",
                    [(reason, now_iso(), sid) for sid in send_ids],
                )
                c.execute(
                    """UPDATE batches SET status = 'cancelled', updated_at = ?
                       WHERE provider_batch_id = ? AND campaign = ? AND edition = ? AND step = ?
                         AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.batch_id = batches.batch_id
                                         AND s.status != 'cancelled')""",
                    (now_iso(), provider_id, campaign.name, campaign.edition, step),
                )
    transport.close()
    return result
