"""The Jinja environment for outreach's pages: templates and the stylesheet ship inside the
package (``outreach/web/templates``, ``outreach/web/static``), autoescape is always on, and an
undefined variable is an error rather than an empty string.

Files meant to travel on their own (the HTML report, the outbox index) inline the stylesheet
(:func:`render_document`); served pages link it from ``/static`` through ``url_for``.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib.resources import files

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from outreach.reputation import pct as reputation_pct


def pct(value: float | None) -> str:
    """A rate as ``37.5%``; ``—`` when there is no denominator."""
    return "—" if value is None else f"{value * 100:.1f}%"


def label(name: str) -> str:
    """A field name as words: ``country_status`` → ``country status``."""
    return str(name).replace("_", " ")


def when(value: datetime | str | None, zone: bool = True) -> str:
    """A time for people: ``1 Dec 2026, 09:00 EST`` (``—`` when there is none)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    text = f"{value.day} {value.strftime('%b %Y, %H:%M')}"
    if zone and value.tzinfo is not None:
        text += f" {value.tzname()}"
    return text


def num(value: int | float | None) -> str:
    """A count with thousands separated: ``12,345``."""
    return "—" if value is None else f"{value:,}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("outreach.web", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = pct
    env.filters["label"] = label
    env.filters["when"] = when
    env.filters["num"] = num
    env.filters["rate"] = reputation_pct
    return env


@cache
def stylesheet() -> str:
    """The shared stylesheet, ``outreach/web/static/outreach.css``."""
    return files("outreach.web").joinpath("static", "outreach.css").read_text(encoding="utf-8")


def render_document(name: str, **context: object) -> str:
    """A self-contained page: the template with the stylesheet inlined (no request, no links)."""
    css = stylesheet()
    if "</" in css:  # would end the <style> element early
        raise ValueError("the stylesheet must not contain '</'")
    return environment().get_template(name).render(inline_css=Markup(css), **context)
