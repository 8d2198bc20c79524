"""The staff dashboard of ``outreach serve`` (pages behind a login; ``docs/dashboard.md``).

``GET /`` (and ``/campaigns``)
    Each campaign of the workspace: its steps, when each is due, and how many messages are
    sent, scheduled, pending, failed or unknown (the current edition).
``GET /campaigns/{campaign}`` (``?step=``, ``?edition=``)
    The campaign's report, live from the store: the figures of ``outreach report``, charts
    (inline SVG, each also a table), and downloads. ``/campaigns/{campaign}/report.csv`` is
    ``outreach report --format csv``; the JSON download is the API's document.
``GET /contacts?email=``
    What one address was sent, what happened to each message, and its suppression.
``GET /suppressions`` (``?q=`` to search, ``?email=`` for one address's history)
    Active suppressions. Admins also get two forms: ``POST /suppressions`` (suppress an
    address) and ``POST /suppressions/remove`` (lift one), each with a reason, recorded in
    the audit log like the API's changes (``via`` = web).

Every page needs a login (:func:`outreach.web.auth.requires`): viewers read, admins change
suppressions. The figures come from :mod:`outreach.web.live`, shared with the JSON API.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from outreach import suppressions
from outreach.exceptions import LedgerError, OutreachError
from outreach.report import DIMENSIONS
from outreach.report_formats import to_csv
from outreach.store.codes import AuditVia, StaffRole
from outreach.web import live
from outreach.web.auth import form, refuse, requires
from outreach.web.services import Services

log = logging.getLogger("outreach.server")

MAX_LISTED = 500  # suppressions shown at once (a search narrows them)
DONE = {
    "added": "The address is now suppressed: nothing more will be sent to it.",
    "lifted": "The suppression was lifted: the address may be sent to again.",
    "already": "That address was already suppressed; nothing changed.",
}


def _services(request: Request) -> Services:
    return request.app.state.services


def _unavailable(request: Request, exc: LedgerError) -> Response:
    log.error("dashboard: %s", exc.message)
    return refuse(request, 503, "Try again", "The database cannot be read now.", api=False)


def _problem(request: Request, status: int, title: str, message: str) -> Response:
    return _services(request).page(
        request, "auth/message.html", {"title": title, "message": message}, status=status
    )


def _report_refused(request: Request, exc: OutreachError) -> Response:
    """A report page or download that cannot be shown: no such campaign (404), the store
    unreadable (503), or a bad step or edition (400)."""
    if isinstance(exc, live.NotFound):
        return _problem(request, 404, "No such campaign", exc.message)
    if isinstance(exc, LedgerError):
        return _unavailable(request, exc)
    return _problem(request, 400, "Cannot show this report", exc.message)


# ------------------------------------------------------------------------------------------
# Campaigns


@requires(StaffRole.VIEWER)
async def campaigns_page(request: Request) -> Response:
    sv = _services(request)
    try:
        found = await live.campaigns(sv)
    except LedgerError as exc:
        return _unavailable(request, exc)
    for c in found.campaigns:  # due times as datetimes, in the campaign's zone
        for step, resolved in zip(c["steps"], c["campaign"].steps, strict=True):
            step["due"] = resolved.send_at
    for c in found.campaigns:  # the report a visitor opens next: computed, or on its way
        try:
            await live.warm(sv, c["name"])
        except (LedgerError, OutreachError) as exc:
            log.warning("could not start the report of %s: %s", c["name"], exc.message)
    return sv.page(
        request,
        "dashboard/campaigns.html",
        {
            "title": "Campaigns",
            "campaigns": found.campaigns,
            "unreadable": found.unreadable,
            "now": sv.now(),
            "count_keys": live.COUNT_KEYS,
        },
    )


def _report_options(request: Request) -> dict:
    q = request.query_params
    return {
        "step": q.get("step") or None,
        "edition": live.edition_param(q.get("edition")),
    }


@requires(StaffRole.VIEWER)
async def report_page(request: Request) -> Response:
    sv = _services(request)
    name = request.path_params["campaign"]
    try:
        options = _report_options(request)
        # older figures are shown at once, marked, while newer ones are computed
        found = await live.live_report(sv, name, **options, wait=False)
        if found is None:  # nothing yet: wait for the first computation
            found = await live.live_report(sv, name, **options)
    except OutreachError as exc:
        return _report_refused(request, exc)
    assert found is not None
    rep = found.report
    query = {k: v for k, v in (("step", options["step"]), ("edition", rep.edition)) if v}
    return sv.page(
        request,
        "dashboard/report.html",
        {
            "title": f"{rep.title} — {rep.edition}",
            "live": found,
            "rep": rep,
            "steps": found.steps,
            "editions": sorted(set(found.editions) | {rep.edition}),
            "dimensions": DIMENSIONS,
            "csv_url": str(request.url_for("campaign_csv", campaign=name)) + "?" + urlencode(query),
            "json_url": str(request.url_for("api_report", campaign=name)) + "?" + urlencode(query),
        },
    )


@requires(StaffRole.VIEWER)
async def report_csv(request: Request) -> Response:
    sv = _services(request)
    name = request.path_params["campaign"]
    try:
        options = _report_options(request)
        found = await live.live_report(sv, name, **options)
    except OutreachError as exc:
        return _report_refused(request, exc)
    rep = found.report
    filename = f"{rep.campaign}-{rep.edition}" + (f"-{rep.step_filter}" if rep.step_filter else "")
    return Response(
        to_csv(rep),
        media_type="text/csv; charset=utf-8",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{filename}.csv"',
        },
    )


# ------------------------------------------------------------------------------------------
# One address


@requires(StaffRole.VIEWER)
async def contacts_page(request: Request) -> Response:
    sv = _services(request)
    email = (request.query_params.get("email") or "").strip()
    found = None
    if email:
        try:
            found = await sv.db(live.contact_history, sv.ws.root, email, sv.now())
        except LedgerError as exc:
            return _unavailable(request, exc)
    return sv.page(
        request,
        "dashboard/contacts.html",
        {"title": "Look up an address", "email": email, "found": found},
    )


# ------------------------------------------------------------------------------------------
# Suppressions


async def _suppressions(
    request: Request, *, status: int = 200, error: str | None = None, fields: dict | None = None
) -> Response:
    sv = _services(request)
    q = (request.query_params.get("q") or "").strip().lower()
    email = (request.query_params.get("email") or "").strip().lower()
    try:
        listing = await sv.db(suppressions.listing, None)
        one = await sv.db(suppressions.listing, email) if email else None
    except LedgerError as exc:
        return _unavailable(request, exc)
    rows = [s for s in listing.suppressions if q in s.email] if q else listing.suppressions
    return sv.page(
        request,
        "dashboard/suppressions.html",
        {
            "title": "Suppressions",
            "q": q,
            "email": email,
            "rows": rows[:MAX_LISTED],
            "matching": len(rows),
            "total": len(listing.suppressions),
            "one": one,
            "done": DONE.get(request.query_params.get("done") or ""),
            "error": error,
            "fields": fields or {},
        },
        status=status,
    )


@requires(StaffRole.VIEWER)
async def suppressions_page(request: Request) -> Response:
    return await _suppressions(request)


async def _change(request: Request, add: bool) -> Response:
    sv = _services(request)
    fields = await form(request)
    email = fields.get("email", "").strip()
    why = fields.get("why", "").strip()
    if not email or not why:
        return await _suppressions(
            request,
            status=400,
            error="Give the address and say why.",
            fields={"add" if add else "remove": {"email": email, "why": why}},
        )
    user = request.state.user
    try:
        changed = await sv.db(
            live.change_suppression, add, email, why, user.email, sv.now(), AuditVia.WEB
        )
    except LedgerError as exc:
        return _unavailable(request, exc)
    except OutreachError as exc:
        return await _suppressions(
            request,
            status=400,
            error=exc.message,
            fields={"add" if add else "remove": {"email": email, "why": why}},
        )
    if not add and not changed:
        return await _suppressions(
            request,
            status=404,
            error=f"{email} is not suppressed.",
            fields={"remove": {"email": email, "why": why}},
        )
    log.info("suppression %s by %s (web)", "added" if add else "lifted", user.email)
    done = ("added" if changed else "already") if add else "lifted"
    target = (
        str(request.url_for("suppressions"))
        + "?"
        + urlencode({"email": email.lower(), "done": done})
    )
    return RedirectResponse(target, status_code=303)


@requires(StaffRole.ADMIN)
async def suppression_add(request: Request) -> Response:
    return await _change(request, True)


@requires(StaffRole.ADMIN)
async def suppression_remove(request: Request) -> Response:
    return await _change(request, False)


def routes(services: Services) -> list[BaseRoute]:
    return [
        Route("/", campaigns_page, methods=["GET"], name="home"),
        Route("/campaigns", campaigns_page, methods=["GET"], name="campaigns"),
        Route("/campaigns/{campaign}", report_page, methods=["GET"], name="campaign"),
        Route("/campaigns/{campaign}/report.csv", report_csv, methods=["GET"], name="campaign_csv"),
        Route("/contacts", contacts_page, methods=["GET"], name="contacts"),
        Route("/suppressions", suppressions_page, methods=["GET"], name="suppressions"),
        Route("/suppressions", suppression_add, methods=["POST"], name="suppression_add"),
        Route(
            "/suppressions/remove",
            suppression_remove,
            methods=["POST"],
            name="suppression_remove",
        ),
    ]
