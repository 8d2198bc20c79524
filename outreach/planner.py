"""Planning one step: who gets it, who does not and why, in which variant, when, in which
requests. Nothing here writes anything.

:func:`plan_step` runs five named parts, each testable alone:

1. :func:`audience` — a follow-up step's filter on an earlier step (opened, clicked…);
2. :func:`exclusion` — why a contact is left out, as a typed :class:`Exclusion` (or None);
3. :func:`schedule` — a local-time step's delivery time for the contact (or held back);
4. :func:`recipient` — the contact's values and structural variant (rendered once each);
5. :func:`requests` — the transport splits each variant's recipients into batches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from outreach.campaign import Campaign, ResolvedStep
from outreach.checks import Checkup
from outreach.contacts import Contact, ContactList, Issue, country_status, segment_of
from outreach.context import ContextBuilder, RecipientValues, ValuesOf, as_of_date
from outreach.countries import CountryTable
from outreach.exceptions import ConfigError
from outreach.exclusions import Exclusion, Reason
from outreach.ledger import Ledger, Row, new_id
from outreach.preferences import Preferences
from outreach.render import Renderer, Variant
from outreach.transports import Batch, Capability, Recipient, Transport

if TYPE_CHECKING:
    from outreach.send import SendOptions

EXAMPLES = 5  # addresses shown per exclusion reason


@dataclass
class StepPlan:
    step: ResolvedStep
    state: str  # due | forced | late | not_due
    due_at: datetime
    recipients: list[Recipient] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    exclusions: Counter[Exclusion] = field(default_factory=Counter)
    examples: dict[Exclusion, list[str]] = field(default_factory=lambda: defaultdict(list))
    breakdown: Counter = field(default_factory=Counter)  # (segment, status, language) → n
    variants: dict[str, Variant] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    held: int = 0
    retrying: int = 0

    def exclude(self, why: Exclusion, contact: Contact | None = None) -> None:
        self.exclusions[why] += 1
        if contact is not None and len(self.examples[why]) < EXAMPLES:
            self.examples[why].append(f"{contact.email} ({contact.where})")

    def excluded(self, reason: Reason) -> int:
        """Contacts left out for ``reason``, whatever the detail."""
        return sum(n for e, n in self.exclusions.items() if e.reason is reason)


@dataclass
class SendPlan:
    campaign: Campaign
    transport: Transport
    options: SendOptions
    now: datetime
    steps: list[StepPlan]
    not_due: list[tuple[ResolvedStep, datetime]]
    contacts: ContactList
    skipped: list[Issue]
    warnings: list[str]
    reconciled: Counter
    renderer: Renderer
    builder: ContextBuilder
    countries: CountryTable
    checks: Checkup | None = None  # the readiness checks (outreach.readiness), set by send()

    @property
    def total(self) -> int:
        return sum(len(s.recipients) for s in self.steps)

    @property
    def late_steps(self) -> list[StepPlan]:
        return [s for s in self.steps if s.state == "late"]


# ------------------------------------------------------------------------------------------
# 1. audience


@dataclass
class FollowUp:
    """A follow-up step's filter: who of the earlier step ``ref`` it goes to."""

    ref: str
    allowed: set[str]  # contact ids it may go to
    received: set[str]  # contact ids that received ``ref``
    out: Exclusion  # the reason for a recipient of ``ref`` not in ``allowed``


def audience(plan: SendPlan, sp: StepPlan, ledger: Ledger) -> FollowUp | None:
    """The follow-up filter of ``sp`` (None: not a follow-up), with notes for the plan."""
    campaign, transport = plan.campaign, plan.transport
    aud = sp.step.spec.audience
    if not (aud.did_not_open or aud.did_not_click or aud.clicked):
        return None
    edition = campaign.edition
    ref = aud.did_not_open or aud.did_not_click or aud.clicked.step  # type: ignore[union-attr]
    received = ledger.sent_contacts(campaign.name, edition, ref, transport.name)
    if aud.did_not_open:
        engaged = ledger.engaged_contacts(campaign.name, edition, ref, transport.name, "open")
        follow = FollowUp(ref, received - engaged, received, Exclusion(Reason.OPENED, step=ref))
    elif aud.did_not_click:
        engaged = ledger.engaged_contacts(campaign.name, edition, ref, transport.name, "click")
        follow = FollowUp(ref, received - engaged, received, Exclusion(Reason.CLICKED, step=ref))
    else:
        link = aud.clicked.link  # type: ignore[union-attr]
        url = campaign.links[link].url if link else None
        clicked = ledger.engaged_contacts(campaign.name, edition, ref, transport.name, "click", url)
        why = Exclusion(Reason.DID_NOT_CLICK, link or "any link", ref)
        follow = FollowUp(ref, clicked, received, why)
    if ledger.events_count(campaign.name, edition) == 0 and not aud.clicked:
        sp.notes.append(
            f"no tracking events recorded yet: every recipient of {ref} counts as not having "
            f"{'opened' if aud.did_not_open else 'clicked'}"
        )
    if not received:
        sp.notes.append(
            f"nobody has received step {ref!r} of the {edition} edition through "
            f"{transport.name} yet"
        )
    return follow


