"""Campaign definitions: ``campaigns/<name>.yaml`` loaded, typed and validated.

A campaign declares its sender, lists, segments, steps, links and SendGrid options. Loading
validates everything that can be checked without contacts or templates, and every error names
the file, the key path and the line.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from outreach.exceptions import ConfigError, Location
from outreach.yamlload import LineMap, format_key, load_yaml

if TYPE_CHECKING:
    from outreach.countries import CountryTable

LANG_RE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
STEP_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TODO_MARK = "TODO"
# a send time as written: [YYYY-]MM-DD, a space or T, HH:MM[:SS], an optional UTC offset
SEND_AT_RE = re.compile(
    r"^(?:(?P<year>\d{4})-)?(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    r"(?:[ T](?P<time>\d{1,2}:\d{2}(?::\d{2})?)(?P<offset>Z|[+-]\d{2}:?\d{2})?)?$"
)
# an edition stays current until its last step is this far past (late opens, follow-ups)
EDITION_TAIL = timedelta(days=30)


def _as_list(value: Any) -> Any:
    """Let ``relationship: member`` mean ``relationship: [member]``."""
    if value is None or isinstance(value, list):
        return value
    return [value]


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Sender(_Model):
    from_name: str
    from_email: str
    reply_to: str
    reply_to_name: str | None = None
    postal_address: str = Field(min_length=10)
    organization: str | None = None

    @field_validator("from_email", "reply_to")
    @classmethod
    def _email(cls, v: str) -> str:
        from email_validator import EmailNotValidError, validate_email

        try:
            return validate_email(v, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"not a valid address: {exc}") from None


class Lists(_Model):
    contacts: StrList = Field(min_length=1)
    countries: str = "lists/countries.csv"


class Criteria(_Model):
    """Contact filters: AND across fields, OR within a field's list."""

    relationship: Annotated[
        list[Literal["member", "ally", "newcomer"]] | None, BeforeValidator(_as_list)
    ] = None
    country_status: Annotated[
        list[Literal["ratified", "signed", "not_signed", "unknown"]] | None,
        BeforeValidator(_as_list),
    ] = None
    language: Annotated[list[str] | None, BeforeValidator(_as_list)] = None
    country: Annotated[list[str] | None, BeforeValidator(_as_list)] = None
    tags: Annotated[list[str] | None, BeforeValidator(_as_list)] = None

    @field_validator("country")
    @classmethod
    def _upper(cls, v: list[str] | None) -> list[str] | None:
        return [c.upper() for c in v] if v else v

    @field_validator("tags")
    @classmethod
    def _lower(cls, v: list[str] | None) -> list[str] | None:
        return [t.lower() for t in v] if v else v

    def is_empty(self) -> bool:
        return not any(
            (self.relationship, self.country_status, self.language, self.country, self.tags)
        )


class Segment(Criteria):
    """A named audience: criteria to include, and optional criteria to exclude."""

    description: str | None = None
    exclude: Criteria | None = None


class LinkSpec(_Model):
    url: str
    label: dict[str, str] | str | None = None
    todo: str | None = None  # what the coordinator must still do; presence marks the link unfilled

    @property
    def unfilled(self) -> bool:
        return bool(self.todo) or TODO_MARK in self.url

    def label_for(self, lang: str) -> str | None:
        if isinstance(self.label, dict):
            return self.label.get(lang) or self.label.get("en")
        return self.label


class Audience(_Model):
    segments: StrList = Field(min_length=1)
    exclude_segments: StrList = []
    did_not_open: str | None = None
    did_not_click: str | None = None
    clicked: ClickedFilter | None = None


class ClickedFilter(_Model):
    step: str
    link: str | None = None  # a key of ``links``; None = any link


Audience.model_rebuild()


class Step(_Model):
    id: str
    send_at: str  # parsed in Campaign validation, with the campaign timezone
    local_time: bool = False
    template: str
    subject: dict[str, str] | str
    preheader: dict[str, str] | str | None = None
    audience: Audience

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not STEP_ID_RE.match(v):
            raise ValueError("use lower-case letters, digits, '-' or '_' (e.g. 'circular')")
        return v

    @field_validator("send_at", mode="before")
    @classmethod
    def _send_at_text(cls, v: Any) -> Any:
        if isinstance(v, datetime | date):  # only reachable from Python callers
            return v.isoformat(sep=" ")
        return v

    def text_for(self, field: str, lang: str, fallback: str) -> tuple[str | None, str | None]:
        """(text, language used) for ``subject``/``preheader`` in ``lang``, falling back."""
        value = getattr(self, field)
        if value is None:
            return None, None
        if isinstance(value, str):
            return value, fallback
        if lang in value:
            return value[lang], lang
        if fallback in value:
            return value[fallback], fallback
        return None, None


