"""The recipients' links: ``<prefix>/<send_id>``, where the prefix is the path of the
campaigns' ``unsubscribe.url`` (``/u`` by default). Each message's footer links there
("Manage your preferences or unsubscribe") and its ``List-Unsubscribe`` header names it.

``GET``
    The recipient's preference page, in the message's language (en/es/fr): leave this
    campaign only (or receive it again), change language among the campaign's languages, or
    leave every coalition mailing (a button that POSTs like a one-click client).
``POST``
    RFC 8058 one-click unsubscribe (body ``List-Unsubscribe=One-Click``, no page needed):
    suppresses the row's address, records an ``unsubscribe`` event, answers 200 with the
    "done" page. Repeating it changes nothing more. Never rate-limited, never needs a token
    (mail providers send it from shared addresses, without a page).
``POST <prefix>/<send_id>/preferences``
    The page's other choices (:mod:`outreach.preferences`): ``choice`` is ``leave_campaign``,
    ``rejoin_campaign`` or ``language`` (with ``language``), recorded in the store for this
    send's recipient only. The form carries ``csrf_token``, a signature of the send id and the
    time (``OUTREACH_SECRET_KEY``, valid :data:`FORM_AGE`); without a valid one: 403.

``test`` and ``preview`` are inert tokens (test and preview messages); unknown ids answer 404
without saying more. The page shows the address masked (``j•••@example.org``). Page views
and preference POSTs are limited per client address (:data:`PAGE_LIMIT` per
:data:`PAGE_WINDOW` seconds, per worker): beyond, 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from babel import Locale
from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from outreach import preferences
from outreach.campaign import load_campaign
from outreach.events import TEST_TOKENS, SendInfo, find_send, unsubscribe_link
from outreach.exceptions import LedgerError
from outreach.store.codes import PreferenceKind
from outreach.web.ratelimit import RateLimit
from outreach.web.services import CSRF_FIELD, Services, read_capped
from outreach.workspace import Workspace

log = logging.getLogger("outreach.server")

_SEND_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_FORM = 4096  # bytes of form body read; a one-click POST sends 26
RESERVED = ("/events", "/healthz", "/static")  # paths an unsubscribe prefix may not take
PREFERENCES = "/preferences"  # the form's path, after <prefix>/<send_id>
PAGE_LIMIT = 30  # page views and preference POSTs per client address…
PAGE_WINDOW = 600  # …in this many seconds (per worker process)
FORM_AGE = 24 * 3600  # seconds a page's form stays valid
CHOICES = {k.value: k for k in PreferenceKind}

TEXTS = {
    "en": {
        "title": "Your email preferences",
        "intro": "Emails from {org} to {email}.",
        "campaign_h": "This campaign only",
        "leave_text": (
            "Stop receiving the messages of this campaign. Other mailings from {org} will "
            "still reach you."
        ),
        "leave_button": "Leave this campaign",
        "left_text": "You have left this campaign: its messages no longer reach {email}.",
        "rejoin_button": "Receive this campaign again",
        "language_h": "Language",
        "language_label": "Receive our emails in",
        "language_button": "Save",
        "all_h": "All mailings",
        "suppressed": "{email} is unsubscribed from every mailing of {org}.",
        "done_title": "Unsubscribe",
        "ask": "Stop receiving emails from {org} at {email}?",
        "button": "Unsubscribe",
        "done": "You are unsubscribed: {email} will not receive further emails from {org}.",
        "done_leave": (
            "Done: {email} will not receive further messages of this campaign. Other mailings "
            "from {org} will still reach you."
        ),
        "done_rejoin": "Done: {email} will receive the messages of this campaign again.",
        "done_language": "Done: from now on, {org} will write to {email} in {language}.",
        "back": "Back to your preferences",
        "expired": "This form has expired. Please open the link in your email again.",
        "us": "this sender",
    },
    "es": {
        "title": "Sus preferencias de correo",
        "intro": "Correos de {org} a {email}.",
        "campaign_h": "Solo esta campaña",
        "leave_text": (
            "Dejar de recibir los mensajes de esta campaña. Los demás envíos de {org} le "
            "seguirán llegando."
        ),
        "leave_button": "Salir de esta campaña",
        "left_text": "Ha salido de esta campaña: sus mensajes ya no llegan a {email}.",
        "rejoin_button": "Volver a recibir esta campaña",
        "language_h": "Idioma",
        "language_label": "Recibir nuestros correos en",
        "language_button": "Guardar",
        "all_h": "Todos los envíos",
        "suppressed": "La dirección {email} está dada de baja de todos los envíos de {org}.",
        "done_title": "Darse de baja",
        "ask": "¿Dejar de recibir correos de {org} en {email}?",
        "button": "Darme de baja",
        "done": "Se ha dado de baja: {email} no recibirá más correos de {org}.",
        "done_leave": (
            "Hecho: {email} no recibirá más mensajes de esta campaña. Los demás envíos de {org} "
            "le seguirán llegando."
        ),
        "done_rejoin": "Hecho: {email} volverá a recibir los mensajes de esta campaña.",
        "done_language": "Hecho: a partir de ahora, {org} escribirá a {email} en {language}.",
        "back": "Volver a sus preferencias",
        "expired": "Este formulario ha caducado. Vuelva a abrir el enlace de su correo.",
    },
    "fr": {
        "title": "Vos préférences de courriel",
        "intro": "Courriels de {org} à l’adresse {email}.",
        "campaign_h": "Cette campagne seulement",
        "leave_text": (
            "Ne plus recevoir les messages de cette campagne. Les autres envois de {org} "
            "continueront de vous parvenir."
        ),
        "leave_button": "Quitter cette campagne",
        "left_text": "Vous avez quitté cette campagne : ses messages ne parviennent plus à {email}.",
        "rejoin_button": "Recevoir à nouveau cette campagne",
        "language_h": "Langue",
        "language_label": "Recevoir nos courriels en",
        "language_button": "Enregistrer",
        "all_h": "Tous les envois",
        "suppressed": "L’adresse {email} est désabonnée de tous les envois de {org}.",
        "done_title": "Se désabonner",
        "ask": "Ne plus recevoir les courriels de {org} à l’adresse {email} ?",
        "button": "Me désabonner",
        "done": "Votre désabonnement est enregistré : {email} ne recevra plus de courriels de {org}.",
        "done_leave": (
            "C’est fait : {email} ne recevra plus les messages de cette campagne. Les autres "
            "envois de {org} continueront de vous parvenir."
        ),
        "done_rejoin": "C’est fait : {email} recevra à nouveau les messages de cette campagne.",
        "done_language": "C’est fait : désormais, {org} écrira à {email} en {language}.",
        "back": "Retour à vos préférences",
        "expired": "Ce formulaire a expiré. Veuillez rouvrir le lien de votre courriel.",
    },
}
INERT = {
    "GET": "This is a test link from a test or preview message: using it changes nothing.",
    "POST": "Test link: nothing was changed.",
}
TOO_MANY = "Too many requests from your address. Please wait {minutes} minute(s) and try again."


def mask(email: str) -> str:
    """``j•••@example.org``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def language(info: SendInfo) -> str:
    """The page's language: the message's, when there are texts for it, else English."""
    return page_language(info.language)


