"""Staff accounts: who may read the dashboard and the API (viewers) and who may also change
suppressions (admins), their passwords, sessions and API tokens, the login rate limit, and the
audit log of admin changes.

Secrets are never stored or shown in clear:

* passwords are hashed with argon2id (``argon2-cffi``'s RFC 9106 low-memory profile); a hash
  made with older parameters is replaced at the next good login;
* a session is a random id (:mod:`secrets`, 256 bits) held by the browser in a signed cookie;
  the store keeps its SHA-256, the session's CSRF token, and when it began and was last used;
* an API token (``ot_<id>_<secret>``) is shown once, by ``outreach users token``; the store
  keeps its id (to list and revoke it) and the SHA-256 of the whole token.

A plain hash suffices for sessions and tokens: they are 256 random bits, not guessable words.

The login rate limit counts failures in the store, so every worker of ``outreach serve``
shares it: after :data:`FAILURE_LIMIT` failures in :data:`FAILURE_WINDOW` for one account, or
from one client address, further attempts are refused (429, with how long to wait) without
looking at the password. An unknown account is checked against a dummy hash and counted like
a known one, so neither the answer nor its timing says whether an account exists.

The ``outreach users`` commands and the web service (:mod:`outreach.web.auth`) call this
module; it calls the store's named methods (:mod:`outreach.store.accounts`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from outreach.exceptions import ConfigError
from outreach.store import Store, iso
from outreach.store.accounts import UserRow
from outreach.store.codes import AuditAction, AuditVia, StaffRole
from outreach.workspace import Workspace

PASSWORD_MIN = 12  # characters; long passphrases beat composition rules (NIST SP 800-63B)
PASSWORD_MAX = 1024  # characters: bounds the work a login may ask for
EMAIL_MAX = 320  # characters of an account name kept by the rate limit
FAILURE_LIMIT = 10  # failed logins per account, and per client address, within the window…
FAILURE_WINDOW = timedelta(minutes=15)  # …after which further attempts get 429
SESSION_IDLE = timedelta(hours=2)  # a session unused this long has ended
SESSION_MAX = timedelta(hours=12)  # and none lasts longer than this, used or not
TOUCH_EVERY = timedelta(minutes=1)  # how often a session's last use is written
TOKEN_PREFIX = "ot_"

# argon2id with argon2-cffi's defaults (RFC 9106 "low memory": t=3, 64 MiB, p=4). Replaced in
# the tests by a cheap one; check_password rehashes whatever was hashed with other parameters.
HASHER = PasswordHasher()
_DUMMY: dict[PasswordHasher, str] = {}


@dataclass(frozen=True, slots=True)
class StaffUser:
    """Who is asking (``request.state.user`` in the web service)."""

    email: str
    role: StaffRole
    via: str  # "session", "token", or "insecure" (--insecure-no-auth)

    @property
    def is_admin(self) -> bool:
        return self.role == StaffRole.ADMIN

    def may(self, role: StaffRole | str) -> bool:
        """True if this user has ``role`` or more (an admin may do what a viewer may)."""
        return self.is_admin or StaffRole(role) == StaffRole.VIEWER


@dataclass(frozen=True, slots=True)
class Account:
    """An account as ``outreach users list`` shows it."""

    email: str
    role: str
    created_at: str
    created_by: str | None
    password_changed_at: str
    last_login_at: str | None
    sessions: int
    tokens: list[str]  # ids of live API tokens


@dataclass(frozen=True, slots=True)
class NewToken:
    id: str
    token: str  # shown once, never stored


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt that the rate limit let through (already counted as a failure)."""

    email: str
    user: UserRow | None


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    rehashed: str | None = None  # a new hash of the same password, when parameters changed


@dataclass(frozen=True, slots=True)
class NewSession:
    session_id: str  # for the cookie only; the store has its hash
    csrf_token: str
    user: StaffUser


@dataclass(frozen=True, slots=True)
class ActiveSession:
    user: StaffUser
    csrf_token: str
    key: str  # the store's key of the session (the hash of its id)
    expires_at: datetime  # the sooner of the idle and the absolute limit


class RateLimited(Exception):
    """Too many failed logins for the account or from the address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


# ------------------------------------------------------------------------------------------
# Secrets


def digest(secret: str) -> str:
    """SHA-256 (hex) of a session id or API token: what the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def check_password(stored: str | None, password: str) -> Check:
    """Verify ``password`` against an argon2 hash (``None``: an unknown account, checked
    against a dummy hash so that it takes as long). CPU-bound: call it off the event loop."""
    if stored is None:
        dummy = _DUMMY.get(HASHER)
        if dummy is None:
            dummy = _DUMMY[HASHER] = HASHER.hash(secrets.token_urlsafe(16))
        with suppress(VerificationError):
            HASHER.verify(dummy, password)
        return Check(False)
    try:
        HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return Check(False)
    return Check(True, HASHER.hash(password) if HASHER.check_needs_rehash(stored) else None)


