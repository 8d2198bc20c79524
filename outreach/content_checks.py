"""Checks on what a campaign sends: unfilled links, the unsubscribe endpoint's readiness,
SendGrid's category limits, Gmail's clipping size, images without alt text and the
SpamAssassin score of the worst variant.

All but SpamAssassin are fast and need no network: the ``send`` plan runs them too. They look
at the rendered variants of a :class:`~outreach.send.SendPlan`, each filled with the values of
its first recipient (the sizes and markup of one variant barely differ between recipients).
"""

from __future__ import annotations

import mailbox
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from outreach.checks import Area, Check, fail, ok, warn

if TYPE_CHECKING:
    from outreach.campaign import Campaign
    from outreach.send import SendPlan
    from outreach.transports.base import Batch, Recipient
    from outreach.workspace import Workspace

GMAIL_CLIP = 102 * 1024  # Gmail shows "[Message clipped]" above about 102 KB of HTML
CLIP_MARGIN = 0.85  # warn above 85 % of it
CLICK_TRACKING_BYTES = 350  # a link rewritten by SendGrid's click tracking grows about this much
OPEN_PIXEL_BYTES = 300  # SendGrid's open-tracking pixel
MAX_CATEGORIES = 10  # per message (SendGrid)
MAX_CATEGORY_LENGTH = 255
DAILY_CATEGORY_STATS = 100  # categories with daily statistics on SendGrid's free plan (paid: 1,000)
SPAM_FAIL = 5.0  # SpamAssassin's own "this is spam" threshold
SPAM_WARN = 1.0  # the project's target for every variant
_LINK = re.compile(r"""<a\s[^>]*href\s*=\s*["']https?://""", re.IGNORECASE)


@dataclass
class Sample:
    """One variant of a step, filled for its first recipient."""

    step: str
    batch: Batch
    recipient: Recipient

    @property
    def variant_id(self) -> str:
        return self.batch.variant.id

    @property
    def html(self) -> str:
        return self.batch.variant.fill(self.recipient.values).html


def samples(plan: SendPlan) -> list[Sample]:
    """One :class:`Sample` per variant of every planned step."""
    out = []
    for sp in plan.steps:
        seen: set[str] = set()
        for batch in sp.batches:
            if batch.variant.id not in seen and batch.recipients:
                seen.add(batch.variant.id)
                out.append(Sample(sp.step.id, batch, batch.recipients[0]))
    return out


def todo_links(campaign: Campaign) -> Check:
    title = "Links"
    unfilled = campaign.unfilled_links()
    if not unfilled:
        return ok(
            "content.links", Area.CONTENT, title, f"all {len(campaign.links)} links filled in"
        )
    return warn(
        "content.links",
        Area.CONTENT,
        title,
        f"{len(unfilled)} link(s) still marked todo: {', '.join(n for n, _ in unfilled)}",
        f"paste the real addresses in campaigns/{campaign.path.name} (links → url) and delete "
        "their todo: lines",
        details=[
            f"{campaign.where('links', name)}: {link.todo or link.url}" for name, link in unfilled
        ],
    )


def unsubscribe_ready(campaign: Campaign) -> Check:
    """The campaign's own one-click unsubscribe endpoint: configured and marked deployed."""
    unsub = campaign.spec.unsubscribe
    title = "Unsubscribe endpoint"
    if not unsub.url:
        return warn(
            "endpoints.configured",
            Area.ENDPOINTS,
            title,
            "no unsubscribe.url: messages rely on SendGrid's unsubscribe link and headers",
            "deploy `outreach events serve` and set unsubscribe.url (one-click, RFC 8058)",
        )
    if unsub.todo:
        return fail(
            "endpoints.configured",
            Area.ENDPOINTS,
            title,
            f"marked not deployed yet ({unsub.todo}): every unsubscribe link of a real send "
            "would lead nowhere",
            f"deploy `outreach events serve` at {unsub.url.rsplit('/', 1)[0]}, then delete "
            f"unsubscribe.todo ({campaign.where('unsubscribe', 'todo')})",
        )
    return ok(
        "endpoints.configured",
        Area.ENDPOINTS,
        title,
        f"{unsub.url}/<send id> in every message (List-Unsubscribe-Post one-click)",
    )