class Tracking(_Model):
    opens: bool = True
    clicks: bool = True


class SendGridOptions(_Model):
    categories: StrList = []
    tracking: Tracking = Tracking()
    unsubscribe_group: int | None = None
    sandbox: bool = False
    ip_pool: str | None = None
    batch_size: int = Field(default=1000, ge=1, le=1000)
    # requests in flight at once (SendGrid has no documented cap on parallel mail/send
    # requests; 32 keeps a run polite and its memory small)
    concurrency: int = Field(default=8, ge=1, le=32)

    @field_validator("categories")
    @classmethod
    def _cats(cls, v: list[str]) -> list[str]:
        # campaign and step are added automatically: leave room for them
        if len(v) > 8:
            raise ValueError(
                "at most 8 categories (SendGrid allows 10; outreach adds campaign and step)"
            )
        for c in v:
            if len(c) > 255:
                raise ValueError(f"category {c[:20]!r}… is longer than 255 characters")
        return v


class Unsubscribe(_Model):
    """Where one-click unsubscribe requests go (served by ``outreach serve``)."""

    url: str | None = None
    mailto: str | None = None
    todo: str | None = None  # set while the endpoint is not deployed: real sends refuse to start

    @field_validator("url")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("https://"):
            raise ValueError("must be an https:// URL (RFC 8058 one-click unsubscribe)")
        return v.rstrip("/") if v else v


class Examples(_Model):
    """Editorial picks of States named as examples; the data decides which still qualify."""

    parties: StrList = ["AR", "MN", "CV", "FR", "PT", "ES"]
    non_parties: StrList = ["BR", "ZA", "IN", "NG", "DE", "GB", "US", "JP"]
    count: int = Field(default=3, ge=1, le=8)


class Defaults(_Model):
    language: str = "en"
    relationship: Literal["member", "ally", "newcomer"] | None = None


class CampaignFile(_Model):
    """The YAML document as written."""

    name: str | None = None
    title: str
    recurs: Literal["yearly"] | None = None
    timezone: str | None = None
    languages: StrList = ["en"]
    sender: Sender
    lists: Lists
    defaults: Defaults = Defaults()
    segments: dict[str, Segment] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
    links: dict[str, LinkSpec] = {}
    sendgrid: SendGridOptions = SendGridOptions()
    unsubscribe: Unsubscribe = Unsubscribe()
    examples: Examples = Examples()
    late_after_hours: float = Field(default=24, gt=0)

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: list[str]) -> list[str]:
        for lang in v:
            if not LANG_RE.match(lang):
                raise ValueError(f"{lang!r} is not a language code like 'en' or 'es'")
        return v

    @model_validator(mode="after")
    def _default_language_offered(self) -> CampaignFile:
        if self.defaults.language not in self.languages:
            raise ValueError(
                f"defaults.language {self.defaults.language!r} is not in languages {self.languages}"
            )
        return self


# --------------------------------------------------------------------------------------------
# The loaded, resolved campaign


class ResolvedStep:
    """A step with its send time parsed and timezone applied."""

    def __init__(self, spec: Step, send_at: datetime, index: int) -> None:
        self.spec = spec
        self.id = spec.id
        self.send_at = send_at  # aware; for local_time steps, a wall-clock in the campaign tz
        self.index = index

    @property
    def local_time(self) -> bool:
        return self.spec.local_time

    @functools.cached_property
    def wall_clock(self) -> tuple[date, time]:
        """The send date and time of day as written (asked once per recipient: cached)."""
        return self.send_at.date(), self.send_at.timetz().replace(tzinfo=None)

    def instant_in(self, tz: ZoneInfo) -> datetime:
        """For a local-time step: the send instant for a recipient living in ``tz``."""
        d, t = self.wall_clock
        return datetime.combine(d, t, tzinfo=tz)

    def earliest(self) -> datetime:
        """The first moment this step may go out anywhere (UTC+14 for local-time steps)."""
        if not self.local_time:
            return self.send_at
        d, t = self.wall_clock
        return datetime.combine(d, t, tzinfo=ZoneInfo("Etc/GMT-14"))

    def latest(self) -> datetime:
        if not self.local_time:
            return self.send_at
        d, t = self.wall_clock
        return datetime.combine(d, t, tzinfo=ZoneInfo("Etc/GMT+12"))

    def __repr__(self) -> str:
        return f"<Step {self.id} at {self.send_at.isoformat()}>"


