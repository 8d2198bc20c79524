"""What templates see: the campaign, the step, treaty figures as of the send date, and the
recipient (``contact``, ``country``, ``unsubscribe_url``).

Values that are the same for everyone in a step and language are *structural*; values that
differ per recipient become slots (see :mod:`outreach.render`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from babel.dates import format_date, format_skeleton
from babel.lists import format_list

from outreach.campaign import Campaign, ResolvedStep
from outreach.contacts import Contact
from outreach.countries import Country, CountryTable
from outreach.render import RecipientData

ADOPTED = date(2008, 12, 10)  # adoption of the OP-ICESCR by the UN General Assembly
IN_FORCE = date(2013, 5, 5)
DATE_PATTERNS = {"en": "d MMMM y"}  # "24 October 2011" rather than CLDR's US-style default
LIST_LOCALES = {"en": "en_GB"}  # "A, B and C", matching the British dates above
# States whose English short name takes "the" inside a sentence ("the United Kingdom has…").
# Codes, not names: the names themselves come from lists/countries.csv.
EN_DEFINITE_ARTICLE = frozenset(
    ["AE", "BS", "CD", "CF", "CG", "DO", "GB", "GM", "KM", "MH", "MV", "NL", "PH", "PS", "SB", "US"]
)


def ordinal(n: int, lang: str) -> str:
    """18 → '18th' (en), '18.º' (es), '18e' (fr)."""
    if lang == "es":
        return f"{n}.º"
    if lang == "fr":
        return "1er" if n == 1 else f"{n}e"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def long_date(d: date, lang: str) -> str:
    return format_date(d, DATE_PATTERNS.get(lang, "long"), locale=lang)


def month_year(d: date, lang: str) -> str:
    return format_skeleton("yMMMM", d, locale=lang)


def join_names(names: list[str], lang: str, style: str = "standard") -> str:
    """'A, B and C' / 'A, B o C' / 'A, B ou C' in ``lang``."""
    if not names:
        return ""
    text = format_list(names, style=style, locale=LIST_LOCALES.get(lang, lang))
    if lang == "es" and len(names) > 1:
        # Spanish writes "e" before an /i/ sound and "u" before an /o/ sound
        last = names[-1].lower()
        head = text[: len(text) - len(names[-1])]
        if style == "standard" and re.match(r"h?i(?![aeou])", last) and head.endswith(" y "):
            text = head[:-3] + " e " + names[-1]
        elif style == "or" and re.match(r"h?o", last) and head.endswith(" o "):
            text = head[:-3] + " u " + names[-1]
    return text


def name_in_text(country: Country, lang: str) -> str:
    """The name as it reads inside a sentence: 'the United Kingdom' (en), else the name."""
    name = country.name(lang)
    if lang.split("-")[0].split("_")[0] == "en" and country.code in EN_DEFINITE_ARTICLE:
        return f"the {name}"
    return name


def as_of_date(step: ResolvedStep) -> date:
    """The date statuses and counts are computed for: the step's (wall-clock) send date."""
    return step.wall_clock[0]