def categories(campaign: Campaign) -> Check:
    """SendGrid's limits: 10 categories per message, 255 characters each; daily statistics
    are kept for 100 categories on the free plan (1,000 on paid plans)."""
    own = list(campaign.spec.sendgrid.categories)
    per_step = [list(dict.fromkeys([*own, campaign.name, s.id])) for s in campaign.steps]
    most = max((len(c) for c in per_step), default=len(own))
    distinct = len({c for cats in per_step for c in cats})
    long = [c for cats in per_step for c in cats if len(c) > MAX_CATEGORY_LENGTH]
    title = "SendGrid categories"
    where = campaign.where("sendgrid", "categories")
    if most > MAX_CATEGORIES or long:
        return fail(
            "sendgrid.categories",
            Area.SENDGRID,
            title,
            f"{most} per message (SendGrid allows {MAX_CATEGORIES})"
            + (f"; {len(long)} longer than {MAX_CATEGORY_LENGTH} characters" if long else ""),
            f"list at most 8 categories in {where} (outreach adds the campaign and step ids)",
        )
    result = (
        f"{most} per message (limit {MAX_CATEGORIES}), {distinct} for the whole campaign "
        f"(statistics are kept for {DAILY_CATEGORY_STATS} a day on the free plan)"
    )
    if distinct > DAILY_CATEGORY_STATS:
        return warn(
            "sendgrid.categories",
            Area.SENDGRID,
            title,
            result,
            "use fewer distinct categories, or check that your plan keeps statistics for more",
        )
    return ok("sendgrid.categories", Area.SENDGRID, title, result)


def clipping(plan: SendPlan) -> Check:
    """The largest message's HTML against Gmail's clipping size (with SendGrid's tracking)."""
    title = "Gmail clipping (102 KB)"
    found = samples(plan)
    if not found:
        return ok("content.size", Area.CONTENT, title, "no message to measure (no recipients)")
    tracking = plan.campaign.spec.sendgrid.tracking
    sizes = []
    for s in found:
        html = s.html
        size = len(html.encode())
        if tracking.clicks:
            size += CLICK_TRACKING_BYTES * len(_LINK.findall(html))
        if tracking.opens:
            size += OPEN_PIXEL_BYTES
        sizes.append((size, s))
    size, worst = max(sizes, key=lambda t: t[0])
    with_tracking = " with SendGrid's tracking" if tracking.clicks or tracking.opens else ""
    result = (
        f"largest message about {size / 1024:.0f} KB{with_tracking} (step {worst.step}, variant "
        f"{worst.variant_id})"
    )
    if size > GMAIL_CLIP:
        return fail(
            "content.size",
            Area.CONTENT,
            title,
            result + ": Gmail will hide its end, including the unsubscribe link",
            "shorten the template or move long parts to a web page",
        )
    if size > GMAIL_CLIP * CLIP_MARGIN:
        return warn(
            "content.size",
            Area.CONTENT,
            title,
            result + f", only {(GMAIL_CLIP - size) / 1024:.0f} KB below the clip",
            "shorten the template before adding more",
        )
    return ok(
        "content.size",
        Area.CONTENT,
        title,
        result + f", {(GMAIL_CLIP - size) / 1024:.0f} KB margin",
    )


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.missing: list[str] = []
        self.total = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        self.total += 1
        a = dict(attrs)
        if "alt" not in a:  # alt="" is right for a decorative image
            self.missing.append(a.get("src") or "(no src)")


