"""Why a contact is not sent a step: typed reasons (codes), their words and what to do.

The plan counts :class:`Exclusion` keys (a :class:`Reason` and, for some, a detail: the
suppression reason, the segment, the earlier step); output for machines (``status --json``)
and tests use the codes, and only the console turns them into words with :meth:`Exclusion.words`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Reason(StrEnum):
    """A reason code. ``words`` reads after a count ("57 already sent"); ``{}`` is the detail."""

    NOT_IN_SEGMENTS = "not_in_segments"
    EXCLUDED_SEGMENT = "excluded_segment"
    SUPPRESSED = "suppressed"
    LEFT_CAMPAIGN = "left_campaign"  # chose "leave this campaign" on their preference page
    OPENED = "opened"  # did_not_open follow-up: they opened the earlier step
    CLICKED = "clicked"  # did_not_click follow-up: they clicked in the earlier step
    DID_NOT_CLICK = "did_not_click"  # clicked follow-up: they did not click that link
    DID_NOT_RECEIVE = "did_not_receive"  # follow-up: they never got the earlier step
    ALREADY_SENT = "already_sent"
    IN_FLIGHT = "in_flight"
    UNKNOWN_OUTCOME = "unknown_outcome"
    CANCELLED = "cancelled"
    HELD = "held"  # local send time beyond how far ahead the transport can schedule
    OVER_LIMIT = "over_limit"

    @property
    def words(self) -> str:
        return _WORDS[self][0]

    @property
    def hint(self) -> str | None:
        return _WORDS[self][1]


_WORDS: dict[Reason, tuple[str, str | None]] = {
    Reason.NOT_IN_SEGMENTS: ("not in the step's segments", None),
    Reason.EXCLUDED_SEGMENT: ("in excluded segment {detail!r}", None),
    Reason.SUPPRESSED: ("suppressed: {detail}", None),
    Reason.LEFT_CAMPAIGN: (
        "left this campaign on their preference page",
        "they still get the coalition's other campaigns",
    ),
    Reason.OPENED: ("opened {step}", None),
    Reason.CLICKED: ("clicked in {step}", None),
    Reason.DID_NOT_CLICK: ("did not click {detail} in {step}", None),
    Reason.DID_NOT_RECEIVE: ("did not receive {step}", None),
    Reason.ALREADY_SENT: ("already sent", None),
    Reason.IN_FLIGHT: (
        "in flight in another run, or interrupted",
        "re-run without --dry-run to check",
    ),
    Reason.UNKNOWN_OUTCOME: ("outcome unknown", "pass --resend-unknown to resend"),
    Reason.CANCELLED: (
        "scheduled send was cancelled",
        "pass --resend-cancelled to send again",
    ),
    Reason.HELD: (
        "local send time more than 72 h ahead",
        "held for a later run: send again closer to the time",
    ),
    Reason.OVER_LIMIT: ("over --limit", None),
}


class Exclusion(NamedTuple):
    """A counted reason: the code and, for some reasons, what it is about."""

    reason: Reason
    detail: str = ""  # the suppression reason, the segment, the link
    step: str = ""  # the earlier step of a follow-up

    @property
    def code(self) -> str:
        """``suppressed:bounce``, ``opened:circular``, ``already_sent``: for JSON and tests."""
        return ":".join(p for p in (str(self.reason), self.step, self.detail) if p)

    def words(self) -> str:
        """The console's wording, with the hint in parentheses."""
        text = self.reason.words.format(detail=self.detail, step=self.step)
        return f"{text} ({self.reason.hint})" if self.reason.hint else text
