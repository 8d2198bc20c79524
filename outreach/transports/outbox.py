"""The outbox: every message becomes a real ``.eml`` file; nothing is emailed.

Files go to ``outbox/<campaign>/<edition>/<step>/`` (test sends to ``…/<step>/tests/``) with an
``index.html`` that lists them. Each file is written atomically (temporary file, then rename),
and its name is derived from the send id, so after a crash the outbox can tell exactly which
messages were written: reconciliation never has to guess.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path

from outreach.ledger import Ledger, Row
from outreach.transports.base import Batch, Delivery, Recipient, Transport
from outreach.web.templating import render_document

_SAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def eml_name(email: str, send_id: str) -> str:
    return f"{_SAFE.sub('_', email)[:80]}--{send_id[-12:]}.eml"


class OutboxTransport(Transport):
    name = "outbox"
    real = False
    max_batch = 100

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
        for r in batch.recipients:
            data = self.to_bytes(batch, r)
            path = folder / eml_name(r.to or r.contact.email, r.send_id)
            tmp = path.with_suffix(".eml.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            self.bytes_sent += len(data)
            ids[r.send_id] = self.message_id(r.send_id)
        self.requests += 1
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
        """``outbox/<campaign>/<edition>/<step>/index.html`` linking every message written for
        the step."""
        folder = self.step_dir(step)
        rows = ledger.sent_rows_for_index(
            self.campaign.name, self.campaign.edition, step, self.name
        )
        if not rows and not folder.exists():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        messages = [
            {
                "file": eml_name(r["email"], r["send_id"]),
                "email": r["email"],
                "relationship": r["relationship"] or "",
                "country": r["country"] or "—",
                "country_status": r["country_status"] or "",
                "language": r["language"] or "",
                "variant": r["variant"] or "",
            }
            for r in rows
        ]
        page = render_document(
            "outbox/index.html",
            campaign=self.campaign.name,
            title=self.campaign.title,
            edition=self.campaign.edition,
            step=step,
            messages=messages,
        )
        path = folder / "index.html"
        path.write_text(page, encoding="utf-8")
        return path
