"""Recipients' preferences: what people chose on the page behind their messages' footer link
(``<unsubscribe.url>/<send_id>``, :mod:`outreach.web.unsubscribe`), and what later sends make
of it.

* **Leave this campaign** (``leave_campaign``; undone by ``rejoin_campaign``): no more steps
  or editions of that campaign; the plan counts them apart from suppressions
  (:attr:`outreach.exclusions.Reason.LEFT_CAMPAIGN`). Other campaigns still reach them.
* **Change language** (``language``): every coalition mailing (campaign ``*``) in that
  language when the campaign offers it, whatever the list's ``language`` column says.
* **Leave every coalition mailing** is not a preference: it is the one-click unsubscribe, a
  suppression (:func:`outreach.events.unsubscribe_link`), as it always was.

Choices are rows in the store's append-only ``preferences`` table; the newest of a kind wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from outreach.events import TEST_TOKENS, SendInfo, find_send
from outreach.ledger import Ledger
from outreach.store.codes import ALL_CAMPAIGNS, PreferenceKind, PreferenceSource
from outreach.store.ids import iso


@dataclass(frozen=True)
class Preferences:
    """The choices that concern one campaign, as the planner reads them."""

    left: frozenset[str] = frozenset()  # lower-case addresses that left the campaign
    languages: dict[str, str] = field(default_factory=dict)  # lower-case address → language

    def language(self, email: str, offered: Iterable[str]) -> str | None:
        """The language ``email`` chose, if the campaign offers it (else None: the list's)."""
        lang = self.languages.get(email.lower())
        return lang if lang is not None and lang in offered else None


def fold(rows: Iterable[tuple[str, str, str, str | None]], campaign: str) -> Preferences:
    """The state of (email, campaign, kind, language) rows, oldest first: the newest row of a
    kind decides; a choice about ``campaign`` itself beats one about every mailing."""
    left: set[str] = set()
    general: dict[str, str] = {}
    own: dict[str, str] = {}
    for email, scope, kind, language in rows:
        if scope not in (campaign, ALL_CAMPAIGNS):
            continue
        if kind == PreferenceKind.LANGUAGE and language:
            (own if scope == campaign else general)[email] = language
        elif kind == PreferenceKind.LEAVE_CAMPAIGN and scope == campaign:
            left.add(email)
        elif kind == PreferenceKind.REJOIN_CAMPAIGN and scope == campaign:
            left.discard(email)
    return Preferences(frozenset(left), {**general, **own})


def for_campaign(ledger: Ledger, campaign: str) -> Preferences:
    """Every recipient's choices that concern ``campaign`` (read once per plan)."""
    return fold(ledger.campaign_preferences(campaign), campaign)


def of_recipient(ledger: Ledger, email: str, campaign: str) -> Preferences:
    """One address's choices about ``campaign`` (what its page shows)."""
    rows = ledger.preference_rows(email)
    return fold(((r["email"], r["campaign"], r["kind"], r["language"]) for r in rows), campaign)


@dataclass(frozen=True)
class Recorded:
    """The outcome of :func:`record`: the send behind the link, and whether it changed state."""

    info: SendInfo
    changed: bool


def record(
    ledger: Ledger,
    send_id: str,
    kind: PreferenceKind,
    language: str | None = None,
    *,
    client: str | None,
    now: datetime,
) -> Recorded | None:
    """Record the choice made on the page of ``send_id`` for that send's recipient only
    (None: no such send; test and preview tokens never reach the store). A choice that
    changes nothing (leaving twice, the same language again) is not recorded again."""
    if send_id in TEST_TOKENS:
        return None
    kind = PreferenceKind(kind)
    if (kind is PreferenceKind.LANGUAGE) != (language is not None):
        raise ValueError("a language choice, and only one, names its language")

    def work() -> Recorded | None:
        info = find_send(ledger, send_id)
        if info is None:
            return None
        before = of_recipient(ledger, info.email.strip(), info.campaign)
        email = info.email.strip().lower()
        if kind is PreferenceKind.LANGUAGE:
            changed = before.languages.get(email) != language
            scope = ALL_CAMPAIGNS
        else:
            changed = (email in before.left) == (kind is PreferenceKind.REJOIN_CAMPAIGN)
            scope = info.campaign
        if changed:
            ledger.add_preference(
                email,
                scope,
                kind,
                language,
                source=PreferenceSource.PAGE,
                send_id=send_id,
                client=client,
                at=iso(now),
            )
        return Recorded(info, changed)

    return ledger.atomic(work)


@dataclass(frozen=True)
class RecipientState:
    """What the page of one send shows about its recipient."""

    left: bool  # left the send's campaign
    language: str | None  # the language chosen, if any
    suppressed: bool  # unsubscribed from everything (or bounced, complained…)


def recipient_state(ledger: Ledger, info: SendInfo) -> RecipientState:
    """The current choices of the recipient of ``info`` about its campaign."""
    email = info.email.strip().lower()
    prefs = of_recipient(ledger, email, info.campaign)
    return RecipientState(
        left=email in prefs.left,
        language=prefs.languages.get(email),
        suppressed=bool(ledger.suppression_rows(email)),
    )