@dataclass(frozen=True, slots=True)
class WrittenTime:
    """A step's ``send_at`` as written: the year is None in a yearly campaign."""

    year: int | None
    month: int
    day: int
    time: time
    offset: tzinfo | None


class Campaign:
    """A validated campaign, resolved for one *edition*. ``root`` is the workspace the relative
    paths refer to.

    An edition is a year. A yearly campaign (``recurs: yearly``) writes its dates without a
    year and has an edition every year; a one-off campaign writes full dates and has one
    edition, the year of its first step. :meth:`for_edition` resolves another edition.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        root: Path,
        spec: CampaignFile,
        lines: LineMap,
        *,
        edition: int | None = None,
        now: datetime | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.root = root
        self.spec = spec
        self.lines = lines
        self.tz = ZoneInfo(spec.timezone) if spec.timezone else None
        self.written = [self._parse_send_at(step, i) for i, step in enumerate(spec.steps)]
        self.edition = self._choose_edition(edition, now or datetime.now(UTC))
        self.steps: list[ResolvedStep] = self._resolve(self.edition)

    # -- editions ---------------------------------------------------------------------------

    @property
    def recurring(self) -> bool:
        return self.spec.recurs == "yearly"

    @property
    def only_edition(self) -> int | None:
        """A one-off campaign's single edition (None for a yearly campaign)."""
        return None if self.recurring else self.written[0].year

    def for_edition(self, edition: int) -> Campaign:
        """The same campaign resolved for ``edition`` (a one-off campaign has only its own)."""
        if edition == self.edition:
            return self
        other = copy.copy(self)
        other.edition = other._check_edition(edition)
        other.steps = other._resolve(edition)
        return other

    def edition_end(self, edition: int) -> datetime:
        """When ``edition`` stops being current: its last step is :data:`EDITION_TAIL` past."""
        return max(s.latest() for s in self._resolve(edition, yearless=True)) + EDITION_TAIL

    def edition_at(self, moment: datetime) -> int:
        """The edition whose window holds ``moment``: it is current from the end of the previous
        edition until its own last step is 30 days past (the months-day pattern of the steps
        decides, also for a one-off campaign: this dates old ledger rows)."""
        year = moment.year - 2
        while self.edition_end(year) <= moment:
            year += 1
        return year

    def edition_windows(
        self, first: datetime, last: datetime
    ) -> list[tuple[int, datetime, datetime]]:
        """(edition, start, end) of every edition window from ``first`` to ``last``."""
        return [
            (year, self.edition_end(year - 1), self.edition_end(year))
            for year in range(self.edition_at(first), self.edition_at(last) + 1)
        ]

    def current_edition(self, now: datetime) -> int:
        return self.only_edition if self.only_edition is not None else self.edition_at(now)

    def _choose_edition(self, edition: int | None, now: datetime) -> int:
        if edition is None:
            return self.current_edition(now)
        return self._check_edition(edition)

    def _check_edition(self, edition: int) -> int:
        if not 1900 <= edition <= 9999:
            raise ConfigError(f"edition {edition} is not a year", hint="e.g. --edition 2027")
        only = self.only_edition
        if only is not None and edition != only:
            raise ConfigError(
                f"campaign {self.name!r} does not recur: its only edition is {only}",
                where=self.where("steps", 0, "send_at"),
                hint="to send it every year, add 'recurs: yearly' and write dates without a "
                "year (send_at: 12-01 09:00); see campaigns/README.md",
            )
        return edition

    def _resolve(self, edition: int, *, yearless: bool = False) -> list[ResolvedStep]:
        """The steps with their send times in ``edition``. In a yearly campaign the steps keep
        their order: a step whose month and day come before the previous step's falls in the
        next year (a January follow-up of a December edition). ``yearless``: read a one-off
        campaign's dates as if it recurred (to tell which edition an old send belongs to)."""
        steps: list[ResolvedStep] = []
        year = edition
        previous: datetime | None = None
        for i, (step, w) in enumerate(zip(self.spec.steps, self.written, strict=True)):
            written_year = None if yearless else w.year
            if written_year is not None:
                year = written_year
            when = self._instant(step, i, w, year)
            if written_year is None and previous is not None and when < previous:
                year += 1
                when = self._instant(step, i, w, year)
            previous = when
            steps.append(ResolvedStep(step, when, i))
        return steps

    def _instant(self, step: Step, index: int, w: WrittenTime, year: int) -> datetime:
        try:
            day = date(year, w.month, w.day)
        except ValueError:
            raise ConfigError(
                f"{w.month:02d}-{w.day:02d} does not exist in {year}",
                where=self.where("steps", index, "send_at"),
                hint="a yearly campaign needs a date that exists every year",
            ) from None
        if step.local_time:
            return datetime.combine(day, w.time, tzinfo=self.tz or ZoneInfo("UTC"))
        return datetime.combine(day, w.time, tzinfo=w.offset or self.tz)

    # -- convenience ------------------------------------------------------------------------

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def sender(self) -> Sender:
        return self.spec.sender

    @property
    def languages(self) -> list[str]:
        return list(self.spec.languages)

    @property
    def default_language(self) -> str:
        return self.spec.defaults.language

    @property
    def segments(self) -> dict[str, Segment]:
        return self.spec.segments

    @property
    def links(self) -> dict[str, LinkSpec]:
        return self.spec.links

    def step(self, step_id: str) -> ResolvedStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise ConfigError(
            f"campaign {self.name!r} has no step {step_id!r}",
            where=Location(self.path),
            hint=f"steps are: {', '.join(s.id for s in self.steps)}{_did_you_mean(step_id, [s.id for s in self.steps])}",
        )

    def where(self, *key: str | int) -> Location:
        return self.lines.where(key)

    def contact_paths(self) -> list[Path]:
        return [self.root / p for p in self.spec.lists.contacts]

    def countries_path(self) -> Path:
        return self.root / self.spec.lists.countries

    @property
    def server_url(self) -> str | None:
        """Where ``outreach serve`` answers (the Event Webhook at ``/events``,
        ``/healthz``): the origin of ``unsubscribe.url``."""
        url = self.spec.unsubscribe.url
        if not url:
            return None
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def unfilled_links(self) -> list[tuple[str, LinkSpec]]:
        return [(k, v) for k, v in self.links.items() if v.unfilled]

    def first_send_date(self) -> date:
        """The wall-clock date of this edition's earliest step (what list checks count
        statuses for)."""
        return min(s.wall_clock[0] for s in self.steps)

    def warnings(self, countries: CountryTable | None = None) -> list[str]:
        """Things to fix before a real send that do not block a preview or an outbox run
        (with ``countries``: also whether the treaty data is out of date for the send date)."""
        out = [
            f"{self.where('links', name)}: link {name!r} is not filled in yet ({link.todo or link.url})"
            for name, link in self.unfilled_links()
        ]
        if self.spec.unsubscribe.todo:
            out.append(
                f"{self.where('unsubscribe', 'todo')}: unsubscribe endpoint not ready "
                f"({self.spec.unsubscribe.todo}); until it is, the unsubscribe links of real sends lead nowhere"
            )
        if not self.spec.unsubscribe.url:
            out.append(
                f"{self.where('unsubscribe')}: no unsubscribe.url — messages carry no one-click "
                "unsubscribe of outreach's own (SendGrid's is used when sending through SendGrid)"
            )
        stale = countries.age_warning(self.first_send_date()) if countries is not None else None
        if stale:
            out.append(stale)
        return out

    # -- parsing ----------------------------------------------------------------------------

    def _parse_send_at(self, step: Step, index: int) -> WrittenTime:
        where = self.where("steps", index, "send_at")
        text = step.send_at.strip()
        m = SEND_AT_RE.match(text)
        example = "12-01 09:00" if self.recurring else "2026-12-01 09:00"
        if m is None:
            raise ConfigError(
                f"{text!r} is not a date and time",
                where=where,
                hint=f"write it as {'MM-DD' if self.recurring else 'YYYY-MM-DD'} HH:MM, "
                f"e.g. {example} (quotes optional)",
            )
        year = int(m["year"]) if m["year"] else None
        if self.recurring and year is not None:
            raise ConfigError(
                f"{text!r} has a year, but the campaign recurs every year",
                where=where,
                hint=f"write the date without its year ({text[5:]}): each edition adds its own",
            )
        if not self.recurring and year is None:
            raise ConfigError(
                f"{text!r} has no year",
                where=where,
                hint=f"write {datetime.now(UTC).year}-{text}, or add 'recurs: yearly' at the top "
                "for a campaign sent every year",
            )
        if not m["time"]:
            raise ConfigError(
                f"{text!r} has no time of day",
                where=where,
                hint=f"add one, e.g. {text} 09:00",
            )
        try:
            parsed = datetime.fromisoformat(
                f"{year or 2000}-{int(m['month']):02d}-{int(m['day']):02d}T{m['time']:0>5}"
                + (m["offset"] or "")
            )
        except ValueError:
            raise ConfigError(
                f"{text!r} is not a date and time",
                where=where,
                hint=f"write it as {'MM-DD' if self.recurring else 'YYYY-MM-DD'} HH:MM, "
                f"e.g. {example} (quotes optional)",
            ) from None
        if self.recurring and (parsed.month, parsed.day) == (2, 29):
            raise ConfigError(
                f"{text!r}: 29 February does not come every year",
                where=where,
                hint="choose a date that exists every year",
            )
        offset = parsed.tzinfo
        if step.local_time:
            if offset is not None:
                raise ConfigError(
                    "a local_time step takes a wall-clock time without a UTC offset",
                    where=where,
                    hint=f"write {text[: m.start('offset')]}: it is read in each recipient's "
                    "country timezone",
                )
        elif offset is None and self.tz is None:
            raise ConfigError(
                f"{text!r} has no timezone and the campaign declares none",
                where=where,
                hint="add a top-level 'timezone: Europe/Geneva' (any IANA name) "
                f"or write an offset, e.g. {example}+01:00",
            )
        return WrittenTime(year, parsed.month, parsed.day, parsed.time(), offset)


