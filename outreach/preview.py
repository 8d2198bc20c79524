"""``outreach preview``: one recipient's message, written as HTML and text files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from outreach.contacts import Contact
from outreach.exceptions import OutreachError
from outreach.render import Message, Variant
from outreach.send import load
from outreach.transports.outbox import _SAFE
from outreach.workspace import Workspace


@dataclass
class PreviewResult:
    contact: Contact
    message: Message
    variant: Variant
    language: str
    edition: int
    html_path: Path
    text_path: Path
    identical_to_direct: bool


def find_contact(contacts: list[Contact], email: str | None, row: str | None) -> Contact:
    if email:
        key = email.strip().lower()
        for c in contacts:
            if c.key == key:
                return c
        raise OutreachError(
            f"no valid contact with address {email!r}",
            hint="run outreach lists check to see every contact",
        )
    assert row is not None
    source, _, num = row.rpartition(":")
    if not num.isdigit():
        raise OutreachError(
            f"--row {row!r} is not a row number",
            hint="use the row number a spreadsheet shows, e.g. --row 12",
        )
    for c in contacts:
        if c.row == int(num) and (not source or c.source == source):
            return c
    raise OutreachError(
        f"row {row} is not a valid contact",
        hint="the header is row 1; invalid rows cannot be previewed (outreach lists check explains why)",
    )


def preview(
    ws: Workspace,
    name: str,
    step_id: str,
    *,
    email: str | None = None,
    row: str | None = None,
    out_dir: Path | None = None,
    edition: int | None = None,
    now: datetime | None = None,
) -> PreviewResult:
    """Render ``step_id`` of an edition (default: the current one) for one contact exactly as
    it would be sent; write .html and .txt."""
    if not (email or row):
        raise OutreachError("say whose message to preview", hint="pass --contact EMAIL or --row N")
    loaded = load(ws, name, edition=edition, now=now)
    campaign, renderer, builder = loaded.campaign, loaded.renderer, loaded.builder
    step = campaign.step(step_id)
    contact = find_contact(loaded.contacts.contacts, email, row)
    template = step.spec.template
    _tpl, lang = renderer.resolve_template(template, contact.language)
    subject, _ = step.spec.text_for("subject", lang, campaign.default_language)
    preheader, _ = step.spec.text_for("preheader", lang, campaign.default_language)
    base = campaign.spec.unsubscribe.url
    data = builder.recipient(step, contact, lang, f"{base}/preview" if base else "")
    variant = renderer.variant(step.id, template, lang, data, subject or "", preheader)
    message = variant.fill(data.flat_values())
    direct = renderer.render_naive(template, lang, data, subject or "", preheader)
    folder = out_dir or ws.root / "previews" / campaign.name / str(campaign.edition) / step.id
    folder.mkdir(parents=True, exist_ok=True)
    stem = _SAFE.sub("_", contact.email)
    html_path = folder / f"{stem}.html"
    text_path = folder / f"{stem}.txt"
    html_path.write_text(message.html, encoding="utf-8")
    text_path.write_text(f"Subject: {message.subject}\n\n{message.text}", encoding="utf-8")
    return PreviewResult(
        contact, message, variant, lang, campaign.edition, html_path, text_path, direct == message
    )
