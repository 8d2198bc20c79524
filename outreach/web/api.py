"""The JSON API of ``outreach serve`` (documented in ``docs/api.md``).

Every route needs a login (:func:`outreach.web.auth.requires` with ``api=True``): a session
cookie (then writes carry the CSRF token) or ``Authorization: Bearer <token>``
(``outreach users token``). Errors are ``{"error": code, "message": words}`` with their status.

``GET /api/me``
    Who is asking: email, role, how (session or token), and the session's CSRF token.
``GET /api/campaigns``
    The workspace's campaigns: title, steps with their due times (current edition), the
    current edition, and the editions with sends.
``GET /api/campaigns/{campaign}/report``
    The document ``outreach report CAMPAIGN --format json`` prints (``docs/report-format.md``),
    computed now; ``?step=``, ``?edition=``, ``?transport=`` as the command's options.
``GET /api/suppressions`` (``?email=``)
    Active suppressions, newest first (with the address's history when ``email`` is given).
``POST /api/suppressions`` (admin)
    ``{"email": …, "why": …}``: suppress an address by hand; 201 if it was not suppressed.
``DELETE /api/suppressions/{email}`` (admin)
    ``{"why": …}``: lift a suppression. Both are recorded in the suppression log and the
    audit log, with who and why.
``GET /api/audit`` (admin, ``?limit=``)
    The newest admin changes.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from outreach import accounts, suppressions
from outreach import report as reports
from outreach.campaign import load_campaign
from outreach.exceptions import ConfigError, LedgerError, OutreachError
from outreach.ledger import Ledger
from outreach.store.codes import AuditAction, AuditVia, StaffRole
from outreach.web.auth import api_error, requires
from outreach.web.services import Services

log = logging.getLogger("outreach.server")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a campaign file's stem, no path
MAX_JSON = 16 * 1024  # bytes of a request's JSON body


def _json(data: object, status: int = 200) -> JSONResponse:
    """An answer of the API: never cached (it may name people, and it changes)."""
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _services(request: Request) -> Services:
    return request.app.state.services


def _store_error(exc: LedgerError) -> JSONResponse:
    log.error("API: %s", exc.message)
    return api_error(503, "unavailable", "the database cannot be read now; try again")


def _int_param(request: Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ConfigError(f"?{name}= must be a number from {lo} to {hi}")
    return int(raw)


async def _json_body(request: Request) -> dict:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON:
            raise ConfigError(f"the request body is larger than {MAX_JSON} bytes")
    try:
        data = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigError("the request body must be a JSON object")
    return data


# ------------------------------------------------------------------------------------------
# Reading


@requires(StaffRole.VIEWER, api=True)
async def me(request: Request) -> Response:
    user = request.state.user
    return _json(
        {
            "email": user.email,
            "role": str(user.role),
            "via": user.via,
            "csrf_token": request.state.csrf_token,
        }
    )


def _campaign_names(sv: Services) -> list[str]:
    return sorted(p.stem for p in (sv.ws.root / "campaigns").glob("*.y*ml"))


def _campaign_summary(ledger: Ledger, c, now: datetime) -> dict:
    return {
        "name": c.name,
        "title": c.title,
        "recurs": c.spec.recurs,
        "current_edition": c.current_edition(now),
        "editions": sorted(ledger.editions(c.name)),
        "steps": [
            {"step": s.id, "send_at": s.send_at.isoformat(), "local_time": s.local_time}
            for s in c.steps
        ],
    }


@requires(StaffRole.VIEWER, api=True)
async def campaigns(request: Request) -> Response:
    sv = _services(request)
    now = sv.now()
    found, problems = [], []
    for name in _campaign_names(sv):
        try:
            c = await run_in_threadpool(load_campaign, sv.ws.root, name, now=now)
        except OutreachError as exc:
            problems.append({"name": name, "error": exc.message})
            continue
        try:
            found.append(await sv.db(_campaign_summary, c, now))
        except LedgerError as exc:
            return _store_error(exc)
    return _json({"campaigns": found, "unreadable": problems})


@requires(StaffRole.VIEWER, api=True)
async def campaign_report(request: Request) -> Response:
    sv = _services(request)
    name = request.path_params["campaign"]
    q = request.query_params
    step = q.get("step") or None
    transport = q.get("transport") or None
    if not _NAME.match(name) or name not in _campaign_names(sv):
        return api_error(404, "not-found", f"no campaign named {name!r}")
    if transport not in (None, "outbox", "sendgrid"):
        return api_error(400, "bad-request", "?transport= must be outbox or sendgrid")
    now = sv.now()
    try:
        edition = _int_param(request, "edition", 1900, 9999)
        c = await run_in_threadpool(reports.campaign_for, sv.ws, name, step, edition, now)
    except OutreachError as exc:
        return api_error(400, "bad-request", exc.message)
    try:
        c, tname, data = await sv.db(
            reports.read, c, step, transport=transport, latest=edition is None, now=now
        )
    except LedgerError as exc:
        return _store_error(exc)
    rep = await run_in_threadpool(reports.build, c, data, tname, step, now=now)
    return _json(rep.as_dict())


@requires(StaffRole.VIEWER, api=True)
async def suppression_list(request: Request) -> Response:
    sv = _services(request)
    email = request.query_params.get("email") or None
    try:
        found = await sv.db(suppressions.listing, email)
    except LedgerError as exc:
        return _store_error(exc)
    return _json(asdict(found))


@requires(StaffRole.ADMIN, api=True)
async def audit(request: Request) -> Response:
    sv = _services(request)
    try:
        limit = _int_param(request, "limit", 1, 10_000) or 200
        entries = await sv.db(accounts.audit_log, limit)
    except ConfigError as exc:
        return api_error(400, "bad-request", exc.message)
    except LedgerError as exc:
        return _store_error(exc)
    return _json({"entries": entries})


# ------------------------------------------------------------------------------------------
# Admin changes


def _change(ledger: Ledger, add: bool, email: str, why: str, who: str, now: datetime) -> bool:
    """Suppress or lift ``email`` and record it in the audit log, in one transaction."""
    with ledger.transaction():
        if add:
            changed = suppressions.add(ledger, email, why, who)
        else:
            changed = suppressions.remove(ledger, email, why, who)
        if changed:
            action = AuditAction.SUPPRESSION_ADD if add else AuditAction.SUPPRESSION_REMOVE
            accounts.record(
                ledger, who, action, email.strip().lower(), why, via=AuditVia.API, now=now
            )
    return changed


@requires(StaffRole.ADMIN, api=True)
async def suppression_add(request: Request) -> Response:
    sv = _services(request)
    try:
        body = await _json_body(request)
        email, why = str(body.get("email") or ""), str(body.get("why") or "")
        if not why.strip():
            raise ConfigError('say why: {"email": …, "why": …}')
        changed = await sv.db(_change, True, email, why, request.state.user.email, sv.now())
    except ConfigError as exc:
        return api_error(400, "bad-request", exc.message)
    except LedgerError as exc:
        return _store_error(exc)
    log.info("suppression added by %s (API)", request.state.user.email)
    return _json(
        {"email": email.strip().lower(), "suppressed": True, "changed": changed},
        201 if changed else 200,
    )


@requires(StaffRole.ADMIN, api=True)
async def suppression_remove(request: Request) -> Response:
    sv = _services(request)
    email = request.path_params["email"]
    try:
        body = await _json_body(request)
        why = str(body.get("why") or "")
        if not why.strip():
            raise ConfigError('say why: {"why": …}')
        changed = await sv.db(_change, False, email, why, request.state.user.email, sv.now())
    except ConfigError as exc:
        return api_error(400, "bad-request", exc.message)
    except LedgerError as exc:
        return _store_error(exc)
    if not changed:
        return api_error(404, "not-found", f"{email} is not suppressed")
    log.info("suppression lifted by %s (API)", request.state.user.email)
    return _json({"email": email.strip().lower(), "suppressed": False, "changed": True})


def routes(services: Services) -> list[BaseRoute]:
    return [
        Route("/api/me", me, methods=["GET"], name="api_me"),
        Route("/api/campaigns", campaigns, methods=["GET"], name="api_campaigns"),
        Route(
            "/api/campaigns/{campaign}/report",
            campaign_report,
            methods=["GET"],
            name="api_report",
        ),
        Route("/api/suppressions", suppression_list, methods=["GET"], name="api_suppressions"),
        Route("/api/suppressions", suppression_add, methods=["POST"], name="api_suppress"),
        Route(
            "/api/suppressions/{email}",
            suppression_remove,
            methods=["DELETE"],
            name="api_unsuppress",
        ),
        Route("/api/audit", audit, methods=["GET"], name="api_audit"),
    ]