def _did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _pydantic_errors(exc: ValidationError, path: Path, lines: LineMap) -> ConfigError:
    details = []
    first_where: Location | None = None
    for err in exc.errors():
        loc = tuple(err["loc"])
        # pydantic appends the union member / literal name to loc in some errors; drop non-keys
        key = tuple(
            p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "literal["))
        )
        where = Location(path, lines.line(key), format_key(key))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = _model_fields_at(key[:-1])
            msg = f"unknown key {key[-1]!r}{_did_you_mean(str(key[-1]), parent)}"
        elif err["type"] == "missing":
            msg = f"missing required key {key[-1]!r}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        details.append(f"{where}: {msg}")
        first_where = first_where or where
    n = len(details)
    head = details[0].split(": ", 2)[-1] if n == 1 else f"{n} problems in the campaign file"
    return ConfigError(
        head,
        where=first_where if n == 1 else Location(path),
        details=[] if n == 1 else details,
        hint="fix the campaign file and run the command again; see campaigns/README.md for every key",
    )


def _model_fields_at(key: tuple) -> list[str]:
    """The allowed keys at a position in the campaign document (for 'did you mean')."""
    model: Any = CampaignFile
    for part in key:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(str(part))
        if field is None:
            # dict[str, Model] values (segments, links)
            return list(getattr(model, "model_fields", {}))
        ann = field.annotation
        inner = _first_model(ann)
        if inner is None:
            return []
        model = inner
    return list(getattr(model, "model_fields", {}))