# ------------------------------------------------------------------------------------------
# 2. exclusions


def exclusion(
    contact: Contact,
    segment: str | None,
    excluded_segment: str | None,
    suppressed: dict[str, str],
    follow: FollowUp | None,
    row: Row | None,
    options: SendOptions,
    left: frozenset[str] = frozenset(),
) -> Exclusion | None:
    """Why ``contact`` does not get the step (None: it does), in the order the plan reports.
    ``left``: the lower-case addresses that left the campaign on their preference page."""
    if segment is None:
        return Exclusion(Reason.NOT_IN_SEGMENTS)
    if excluded_segment:
        return Exclusion(Reason.EXCLUDED_SEGMENT, excluded_segment)
    why = suppressed.get(contact.key)
    if why:
        return Exclusion(Reason.SUPPRESSED, why)
    if contact.key in left:
        return Exclusion(Reason.LEFT_CAMPAIGN)
    if follow is not None and contact.contact_id not in follow.allowed:
        if contact.contact_id in follow.received:
            return follow.out
        return Exclusion(Reason.DID_NOT_RECEIVE, step=follow.ref)
    if row is not None:
        if row.status == "sent":
            return Exclusion(Reason.ALREADY_SENT)
        if row.status == "pending":
            return Exclusion(Reason.IN_FLIGHT)
        if row.status == "unknown" and not options.resend_unknown:
            return Exclusion(Reason.UNKNOWN_OUTCOME)
        if row.status == "cancelled" and not options.resend_cancelled:
            return Exclusion(Reason.CANCELLED)
    return None


# ------------------------------------------------------------------------------------------
# 3. schedule


def contact_tz(countries: CountryTable, contact: Contact, campaign: Campaign) -> ZoneInfo:
    c = countries.get(contact.country) if contact.country else None
    if c and c.timezone:
        return ZoneInfo(c.timezone)
    return campaign.tz or ZoneInfo("UTC")


def schedule(
    step: ResolvedStep, contact: Contact, plan: SendPlan
) -> tuple[datetime | None, Exclusion | None]:
    """(delivery time or None for "now", or the reason it is held back) for one contact."""
    if not step.local_time:
        return None, None
    transport = plan.transport
    at = step.instant_in(contact_tz(plan.countries, contact, plan.campaign))
    if not transport.can(Capability.SCHEDULES):
        return at, None  # the outbox records the intended local time
    if at > plan.now + transport.schedule_ahead:
        return None, Exclusion(Reason.HELD)
    return (at if at > plan.now else None), None


# ------------------------------------------------------------------------------------------
# 4. recipient and variant


class Variants:
    """Turns contacts into recipients of structural variants, rendering each variant once."""

    def __init__(self, plan: SendPlan, sp: StepPlan) -> None:
        self.plan, self.sp = plan, sp
        self.checked: set[str] = set()
        self.by_variant: dict[str, list[Recipient]] = defaultdict(list)
        self.fallback_langs: Counter = Counter()
        self.fallback_subjects: Counter = Counter()
        # one bound method for all: each recipient's values keep a reference to it (a new
        # bound method per recipient cost 64 bytes each, 64 MB for a million)
        self.unsubscribe_url = plan.transport.unsubscribe_url
        self.makers: dict[int, ValuesOf] = {}  # id(country values) → their values maker
        self.texts: dict[str, tuple[str, str, str, str, str | None]] = {}  # see _texts

    def recipient(
        self,
        contact: Contact,
        send_id: str,
        segment: str,
        status: str,
        send_at: datetime | None,
    ) -> Recipient:
        plan, sp = self.plan, self.sp
        step, renderer = sp.step, plan.renderer
        template = step.spec.template
        found = self.texts.get(contact.language)
        if found is None:
            found = self.texts[contact.language] = self._texts(contact.language)
        tpl_file, lang, subject, subject_lang, preheader = found
        if lang != contact.language:
            self.fallback_langs[(contact.language, lang)] += 1
        if subject_lang != lang:
            self.fallback_subjects[(lang, subject_lang)] += 1
        # the recipient's full template data is built only to render a variant, or to verify
        # one for its first recipient: the others need just its key and their values
        base, values = plan.builder.slot_values(step, contact, lang, self.unsubscribe_url, send_id)
        variant = renderer.rendered_variant(step.id, tpl_file, base, values)
        if variant is None or variant.id not in self.checked:
            data = plan.builder.recipient(
                step,
                contact,
                lang,
                self.unsubscribe_url(send_id),
                unsubscribe_of=(self.unsubscribe_url, send_id),
            )
            variant = renderer.variant(step.id, template, lang, data, subject, preheader)
            if variant.id not in self.checked:
                renderer.verify(variant, template, lang, data, subject, preheader)
                self.checked.add(variant.id)
            values = data.flat_values()
        sp.variants[variant.id] = variant
        if isinstance(values, RecipientValues):
            values = values.kept(self.makers)
        rec = Recipient(send_id, contact, segment, status, lang, values, send_at)
        self.by_variant[variant.id].append(rec)
        return rec

    def _texts(self, language: str) -> tuple[str, str, str, str, str | None]:
        """(template file, its language, subject, the subject's language, preheader) for the
        contacts who asked for ``language`` (the same for all of them: looked up once)."""
        plan, step = self.plan, self.sp.step
        campaign = plan.campaign
        tpl_file, lang = plan.renderer.resolve_template(step.spec.template, language)
        subject, subject_lang = step.spec.text_for("subject", lang, campaign.default_language)
        if subject is None:
            raise ConfigError(
                f"step {step.id!r} has no subject for {lang!r}",
                where=campaign.where("steps", step.index, "subject"),
            )
        preheader, _ = step.spec.text_for("preheader", lang, campaign.default_language)
        return tpl_file, lang, subject, subject_lang, preheader

    def notes(self) -> list[str]:
        out = [
            f"{n} contact(s) asked for {asked!r}: template falls back to {got!r}"
            for (asked, got), n in sorted(self.fallback_langs.items())
        ]
        out += [
            f"{n} contact(s) get the {got!r} subject: the step has none in {asked!r}"
            for (asked, got), n in sorted(self.fallback_subjects.items())
        ]
        return out


