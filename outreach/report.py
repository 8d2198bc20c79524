"""``outreach report``: what happened to a campaign's messages, computed with pandas from the
ledger's sends joined with their tracking events.

Per step (and broken down by segment, relationship, country status, country and language):
sent, delivered, deferred, hard and soft bounces, drops, unique human opens (``sg_machine_open``
opens, e.g. Apple Mail Privacy Protection, are counted apart), unique clicks, clicks per link,
unsubscribes and spam reports, with rates; opens and clicks over time; the top countries by
engagement.

This module is the model and its computation only: each output format lives in its own module
that depends on this one, never the reverse (``report_formats`` for JSON and CSV and the
``render`` entry points, ``report_html``, ``report_table``; the dashboard renders the same
:class:`Report`). Fields: ``docs/report-format.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from outreach.campaign import Campaign, load_campaign
from outreach.exceptions import ConfigError
from outreach.ledger import Ledger
from outreach.reputation import Health, assess
from outreach.store.base import REPORT_SEND_COLUMNS
from outreach.workspace import Workspace

FORMAT_VERSION = "outreach-report/1"
DIMENSIONS = ("segment", "relationship", "country_status", "country", "language")
COUNTS = (
    "sent",
    "delivered",
    "deferred",
    "bounced_hard",
    "bounced_soft",
    "dropped",
    "opens_unique",
    "opens_total",
    "machine_opens_unique",
    "clicks_unique",
    "clicks_total",
    "unsubscribes",
    "spam_reports",
)
# rate → (numerator, denominator)
RATES = {
    "delivered_rate": ("delivered", "sent"),
    "bounce_rate": ("bounced", "sent"),
    "dropped_rate": ("dropped", "sent"),
    "open_rate": ("opens_unique", "delivered"),
    "click_rate": ("clicks_unique", "delivered"),
    "click_to_open_rate": ("clicks_unique", "opens_unique"),
    "unsubscribe_rate": ("unsubscribes", "delivered"),
    "spam_rate": ("spam_reports", "delivered"),
    "hard_bounce_rate": ("bounced_hard", "sent"),
}
METRICS = COUNTS + tuple(RATES)
# the per-send event kinds the counts are built from
KINDS = (
    "delivered",
    "deferred",
    "bounced_hard",
    "bounced_soft",
    "dropped",
    "open",
    "machine_open",
    "click",
    "unsubscribe",
    "spamreport",
)
SHARE_HOSTS = {
    "x.com": "x",
    "twitter.com": "x",
    "bsky.app": "bsky",
    "facebook.com": "facebook",
    "linkedin.com": "linkedin",
}
_SHARE_PATHS = ("intent", "share", "sharer", "compose")
TOP_COUNTRIES = 10


@dataclass
class StepReport:
    step: str
    totals: dict
    by: dict[str, list[dict]]  # dimension → rows (``value`` + metrics)
    links: list[dict]  # link, names, url, clicks_total, clicks_unique
    timeline: list[dict]  # bucket, opens, clicks
    reputation: Health  # complaint and hard-bounce rates against the bulk-sender limits


@dataclass
class Report:
    campaign: str
    title: str
    edition: int
    transport: str | None
    generated_at: str
    step_filter: str | None
    granularity: str  # hour | day
    events_matched: int
    events_unmatched: int
    steps: list[StepReport]
    timeline: list[dict]
    top_countries: list[dict]
    notes: list[str] = field(default_factory=list)

    @property
    def has_events(self) -> bool:
        return self.events_matched > 0

    def as_dict(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "campaign": self.campaign,
            "title": self.title,
            "edition": self.edition,
            "transport": self.transport,
            "generated_at": self.generated_at,
            "step_filter": self.step_filter,
            "has_events": self.has_events,
            "events": {"matched": self.events_matched, "unmatched": self.events_unmatched},
            "granularity": self.granularity,
            "steps": [
                {
                    "step": s.step,
                    "totals": s.totals,
                    "by": s.by,
                    "links": s.links,
                    "timeline": s.timeline,
                    "reputation": s.reputation.as_dict(),
                }
                for s in self.steps
            ],
            "timeline": self.timeline,
            "top_countries": self.top_countries,
            "notes": self.notes,
        }


# ------------------------------------------------------------------------------------------
# Links


def _norm_url(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    path = parts.path.rstrip("/")
    q = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}{q}"


class LinkNamer:
    """Names clicked URLs after the campaign's ``links``; share intents become ``share:x`` etc."""

    def __init__(self, campaign: Campaign) -> None:
        self.by_url: dict[str, list[str]] = {}
        for name, spec in campaign.links.items():
            self.by_url.setdefault(_norm_url(spec.url), []).append(name)
        self.unsubscribe = campaign.spec.unsubscribe.url
        self._urls = {name: spec.url for name, spec in campaign.links.items()}

    def links_url(self, name: str) -> str | None:
        return self._urls.get(name)

    def names(self, url: str) -> tuple[str, list[str]]:
        """(label, campaign link names) for a clicked URL."""
        norm = _norm_url(url)
        names = self.by_url.get(norm)
        if names is None and "?" in norm:
            names = self.by_url.get(norm.split("?", 1)[0])
        if names:
            label = (
                names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} sharing its URL)"
            )
            return label, list(names)
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            return f"other: {url[:60]}", []
        host = parts.netloc.lower().removeprefix("www.")
        if self.unsubscribe and url.startswith(self.unsubscribe):
            return "unsubscribe link", []
        platform = SHARE_HOSTS.get(host)
        if platform and any(p in parts.path.lower() for p in _SHARE_PATHS):
            return f"share:{platform}", []
        return f"other: {host}{parts.path}"[:80], []


