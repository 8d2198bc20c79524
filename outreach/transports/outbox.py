"""The outbox: every message becomes a real ``.eml`` file; nothing is emailed.

Files go to ``outbox/<campaign>/<edition>/<step>/`` (test sends to ``…/<step>/tests/``) with an
``index.html`` that lists them. Each file is written atomically (temporary file, then rename),
and its name is derived from the send id, so after a crash the outbox can tell exactly which
messages were written: reconciliation never has to guess.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path

from outreach.ledger import Ledger, Row
from outreach.transports.base import Batch, Capability, Delivery, Recipient, Transport

_SAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def eml_name(email: str, send_id: str) -> str:
    return f"{_SAFE.sub('_', email)[:80]}--{send_id[-12:]}.eml"


class OutboxTransport(Transport):
    name = "outbox"
    real = False
    max_batch = 100
    capabilities = Capability.WRITES_INDEX

    def step_dir(self, step: str, test: bool = False) -> Path:
        d = self.workspace.outbox_dir / self.campaign.name / str(self.campaign.edition) / step
        return d / "tests" if test else d

    def message_id(self, send_id: str) -> str:
        domain = self.campaign.sender.from_email.rpartition("@")[2]
        return f"<{send_id}@{domain}>"

    def _deliver(self, batch: Batch) -> Delivery:
        folder = self.step_dir(batch.step.id, batch.test)
        folder.mkdir(parents=True, exist_ok=True)
        ids = {}
        nbytes = 0
        for r in batch.recipients:
            data = self.to_bytes(batch, r)
            path = folder / eml_name(r.to or r.contact.email, r.send_id)
            tmp = path.with_suffix(".eml.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            nbytes += len(data)
            ids[r.send_id] = self.message_id(r.send_id)
        self.count(requests=1, nbytes=nbytes)
        return Delivery(ids)

    def to_bytes(self, batch: Batch, r: Recipient) -> bytes:
        msg = self.message_for(batch, r)
        to_addr = r.to or r.contact.email
        # no folding: a folded List-Unsubscribe gets RFC 2047-encoded, which breaks it
        base = policy.SMTP if to_addr.isascii() else policy.SMTPUTF8
        em = EmailMessage(policy=base.clone(max_line_length=998))
        em["From"] = self.from_header()
        em["To"] = formataddr(("" if r.to else r.contact.full_name, to_addr))
        em["Reply-To"] = self.reply_to_header()
        em["Subject"] = msg.subject
        em["Date"] = format_datetime(r.send_at or datetime.now(UTC))
        em["Message-ID"] = self.message_id(r.send_id)
        for k, v in self.headers(r, batch.test).items():
            em[k] = v
        em["X-Outreach-Campaign"] = self.campaign.name
        em["X-Outreach-Step"] = batch.step.id
        em["X-Outreach-Send-Id"] = r.send_id
        em["X-Outreach-Variant"] = batch.variant.id
        if r.send_at:
            em["X-Outreach-Deliver-At"] = r.send_at.isoformat()
        em.set_content(msg.text, charset="utf-8")
        em.add_alternative(msg.html, subtype="html", charset="utf-8")
        return em.as_bytes()

    def reconcile(self, rows: Iterable[Row]) -> dict[str, tuple[str, str | None]]:
        """A pending row is sent if and only if its file exists (files are renamed into place)."""
        out: dict[str, tuple[str, str | None]] = {}
        for r in rows:
            hits = list(
                self.workspace.outbox_dir.glob(
                    f"{self.campaign.name}/*/*/{eml_name(r.email, r.send_id)}"
                )
            )
            if hits:
                out[r.send_id] = ("sent", self.message_id(r.send_id))
            else:
                out[r.send_id] = ("retry", "the run stopped before this message was written")
        for tmp in self.workspace.outbox_dir.glob(f"{self.campaign.name}/*/*/*.eml.tmp"):
            tmp.unlink(missing_ok=True)
        return out

    def write_index(self, ledger: Ledger, step: str) -> Path | None:
        """``outbox/<campaign>/<step>/index.html`` linking every message written for the step."""
        folder = self.step_dir(step)
        rows = ledger.sent_rows_for_index(
            self.campaign.name, self.campaign.edition, step, self.name
        )
        if not rows and not folder.exists():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        items = []
        for r in rows:
            name = eml_name(r["email"], r["send_id"])
            items.append(
                "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>".format(
                    html.escape(name),
                    html.escape(r["email"]),
                    html.escape(r["relationship"] or ""),
                    html.escape(r["country"] or "—"),
                    html.escape(r["country_status"] or ""),
                    html.escape(r["language"] or ""),
                    html.escape(r["variant"] or ""),
                )
            )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Outbox: {html.escape(self.campaign.name)} / {html.escape(step)}</title>
<style>body{{font:14px/1.4 system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}}.note{{background:#fff3cd;padding:8px}}</style>
</head><body>
<h1>Outbox: {html.escape(self.campaign.title)} — step <code>{html.escape(step)}</code></h1>
<p class="note">Nothing here was emailed. These are the messages the <b>outbox</b> transport wrote,
exactly as they would be sent ({len(rows)} messages). Open an <code>.eml</code> file with a mail client.</p>
<table><thead><tr><th>message</th><th>to</th><th>relationship</th><th>country</th><th>status</th><th>language</th><th>variant</th></tr></thead>
<tbody>
{chr(10).join(items)}
</tbody></table></body></html>
"""
        path = folder / "index.html"
        path.write_text(page, encoding="utf-8")
        return path
