"""The one-click unsubscribe links: ``<prefix>/<send_id>``, where the prefix is the path of the
campaigns' ``unsubscribe.url`` (``/u`` by default).

``GET``
    A small confirmation page in the recipient's language (en/es/fr), whose button POSTs.
``POST``
    RFC 8058 one-click unsubscribe (body ``List-Unsubscribe=One-Click``, no page needed):
    suppresses the row's address, records an ``unsubscribe`` event, answers 200 with the
    "done" page. Repeating it changes nothing more.

``test`` and ``preview`` are inert tokens (test and preview messages); unknown ids answer 404
without saying more. The page shows the address masked (``j•••@example.org``).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlparse

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from outreach.campaign import load_campaign
from outreach.events import TEST_TOKENS, SendInfo, find_send, unsubscribe_link
from outreach.exceptions import LedgerError
from outreach.web.services import Services
from outreach.workspace import Workspace

log = logging.getLogger("outreach.server")

_SEND_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_FORM = 4096  # bytes of form body read; a one-click POST sends 26
RESERVED = ("/events", "/healthz", "/static")  # paths an unsubscribe prefix may not take

TEXTS = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop receiving emails from {org} at {email}?",
        "button": "Unsubscribe",
        "done": "You are unsubscribed: {email} will not receive further emails from {org}.",
        "us": "this sender",
    },
    "es": {
        "title": "Darse de baja",
        "ask": "¿Dejar de recibir correos de {org} en {email}?",
        "button": "Darme de baja",
        "done": "Se ha dado de baja: {email} no recibirá más correos de {org}.",
    },
    "fr": {
        "title": "Se désabonner",
        "ask": "Ne plus recevoir les courriels de {org} à l’adresse {email} ?",
        "button": "Me désabonner",
        "done": "Votre désabonnement est enregistré : {email} ne recevra plus de courriels de {org}.",
    },
}
INERT = {
    "GET": "This is a test link from a test or preview message: using it changes nothing.",
    "POST": "Test link: nothing was changed.",
}


def mask(email: str) -> str:
    """``j•••@example.org``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def language(info: SendInfo) -> str:
    """The page's language: the message's, when there are texts for it, else English."""
    lang = (info.language or "en").split("-")[0].lower()
    return lang if lang in TEXTS else "en"


def unsubscribe_prefixes(ws: Workspace) -> tuple[str, ...]:
    """The URL paths of the workspace's campaigns' ``unsubscribe.url`` (default ``/u``)."""
    found: set[str] = set()
    for path in sorted((ws.root / "campaigns").glob("*.y*ml")):
        try:
            url = load_campaign(ws.root, path.stem).spec.unsubscribe.url
        except Exception as exc:  # a broken campaign must not stop the server
            log.warning(
                "campaign %s does not load (%s); its unsubscribe path is not served", path.name, exc
            )
            continue
        if url:
            p = urlparse(url).path.rstrip("/")
            if p and not any(p == r or p.startswith(r + "/") for r in RESERVED):
                found.add(p)
    return tuple(sorted(found)) or ("/u",)


class Unsubscribe:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._orgs: dict[str, str] = {}

    async def handle(self, request: Request) -> Response:
        sv = self.services
        token = request.path_params["token"]
        if token in TEST_TOKENS:
            method = "POST" if request.method == "POST" else "GET"
            return sv.page(
                request,
                "unsubscribe/inert.html",
                {"lang": "en", "title": "Test link", "message": INERT[method]},
            )
        info: SendInfo | None = None
        if _SEND_ID.match(token):
            info = await sv.db(find_send, token)
        if info is None:
            return PlainTextResponse("Not found\n", status_code=404)
        lang = language(info)
        t = TEXTS[lang]
        org = self._org(info.campaign)
        email = mask(info.email)
        if request.method != "POST":
            return sv.page(
                request,
                "unsubscribe/ask.html",
                {
                    "lang": lang,
                    "title": t["title"],
                    "question": t["ask"].format(org=org, email=email),
                    "button": t["button"],
                },
            )
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_FORM:
                break
        fields = parse_qs(raw[:MAX_FORM].decode("utf-8", "replace"))
        via = "confirmation page" if fields.get("via") == ["page"] else "one-click"
        if fields.get("List-Unsubscribe") == ["One-Click"] and via == "one-click":
            via = "one-click (List-Unsubscribe-Post)"
        client = request.client.host if request.client else None
        try:
            _info, changed = await sv.db(
                unsubscribe_link, token, via=via, client=client, now=sv.clock()
            )
        except LedgerError as exc:
            log.error("could not record an unsubscribe: %s", exc.message)
            return PlainTextResponse("Please try again in a minute.\n", status_code=503)
        if changed:
            sv.stats.unsubscribes += 1
            log.info("unsubscribe via %s for send …%s", via, token[-8:])
        return sv.page(
            request,
            "unsubscribe/done.html",
            {"lang": lang, "title": t["title"], "message": t["done"].format(org=org, email=email)},
        )

    def _org(self, campaign: str) -> str:
        if campaign not in self._orgs:
            try:
                self._orgs[campaign] = load_campaign(
                    self.services.ws.root, campaign
                ).sender.from_name
            except Exception:  # a campaign file that no longer loads must not break unsubscribing
                self._orgs[campaign] = ""
        return self._orgs[campaign] or TEXTS["en"]["us"]


def routes(services: Services) -> list[BaseRoute]:
    handler = Unsubscribe(services).handle
    return [
        Route(prefix + "/{token}", handler, methods=["GET", "POST"])
        for prefix in services.settings.unsubscribe_prefixes
    ]
