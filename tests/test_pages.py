"""The pages outreach writes (the HTML report, the outbox index) and serves come from Jinja
templates shipped in the package, escaped, with one shared stylesheet."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from outreach.campaign import load_campaign
from outreach.ledger import Ledger
from outreach.report import report
from outreach.report_html import to_html
from outreach.transports.outbox import OutboxTransport, eml_name
from outreach.web.templating import environment, render_document, stylesheet
from tests.dates import webhook_now

NOW = webhook_now()  # reports and plans as of the webhook's clock

WEB = Path(__file__).resolve().parent.parent / "outreach" / "web"
EVIL = '<script>alert("x")</script>&'


def test_templates_and_stylesheet_ship_as_package_data() -> None:
    config = tomllib.loads((WEB.parent.parent / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["outreach.web"]
    shipped = [p for p in WEB.rglob("*") if p.is_file() and p.suffix in (".html", ".css")]
    names = {p.relative_to(WEB).as_posix() for p in shipped}
    assert {"templates/base.html", "templates/report/page.html", "static/outreach.css"} <= names
    for path in shipped:
        rel = path.relative_to(WEB).as_posix()
        assert any(_glob(g).fullmatch(rel) for g in globs), f"{rel} is not in package-data"


def _glob(pattern: str) -> re.Pattern:
    """setuptools' package-data glob as a regex (``**/`` any folders, ``*`` within one)."""
    out = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
    return re.compile(out)


def test_the_environment_escapes_and_refuses_undefined_names() -> None:
    env = environment()
    assert env.from_string("{{ x }}").render(x=EVIL) == (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;"
    )
    with pytest.raises(UndefinedError):
        env.get_template("outbox/index.html").render()


def test_the_stylesheet_can_be_inlined() -> None:
    css = stylesheet()
    assert "</" not in css and ":root" in css
    page = render_document(
        "outbox/index.html", campaign="c", title="t", edition=2026, step="s", messages=[]
    )
    assert page.count("<style>") == 1 and css in page


# ------------------------------------------------------------------------------------------
# The outbox index


def test_the_outbox_index_links_every_message_written(sent_ws) -> None:
    folder = sent_ws.root / "outbox" / "december" / "2026" / "circular"
    page = (folder / "index.html").read_text()
    assert page.startswith('<!doctype html>\n<html lang="en">')
    assert "<style>" in page and "<link" not in page and "<script" not in page
    hrefs = re.findall(r'<a href="([^"]+)">([^<]+)</a>', page)
    assert len(hrefs) == 57 == len(list(folder.glob("*.eml")))
    for href, email in hrefs:
        assert (folder / href).is_file()
        assert href.startswith(re.sub(r"[^A-Za-z0-9._@+-]+", "_", email)[:20])
    assert "Nothing here was emailed" in page and "(57 messages)" in page
    # every row has one cell per column
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", page).group(1)
    for row in re.findall(r"<tbody>\s*<tr>(.*?)</tr>", page, re.S):
        assert row.count("<td") == header.count("<th")


def test_the_outbox_index_escapes_what_it_shows(sent_ws) -> None:
    path = sent_ws.root / "campaigns" / "december.yaml"
    path.write_text(
        path.read_text().replace(
            "title: December reminder-action circular", "title: '" + EVIL + "'"
        )
    )
    campaign = load_campaign(sent_ws.root, "december", edition=2026)
    transport = OutboxTransport(sent_ws, campaign)
    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        path = transport.write_index(ledger, "circular")
    page = path.read_text()
    assert EVIL not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;" in page
    page = render_document(
        "outbox/index.html",
        campaign="c",
        title="t",
        edition=2026,
        step="s",
        messages=[
            {
                "file": 'a"b.eml',
                "email": EVIL,
                "relationship": "",
                "country": "—",
                "country_status": "",
                "language": "",
                "variant": "",
            }
        ],
    )
    assert 'href="a&#34;b.eml"' in page and "<script>" not in page
    assert eml_name("x@y.org", "0" * 32).endswith(".eml")


# ------------------------------------------------------------------------------------------
# The HTML report


@pytest.fixture
def report_html(sent_ws) -> str:
    from tests.test_report import add_events

    add_events(sent_ws)
    return to_html(report(sent_ws, "december", now=NOW))


def test_the_report_page_is_accessible_markup(report_html: str) -> None:
    page = report_html
    assert page.startswith('<!doctype html>\n<html lang="en">')
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in page
    assert re.search(
        r"<title>December reminder-action circular — 2026 edition — report</title>", page
    )
    assert page.count("<h1>") == 1 and page.index("<h1>") < page.index("<h2>")
    # every header cell says what it heads; every table can scroll on its own on a phone
    assert re.findall(r"<th(?=[ >])(?! scope=)", page) == []
    assert page.count("<table>") == page.count('<div class="table-scroll">\n<table>')
    # key figures are a description list: label and value read together
    assert re.search(r'<div class="kpi"><dt>sent</dt><dd>57</dd></div>', page)
    # the reputation guard's line, as in the terminal table
    assert re.search(r'<p class="reputation (ok|watch|unknown|over)">[✓!✗] reputation: ', page)
    # the charts' data are there as a table too
    assert "Opens and clicks per hour (UTC), as a table" in page


def test_the_report_escapes_names_in_pages_and_charts(sent_ws) -> None:
    from tests.test_report import add_events

    add_events(sent_ws)
    rep = report(sent_ws, "december", now=NOW)
    rep.title = EVIL
    step = rep.steps[0]
    step.links[0]["link"] = EVIL
    step.by["segment"][0]["value"] = EVIL
    page = to_html(rep)
    assert "<script" not in page
    # in the HTML, and inside the SVG chart of clicks per link
    assert page.count("&lt;script&gt;alert(") >= 4
