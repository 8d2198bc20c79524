"""Sender reputation: a step's complaint and hard-bounce rates against the bulk-sender limits.

Gmail and Yahoo stop delivering the mail of a sender whose spam-complaint rate reaches 0.3 %
(Gmail asks to stay below 0.1 %); a hard-bounce rate above 2 % says the list is stale and
mailbox providers treat it as a spammer's sign. ``outreach report`` shows both rates per step,
``outreach doctor`` checks the last step, and ``outreach send`` stops before the next step of a
campaign whose previous step passed either limit (``--force`` proceeds), naming the segments
and countries where the rate was highest.

Rates use the report's counting rules (:mod:`outreach.report`): complaints are messages with a
``spamreport`` event over messages ``delivered``; hard bounces are messages with a hard
``bounce`` over messages ``sent``. Without delivery events the complaint rate is unknown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from outreach.checks import Area, Check, fail, ok, warn

COMPLAINT_LIMIT = 0.003  # Gmail and Yahoo: never reach 0.3 %
COMPLAINT_TARGET = 0.001  # Gmail: keep below 0.1 %
HARD_BOUNCE_LIMIT = 0.02
HOT_SPOTS = 3  # segments and countries named per rate over its limit


class Level(StrEnum):
    OK = "ok"  # both rates known and under the limits (complaints under 0.1 %)
    WATCH = "watch"  # complaints between 0.1 % and 0.3 %
    OVER = "over"  # a rate at or above its limit
    UNKNOWN = "unknown"  # nothing sent, or no delivery events to count complaints against


@dataclass(frozen=True)
class HotSpot:
    """A segment or country where a rate over its limit was highest."""

    dimension: str  # segment | country
    value: str
    rate_name: str  # complaint_rate | hard_bounce_rate
    rate: float
    count: int  # complaints or hard bounces
    base: int  # delivered or sent


@dataclass
class Health:
    step: str
    sent: int
    delivered: int
    complaints: int
    hard_bounces: int
    complaint_rate: float | None
    hard_bounce_rate: float | None
    level: Level
    hot_spots: list[HotSpot] = field(default_factory=list)

    @property
    def complaints_over(self) -> bool:
        return self.complaint_rate is not None and self.complaint_rate >= COMPLAINT_LIMIT

    @property
    def bounces_over(self) -> bool:
        return self.hard_bounce_rate is not None and self.hard_bounce_rate >= HARD_BOUNCE_LIMIT

    def as_dict(self) -> dict:
        return {
            "complaint_rate": self.complaint_rate,
            "complaint_limit": COMPLAINT_LIMIT,
            "complaint_target": COMPLAINT_TARGET,
            "hard_bounce_rate": self.hard_bounce_rate,
            "hard_bounce_limit": HARD_BOUNCE_LIMIT,
            "level": self.level.value,
            "hot_spots": [asdict(h) for h in self.hot_spots],
        }

    def summary(self) -> str:
        """One line: both rates against their limits."""
        if self.complaint_rate is None:
            complaints = f"complaints unknown ({self.complaints} with no delivery events)"
        else:
            complaints = (
                f"complaints {pct(self.complaint_rate)} ({self.complaints} of "
                f"{self.delivered} delivered; limit {pct(COMPLAINT_LIMIT)})"
            )
        if self.hard_bounce_rate is None:
            bounces = "hard bounces unknown (nothing sent)"
        else:
            bounces = (
                f"hard bounces {pct(self.hard_bounce_rate)} ({self.hard_bounces} of {self.sent} "
                f"sent; limit {pct(HARD_BOUNCE_LIMIT)})"
            )
        return f"{complaints}, {bounces}"

    def where(self) -> list[str]:
        """The hot spots in words: 'segment newcomers: 2.1 % complaints (3 of 142)'."""
        words = {"complaint_rate": "complaints", "hard_bounce_rate": "hard bounces"}
        return [
            f"{h.dimension} {h.value}: {pct(h.rate)} {words[h.rate_name]} ({h.count} of {h.base})"
            for h in self.hot_spots
        ]


def pct(rate: float) -> str:
    """A rate as a percentage with the precision these limits need (0.35 %, 2.1 %)."""
    value = rate * 100
    return f"{value:.2f} %" if value < 1 else f"{value:.1f} %"


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def assess(step: str, totals: dict, by: dict[str, list[dict]]) -> Health:
    """A step's health from its report figures (``totals`` and ``by`` dimension rows)."""
    sent, delivered = int(totals.get("sent", 0)), int(totals.get("delivered", 0))
    complaints, hard = int(totals.get("spam_reports", 0)), int(totals.get("bounced_hard", 0))
    health = Health(
        step,
        sent,
        delivered,
        complaints,
        hard,
        _rate(complaints, delivered),
        _rate(hard, sent),
        Level.UNKNOWN,
    )
    if health.complaints_over or health.bounces_over:
        health.level = Level.OVER
    elif health.complaint_rate is None or health.hard_bounce_rate is None:
        health.level = Level.UNKNOWN
    elif health.complaint_rate >= COMPLAINT_TARGET:
        health.level = Level.WATCH
    else:
        health.level = Level.OK
    over = []
    if health.complaints_over:
        over.append(("complaint_rate", "spam_reports", "delivered"))
    if health.bounces_over:
        over.append(("hard_bounce_rate", "bounced_hard", "sent"))
    for rate_name, num, den in over:
        for dim in ("segment", "country"):
            rows = [r for r in by.get(dim, []) if r.get(num) and r.get(den)]
            rows.sort(key=lambda r, n=num, d=den: (-r[n] / r[d], -r[n], str(r["value"])))
            for r in rows[:HOT_SPOTS]:
                health.hot_spots.append(
                    HotSpot(dim, str(r["value"]), rate_name, r[num] / r[den], r[num], r[den])
                )
    return health


def previous_step(step_ids: list[str], sent: dict[str, int], step: str) -> str | None:
    """The nearest step before ``step`` (campaign order) that has sent messages."""
    before = step_ids[: step_ids.index(step)] if step in step_ids else step_ids
    return next((s for s in reversed(before) if sent.get(s)), None)


def health_check(health: Health, next_step: str | None = None) -> Check:
    """The verdict on a sent step, for ``doctor`` (last step) and ``send`` (before ``next_step``)."""
    title = f"Reputation after step {health.step}"
    then = f" before {next_step}" if next_step else ""
    if health.level is Level.OVER:
        over = []
        if health.complaints_over:
            over.append(f"complaints reached {pct(COMPLAINT_LIMIT)}")
        if health.bounces_over:
            over.append(f"hard bounces reached {pct(HARD_BOUNCE_LIMIT)}")
        return fail(
            "reputation",
            Area.REPUTATION,
            title,
            f"{' and '.join(over)}: {health.summary()}",
            "find out why where it was highest (listed here: a stale list? an unexpected "
            f"audience?) and fix it{then}; --force sends anyway",
            details=health.where(),
        )
    if health.level is Level.WATCH:
        return warn(
            "reputation",
            Area.REPUTATION,
            title,
            health.summary(),
            f"Gmail asks to stay below {pct(COMPLAINT_TARGET)} complaints: look at who "
            f"complained{then}",
        )
    if health.level is Level.UNKNOWN:
        return warn(
            "reputation",
            Area.REPUTATION,
            title,
            health.summary(),
            "without delivery events outreach cannot judge complaints: check the Event Webhook "
            "(outreach doctor) or import SendGrid's events (outreach events import)",
        )
    return ok("reputation", Area.REPUTATION, title, health.summary())