# ------------------------------------------------------------------------------------------
# Building


def _rate(num: float, den: float) -> float | None:
    return round(float(num) / float(den), 4) if den else None


def _with_rates(counts: dict) -> dict:
    out = {k: int(counts.get(k, 0)) for k in COUNTS}
    bounced = out["bounced_hard"] + out["bounced_soft"]
    for name, (num, den) in RATES.items():
        n = bounced if num == "bounced" else out[num]
        out[name] = _rate(n, out[den])
    return out


def choose_transport(ledger: Ledger, campaign: str, edition: int, wanted: str | None) -> str | None:
    used = ledger.transports_used(campaign, edition)
    if wanted:
        return wanted
    if "sendgrid" in used:
        return "sendgrid"
    return used[0] if used else None


SEND_COLUMNS = REPORT_SEND_COLUMNS
_OPEN, _CLICK = KINDS.index("open"), KINDS.index("click")


@dataclass
class Loaded:
    """What the report is computed from: the sends, and their events as parallel arrays."""

    sends: pd.DataFrame  # SEND_COLUMNS, ordered by send id
    ev_row: np.ndarray  # int64: each event's row in ``sends`` (its position)
    ev_kind: np.ndarray  # int8: index in KINDS
    ev_ts: np.ndarray  # float64 (NaN when missing)
    click_row: np.ndarray  # int64: the clicks that name a URL: their send's row in ``sends``
    click_url: np.ndarray  # object: … and that URL
    stored: int  # matched events of the campaign (any kind)
    unmatched: int


