"""Helpers for the content tests: render a step for one contact, and read the result.

Rendering goes the way a send does (variant, then fill), so what the tests read is what a
recipient would get.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

from outreach.campaign import Campaign, load_campaign
from outreach.contacts import Contact
from outreach.context import ContextBuilder
from outreach.countries import CountryTable
from outreach.render import Message, Renderer, Variant

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "content"
UNSUBSCRIBE = "https://outreach.escr-net.org/u/5f0c2b9e4d7a4e6b8c1d2e3f4a5b6c7d"
GMAIL_CLIP = 102 * 1024
FORBIDDEN = (
    "{{",
    "}}",
    "{%",
    "%}",
    "[country]",
    "#[",
    "None",
    "[[",
    "]]",
    "@governmentAccount",
    "[link",
    "[Link",
)


@dataclass
class Rendered:
    message: Message
    variant: Variant
    language: str
    naive: Message | None

    @property
    def html(self) -> str:
        return self.message.html

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def visible(self) -> str:
        return visible_text(self.message.html)


class World:
    """A campaign with its country data, renderer and context builder."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.countries = CountryTable.load(campaign.countries_path())
        self.renderer = Renderer(REPO / "templates", campaign.default_language)
        self.builder = ContextBuilder(campaign, self.countries)

    def render(self, step_id: str, contact: Contact, naive: bool = False) -> Rendered:
        c = self.campaign
        step = c.step(step_id)
        template = step.spec.template
        _tpl, lang = self.renderer.resolve_template(template, contact.language)
        subject, _ = step.spec.text_for("subject", lang, c.default_language)
        preheader, _ = step.spec.text_for("preheader", lang, c.default_language)
        data = self.builder.recipient(step, contact, lang, UNSUBSCRIBE)
        variant = self.renderer.variant(step.id, template, lang, data, subject or "", preheader)
        message = variant.fill(data.flat_values())
        direct = (
            self.renderer.render_naive(template, lang, data, subject or "", preheader)
            if naive
            else None
        )
        return Rendered(message, variant, lang, direct)


@cache
def shipped() -> World:
    return World(load_campaign(REPO, "december", edition=2026))


@cache
def world_2015() -> World:
    return World(load_campaign(REPO, str(FIXTURES / "december-2015.yaml")))


def contact(
    country: str,
    language: str = "en",
    relationship: str = "member",
    first_name: str = "Alex",
    organization: str = "Rights Group",
    email: str | None = None,
) -> Contact:
    address = email or f"{relationship}.{country.lower() or 'xx'}.{language}@example.org"
    return Contact(
        source="test.csv",
        row=2,
        email=address,
        contact_id=address,
        first_name=first_name,
        last_name="Doe" if first_name else "",
        organization=organization,
        country=country,
        language=language,
        relationship=relationship,
    )


# ------------------------------------------------------------------------------------------
# Reading the HTML


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href") is not None:
            self.hrefs.append(a["href"] or "")
        elif tag == "img":
            self.images.append(a)
        elif tag == "html":
            self.html_lang = a.get("lang")


def parse(html_text: str) -> _Links:
    p = _Links()
    p.feed(html_text)
    p.close()
    return p


def visible_text(html_text: str) -> str:
    """The body's text as a reader sees it: no tags, no head, no comments, one-spaced."""
    body = html_text.split("<body", 1)[-1].split(">", 1)[-1]
    body = re.sub(r"<!--.*?-->", " ", body, flags=re.S)
    body = re.sub(r"<[^>]+>", " ", body)
    return squash(html.unescape(body))


def squash(text: str) -> str:
    """One space between words (no-break spaces count as spaces) and none before punctuation
    that follows a tag boundary such as '</a>.'."""
    text = re.sub(r"[\s\u00a0\u202f]+", " ", text)
    return re.sub(r" ([.,)])", r"\1", text).strip()
