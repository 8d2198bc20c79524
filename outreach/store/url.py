"""``OUTREACH_DB``: which store a workspace uses, and how to show its URL without the password."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from outreach.exceptions import LedgerError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_PG_SCHEMES = ("postgresql", "postgres")
_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)", re.I)
_PARAM_PASSWORD = re.compile(r"(?P<head>\bpassword=)(?P<pw>[^&\s]*)", re.I)


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store address: the backend, the SQLite path or the PostgreSQL URL."""

    backend: str  # SQLITE or POSTGRESQL
    url: str  # as given (with its password: never print it, print `shown`)
    path: Path | None = None  # SQLite only

    @property
    def shown(self) -> str:
        """The URL as it may be printed or logged (password replaced by ``***``)."""
        return str(self.path) if self.path is not None else redact_url(self.url)


def redact_url(text: str) -> str:
    """``postgresql://user:***@host/db``: hide every URL password (and ``password=``) in text."""
    text = _PASSWORD.sub(lambda m: m["head"] + "***", text)
    return _PARAM_PASSWORD.sub(lambda m: m["head"] + "***", text)


def password_of(url: str) -> str | None:
    """The password inside a URL, for redacting it from any text (None without one)."""
    try:
        pw = urlsplit(url).password
    except ValueError:
        return None
    return unquote(pw) if pw else None


def parse(url: str, root: Path) -> StoreURL:
    """``sqlite:///relative.db`` (to the workspace), ``sqlite:////absolute.db``, a plain path,
    or ``postgresql://user:password@host:port/database``; anything else is an error."""
    if "://" not in url:
        p = Path(url)
        return StoreURL(SQLITE, url, p if p.is_absolute() else root / p)
    scheme = url.split("://", 1)[0].lower()
    if scheme in _PG_SCHEMES:
        parts = urlsplit(url)
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise LedgerError(
                "the PostgreSQL URL names no database",
                where=f"OUTREACH_DB={redact_url(url)}",
                hint="add the database: postgresql://user:password@host:5432/outreach",
            )
        return StoreURL(POSTGRESQL, url)
    if scheme != "sqlite":
        raise LedgerError(
            f"unsupported database URL scheme {scheme!r}",
            where=f"OUTREACH_DB={redact_url(url)}",
            hint="use sqlite:///path/to/outreach.db (the default, one machine) or "
            "postgresql://user:password@host:5432/database (a shared store)",
        )
    raw = unquote(urlsplit(url).path)
    if url.startswith("sqlite:////"):
        return StoreURL(SQLITE, url, Path("/" + raw.lstrip("/")))
    rel = raw[1:] if raw.startswith("/") else raw
    p = Path(rel)
    return StoreURL(SQLITE, url, p if p.is_absolute() else root / p)