class ContextBuilder:
    """Builds :class:`RecipientData` for (step, contact); caches the structural part."""

    def __init__(self, campaign: Campaign, countries: CountryTable) -> None:
        self.campaign = campaign
        self.countries = countries
        self._step_cache: dict[tuple[str, str], dict[str, Any]] = {}
        # (country code, language, as-of date) → (country status, the shared country values)
        self._country_cache: dict[tuple[str, str, date], tuple[str, Mapping[str, Any]]] = {}

    # -- structural ----------------------------------------------------------------------

    def structural(self, step: ResolvedStep, lang: str) -> dict[str, Any]:
        key = (step.id, lang)
        if key not in self._step_cache:
            self._step_cache[key] = self._build_structural(step, lang)
        return self._step_cache[key]

    def _build_structural(self, step: ResolvedStep, lang: str) -> dict[str, Any]:
        c = self.campaign
        as_of = as_of_date(step)
        counts = self.countries.counts(as_of)
        # the anniversary of the adoption on 10 December of the send year
        anniversary = as_of.year - ADOPTED.year
        examples = c.spec.examples
        known = [self.countries.get(code) for code in examples.parties]
        parties = [p for p in known if p and p.is_party(as_of)][: examples.count]
        known = [self.countries.get(code) for code in examples.non_parties]
        non_parties = [p for p in known if p and not p.is_party(as_of)][: examples.count]
        links = {
            name: {
                "url": spec.url,
                "label": spec.label_for(lang) or name.replace("_", " "),
                "unfilled": spec.unfilled,
            }
            for name, spec in c.links.items()
        }
        sender = c.sender
        return {
            "lang": lang,
            "campaign": {
                "name": c.name,
                "title": c.title,
                "year": as_of.year,
            },
            "sender": {
                "name": sender.from_name,
                "email": sender.from_email,
                "organization": sender.organization or sender.from_name,
                "postal_address": sender.postal_address,
            },
            "coordinator": {
                "name": sender.reply_to_name or sender.reply_to,
                "email": sender.reply_to,
            },
            "step": {
                "id": step.id,
                "date": long_date(as_of, lang),
                "local_time": step.local_time,
            },
            "links": links,
            "stats": {
                "as_of": as_of,
                "as_of_text": long_date(as_of, lang),
                "parties": counts["parties"],
                "signatories": counts["signatories"],
                "signed_only": counts["signed_only"],
                "anniversary": anniversary,
                "anniversary_ordinal": ordinal(anniversary, lang),
                "adopted_on": long_date(ADOPTED, lang),
                "in_force": month_year(IN_FORCE, lang),
                "example_parties": join_names([p.name(lang) for p in parties], lang),
                "example_non_parties": join_names([p.name(lang) for p in non_parties], lang, "or"),
                "example_party_list": [p.name(lang) for p in parties],
                "example_non_party_list": [p.name(lang) for p in non_parties],
            },
        }

    # -- per recipient -------------------------------------------------------------------

    def recipient(
        self,
        step: ResolvedStep,
        contact: Contact,
        lang: str,
        unsubscribe_url: str,
        *,
        unsubscribe_of: tuple[Callable[[str], str], str] | None = None,
    ) -> RecipientData:
        """``unsubscribe_of`` = (function, send id) lets the kept values rebuild the URL on
        demand instead of holding one string per recipient."""
        status, country_values = self._country_of(contact, lang, as_of_date(step))
        contact_values: dict[str, Any] = {
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "full_name": contact.full_name,
            "organization": contact.organization,
            "email": contact.email,
            "tags": contact.tags,
            **contact.extra,
        }
        contact_struct = {"relationship": contact.relationship, "language": lang}
        return RecipientData(
            base=(lang, contact.relationship, status),
            structural=self.structural(step, lang),
            namespaces={
                "contact": (contact_values, contact_struct),
                "country": (country_values, {"status": status}),
            },
            top_slots={"unsubscribe_url": unsubscribe_url},
            values=RecipientValues(
                contact, country_values, *(unsubscribe_of or (None, unsubscribe_url))
            ),
        )

    def slot_values(
        self,
        step: ResolvedStep,
        contact: Contact,
        lang: str,
        unsubscribe_of: Callable[[str], str],
        send_id: str,
    ) -> tuple[tuple, RecipientValues]:
        """The structural key (``base``) and the flat values of the :class:`RecipientData`
        that :meth:`recipient` builds with ``unsubscribe_of=(unsubscribe_of, send_id)``,
        without the rest: all a planner needs for a recipient of an already rendered variant."""
        status, country_values = self._country_of(contact, lang, as_of_date(step))
        values = RecipientValues(contact, country_values, unsubscribe_of, send_id)
        return (lang, contact.relationship, status), values

    def _country_of(
        self, contact: Contact, lang: str, as_of: date
    ) -> tuple[str, Mapping[str, Any]]:
        """(country status, shared country values) of ``contact``, once per country,
        language and date."""
        key = (contact.country, lang, as_of)
        found = self._country_cache.get(key)
        if found is None:
            country = self.countries.get(contact.country) if contact.country else None
            status = country.status(as_of) if country else "unknown"
            found = self._country_cache[key] = (status, country_values_for(country, lang, as_of))
        return found


CONTACT_FIELDS = ("first_name", "last_name", "full_name", "organization", "email", "tags")


_COUNTRY, _FIELD, _EXTRA, _UNSUBSCRIBE, _UNKNOWN = range(5)
_KEYS: dict[str, tuple[int, str]] = {}  # a flat key → (its kind, the name within it)


def _slot_key(key: str) -> tuple[int, str]:
    """What a flat key of :class:`RecipientValues` reads: ``country.name`` → (_COUNTRY,
    "name"); remembered (for the first thousand distinct keys)."""
    if key.startswith("country."):
        found = (_COUNTRY, key[8:])
    elif key.startswith("contact."):
        found = (_FIELD if key[8:] in CONTACT_FIELDS else _EXTRA, key[8:])
    elif key == "unsubscribe_url":
        found = (_UNSUBSCRIBE, "")
    else:
        found = (_UNKNOWN, "")
    if len(_KEYS) < 1024:
        _KEYS[key] = found
    return found


