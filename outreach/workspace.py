"""The workspace: a folder with ``campaigns/``, ``lists/`` and ``templates/``.

It also owns the local state folder ``.outreach/`` (the SQLite ledger) and reads settings
and secrets from the environment or the workspace's ``.env`` file. Secrets are never printed:
:func:`redact` scrubs them from any text that might reach a terminal or a log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from outreach.exceptions import WorkspaceError

SECRET_NAMES = ("SENDGRID_API_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY", "OUTREACH_SECRET_KEY")


@dataclass
class Workspace:
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | Path | None = None) -> Workspace:
        """Open the workspace at ``root`` (default: the current directory)."""
        path = Path(root or ".").resolve()
        if not path.is_dir():
            raise WorkspaceError(
                f"{path} is not a folder", hint="pass -C DIR with a workspace folder"
            )
        if not (path / "campaigns").is_dir():
            raise WorkspaceError(
                f"{path} has no campaigns/ folder",
                hint="run outreach from a workspace (a folder with campaigns/, lists/, templates/) "
                "or pass -C DIR",
            )
        env: dict[str, str] = {}
        dotenv = path / ".env"
        if dotenv.is_file():
            env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        env.update(os.environ)  # the real environment wins over .env
        return cls(path, env)

    # -- settings ---------------------------------------------------------------------------

    def setting(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else default

    @property
    def state_dir(self) -> Path:
        return self.root / ".outreach"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    def db_url(self) -> str:
        """``OUTREACH_DB`` (``sqlite:///…``, ``postgresql://…`` or a path) or
        ``.outreach/outreach.db``."""
        return self.setting("OUTREACH_DB") or f"sqlite:///{self.state_dir / 'outreach.db'}"

    def redact(self, text: str) -> str:
        """``text`` without the secrets: API keys, and the database URL's password."""
        from outreach.store.url import password_of, redact_url

        db_password = password_of(self.setting("OUTREACH_DB") or "") or ""
        return redact_url(redact(text, [*(self.env.get(n, "") for n in SECRET_NAMES), db_password]))


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret value (and its ``Bearer`` form) in ``text`` by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text
