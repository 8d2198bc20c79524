"""The outbox: every message becomes a real ``.eml`` file; nothing is emailed.

Files go to ``outbox/<campaign>/<edition>/<step>/`` (test sends to ``…/<step>/tests/``) with an
``index.html`` that lists them. Each file is written atomically (temporary file, then rename),
and its name is derived from the send id, so after a crash the outbox can tell exactly which
messages were written: reconciliation never has to guess.

The files are strict MIME: both parts quoted-printable with lines of at most 76 characters
(RFC 2045), header lines folded at 76 where a space allows it and never longer than 998
(RFC 5322). ``List-*`` headers are never RFC 2047-encoded, so ``List-Unsubscribe`` stays a
list of ``<URI>`` that mail clients can use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from outreach.ledger import Ledger, Row
from outreach.transports.base import Batch, Capability, Delivery, Recipient, Transport
from outreach.web.templating import render_document

_SAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
_HARD_LIMIT = 998  # RFC 5322 §2.1.1: characters per line, without the CRLF


class _ListHeader(UnstructuredHeader):
    """An RFC 2369/2919/8058 ``List-*`` header: ASCII, kept exactly as written.

    The generic header parser would decode an RFC 2047 List-Id description and re-encode it
    on output; these values are built ASCII (base.py) and are written as they are.
    """

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict) -> None:
        if not value.isascii():
            raise ValueError(f"a List-* header must be ASCII: {value!r}")
        super().parse(value, kwds)
        kwds["decoded"] = value


class _Policy(EmailPolicy):
    """SMTP policy that folds unstructured headers (``Subject``, ``List-*``, ``X-*``) itself.

    Python's folder RFC 2047-encodes a token that does not fit on a line, which turns
    ``List-Unsubscribe: <mailto:…>`` into ``=?utf-8?q?=3Cmailto…?=`` that no client reads as
    a URI; and it moves a whole value that does not fit after ``Subject:`` to a line of its
    own, which its own parser then reads with a leading space. Here an unstructured value is
    folded greedily before a space (RFC 5322 folding: unfolding gives the value back), so its
    first line is never empty and a ``<URI>`` is never cut; words that are not ASCII become
    RFC 2047 encoded words (runs of them together, so the spaces between them survive), unless
    the message is SMTPUTF8. ``List-*`` values are ASCII by construction and written as they
    are. Structured headers (addresses, dates, content types) keep Python's folding.

    ``max_line_length`` is 76: RFC 2045's limit for quoted-printable lines (bodies are encoded
    with the policy's line length) and RFC 2047's for header lines with encoded words.
    """

    def fold(self, name: str, value: Any) -> str:
        if isinstance(value, UnstructuredHeader):
            return self._fold_words(name, value)
        return super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, UnstructuredHeader):
            return self._fold_words(name, value).encode("utf-8" if self.utf8 else "ascii")
        return super().fold_binary(name, value)

    def _fold_words(self, name: str, value: UnstructuredHeader) -> str:
        text = str(value)
        literal = self.utf8 or isinstance(value, _ListHeader)
        limit = self.max_line_length or _HARD_LIMIT
        # an encoded word cannot be folded: each one fits on the first line, after the name
        words = text.split(" ") if literal else _encoded_words(text, max(limit - len(name) - 2, 24))
        lines = [f"{name}:"]
        for i, word in enumerate(words):
            if i and len(lines[-1]) + 1 + len(word) > limit:
                lines.append("")
            lines[-1] += " " + word
        if any(len(line) > _HARD_LIMIT for line in lines):
            raise ValueError(f"{name}: a word longer than {_HARD_LIMIT} characters")
        return self.linesep.join(lines) + self.linesep


_UTF8_Q = Charset("utf-8")
_UTF8_Q.header_encoding = QP  # "Q" encoded words: the words stay readable in the raw file


def _encoded_words(text: str, width: int) -> list[str]:
    """The words of an unstructured value for an ASCII header: ASCII words as they are, each
    run of other words as RFC 2047 encoded words of at most ``width`` characters. A word
    containing ``=?`` is encoded too (a reader would decode it), and so is one too long for a
    line."""
    out: list[str] = []
    run: list[str] = []
    for word in text.split(" "):
        if (run and not word) or not word.isascii() or "=?" in word or len(word) > 900:
            run.append(word)
            continue
        if run:
            out += Header(" ".join(run), _UTF8_Q).encode(maxlinelen=width).split()
            run = []
        out.append(word)
    if run:
        out += Header(" ".join(run), _UTF8_Q).encode(maxlinelen=width).split()
    return out


def _policy(utf8: bool) -> _Policy:
    registry = HeaderRegistry()
    for name in ("list-id", "list-unsubscribe", "list-unsubscribe-post"):
        registry.map_to_type(name, _ListHeader)
    return _Policy(linesep="\r\n", max_line_length=76, utf8=utf8, header_factory=registry)


_POLICY = _policy(utf8=False)
_POLICY_UTF8 = _policy(utf8=True)  # an address that is not ASCII needs SMTPUTF8


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
        em = EmailMessage(policy=_POLICY if to_addr.isascii() else _POLICY_UTF8)
        em["From"] = self.from_header()
        # not formataddr, nor addr_spec=: both refuse a local part that is not ASCII, which
        # is valid here (RFC 6532, SMTPUTF8)
        local, _, domain = to_addr.rpartition("@")
        em["To"] = Address("" if r.to else r.contact.full_name, local, domain)
        em["Reply-To"] = self.reply_to_header()
        em["Subject"] = msg.subject
        em["Date"] = format_datetime(r.send_at or datetime.now(UTC))
        em["Message-ID"] = self.message_id(r.send_id)
        for k, v in (self.campaign_headers() | self.headers(r, batch.test)).items():
            em[k] = v
        em["X-Outreach-Campaign"] = self.campaign.name
        em["X-Outreach-Step"] = batch.step.id
        em["X-Outreach-Send-Id"] = r.send_id
        em["X-Outreach-Variant"] = batch.variant.id
        if r.send_at:
            em["X-Outreach-Deliver-At"] = r.send_at.isoformat()
        # quoted-printable whatever the text: 8bit would leave the HTML's long lines as they
        # are, and base64 hides the text from every reader of the raw file
        em.set_content(msg.text, charset="utf-8", cte="quoted-printable")
        em.add_alternative(msg.html, subtype="html", charset="utf-8", cte="quoted-printable")
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