def page_language(code: str | None) -> str:
    """``code``'s primary language when there are texts for it, else English."""
    lang = (code or "en").split("-")[0].lower()
    return lang if lang in TEXTS else "en"


def language_name(code: str, in_language: str) -> str:
    """``code``'s name in ``in_language`` (``fr`` in ``es``: ``francés``), or the code."""
    try:
        return Locale.parse(code).get_display_name(in_language) or code
    except (ValueError, LookupError):
        return code


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


@dataclass(frozen=True)
class CampaignFacts:
    org: str  # the sender's name ("" when the campaign no longer loads)
    languages: tuple[str, ...]  # the campaign's languages (a language choice is one of them)


class FormSigner(TimestampSigner):
    """Signs the page's form token (the send id and the time) on the app's clock."""

    def __init__(self, secret: str, clock) -> None:
        super().__init__(secret, salt="outreach.preferences", digest_method=hashlib.sha256)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())

    def token(self, send_id: str) -> str:
        """The form's CSRF token for ``send_id`` (its signature, without the id itself)."""
        return self.sign(send_id).decode("ascii")[len(send_id) + 1 :]

    def valid(self, send_id: str, token: str | None) -> bool:
        """``token`` was made for ``send_id`` by this secret, less than FORM_AGE ago."""
        if not token or not token.isascii():
            return False
        try:
            self.unsign(f"{send_id}.{token}", max_age=FORM_AGE)
        except BadSignature:
            return False
        return True


