"""One error hierarchy for everything a user can get wrong or meet at run time.

Every error carries *where* it happened (a file and line, a CSV row, a template line,
an HTTP status) and, where we know it, *what to do next*. The CLI turns these into
``click.ClickException`` in one place (``outreach.cli``); nothing else prints tracebacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a user's file: ``path:line`` plus an optional key path or column."""

    path: str | Path | None = None
    line: int | None = None
    key: str | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.path is not None:
            p = str(self.path)
            if self.line is not None:
                p += f":{self.line}"
            parts.append(p)
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.key:
            parts.append(self.key)
        return ": ".join(parts)


class OutreachError(Exception):
    """Base class. ``str(err)`` is the one-line message a user sees (plus an optional hint)."""

    def __init__(
        self,
        message: str,
        *,
        where: Location | str | None = None,
        hint: str | None = None,
        details: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint
        self.details = details or []

    def __str__(self) -> str:
        head = f"{self.where}: {self.message}" if self.where else self.message
        lines = [head, *(f"  {d}" for d in self.details)]
        if self.hint:
            lines.append(f"  → {self.hint}")
        return "\n".join(lines)


class WorkspaceError(OutreachError):
    """The workspace folder is missing something (campaigns/, lists/, templates/)."""


class ConfigError(OutreachError):
    """A campaign file is malformed or inconsistent."""


class ListError(OutreachError):
    """A contact list cannot be read, or has errors that block a send."""


class CountryDataError(OutreachError):
    """lists/countries.csv (or the shared source data) is malformed."""


class TemplateError(OutreachError):
    """A template does not parse, uses an undefined variable, or does not compile."""


class LedgerError(OutreachError):
    """The send ledger / event store cannot be opened or is inconsistent."""


class SendAborted(OutreachError):
    """The user declined, or a safety guard (late send, unknown outcomes) stopped the run."""


class TransportError(OutreachError):
    """Delivery failed. Subclasses say whether retrying can help."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None, **kw):
        super().__init__(message, **kw)
        self.status = status
        self.body = body


class TransientError(TransportError):
    """Retrying later may succeed (5xx, 429, timeout before the request was sent)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PermanentError(TransportError):
    """The provider rejected this batch; other batches may still go (e.g. one bad address)."""


class FatalError(TransportError):
    """The run cannot continue (bad key, forbidden, payload too large): stop everything."""


class UnknownOutcome(TransportError):
    """The request may or may not have been accepted (e.g. timeout after sending)."""


class EventError(OutreachError):
    """An event file or webhook body cannot be ingested."""
