"""The SendGrid account, read through its API: can it send this campaign and report back?

* the API key's permissions (``GET /v3/scopes``): ``mail.send`` to send; the suppression reads
  for ``outreach suppressions sync``;
* the From address is a verified single sender (``GET /v3/verified_senders``) or its domain is
  authenticated and validated (``GET /v3/whitelabel/domains``);
* an Event Webhook (``GET /v3/user/webhooks/event/settings/all``) is enabled, signed, posts to
  the campaign's server (``<unsubscribe.url's origin>/events``, where ``outreach events serve``
  listens) with the events the reports need, and signs with the key the server verifies
  (``SENDGRID_WEBHOOK_PUBLIC_KEY``, when it is set here).

Every request goes through :class:`~outreach.sendgrid_api.SendGridAPI` (``SENDGRID_API_HOST``
is honoured). A check that the key is not allowed to make is a warning, not a failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from outreach.checks import Area, Check, fail, ok, warn
from outreach.exceptions import OutreachError, TransportError

if TYPE_CHECKING:
    from outreach.campaign import Campaign
    from outreach.sendgrid_api import SendGridAPI
    from outreach.workspace import Workspace

# what `outreach suppressions sync` reads (SendGrid's "suppression.read" covers the five lists)
SYNC_LIST_SCOPES = (
    "suppression.bounces.read",
    "suppression.blocks.read",
    "suppression.spam_reports.read",
    "suppression.invalid_emails.read",
    "suppression.unsubscribes.read",
)
SYNC_GROUP_SCOPE = "asm.groups.suppressions.read"
# webhook settings field → what the report loses without it
WEBHOOK_EVENTS = {
    "delivered": "delivered",
    "bounce": "bounces",
    "dropped": "drops",
    "open": "opens",
    "click": "clicks",
    "spam_report": "spam complaints",
    "unsubscribe": "unsubscribes",
    "group_unsubscribe": "group unsubscribes",
}
WEBHOOK_PATH = "/events"
_SETTINGS = "SendGrid → Settings → Mail Settings → Event Webhook"


def _same_url(a: str, b: str) -> bool:
    pa, pb = urlsplit(a.strip()), urlsplit(b.strip())
    return (
        pa.scheme.lower() == pb.scheme.lower()
        and pa.netloc.lower() == pb.netloc.lower()
        and pa.path.rstrip("/") == pb.path.rstrip("/")
    )


def _key_text(key: str) -> str:
    lines = [ln.strip() for ln in key.strip().splitlines() if not ln.startswith("-----")]
    return "".join(lines)


class _Unreadable(Exception):
    """The API refused or failed one read: the check becomes a warning (or, for 401, stops)."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(error.message)
        self.error = error


def _get(api: SendGridAPI, path: str, scope: str | None = None):
    try:
        return api.get_json(path, scope=scope)
    except TransportError as exc:
        raise _Unreadable(exc) from None


def _cannot(id: str, title: str, exc: _Unreadable, what: str) -> Check:
    err = exc.error
    if err.status == 403:
        return warn(
            id,
            Area.SENDGRID,
            title,
            f"not checked: the API key may not read {what} (403)",
            err.hint or "give the key read access to it, or check it in SendGrid's app",
        )
    return warn(
        id,
        Area.SENDGRID,
        title,
        f"not checked: {err.message}",
        err.hint or "run doctor again later",
    )


def scope_checks(scopes: set[str]) -> list[Check]:
    out = []
    if "mail.send" in scopes:
        out.append(ok("sendgrid.scopes.send", Area.SENDGRID, "API key: send", "has mail.send"))
    else:
        out.append(
            fail(
                "sendgrid.scopes.send",
                Area.SENDGRID,
                "API key: send",
                "the key has no mail.send permission: SendGrid would refuse every message",
                "create a key with Mail Send (SendGrid → Settings → API Keys) and put it in "
                "SENDGRID_API_KEY",
            )
        )
    missing = (
        [] if "suppression.read" in scopes else [s for s in SYNC_LIST_SCOPES if s not in scopes]
    )
    if SYNC_GROUP_SCOPE not in scopes:
        missing.append(SYNC_GROUP_SCOPE)
    title = "API key: suppressions sync"
    if missing:
        out.append(
            warn(
                "sendgrid.scopes.sync",
                Area.SENDGRID,
                title,
                f"missing {', '.join(missing)}: `outreach suppressions sync` would be refused",
                "give the key read access to Suppressions and to Unsubscribe Groups",
            )
        )
    else:
        out.append(
            ok("sendgrid.scopes.sync", Area.SENDGRID, title, "may read every suppression list")
        )
    return out