def normalize_email(email: str) -> str:
    """An account's email, validated and lower-cased (accounts are found by it)."""
    from outreach.contacts import validate_address

    norm, problem = validate_address(email.strip())
    if norm is None:
        raise ConfigError(f"{email!r} is not a valid address: {problem}")
    return norm.lower()


def check_new_password(password: str, email: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise ConfigError(
            f"the password is too short ({len(password)} characters; at least {PASSWORD_MIN})",
            hint="a few unrelated words make a long password that is easy to type",
        )
    if len(password) > PASSWORD_MAX:
        raise ConfigError(f"the password is too long (at most {PASSWORD_MAX} characters)")
    if password.strip().lower() == email.lower():
        raise ConfigError("the password must not be the account's address")


def role_of(value: str) -> StaffRole:
    try:
        return StaffRole(value)
    except ValueError:
        raise ConfigError(
            f"unknown role {value!r}",
            hint="choose viewer (reads) or admin (also changes suppressions)",
        ) from None


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


@contextmanager
def _opened(target: Store | Workspace) -> Iterator[Store]:
    if isinstance(target, Store):
        yield target
    else:
        with Store.open(target.db_url(), target.root) as store:
            yield store


def _user(store: Store, email: str) -> UserRow:
    key = email.strip().lower()
    user = store.user_by_email(key)
    if user is None:
        raise ConfigError(f"no account {key}", hint="outreach users list shows them")
    return user


# ------------------------------------------------------------------------------------------
# Managing accounts (`outreach users`)


def record(
    store: Store,
    who: str,
    action: AuditAction,
    target: str | None,
    why: str | None,
    *,
    via: AuditVia,
    now: datetime | None = None,
) -> None:
    """One entry of the audit log (in the caller's transaction, if there is one)."""
    store.add_audit(
        at=iso(_now(now)), who=who, action=action, target=target, why=why or None, via=via
    )


def add_user(
    target: Store | Workspace,
    email: str,
    role: str,
    password: str,
    *,
    by: str,
    why: str | None = None,
    via: AuditVia = AuditVia.CLI,
    now: datetime | None = None,
) -> str:
    """Create an account; returns its (normalized) email."""
    key = normalize_email(email)
    r = role_of(role)
    check_new_password(password, key)
    hashed = hash_password(password)
    at = iso(_now(now))
    with _opened(target) as store, store.transaction():
        if store.user_by_email(key) is not None:
            raise ConfigError(
                f"{key} already has an account",
                hint="outreach users set-password changes its password",
            )
        store.add_user(key, r, hashed, at=at, by=by)
        record(store, by, AuditAction.USER_ADD, key, why or f"role {r}", via=via, now=now)
    return key


def remove_user(
    target: Store | Workspace,
    email: str,
    *,
    by: str,
    why: str | None = None,
    via: AuditVia = AuditVia.CLI,
    now: datetime | None = None,
) -> None:
    """Delete an account: its sessions end and its tokens are revoked at once."""
    with _opened(target) as store, store.transaction():
        user = _user(store, email)
        store.remove_user(user.id, at=iso(_now(now)))
        record(store, by, AuditAction.USER_REMOVE, user.email, why, via=via, now=now)


def set_password(
    target: Store | Workspace,
    email: str,
    password: str,
    *,
    by: str,
    why: str | None = None,
    via: AuditVia = AuditVia.CLI,
    now: datetime | None = None,
) -> None:
    """Give an account a new password; every session of the account ends."""
    with _opened(target) as store:
        user = _user(store, email)
        check_new_password(password, user.email)
        hashed = hash_password(password)
        with store.transaction():
            store.set_password_hash(user.id, hashed, at=iso(_now(now)))
            record(store, by, AuditAction.PASSWORD_SET, user.email, why, via=via, now=now)


def accounts(target: Store | Workspace) -> list[Account]:
    """Every account, by email, with its live sessions and tokens (never a hash)."""
    with _opened(target) as store:
        live: dict[int, list[str]] = {}
        for t in store.tokens():
            if t.revoked_at is None:
                live.setdefault(t.user_id, []).append(t.id)
        return [
            Account(
                u.email,
                u.role,
                u.created_at,
                u.created_by,
                u.password_changed_at,
                u.last_login_at,
                store.session_count(u.id),
                live.get(u.id, []),
            )
            for u in store.users()
        ]


def new_token(
    target: Store | Workspace,
    email: str,
    *,
    by: str,
    label: str | None = None,
    why: str | None = None,
    via: AuditVia = AuditVia.CLI,
    now: datetime | None = None,
) -> NewToken:
    """A new API token for the account (it acts with the account's role)."""
    token_id = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    with _opened(target) as store, store.transaction():
        user = _user(store, email)
        store.add_token(token_id, user.id, digest(token), label=label, at=iso(_now(now)), by=by)
        record(
            store,
            by,
            AuditAction.TOKEN_CREATE,
            f"{user.email} token {token_id}",
            why or label,
            via=via,
            now=now,
        )
    return NewToken(token_id, token)


def revoke_token(
    target: Store | Workspace,
    token_id: str,
    *,
    by: str,
    why: str | None = None,
    via: AuditVia = AuditVia.CLI,
    now: datetime | None = None,
) -> None:
    """Revoke a token by its id (the ``ot_<id>_`` part; ``outreach users list`` shows them)."""
    token_id = token_id.strip().removeprefix(TOKEN_PREFIX).split("_", 1)[0]
    with _opened(target) as store, store.transaction():
        owner = next((t.email for t in store.tokens() if t.id == token_id), None)
        if not store.revoke_token(token_id, at=iso(_now(now))):
            raise ConfigError(
                f"no live API token {token_id}", hint="outreach users list shows the live ones"
            )
        record(
            store,
            by,
            AuditAction.TOKEN_REVOKE,
            f"{owner} token {token_id}" if owner else f"token {token_id}",
            why,
            via=via,
            now=now,
        )


# ------------------------------------------------------------------------------------------
# Logging in (the web service; each step is one store call, the password check runs apart)


def retry_after(times: list[str], now: datetime) -> int | None:
    """Seconds until fewer than :data:`FAILURE_LIMIT` of ``times`` (newest first, within the
    window) remain in the window; None if there are fewer already."""
    if len(times) < FAILURE_LIMIT:
        return None
    frees_at = datetime.fromisoformat(times[FAILURE_LIMIT - 1]) + FAILURE_WINDOW
    return max(1, math.ceil((frees_at - now).total_seconds()))


NOT_AN_ADDRESS = "(not an address)"


def account_key(typed: str) -> str:
    """The account a login names, as counted and logged: lower-cased, or
    :data:`NOT_AN_ADDRESS` for anything without an ``@`` (often a password typed into the
    wrong field: it must not reach the store or the log)."""
    key = typed.strip().lower()
    return key if "@" in key and len(key) <= EMAIL_MAX else NOT_AN_ADDRESS


def begin_login(store: Store, email: str, client: str | None, now: datetime) -> Attempt:
    """Let a login attempt through the rate limit (or raise :class:`RateLimited`), and count
    it as a failure until :func:`finish_login` says otherwise (so that concurrent attempts
    count too)."""
    key = account_key(email)
    by_email, by_client = store.login_failures(key, client, since=iso(now - FAILURE_WINDOW))
    waits = [w for w in (retry_after(by_email, now), retry_after(by_client, now)) if w]
    if waits:
        raise RateLimited(max(waits))
    store.add_login_failure(key, client, at=iso(now), forget_before=iso(now - FAILURE_WINDOW))
    return Attempt(key, None if key == NOT_AN_ADDRESS else store.user_by_email(key))


def finish_login(
    store: Store,
    attempt: Attempt,
    check: Check,
    now: datetime,
    *,
    client: str | None,
    user_agent: str | None,
) -> NewSession | None:
    """After the password check: a new session for a good password (the account's failures
    are forgotten, an outdated hash replaced, expired sessions cleared), None otherwise."""
    user = attempt.user
    if not check.ok or user is None:
        return None
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with store.transaction():
        store.clear_login_failures(attempt.email)
        if check.rehashed:
            store.set_password_hash(user.id, check.rehashed, at=None)
        store.end_expired_sessions(
            created_before=iso(now - SESSION_MAX), seen_before=iso(now - SESSION_IDLE)
        )
        store.add_session(
            digest(session_id),
            user.id,
            csrf,
            at=iso(now),
            client=client,
            user_agent=(user_agent or "")[:300] or None,
        )
    return NewSession(session_id, csrf, StaffUser(user.email, StaffRole(user.role), "session"))


def session_user(
    store: Store,
    session_id: str,
    now: datetime,
    *,
    idle: timedelta = SESSION_IDLE,
    maximum: timedelta = SESSION_MAX,
) -> ActiveSession | None:
    """The live session with this id, or None (unknown, ended, or past a limit: then it is
    deleted). Its last use is written at most every :data:`TOUCH_EVERY`."""
    key = digest(session_id)
    row = store.session(key)
    if row is None:
        return None
    created = datetime.fromisoformat(row.created_at)
    seen = datetime.fromisoformat(row.last_seen_at)
    if now - created >= maximum or now - seen >= idle:
        store.end_session(key)
        return None
    if now - seen >= TOUCH_EVERY:
        store.touch_session(key, at=iso(now))
        seen = now
    user = StaffUser(row.user.email, StaffRole(row.user.role), "session")
    return ActiveSession(user, row.csrf_token, key, min(created + maximum, seen + idle))


def end_session(store: Store, key: str) -> None:
    """Log out: the session (by its store key) ends for good."""
    store.end_session(key)


def token_user(store: Store, token: str, now: datetime) -> StaffUser | None:
    """The account a bearer token acts for, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    found = store.token_user(digest(token))
    if found is None:
        return None
    token_id, user = found
    store.touch_token(token_id, at=iso(now))
    return StaffUser(user.email, StaffRole(user.role), "token")


def audit_log(target: Store | Workspace, limit: int = 200) -> list[dict]:
    """The newest entries of the audit log, newest first."""
    with _opened(target) as store:
        return store.audit_entries(limit=limit)