def load(
    ledger: Ledger,
    campaign: str,
    edition: int,
    transport: str | None,
    step: str | None,
    window: tuple[datetime, datetime],
) -> Loaded:
    """Read an edition's sends and their events (the ``events_report`` index covers it);
    ``window`` is the edition's time span, for events that match no send."""
    start, end = window
    # an event that matches no send has no edition: it counts where its time falls
    found = ledger.report_rows(
        campaign, edition, transport, step, (int(start.timestamp()), int(end.timestamp()))
    )
    raw, found.sends = found.sends, []
    table = np.array(raw, dtype=object).reshape(len(raw), len(SEND_COLUMNS))
    del raw
    # object columns: pandas' string dtype is slower for what follows
    sends = pd.DataFrame(
        {name: pd.Series(table[:, i], dtype=object) for i, name in enumerate(SEND_COLUMNS)}
    )
    if found.columns is not None:  # the database matched them and left the others out
        pos_l, kind_l, ts_l, cpos_l, url_l = found.columns
        found.columns = None
        ev_row = np.array(pos_l, dtype=np.int64)
        ev_kind = np.array(kind_l, dtype=np.int8)
        ev_ts = np.array(ts_l, dtype=np.float64)  # None → NaN
        click_row = np.array(cpos_l, dtype=np.int64)
        click_url = np.array(url_l, dtype=object)
        return Loaded(
            sends, ev_row, ev_kind, ev_ts, click_row, click_url, found.matched, found.unmatched
        )
    rows, found.events = found.events, []
    if rows:
        arr = np.array(rows, dtype=object)  # one 2-D conversion: 3x faster than zip(*rows)
        del rows
        pos = pd.Index(sends["send_id"].to_numpy(dtype=object)).get_indexer(arr[:, 0])
        kind = arr[:, 1].astype(np.int8)
        # left out: events of another transport's (or step's) messages, and those of other
        # kinds (-1: a store may return them for its count of matched events)
        keep = (pos >= 0) & (kind >= 0)
        ev_row = pos[keep].astype(np.int64)
        ev_kind = kind[keep]
        ts = arr[keep, 2]
        missing = pd.isna(ts)
        if missing.any():
            ts = np.where(missing, np.nan, ts)
        ev_ts = ts.astype(np.float64)
        url = arr[keep, 3]
        clicks = (ev_kind == _CLICK) & pd.notna(url)
        click_row = ev_row[clicks]
        click_url = url[clicks]
    else:
        ev_row = np.zeros(0, np.int64)
        ev_kind = np.zeros(0, np.int8)
        ev_ts = np.zeros(0, np.float64)
        click_row = np.zeros(0, np.int64)
        click_url = np.zeros(0, object)
    return Loaded(
        sends, ev_row, ev_kind, ev_ts, click_row, click_url, found.matched, found.unmatched
    )


_FLAG_COLUMNS = {
    "delivered": "delivered",
    "deferred": "deferred",
    "bounced_hard": "bounced_hard",
    "dropped": "dropped",
    "opens_unique": "open",
    "machine_opens_unique": "machine_open",
    "clicks_unique": "click",
    "unsubscribes": "unsubscribe",
    "spam_reports": "spamreport",
}


def _flags(frame: pd.DataFrame) -> pd.DataFrame:
    """Per send: 0/1 per counted metric (and the raw open/click counts for the totals)."""
    out = {"sent": frame["is_sent"].astype(np.int64)}
    for metric, kind in _FLAG_COLUMNS.items():
        out[metric] = (frame[kind] > 0).astype(np.int64)
    out["bounced_soft"] = ((frame["bounced_soft"] > 0) & (frame["bounced_hard"] == 0)).astype(
        np.int64
    )
    out["opens_total"] = frame["open"].astype(np.int64)
    out["clicks_total"] = frame["click"].astype(np.int64)
    return pd.DataFrame(out, index=frame.index)