def _first_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def campaign_path(root: Path, name: str) -> Path:
    """``campaigns/<name>.yaml`` (or ``.yml``); ``name`` may also be a path to a file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and (root / candidate).is_file():
        return root / candidate
    for ext in (".yaml", ".yml"):
        p = root / "campaigns" / f"{name}{ext}"
        if p.is_file():
            return p
    existing = sorted(p.stem for p in (root / "campaigns").glob("*.y*ml"))
    raise ConfigError(
        f"no campaign named {name!r}",
        where=Location(root / "campaigns"),
        hint=(
            f"campaigns here: {', '.join(existing)}{_did_you_mean(name, existing)}"
            if existing
            else "create campaigns/<name>.yaml, or run from (or pass -C) the workspace folder"
        ),
    )


def only_campaign(root: Path) -> str:
    """The campaign's name when the workspace has exactly one."""
    names = sorted(p.stem for p in (root / "campaigns").glob("*.y*ml"))
    if len(names) == 1:
        return names[0]
    raise ConfigError(
        "say which campaign" if names else "no campaign in campaigns/",
        where=Location(root / "campaigns"),
        hint=f"campaigns here: {', '.join(names)}" if names else "create campaigns/<name>.yaml",
    )


def load_campaign(
    root: Path, name: str, *, edition: int | None = None, now: datetime | None = None
) -> Campaign:
    """Load and validate ``campaigns/<name>.yaml`` under the workspace ``root``, resolved for
    ``edition`` (default: the edition current at ``now``, itself defaulting to the clock)."""
    path = campaign_path(root, name)
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    data, lines = load_yaml(path, shown)
    if not isinstance(data, dict):
        raise ConfigError("the campaign file must be a mapping of keys", where=Location(shown, 1))
    try:
        spec = CampaignFile.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_errors(exc, shown, lines) from None
    stem = path.stem
    if spec.name and spec.name != stem:
        raise ConfigError(
            f"name {spec.name!r} does not match the file name {path.name!r}",
            where=lines.where(("name",)),
            hint=f"rename the file to {spec.name}.yaml or set name: {stem}",
        )
    if spec.timezone:
        try:
            ZoneInfo(spec.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown timezone {spec.timezone!r}",
                where=lines.where(("timezone",)),
                hint="use an IANA name such as Europe/Geneva or America/New_York",
            ) from None
    campaign = Campaign(stem, path, root, spec, lines, edition=edition, now=now)
    _cross_check(campaign)
    return campaign