class RecipientValues(Mapping[str, Any]):
    """A recipient's flat slot values (``contact.first_name``, ``country.name``,
    ``unsubscribe_url``), read on demand from the contact and the shared country values.

    A plan keeps one per recipient until it is delivered; three references instead of a dict
    of twenty entries is what keeps a million-recipient send within memory.
    """

    __slots__ = ("_contact", "_country", "_unsub", "_unsub_of")

    def __init__(
        self,
        contact: Contact,
        country: Mapping[str, Any],
        unsubscribe_of: Callable[[str], str] | None,
        unsubscribe: str,
    ) -> None:
        """``unsubscribe`` is the URL, or the send id that ``unsubscribe_of`` turns into it."""
        self._contact = contact
        self._country = country
        self._unsub_of = unsubscribe_of
        self._unsub = unsubscribe

    def __getitem__(self, key: str) -> Any:
        # read for every recipient and marker: the key is parsed once (see _slot_key)
        kind, name = _KEYS.get(key) or _slot_key(key)
        if kind == _COUNTRY:  # the most frequent keys first
            return self._country[name]
        if kind == _FIELD:
            return getattr(self._contact, name)
        if kind == _EXTRA:
            return self._contact.extra[name]
        if kind == _UNSUBSCRIBE:
            return self._unsub if self._unsub_of is None else self._unsub_of(self._unsub)
        raise KeyError(key)

    def kept(self, makers: dict[int, ValuesOf]) -> Mapping[str, Any] | ValuesOf:
        """What a plan keeps for this recipient: a maker shared by every recipient with the
        same country values (from ``makers``) when the URL is rebuilt from the send id, else
        these values."""
        if self._unsub_of is None:
            return self
        maker = makers.get(id(self._country))
        if maker is None or maker.unsubscribe_of is not self._unsub_of:
            maker = makers[id(self._country)] = ValuesOf(self._country, self._unsub_of)
        return maker

    def __iter__(self) -> Iterator[str]:
        yield "unsubscribe_url"
        for name in (*CONTACT_FIELDS, *self._contact.extra):
            yield f"contact.{name}"
        for name in self._country:
            yield f"country.{name}"

    def __len__(self) -> int:
        return 1 + len(CONTACT_FIELDS) + len(self._contact.extra) + len(self._country)


class ValuesOf:
    """Builds :class:`RecipientValues` from (contact, send id) for the recipients that share
    one country's values and one unsubscribe function (see :meth:`RecipientValues.kept`)."""

    __slots__ = ("country", "unsubscribe_of")

    def __init__(self, country: Mapping[str, Any], unsubscribe_of: Callable[[str], str]) -> None:
        self.country = country  # also keeps the shared mapping (and so its id) alive
        self.unsubscribe_of = unsubscribe_of

    def __call__(self, contact: Contact, send_id: str) -> RecipientValues:
        return RecipientValues(contact, self.country, self.unsubscribe_of, send_id)


def country_values_for(country: Country | None, lang: str, as_of: date) -> Mapping[str, Any]:
    """Per-recipient country fields (slots), shared read-only per (country, language, date).
    Empty strings where unknown or not applicable."""
    if country is None:
        return _EMPTY_COUNTRY_VALUES
    return _shared_country_values(country, lang, as_of)


@lru_cache(maxsize=4096)
def _shared_country_values(country: Country, lang: str, as_of: date) -> Mapping[str, Any]:
    return MappingProxyType(dict(_country_values(country, lang, as_of)))


_EMPTY_COUNTRY = {
    "code": "",
    "name": "",
    "name_in_text": "",
    "hashtag": "",
    "handle": "",
    "signed_on": "",
    "signature_year": "",
    "ratified_on": "",
    "ratification_year": "",
    "accession": "",
    "icescr_party": "",
}


_EMPTY_COUNTRY_VALUES = MappingProxyType(_EMPTY_COUNTRY)


@lru_cache(maxsize=4096)
def _country_values(country: Country, lang: str, as_of: date) -> tuple[tuple[str, Any], ...]:
    signed = country.is_signatory(as_of)
    party = country.is_party(as_of)
    sig_date = country.signature_date if signed else None
    values = {
        "code": country.code,
        "name": country.name(lang),
        "name_in_text": name_in_text(country, lang),
        "hashtag": country.hashtag,
        "handle": country.handle,
        "signed_on": long_date(sig_date, lang) if sig_date else "",
        "signature_year": str(country.signature_year) if signed and country.signature_year else "",
        "ratified_on": long_date(country.ratification_date, lang) if party else "",
        "ratification_year": str(country.ratification_date.year) if party else "",
        "accession": "yes" if party and country.accession else "",
        "icescr_party": "yes" if country.icescr_party else "",
    }
    return tuple(values.items())