def _group_metrics(
    flags: pd.DataFrame, step_codes: np.ndarray, steps: pd.Index, values: pd.Series
) -> dict[str, list[dict]]:
    """step → rows of :data:`METRICS` per value (most ``sent`` first).

    Sums per (step, value) with one ``np.bincount`` per metric over factorized keys: the
    pandas group-by on object keys is the slow part of a 1M-event report."""
    if flags.empty:
        return {}
    vcodes, uniques = pd.factorize(values.to_numpy(dtype=object), sort=True)
    nv = len(uniques)
    key = step_codes * nv + vcodes
    size = len(steps) * nv
    sums = {
        col: np.bincount(key, weights=flags[col].to_numpy(), minlength=size)
        for col in flags.columns
    }
    present = np.bincount(key, minlength=size) > 0
    out: dict[str, list[dict]] = {}
    for k in np.flatnonzero(present).tolist():
        sid, value = steps[k // nv], uniques[k % nv]
        row = {col: int(sums[col][k]) for col in flags.columns}
        out.setdefault(str(sid), []).append({"value": str(value), **_with_rates(row)})
    for rows in out.values():
        rows.sort(key=lambda r: -r["sent"])  # stable: values stay alphabetical within a count
    return out


def _or_none(values: np.ndarray) -> np.ndarray:
    """``values`` with "(none)" for a missing or empty one (decided once per distinct value)."""
    codes, uniques = pd.factorize(values)  # a missing value: code -1
    named = [u if u != "" else "(none)" for u in uniques.tolist()] + ["(none)"]
    return np.array(named, dtype=object)[codes]


def _timelines(
    step: np.ndarray, kind: np.ndarray, ts: np.ndarray, granularity: str
) -> tuple[list[dict], dict[int, list[dict]]]:
    """Opens and clicks per time bucket: over all the events, and per step code (``step``:
    each event's), in one pass."""
    mask = ((kind == _OPEN) | (kind == _CLICK)) & ~np.isnan(ts)
    if not mask.any():
        return [], {}
    size = 3600 if granularity == "hour" else 86400
    bucket = (ts[mask] // size).astype(np.int64)
    is_click = (kind[mask] == _CLICK).astype(np.int64)
    first = int(bucket.min())
    span = int(bucket.max()) - first + 1
    fmt = "%Y-%m-%dT%H:00Z" if granularity == "hour" else "%Y-%m-%d"

    def rows(keys: np.ndarray, counts: np.ndarray) -> list[dict]:
        per: dict[int, list[int]] = {}
        for key, cnt in zip(keys.tolist(), counts.tolist(), strict=True):
            per.setdefault(key // 2, [0, 0])[key % 2] = cnt
        return [
            {
                "bucket": datetime.fromtimestamp((b + first) * size, UTC).strftime(fmt),
                "opens": oc[0],
                "clicks": oc[1],
            }
            for b, oc in sorted(per.items())
        ]

    offset = (bucket - first) * 2 + is_click
    overall = rows(*np.unique(offset, return_counts=True))
    keys, counts = np.unique(step[mask].astype(np.int64) * (span * 2) + offset, return_counts=True)
    per_step: dict[int, list[dict]] = {}
    codes = keys // (span * 2)
    for code in np.unique(codes).tolist():
        m = codes == code
        per_step[code] = rows(keys[m] - code * span * 2, counts[m])
    return overall, per_step


def report(
    ws: Workspace,
    campaign: str,
    step: str | None = None,
    *,
    transport: str | None = None,
    edition: int | None = None,
    now: datetime | None = None,
) -> Report:
    """Build the report of one edition of ``campaign`` (optionally one ``step``) from the
    ledger. The default edition is the latest one with sends, up to the current one."""
    now = now or datetime.now(UTC)
    c = campaign_for(ws, campaign, step, edition, now)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        c, tname, data = read(ledger, c, step, transport=transport, latest=edition is None, now=now)
    return build(c, data, tname, step, now=now)


def campaign_for(
    ws: Workspace, campaign: str, step: str | None, edition: int | None, now: datetime
) -> Campaign:
    """The campaign a report is about, checked: the file loads, the step exists."""
    c = load_campaign(ws.root, campaign, edition=edition, now=now)
    if step is not None:
        c.step(step)  # raises with the list of steps
    return c


def read(
    ledger: Ledger,
    c: Campaign,
    step: str | None,
    *,
    transport: str | None,
    latest: bool,
    now: datetime,
) -> tuple[Campaign, str | None, Loaded]:
    """What :func:`build` needs from the store (``latest``: the latest edition with sends
    rather than ``c``'s). The part of a report that holds the store: the web service runs
    it through its connection, then builds the report apart."""
    ledger.date_old_rows(c)
    if latest:
        c = c.for_edition(latest_edition(ledger, c, now))
    tname = choose_transport(ledger, c.name, c.edition, transport)
    window = (c.edition_end(c.edition - 1), c.edition_end(c.edition))
    return c, tname, load(ledger, c.name, c.edition, tname, step, window)


def latest_edition(ledger: Ledger, c: Campaign, now: datetime) -> int:
    """The edition a report is about by default: the latest with sends, up to the current."""
    current = c.current_edition(now)
    sent = [e for e in ledger.editions(c.name) if e <= current]
    return max(sent) if sent else current


# ------------------------------------------------------------------------------------------
# Two editions side by side

COMPARED = (
    "sent",
    "delivered",
    "delivered_rate",
    "opens_unique",
    "open_rate",
    "clicks_unique",
    "click_rate",
    "unsubscribes",
    "unsubscribe_rate",
)


@dataclass
class Comparison:
    """One edition's figures beside another's, per step, with the change (rates in points)."""

    campaign: str
    title: str
    edition: int
    other: int
    transport: str | None
    generated_at: str
    steps: list[dict]  # step, metrics {name: {edition, other, change}}, links [...]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "format": COMPARE_FORMAT,
            "campaign": self.campaign,
            "title": self.title,
            "edition": self.edition,
            "compared_with": self.other,
            "transport": self.transport,
            "generated_at": self.generated_at,
            "steps": self.steps,
            "notes": self.notes,
        }


COMPARE_FORMAT = "outreach-report-comparison/1"


def _change(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(a - b, 4)


def compare(this: Report, other: Report) -> Comparison:
    """``this`` edition against ``other``: every compared metric per step, and clicks per
    named link (``change`` = this − other; for rates, in fractions of 1)."""
    steps = []
    theirs = {s.step: s for s in other.steps}
    order = [s.step for s in this.steps] + [
        s.step for s in other.steps if s.step not in {x.step for x in this.steps}
    ]
    mine = {s.step: s for s in this.steps}
    empty = _with_rates({})
    for sid in order:
        a = mine[sid].totals if sid in mine else empty
        b = theirs[sid].totals if sid in theirs else empty
        metrics = {
            m: {"edition": a[m], "other": b[m], "change": _change(a[m], b[m])} for m in COMPARED
        }
        la = {x["link"]: x for x in (mine[sid].links if sid in mine else [])}
        lb = {x["link"]: x for x in (theirs[sid].links if sid in theirs else [])}
        links = []
        for name in list(la) + [n for n in lb if n not in la]:
            ca = la.get(name, {}).get("clicks_unique", 0)
            cb = lb.get(name, {}).get("clicks_unique", 0)
            links.append(
                {"link": name, "clicks_unique": {"edition": ca, "other": cb, "change": ca - cb}}
            )
        steps.append({"step": sid, "metrics": metrics, "links": links})
    shared = [n for n in this.notes if n in other.notes]
    notes = shared + [
        f"{rep.edition}: {n}" for rep in (this, other) for n in rep.notes if n not in shared
    ]
    return Comparison(
        campaign=this.campaign,
        title=this.title,
        edition=this.edition,
        other=other.edition,
        transport=this.transport,
        generated_at=this.generated_at,
        steps=steps,
        notes=notes,
    )


def comparison(
    ws: Workspace,
    campaign: str,
    other: int,
    step: str | None = None,
    *,
    transport: str | None = None,
    edition: int | None = None,
    now: datetime | None = None,
) -> Comparison:
    """``outreach report CAMPAIGN --compare OTHER``: an edition beside another."""
    this = report(ws, campaign, step, transport=transport, edition=edition, now=now)
    if other == this.edition:
        raise ConfigError(
            f"--compare {other} is the edition being reported",
            hint="compare with another year, e.g. --compare " + str(this.edition - 1),
        )
    that = report(ws, campaign, step, transport=transport or this.transport, edition=other, now=now)
    return compare(this, that)


def step_health(ledger: Ledger, c: Campaign, transport: str, step: str) -> Health:
    """The complaint and hard-bounce rates of one step of ``c``'s edition (the figures
    ``report`` shows)."""
    window = (c.edition_end(c.edition - 1), c.edition_end(c.edition))
    data = load(ledger, c.name, c.edition, transport, step, window)
    return build(c, data, transport, step).steps[0].reputation


def build(
    c: Campaign,
    data: Loaded,
    transport: str | None,
    step: str | None = None,
    *,
    now: datetime | None = None,
) -> Report:
    """The report from what :func:`load` read."""
    notes: list[str] = []
    sends = data.sends.copy()
    sends["is_sent"] = (sends["status"] == "sent").to_numpy()
    for dim in DIMENSIONS:
        sends[dim] = _or_none(sends[dim].to_numpy(dtype=object))
    # attach events to their send rows: per-send counts of each kind
    pos = data.ev_row
    k = len(KINDS)
    counts = np.bincount(pos.astype(np.int64) * k + data.ev_kind, minlength=len(sends) * k).reshape(
        len(sends), k
    )
    for j, name in enumerate(KINDS):
        sends[name] = counts[:, j]
    # a send counts in the report if it was sent, or if events say it went out
    has_events = counts.sum(axis=1) > 0
    frame = sends[sends["is_sent"] | has_events]
    not_sent_with_events = int((~sends["is_sent"] & has_events).sum())
    if not_sent_with_events:
        notes.append(
            f"{not_sent_with_events} message(s) whose ledger status is not 'sent' (e.g. 'unknown') "
            "have events; they are included in the per-step figures but not in 'sent'"
        )

    ts = data.ev_ts[~np.isnan(data.ev_ts)]
    span = float(ts.max() - ts.min()) if len(ts) else 0.0
    granularity = "hour" if span <= 3 * 86400 else "day"

    namer = LinkNamer(c)
    steps_out: list[StepReport] = []
    order = [s.id for s in c.steps if step is None or s.id == step]
    # each event's and click's step, as a code of its send's step
    send_step, step_ids = pd.factorize(sends["step"].to_numpy(dtype=object))
    step_code = {str(sid): i for i, sid in enumerate(step_ids)}
    ev_step = send_step[pos]
    click_step = send_step[data.click_row]
    timeline, timelines = _timelines(ev_step, data.ev_kind, data.ev_ts, granularity)
    flags = _flags(frame)
    step_codes, step_names = pd.factorize(frame["step"].to_numpy(dtype=object), sort=True)
    step_names = pd.Index(step_names)
    totals_by_step = flags.groupby(step_codes).sum()
    totals_by_step.index = step_names[totals_by_step.index]
    by_step = {dim: _group_metrics(flags, step_codes, step_names, frame[dim]) for dim in DIMENSIONS}
    for sid in order:
        if sid not in totals_by_step.index and step is None:
            continue
        code = step_code.get(sid, -1)
        totals = (
            _with_rates(totals_by_step.loc[sid].to_dict())
            if sid in totals_by_step.index
            else _with_rates({})
        )
        by = {dim: by_step[dim].get(sid, []) for dim in DIMENSIONS}
        m = click_step == code
        links = _links(data.click_url[m], data.click_row[m], namer)
        steps_out.append(
            StepReport(sid, totals, by, links, timelines.get(code, []), assess(sid, totals, by))
        )

    top = _top_countries(frame)
    matched = int(data.stored)
    if not matched:
        notes.insert(
            0,
            "no tracking events recorded for this campaign yet: delivery, opens and clicks are 0 "
            "until SendGrid's Event Webhook (outreach serve) or an import brings them",
        )
    if data.unmatched:
        notes.append(
            f"{data.unmatched} event(s) name this campaign but match no message in the ledger "
            "(kept as unmatched, not counted)"
        )
    if step is not None and frame[frame["step"] == step].empty:
        notes.append(f"nothing has been sent for step {step!r} yet")
    elif not steps_out:
        notes.append(
            f"nothing has been sent for the {c.edition} edition"
            f"{' through ' + transport if transport else ''} yet"
        )
    shared = [names for names in namer.by_url.values() if len(names) > 1]
    if shared:
        notes.append(
            "links sharing one URL cannot be told apart in clicks: "
            + "; ".join(", ".join(n) for n in shared)
        )
    return Report(
        campaign=c.name,
        title=c.title,
        edition=c.edition,
        transport=transport,
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        step_filter=step,
        granularity=granularity,
        events_matched=matched,
        events_unmatched=int(data.unmatched),
        steps=steps_out,
        timeline=timeline,
        top_countries=top,
        notes=notes,
    )


def _links(url: np.ndarray, row: np.ndarray, namer: LinkNamer) -> list[dict]:
    """Clicks per link label: total, and unique (distinct sends); ``url`` and ``row`` are the
    clicks' URLs and their sends' rows."""
    if not len(url):
        return []
    inv, urls = pd.factorize(url.astype(str), sort=True)
    named = [namer.names(u) for u in urls]
    label_of_url, labels = pd.factorize(np.array([n[0] for n in named], dtype=object))
    label = label_of_url[inv]
    n = len(labels)
    total = np.bincount(label, minlength=n)
    unique = np.bincount(np.unique(row.astype(np.int64) * n + label) % n, minlength=n)
    # each label's URL: the smallest of its clicked URLs (the same whatever order the store
    # returned the clicks in)
    shown = np.full(n, len(urls))
    np.minimum.at(shown, label_of_url, np.arange(len(urls)))
    out = []
    for i, lab in enumerate(labels.tolist()):
        names = named[shown[i]][1]
        if names:
            link_url = namer.links_url(names[0])
        else:
            link_url = None if str(lab).startswith("share:") else urls[shown[i]]
        out.append(
            {
                "link": str(lab),
                "names": names,
                "url": link_url,
                "clicks_total": int(total[i]),
                "clicks_unique": int(unique[i]),
            }
        )
    out.sort(key=lambda m: (-m["clicks_unique"], -m["clicks_total"], m["link"]))
    return out


def _top_countries(frame: pd.DataFrame) -> list[dict]:
    if frame.empty:
        return []
    f = frame[frame["country"] != "(none)"]
    if f.empty:
        return []
    g = pd.DataFrame(
        {
            "country": f["country"],
            "country_status": f["country_status"],
            "sent": f["is_sent"].astype(int),
            "engaged": ((f["open"] > 0) | (f["click"] > 0)).astype(int),
            "opens": (f["open"] > 0).astype(int),
            "clicks": (f["click"] > 0).astype(int),
        }
    )
    agg = g.groupby("country", sort=True).agg(
        country_status=("country_status", "first"),
        sent=("sent", "sum"),
        engaged=("engaged", "sum"),
        opens=("opens", "sum"),
        clicks=("clicks", "sum"),
    )
    agg = agg[agg["engaged"] > 0]
    agg["engagement_rate"] = [_rate(e, s) for e, s in zip(agg["engaged"], agg["sent"], strict=True)]
    agg = agg.sort_values(
        ["engaged", "clicks", "sent"], ascending=[False, False, True], kind="stable"
    ).head(TOP_COUNTRIES)
    return [
        {
            "country": str(code),
            "country_status": str(r["country_status"]),
            "sent": int(r["sent"]),
            "engaged": int(r["engaged"]),
            "opens_unique": int(r["opens"]),
            "clicks_unique": int(r["clicks"]),
            "engagement_rate": r["engagement_rate"],
        }
        for code, r in agg.iterrows()
    ]