# ------------------------------------------------------------------------------------------
# 5. requests


def requests(
    plan: SendPlan, sp: StepPlan, by_variant: dict[str, list[Recipient]], uncertain: set[str]
) -> None:
    """Split each variant's recipients into the transport's batches (``sp.batches``)."""
    campaign, transport = plan.campaign, plan.transport
    for vid, recs in by_variant.items():
        for chunk, notes in transport.split(sp.variants[vid], recs):
            batch = Batch(new_id(), campaign, sp.step, sp.variants[vid], chunk, notes=notes)
            batch.resends_uncertain = bool(uncertain) and any(r.send_id in uncertain for r in chunk)
            sp.batches.append(batch)
            sp.notes.extend(notes)
    sp.notes.extend(transport.plan_notes(sp.batches))


# ------------------------------------------------------------------------------------------
# the step


def plan_step(
    plan: SendPlan,
    sp: StepPlan,
    ledger: Ledger,
    suppressed: dict[str, str],
    budget: int | None,
    preferences: Preferences | None = None,
) -> int | None:
    """Plan ``sp`` (recipients, exclusions, batches, notes); returns what is left of --limit.
    ``preferences``: the recipients' choices (who left the campaign, who chose a language)."""
    campaign, options, step = plan.campaign, plan.options, sp.step
    prefs = preferences or Preferences()
    offered = set(campaign.languages)
    chose_language = 0
    aud = step.spec.audience
    as_of = as_of_date(step)
    existing = ledger.rows(campaign.name, campaign.edition, step.id, plan.transport.name)
    follow = audience(plan, sp, ledger)
    variants = Variants(plan, sp)
    uncertain: set[str] = set()  # send ids resent after an unknown or cancelled outcome
    # (country status, segment, excluded segment) per (country, relationship, language, tags):
    # all that segments look at (see contacts.matches), so decided once for each
    decided: dict[tuple, tuple[str, str | None, str | None]] = {}
    for contact in plan.contacts.contacts:
        key = (contact.country, contact.relationship, contact.language, contact.tags)
        found = decided.get(key) if type(contact.tags) is tuple else None
        if found is None:
            status = country_status(contact, plan.countries, as_of)
            segment = segment_of(aud.segments, campaign.segments, contact, status)
            excluded = (
                segment_of(aud.exclude_segments, campaign.segments, contact, status)
                if segment is not None
                else None
            )
            found = (status, segment, excluded)
            if type(contact.tags) is tuple and len(decided) < 65536:
                decided[key] = found
        status, segment, excluded = found
        row = existing.get(contact.contact_id)
        why = exclusion(contact, segment, excluded, suppressed, follow, row, options, prefs.left)
        if why is not None:
            sp.exclude(why, None if why.reason is Reason.NOT_IN_SEGMENTS else contact)
            continue
        if row is not None:
            sp.retrying += 1
            if row.status in ("unknown", "cancelled"):
                uncertain.add(row.send_id)
        send_at, held = schedule(step, contact, plan)
        if held is not None:
            sp.held += 1
            sp.exclude(held, contact)
            continue
        if budget is not None and budget <= 0:
            sp.exclude(Exclusion(Reason.OVER_LIMIT), contact)
            continue
        send_id = row.send_id if row is not None else new_id()
        chosen = prefs.language(contact.key, offered) if prefs.languages else None
        if chosen is not None and chosen != contact.language:
            contact = replace(contact, language=chosen)  # their choice beats the list's column
            chose_language += 1
        rec = variants.recipient(contact, send_id, segment, status, send_at)  # type: ignore[arg-type]
        sp.recipients.append(rec)
        sp.breakdown[(segment, status, rec.language)] += 1
        if budget is not None:
            budget -= 1
    if chose_language:
        sp.notes.append(
            f"{chose_language} contact(s) get the language they chose on their preference page"
        )
    sp.notes.extend(variants.notes())
    requests(plan, sp, variants.by_variant, uncertain)
    return budget