def alt_text(plan: SendPlan) -> Check:
    title = "Image alt text"
    problems: dict[str, list[str]] = {}
    total = 0
    for s in samples(plan):
        parser = _Images()
        parser.feed(s.html)
        total += parser.total
        for src in parser.missing:
            problems.setdefault(src, []).append(f"{s.step}/{s.variant_id}")
    if not total:
        return ok("content.alt", Area.CONTENT, title, "the messages have no images")
    if not problems:
        return ok("content.alt", Area.CONTENT, title, f"every image has alt text ({total} checked)")
    return warn(
        "content.alt",
        Area.CONTENT,
        title,
        f"{len(problems)} image(s) without alt text: readers with images off or a screen reader "
        "see nothing there",
        'add alt="…" to each <mj-image> (alt="" for a purely decorative one)',
        details=[f"{src} (in {', '.join(sorted(set(v))[:3])})" for src, v in problems.items()],
    )


# ------------------------------------------------------------------------------------------
# SpamAssassin


def spamassassin(plan: SendPlan, ws: Workspace, timeout: float = 600.0) -> Check | None:
    """The worst SpamAssassin score (``spamassassin -t -L``, local tests only) over one rendered
    message per variant; None where spamassassin is not installed."""
    exe = shutil.which("spamassassin")
    found = samples(plan)
    if exe is None or not found:
        return None
    from outreach.transports.outbox import OutboxTransport

    writer = OutboxTransport(ws, plan.campaign)
    title = "SpamAssassin"
    with tempfile.TemporaryDirectory(prefix="outreach-sa-") as tmp:
        box_path = Path(tmp) / "messages.mbox"
        box = mailbox.mbox(box_path)
        for s in found:
            box.add(writer.to_bytes(s.batch, s.recipient))
        box.flush()
        box.close()
        try:
            with box_path.open("rb") as stdin:
                proc = subprocess.run(
                    [exe, "-t", "-L", "--mbox"],
                    stdin=stdin,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            return warn(
                "content.spam",
                Area.CONTENT,
                title,
                f"did not finish within {timeout:.0f} s",
                "run doctor again on a less busy machine",
            )
    scores = parse_spam_status(proc.stdout.decode("utf-8", "replace"))
    if len(scores) != len(found):
        return warn(
            "content.spam",
            Area.CONTENT,
            title,
            f"could not read its scores (exit {proc.returncode}: "
            f"{proc.stderr.decode('utf-8', 'replace').strip()[:200]})",
            "run `spamassassin -t -L` on a message of outbox/ to see why",
        )
    (score, tests), worst = max(zip(scores, found, strict=True), key=lambda t: t[0][0])
    result = (
        f"worst variant scores {score:.1f} (step {worst.step}, variant {worst.variant_id}; "
        f"{len(found)} variants scored)"
    )
    details = [f"rules: {', '.join(tests)}"] if tests else []
    if score >= SPAM_FAIL:
        return fail(
            "content.spam",
            Area.CONTENT,
            title,
            result + f": {SPAM_FAIL:g} or more is spam",
            "fix what the rules listed point at (hidden text, low contrast, long lines…)",
            details=details,
        )
    if score >= SPAM_WARN:
        return warn(
            "content.spam",
            Area.CONTENT,
            title,
            result + f" (target: below {SPAM_WARN:g})",
            "fix what the rules listed point at (hidden text, low contrast, long lines…)",
            details=details,
        )
    return ok("content.spam", Area.CONTENT, title, result, details=details)


_STATUS = re.compile(
    r"^X-Spam-Status: \w+, score=(-?[\d.]+)\s.*?tests=(.*?)\s+(?:autolearn|version)=", re.M | re.S
)


def parse_spam_status(output: str) -> list[tuple[float, list[str]]]:
    """(score, rule names) of each message in ``spamassassin -t`` output, in order."""
    out = []
    for m in _STATUS.finditer(output):
        tests = [t.strip() for t in re.sub(r"\s+", "", m.group(2)).split(",") if t.strip()]
        out.append((float(m.group(1)), [t for t in tests if t != "none"]))
    return out
