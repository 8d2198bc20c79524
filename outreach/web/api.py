"""The JSON API of ``outreach serve`` (documented in ``docs/api.md``).

Every route needs a login (:func:`outreach.web.auth.requires` with ``api=True``): a session
cookie (then writes carry the CSRF token) or ``Authorization: Bearer <token>``
(``outreach users token``). Errors are ``{"error": code, "message": words}`` with their status.

``GET /api/me``
    Who is asking: email, role, how (session or token), and the session's CSRF token.
``GET /api/campaigns``
    The workspace's campaigns: title, steps with their due times and ledger counts (current
    edition), the current edition, and the editions with sends.
``GET /api/campaigns/{campaign}/report``
    The document ``outreach report CAMPAIGN --format json`` prints (``docs/report-format.md``),
    cached until the store changes (:mod:`outreach.web.live`); ``?step=``, ``?edition=``, ``?transport=`` as the command's options.
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
from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from outreach import accounts, suppressions
from outreach.exceptions import ConfigError, LedgerError, OutreachError
from outreach.store.codes import StaffRole
from outreach.web import live
from outreach.web.auth import api_error, requires
from outreach.web.services import Services

log = logging.getLogger("outreach.server")

MAX_JSON = 16 * 1024  # bytes of a request's JSON body


def _json(data: object, status: int = 200) -> JSONResponse:
    """An answer of the API: never cached (it may name people, and it changes)."""
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _services(request: Request) -> Services:
    return request.app.state.services


def _store_error(exc: LedgerError) -> JSONResponse:
    log.error("API: %s", exc.message)
    return api_error(503, "unavailable", "the database cannot be read now; try again")


def _refused(exc: OutreachError) -> JSONResponse:
    """An API call that cannot be answered: no such campaign (404), the store unreadable
    (503), or a bad request (400: a wrong parameter or body)."""
    if isinstance(exc, live.NotFound):
        return api_error(404, "not-found", exc.message)
    if isinstance(exc, LedgerError):
        return _store_error(exc)
    return api_error(400, "bad-request", exc.message)


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


@requires(StaffRole.VIEWER, api=True)
async def campaigns(request: Request) -> Response:
    try:
        found = await live.campaigns(_services(request))
    except LedgerError as exc:
        return _store_error(exc)
    for c in found.campaigns:
        del c["campaign"]
    return _json({"campaigns": found.campaigns, "unreadable": found.unreadable})


@requires(StaffRole.VIEWER, api=True)
async def campaign_report(request: Request) -> Response:
    q = request.query_params
    try:
        found = await live.live_report(
            _services(request),
            request.path_params["campaign"],
            step=q.get("step") or None,
            edition=live.edition_param(q.get("edition")),
            transport=q.get("transport") or None,
        )
    except OutreachError as exc:
        return _refused(exc)
    assert found is not None  # the API waits for up-to-date figures
    return _json(found.report.as_dict())


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
        limit = live.int_param(request.query_params.get("limit"), "limit", 1, 10_000) or 200
        entries = await sv.db(accounts.audit_log, limit)
    except OutreachError as exc:
        return _refused(exc)
    return _json({"entries": entries})


# ------------------------------------------------------------------------------------------
# Admin changes


@requires(StaffRole.ADMIN, api=True)
async def suppression_add(request: Request) -> Response:
    sv = _services(request)
    try:
        body = await _json_body(request)
        email, why = str(body.get("email") or ""), str(body.get("why") or "")
        if not why.strip():
            raise ConfigError('say why: {"email": …, "why": …}')
        changed = await sv.db(
            live.change_suppression, True, email, why, request.state.user.email, sv.now()
        )
    except OutreachError as exc:
        return _refused(exc)
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
        changed = await sv.db(
            live.change_suppression, False, email, why, request.state.user.email, sv.now()
        )
    except OutreachError as exc:
        return _refused(exc)
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