def sender_check(api: SendGridAPI, campaign: Campaign) -> Check:
    email = campaign.sender.from_email
    domain = email.rsplit("@", 1)[-1].lower()
    title = f"Sender {email}"
    problems: list[str] = []
    unreadable: list[_Unreadable] = []
    try:
        domains = _get(api, "whitelabel/domains", "whitelabel.read") or []
        mine = [
            d
            for d in domains
            if isinstance(d, dict)
            and (
                domain == str(d.get("domain", "")).lower()
                or domain.endswith("." + str(d.get("domain", "")).lower())
            )
        ]
        if any(d.get("valid") for d in mine):
            d = next(d for d in mine if d.get("valid"))
            return ok(
                "sendgrid.sender",
                Area.SENDGRID,
                title,
                f"{d['domain']} is an authenticated domain, validated by SendGrid",
            )
        if mine:
            problems.append(
                f"{mine[0]['domain']} is authenticated in SendGrid but its DNS records are not "
                "validated yet"
            )
    except _Unreadable as exc:
        unreadable.append(exc)
    try:
        senders = (_get(api, "verified_senders") or {}).get("results") or []
        me = [s for s in senders if str(s.get("from_email", "")).lower() == email.lower()]
        if any(s.get("verified") for s in me):
            return ok(
                "sendgrid.sender", Area.SENDGRID, title, f"{email} is a verified single sender"
            )
        if me:
            problems.append(f"{email} is registered as a sender but not verified yet")
    except _Unreadable as exc:
        unreadable.append(exc)
    if problems:
        return fail(
            "sendgrid.sender",
            Area.SENDGRID,
            title,
            "; ".join(problems),
            "finish it in SendGrid → Settings → Sender Authentication (Verify; or click the "
            f"link SendGrid emailed to {email})",
        )
    if unreadable:
        return _cannot("sendgrid.sender", title, unreadable[0], "sender authentication")
    return fail(
        "sendgrid.sender",
        Area.SENDGRID,
        title,
        f"neither {domain} nor {email} is verified in SendGrid: it refuses mail from unverified "
        "senders",
        f"authenticate {domain} in SendGrid → Settings → Sender Authentication (best), or verify "
        f"{email} as a single sender",
    )


def webhook_check(api: SendGridAPI, ws: Workspace, campaign: Campaign) -> Check:
    base = campaign.server_url
    expected = f"{base}{WEBHOOK_PATH}" if base else None
    title = "Event Webhook"
    try:
        data = _get(api, "user/webhooks/event/settings/all", "user.webhooks.event.settings.read")
    except _Unreadable as exc:
        return _cannot("sendgrid.webhook", title, exc, "the Event Webhook settings")
    hooks = [h for h in (data or {}).get("webhooks") or [] if isinstance(h, dict) and h.get("url")]
    fix_new = (
        f"in {_SETTINGS}, add {expected or 'the URL of outreach events serve + /events'}, "
        "enable it and turn on Signed Event Webhook"
    )
    if not hooks:
        return fail(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            "none is set up: deliveries, opens, clicks, bounces and complaints never reach "
            "outreach (no report, no suppressions, no reputation guard)",
            fix_new,
        )
    if expected is None:
        hook = next((h for h in hooks if h.get("enabled")), hooks[0])
        return warn(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            f"the campaign has no unsubscribe.url, so its server is unknown; SendGrid posts to "
            f"{hook['url']}",
            "set unsubscribe.url to where outreach events serve runs",
        )
    hook = next((h for h in hooks if _same_url(str(h["url"]), expected)), None)
    if hook is None:
        return fail(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            f"no webhook posts to {expected} (SendGrid posts to: "
            f"{', '.join(str(h['url']) for h in hooks)})",
            fix_new,
        )
    if not hook.get("enabled"):
        return fail(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            f"the webhook to {expected} is disabled: no event reaches outreach",
            f"enable it in {_SETTINGS}",
        )
    key = hook.get("public_key")
    if not key:
        return fail(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            f"the webhook to {expected} is not signed: outreach events serve refuses unsigned "
            "events (403)",
            f"turn on Signed Event Webhook in {_SETTINGS} and copy its verification key into "
            "SENDGRID_WEBHOOK_PUBLIC_KEY where the server runs",
        )
    local = ws.setting("SENDGRID_WEBHOOK_PUBLIC_KEY")
    if local and _key_text(local) != _key_text(str(key)):
        return fail(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            "SendGrid signs with another key than SENDGRID_WEBHOOK_PUBLIC_KEY: the server would "
            "refuse every event (403)",
            f"copy the verification key shown in {_SETTINGS} into SENDGRID_WEBHOOK_PUBLIC_KEY",
        )
    missing = [words for name, words in WEBHOOK_EVENTS.items() if not hook.get(name)]
    result = f"{expected}, enabled, signed"
    if local:
        result += " (key matches SENDGRID_WEBHOOK_PUBLIC_KEY)"
    if missing:
        return warn(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            f"{result}, but it does not send {', '.join(missing)}",
            f"tick those events in {_SETTINGS}: reports and follow-up steps need them",
        )
    if not local:
        return warn(
            "sendgrid.webhook",
            Area.SENDGRID,
            title,
            f"{result}; SENDGRID_WEBHOOK_PUBLIC_KEY is not set here, so the key was not compared",
            "set it (environment or .env) where outreach events serve runs, and here to compare",
        )
    return ok("sendgrid.webhook", Area.SENDGRID, title, result)


def account_checks(ws: Workspace, campaign: Campaign) -> list[Check]:
    """Key permissions, sender verification and the Event Webhook."""
    from outreach.sendgrid_api import SendGridAPI

    title = "SendGrid account"
    try:
        api = SendGridAPI.from_workspace(ws, need="doctor reads the account with it", retries=2)
    except OutreachError as exc:
        return [
            warn(
                "sendgrid.key",
                Area.SENDGRID,
                title,
                f"not checked: {exc.message}",
                exc.hint or "set SENDGRID_API_KEY",
            )
        ]
    try:
        scopes = set((_get(api, "scopes") or {}).get("scopes") or [])
    except _Unreadable as exc:
        err = exc.error
        if err.status == 401:
            return [
                fail(
                    "sendgrid.key",
                    Area.SENDGRID,
                    title,
                    err.message,
                    err.hint or "check SENDGRID_API_KEY",
                )
            ]
        return [_cannot("sendgrid.key", title, exc, "its own permissions")]
    return [
        *scope_checks(scopes),
        sender_check(api, campaign),
        webhook_check(api, ws, campaign),
    ]