def _cross_check(c: Campaign) -> None:
    """Checks that span several keys: references between steps, segments and links."""
    spec = c.spec
    seen: dict[str, int] = {}
    step_ids = [s.id for s in spec.steps]
    for i, step in enumerate(spec.steps):
        if step.id in seen:
            raise ConfigError(
                f"duplicate step id {step.id!r} (also steps[{seen[step.id]}])",
                where=c.where("steps", i, "id"),
            )
        seen[step.id] = i
        aud = step.audience
        for j, seg in enumerate(aud.segments):
            if seg not in spec.segments:
                raise ConfigError(
                    f"unknown segment {seg!r}{_did_you_mean(seg, list(spec.segments))}",
                    where=c.where("steps", i, "audience", "segments", j),
                    hint=f"segments defined: {', '.join(spec.segments)}",
                )
        for j, seg in enumerate(aud.exclude_segments):
            if seg not in spec.segments:
                raise ConfigError(
                    f"unknown segment {seg!r}{_did_you_mean(seg, list(spec.segments))}",
                    where=c.where("steps", i, "audience", "exclude_segments", j),
                )
        follow = [("did_not_open", aud.did_not_open), ("did_not_click", aud.did_not_click)]
        if aud.clicked:
            follow.append(("clicked", aud.clicked.step))
        given = [key for key, ref in follow if ref is not None]
        if len(given) > 1:
            raise ConfigError(
                f"a step takes one follow-up filter, this one has {' and '.join(given)}",
                where=c.where("steps", i, "audience", given[1]),
                hint="split it into two steps, or keep the one that matters",
            )
        for key, ref in follow:
            if ref is None:
                continue
            if ref not in step_ids[:i]:
                raise ConfigError(
                    f"{key} refers to {ref!r}, which is not an earlier step"
                    f"{_did_you_mean(ref, step_ids)}",
                    where=c.where("steps", i, "audience", key),
                    hint="a follow-up can only look at steps listed before it",
                )
        if aud.clicked and aud.clicked.link and aud.clicked.link not in spec.links:
            raise ConfigError(
                f"unknown link {aud.clicked.link!r}{_did_you_mean(aud.clicked.link, list(spec.links))}",
                where=c.where("steps", i, "audience", "clicked", "link"),
            )
        if isinstance(step.subject, dict):
            for lang in step.subject:
                if lang not in spec.languages:
                    raise ConfigError(
                        f"subject in {lang!r}, which is not in languages {spec.languages}",
                        where=c.where("steps", i, "subject", lang),
                    )
            if spec.defaults.language not in step.subject:
                raise ConfigError(
                    f"no subject in the default language {spec.defaults.language!r}",
                    where=c.where("steps", i, "subject"),
                    hint="the default language is the fallback for everyone else",
                )
    # send times must not go backwards for follow-ups
    for i, step in enumerate(c.steps):
        aud = step.spec.audience
        ref = aud.did_not_open or aud.did_not_click or (aud.clicked.step if aud.clicked else None)
        if ref:
            earlier = c.step(ref)
            if step.earliest() < earlier.latest() + timedelta(hours=1):
                raise ConfigError(
                    f"follow-up step {step.id!r} is due before {ref!r} has had time to be opened",
                    where=c.where("steps", i, "send_at"),
                    hint=f"schedule it after {earlier.latest().isoformat(sep=' ', timespec='minutes')}",
                )
    for name, seg in spec.segments.items():
        for lang in seg.language or []:
            if lang not in spec.languages:
                raise ConfigError(
                    f"segment {name!r} filters on language {lang!r}, not offered by this campaign",
                    where=c.where("segments", name, "language"),
                )
