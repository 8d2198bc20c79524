"""The store's statements for staff accounts (schema 7): users, sessions, API tokens, login
failures and the audit log. :class:`~outreach.store.base.Store` inherits them.

The store keeps no secret in clear: ``users.password_hash`` is an argon2 hash, sessions and
API tokens are found by the SHA-256 of what the client holds. What those are and how they are
checked is :mod:`outreach.accounts`; this module only reads and writes rows. Times are the
store's ISO text (:func:`outreach.store.ids.iso`), given by the caller so that a test's clock
decides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_USER = "id, email, role, password_hash, created_at, created_by, password_changed_at, last_login_at"


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    email: str
    role: str
    password_hash: str
    created_at: str
    created_by: str | None
    password_changed_at: str
    last_login_at: str | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str  # the SHA-256 of the cookie's session id
    user: UserRow
    csrf_token: str
    created_at: str
    last_seen_at: str


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    user_id: int
    email: str
    label: str | None
    created_at: str
    created_by: str | None
    last_used_at: str | None
    revoked_at: str | None


class AccountStatements:
    """Mixed into :class:`~outreach.store.base.Store` (which provides ``_exec`` and friends)."""

    # provided by Store
    _exec: Any
    _one: Any
    _all: Any
    _scalar: Any
    _dicts: Any
    transaction: Any

    # -- users --------------------------------------------------------------------------------

    def add_user(
        self, email: str, role: str, password_hash: str, *, at: str, by: str | None
    ) -> int:
        """A new account (``email`` lower-cased by the caller); returns its id."""
        with self.transaction():
            return int(
                self._scalar(
                    "INSERT INTO users (email, role, password_hash, created_at, created_by, "
                    "password_changed_at) VALUES (?,?,?,?,?,?) RETURNING id",
                    (email, role, password_hash, at, by, at),
                )
            )

    def user_by_email(self, email: str) -> UserRow | None:
        row = self._one(f"SELECT {_USER} FROM users WHERE email = ?", (email,))
        return UserRow(*row) if row else None

    def users(self) -> list[UserRow]:
        return [UserRow(*r) for r in self._all(f"SELECT {_USER} FROM users ORDER BY email")]

    def set_password_hash(self, user_id: int, password_hash: str, *, at: str | None) -> None:
        """Store a new hash. ``at`` (a new password) also ends every session of the user; without
        it (the same password rehashed with new parameters) nothing else changes."""
        with self.transaction():
            if at is None:
                self._exec(
                    "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
                )
                return
            self._exec(
                "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                (password_hash, at, user_id),
            )
            self._exec("DELETE FROM sessions WHERE user_id = ?", (user_id,))

    def remove_user(self, user_id: int, *, at: str) -> None:
        """Delete the account, end its sessions and revoke its tokens (kept for the record)."""
        with self.transaction():
            self._exec("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            self._exec(
                "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (at, user_id),
            )
            self._exec("DELETE FROM users WHERE id = ?", (user_id,))

    # -- sessions -----------------------------------------------------------------------------

    def add_session(
        self,
        session_hash: str,
        user_id: int,
        csrf_token: str,
        *,
        at: str,
        client: str | None,
        user_agent: str | None,
    ) -> None:
        """A new session (a login), and the user's last login time."""
        with self.transaction():
            self._exec(
                "INSERT INTO sessions (id, user_id, csrf_token, created_at, last_seen_at, client, "
                "user_agent) VALUES (?,?,?,?,?,?,?)",
                (session_hash, user_id, csrf_token, at, at, client, user_agent),
            )
            self._exec("UPDATE users SET last_login_at = ? WHERE id = ?", (at, user_id))

    def session(self, session_hash: str) -> SessionRow | None:
        """The session and its user (None: no such session, or its user is gone)."""
        cols = ", ".join("u." + c.strip() for c in _USER.split(","))
        row = self._one(
            f"SELECT s.id, s.csrf_token, s.created_at, s.last_seen_at, {cols} "
            "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?",
            (session_hash,),
        )
        if row is None:
            return None
        return SessionRow(row[0], UserRow(*row[4:]), row[1], row[2], row[3])

    def touch_session(self, session_hash: str, *, at: str) -> None:
        with self.transaction():
            self._exec("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (at, session_hash))

    def end_session(self, session_hash: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM sessions WHERE id = ?", (session_hash,))

    def end_expired_sessions(self, *, created_before: str, seen_before: str) -> int:
        """Delete sessions past their absolute or idle limit; returns how many."""
        with self.transaction():
            cur = self._exec(
                "DELETE FROM sessions WHERE created_at < ? OR last_seen_at < ?",
                (created_before, seen_before),
            )
            return max(cur.rowcount, 0)

    def session_count(self, user_id: int | None = None) -> int:
        if user_id is None:
            return int(self._scalar("SELECT count(*) FROM sessions"))
        return int(self._scalar("SELECT count(*) FROM sessions WHERE user_id = ?", (user_id,)))

    # -- API tokens ---------------------------------------------------------------------------

    def add_token(
        self,
        token_id: str,
        user_id: int,
        token_hash: str,
        *,
        label: str | None,
        at: str,
        by: str | None,
    ) -> None:
        with self.transaction():
            self._exec(
                "INSERT INTO api_tokens (id, user_id, token_hash, label, created_at, created_by) "
                "VALUES (?,?,?,?,?,?)",
                (token_id, user_id, token_hash, label, at, by),
            )

    def token_user(self, token_hash: str) -> tuple[str, UserRow] | None:
        """(token id, its user) of a live (not revoked) token, or None."""
        cols = ", ".join("u." + c.strip() for c in _USER.split(","))
        row = self._one(
            f"SELECT t.id, {cols} FROM api_tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = ? AND t.revoked_at IS NULL",
            (token_hash,),
        )
        return (row[0], UserRow(*row[1:])) if row else None

    def touch_token(self, token_id: str, *, at: str) -> None:
        with self.transaction():
            self._exec("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, token_id))

    def revoke_token(self, token_id: str, *, at: str) -> bool:
        """Revoke a live token; False if there is none by that id."""
        with self.transaction():
            cur = self._exec(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, token_id),
            )
            return cur.rowcount == 1

    def tokens(self, user_id: int | None = None) -> list[TokenRow]:
        """Every token (of one user), live or revoked, oldest first; never the hashes."""
        sql = (
            "SELECT t.id, t.user_id, coalesce(u.email, ''), t.label, t.created_at, t.created_by, "
            "t.last_used_at, t.revoked_at FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id"
        )
        args: tuple = ()
        if user_id is not None:
            sql += " WHERE t.user_id = ?"
            args = (user_id,)
        return [TokenRow(*r) for r in self._all(sql + " ORDER BY t.created_at, t.id", args)]

    # -- failed logins ------------------------------------------------------------------------

    def add_login_failure(
        self, email: str, client: str | None, *, at: str, forget_before: str
    ) -> None:
        """Record a failed login, and forget those older than the rate limit's window."""
        with self.transaction():
            self._exec("DELETE FROM login_failures WHERE at < ?", (forget_before,))
            self._exec(
                "INSERT INTO login_failures (email, client, at) VALUES (?,?,?)",
                (email, client, at),
            )

    def login_failures(
        self, email: str, client: str | None, *, since: str
    ) -> tuple[list[str], list[str]]:
        """Times (newest first) of the failures since ``since`` for the account, and for the
        client address."""
        by_email = [
            r[0]
            for r in self._all(
                "SELECT at FROM login_failures WHERE email = ? AND at > ? ORDER BY at DESC",
                (email, since),
            )
        ]
        by_client: list[str] = []
        if client:
            by_client = [
                r[0]
                for r in self._all(
                    "SELECT at FROM login_failures WHERE client = ? AND at > ? ORDER BY at DESC",
                    (client, since),
                )
            ]
        return by_email, by_client

    def clear_login_failures(self, email: str) -> None:
        """A successful login: the account's count starts again (the address's does not)."""
        with self.transaction():
            self._exec("DELETE FROM login_failures WHERE email = ?", (email,))

    # -- the audit log ------------------------------------------------------------------------

    def add_audit(
        self, *, at: str, who: str, action: str, target: str | None, why: str | None, via: str
    ) -> None:
        with self.transaction():
            self._exec(
                "INSERT INTO audit_log (at, who, action, target, why, via) VALUES (?,?,?,?,?,?)",
                (at, who, action, target, why, via),
            )

    def audit_entries(
        self, *, limit: int = 200, target: str | None = None, actions: Sequence[str] = ()
    ) -> list[dict]:
        """The newest ``limit`` entries (optionally about one target, or some actions),
        newest first: id, at, who, action, target, why, via."""
        sql = "SELECT id, at, who, action, target, why, via FROM audit_log"
        conds, args = [], []
        if target is not None:
            conds.append("target = ?")
            args.append(target)
        if actions:
            conds.append(f"action IN ({','.join('?' * len(actions))})")
            args.extend(actions)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return self._dicts(sql + " ORDER BY id DESC LIMIT ?", [*args, int(limit)])