async def read_form(request: Request) -> dict[str, list[str]]:
    """The urlencoded body (at most :data:`MAX_FORM` bytes read)."""
    return parse_qs(await read_capped(request, MAX_FORM))


class Unsubscribe:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._campaigns: dict[str, CampaignFacts] = {}
        self.limit = RateLimit(PAGE_LIMIT, PAGE_WINDOW, services.clock)
        # `outreach serve` gives every worker the same key; a bare app without one (tests of
        # other routes) signs with its own
        secret = services.settings.secret_key or secrets.token_urlsafe(32)
        self.forms = FormSigner(secret, services.clock)

    # -- shared steps -------------------------------------------------------------------------

    def _limited(self, request: Request) -> Response | None:
        """A 429 answer when the client is over :data:`PAGE_LIMIT` (else None: counted)."""
        client = request.client.host if request.client else "?"
        wait = self.limit.hit(client)
        if wait is None:
            return None
        self.services.stats.rejected["preferences-rate-limit"] += 1
        log.warning("preference page: rate limit for %s (retry after %d s)", client, wait)
        response = self.services.page(
            request,
            "unsubscribe/message.html",
            {
                "lang": "en",
                "title": "Too many requests",
                "message": TOO_MANY.format(minutes=max(1, round(wait / 60))),
            },
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response

    def _inert(self, request: Request, method: str) -> Response:
        return self.services.page(
            request,
            "unsubscribe/inert.html",
            {"lang": "en", "title": "Test link", "message": INERT[method]},
        )

    async def _find(self, token: str) -> SendInfo | None:
        return await self.services.db(find_send, token) if _SEND_ID.match(token) else None

    def _facts(self, campaign: str) -> CampaignFacts:
        if campaign not in self._campaigns:
            try:
                c = load_campaign(self.services.ws.root, campaign)
                facts = CampaignFacts(c.sender.from_name, tuple(c.languages))
            except Exception:  # a campaign file that no longer loads must not break unsubscribing
                facts = CampaignFacts("", ())
            self._campaigns[campaign] = facts
        return self._campaigns[campaign]

    def _org(self, campaign: str) -> str:
        return self._facts(campaign).org or TEXTS["en"]["us"]

    # -- <prefix>/<send_id> ---------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        sv = self.services
        token = request.path_params["token"]
        if request.method != "POST" and (limited := self._limited(request)):
            return limited
        if token in TEST_TOKENS:
            return self._inert(request, "POST" if request.method == "POST" else "GET")
        info = await self._find(token)
        if info is None:
            return PlainTextResponse("Not found\n", status_code=404)
        if request.method != "POST":
            return await self._page(request, info)
        lang = language(info)
        t = TEXTS[lang]
        org = self._org(info.campaign)
        email = mask(info.email)
        fields = await read_form(request)
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
            {
                "lang": lang,
                "title": t["done_title"],
                "message": t["done"].format(org=org, email=email),
            },
        )

    async def _page(self, request: Request, info: SendInfo) -> Response:
        sv = self.services
        lang = language(info)
        t = TEXTS[lang]
        facts = self._facts(info.campaign)
        org = self._org(info.campaign)
        email = mask(info.email)
        try:
            state = await sv.db(preferences.recipient_state, info)
        except LedgerError as exc:
            log.error("could not read a recipient's preferences: %s", exc.message)
            return PlainTextResponse("Please try again in a minute.\n", status_code=503)
        current = state.language or page_language(info.language)
        languages = [
            {"code": code, "name": _capital(language_name(code, code)), "selected": code == current}
            for code in facts.languages
        ]
        return sv.page(
            request,
            "unsubscribe/preferences.html",
            {
                "lang": lang,
                "title": t["title"],
                "t": t,
                "intro": t["intro"].format(org=org, email=email),
                "left": state.left,
                "left_text": t["left_text"].format(email=email),
                "leave_text": t["leave_text"].format(org=org),
                "suppressed": t["suppressed"].format(org=org, email=email)
                if state.suppressed
                else None,
                "languages": languages if len(languages) > 1 else [],
                "question": t["ask"].format(org=org, email=email),
                "button": t["button"],
                "form_url": request.url.path + PREFERENCES,
                "form_token": self.forms.token(info.send_id),
            },
        )

    # -- <prefix>/<send_id>/preferences ---------------------------------------------------------

    async def choose(self, request: Request) -> Response:
        sv = self.services
        token = request.path_params["token"]
        if limited := self._limited(request):
            return limited
        if token in TEST_TOKENS:
            return self._inert(request, "POST")
        info = await self._find(token)
        if info is None:
            return PlainTextResponse("Not found\n", status_code=404)
        lang = language(info)
        t = TEXTS[lang]
        fields = {k: v[0] for k, v in (await read_form(request)).items()}
        back = request.url.path[: -len(PREFERENCES)]
        if not self.forms.valid(token, fields.get(CSRF_FIELD)):
            sv.stats.rejected["preferences-csrf"] += 1
            log.warning("preference form without a valid token for send …%s", token[-8:])
            return sv.page(
                request,
                "unsubscribe/message.html",
                {
                    "lang": lang,
                    "title": t["title"],
                    "message": t["expired"],
                    "back_url": back,
                    "back": t["back"],
                },
                status=403,
            )
        kind = CHOICES.get(fields.get("choice", ""))
        chosen = fields.get("language") if kind is PreferenceKind.LANGUAGE else None
        facts = self._facts(info.campaign)
        if kind is None or (kind is PreferenceKind.LANGUAGE and chosen not in facts.languages):
            return PlainTextResponse("Bad request\n", status_code=400)
        client = request.client.host if request.client else None
        try:
            done = await sv.db(preferences.record, token, kind, chosen, client=client, now=sv.now())
        except LedgerError as exc:
            log.error("could not record a preference: %s", exc.message)
            return PlainTextResponse("Please try again in a minute.\n", status_code=503)
        if done is None:
            return PlainTextResponse("Not found\n", status_code=404)
        if done.changed:
            log.info(
                "preference %s%s for send …%s", kind, f" ({chosen})" if chosen else "", token[-8:]
            )
        org, email = self._org(info.campaign), mask(info.email)
        if kind is PreferenceKind.LANGUAGE:
            assert chosen is not None
            lang = page_language(chosen) if chosen.split("-")[0] in TEXTS else lang
            t = TEXTS[lang]
            message = t["done_language"].format(
                org=org, email=email, language=language_name(chosen, lang)
            )
        elif kind is PreferenceKind.LEAVE_CAMPAIGN:
            message = t["done_leave"].format(org=org, email=email)
        else:
            message = t["done_rejoin"].format(email=email)
        return sv.page(
            request,
            "unsubscribe/done.html",
            {
                "lang": lang,
                "title": t["title"],
                "message": message,
                "back_url": back,
                "back": t["back"],
            },
        )


def _capital(name: str) -> str:
    return name[:1].upper() + name[1:]


def routes(services: Services) -> list[BaseRoute]:
    unsubscribe = Unsubscribe(services)
    out: list[BaseRoute] = []
    for prefix in services.settings.unsubscribe_prefixes:
        out.append(Route(prefix + "/{token}", unsubscribe.handle, methods=["GET", "POST"]))
        out.append(Route(prefix + "/{token}" + PREFERENCES, unsubscribe.choose, methods=["POST"]))
    return out
