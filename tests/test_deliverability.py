"""Deliverability of the shipped December campaign (issue 11, part 1: clean messages).

For every step × language × country status × relationship, the outbox writes an .eml that a
strict parser accepts, with quoted-printable lines of at most 76 characters, header lines of
at most 998, an RFC 2919 List-Id and RFC 8058 one-click unsubscribe headers; the plain-text
part carries every action with its link; and SpamAssassin's local tests score it below 1.0.
"""

from __future__ import annotations

import csv
import email
import re
import time
from datetime import datetime
from email import policy
from email.header import decode_header, make_header
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from outreach.campaign import load_campaign
from outreach.send import QuietUI, SendOptions, send
from outreach.workspace import Workspace
from tests.browser import browser_page, requires_chromium
from tests.conftest import copy_workspace
from tests.content_render import UNSUBSCRIBE, World, contact, shipped, squash
from tests.dates import BEFORE_CIRCULAR
from tests.spamassassin import REQUIRE_VAR, parse_report, require_spamassassin

STEPS = ("circular", "human-rights-day", "last-call")
LANGS = ("en", "es", "fr")
STATUSES = ("ratified", "signed", "not_signed", "unknown")
RELATIONSHIPS = ("member", "ally", "newcomer")
# Argentina ratified, Ghana signed in 2009, Brazil has not signed; no country: unknown
COUNTRY_FOR = {"ratified": "AR", "signed": "GH", "not_signed": "BR", "unknown": ""}
MATRIX = [
    (step, lang, status, rel)
    for step in STEPS
    for lang in LANGS
    for status in STATUSES
    for rel in RELATIONSHIPS
]
NOW = datetime.fromisoformat(BEFORE_CIRCULAR)

SPAM_BAR = 1.0  # issue 11: every message scores below this with `spamassassin -t -L`
QP_LINE = 76  # RFC 2045 §6.7: encoded lines of quoted-printable
HEADER_LINE = 76  # RFC 2047 §2: lines with encoded words (RFC 5322 says 78 for all)
HARD_LINE = 998  # RFC 5322 §2.1.1
LIST_ID = "December reminder-action circular <december.escr-net.org>"
UNSUBSCRIBE_BASE = "https://outreach.escr-net.org/u"
# the five actions in order, with the link each one must carry (booklet 3 rides with action 2)
ACTION_LINKS = ("model_letter", "toolkit_booklet_4", "qa", "national_coalition", "commitment_stamp")
# share rows are HTML-only by design (the text part keeps the messages themselves)
SHARE_PREFIXES = (
    "https://x.com/intent/",
    "https://www.facebook.com/sharer/",
    "https://bsky.app/intent/",
    "https://www.linkedin.com/feed/",
)


def address(lang: str, status: str, rel: str) -> str:
    return f"{rel}.{status}.{lang}@example.org"


def as_written(part: str) -> str:
    """A text as a MIME part carries it: CRLF line ends (RFC 2046 §4.1.1), one at the end."""
    return part.replace("\r\n", "\n").removesuffix("\n").replace("\n", "\r\n") + "\r\n"


def key_id(key: tuple[str, ...]) -> str:
    return "-".join(key)


# ------------------------------------------------------------------------------------------
# The outbox of the whole matrix, written once for the module


@pytest.fixture(scope="module")
def outbox(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str, str], Path]:
    """The shipped campaign sent through the outbox to one contact per language × status ×
    relationship, every step: ``(step, lang, status, rel) → .eml``."""
    root = copy_workspace(tmp_path_factory.mktemp("deliverability") / "ws")
    rows = [
        {
            "email": address(lang, status, rel),
            "first_name": "Alex",
            "last_name": "Doe",
            "organization": "Rights Group",
            "country": COUNTRY_FOR[status],
            "language": lang,
            "relationship": rel,
        }
        for lang in LANGS
        for status in STATUSES
        for rel in RELATIONSHIPS
    ]
    with (root / "lists" / "contacts.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    ws = Workspace.open(root)
    for var in ("SENDGRID_API_KEY", "SENDGRID_API_HOST", "OUTREACH_DB"):
        ws.env.pop(var, None)
    for step in STEPS:
        options = SendOptions(steps=(step,), yes=True, transport="outbox", now=NOW)
        summary = send(ws, "december", options, QuietUI(True))
        assert summary.sent == len(rows), step
    files: dict[tuple[str, str, str, str], Path] = {}
    for step in STEPS:
        for path in (root / "outbox" / "december" / "2026" / step).glob("*.eml"):
            m = re.match(r"(\w+)\.(\w+)\.(\w+)@example\.org--", path.name)
            assert m, path.name
            rel, status, lang = m.groups()
            files[step, lang, status, rel] = path
    assert sorted(files) == sorted(MATRIX)
    return files


# ------------------------------------------------------------------------------------------
# Strict MIME


def check_mime(data: bytes) -> email.message.EmailMessage:
    """The checks every .eml must pass; returns the message parsed strictly."""
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF: lines must end with CRLF"
    # raise_on_defect: any defect the parser notices is an exception, not a note
    msg = email.message_from_bytes(data, policy=policy.strict)
    for part in msg.walk():
        assert not part.defects, part.defects
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "no blank line after the headers"
    for line in head.split(b"\r\n"):
        assert len(line) <= HARD_LINE, f"header line of {len(line)} characters"
        if len(line) > HEADER_LINE:
            # allowed only where no fold is possible: one element after the name (or alone
            # on a continuation line), such as a long <URI> in List-Unsubscribe
            words = line.split()
            continuation = line[:1].isspace()
            assert len(words) == (1 if continuation else 2), f"could be folded: {line!r}"
            assert b"=?" not in line, f"encoded words on a line over {HEADER_LINE}: {line!r}"
    for line in body.split(b"\r\n"):
        assert len(line) <= QP_LINE, f"body line of {len(line)} characters: {line[:80]!r}…"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for p in parts:
        assert p["Content-Transfer-Encoding"] == "quoted-printable"
        assert p.get_content_charset() == "utf-8"
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe"):
        assert len(msg.get_all(name) or []) == 1, f"{name} once"
    return msg


@pytest.mark.parametrize("key", MATRIX, ids=key_id)
def test_outbox_eml_is_strict_mime_with_list_headers(outbox, key) -> None:
    step, lang, status, rel = key
    data = outbox[key].read_bytes()
    msg = check_mime(data)

    send_id = msg["X-Outreach-Send-Id"]
    assert msg["List-Id"] == LIST_ID
    assert msg["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE_BASE}/{send_id}>, "
        f"<mailto:unsubscribe@escr-net.org?subject=unsubscribe%20{send_id}>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = data.partition(b"\r\n\r\n")[0].decode("ascii")
    unsub = re.search(r"^List-Unsubscribe:.*(?:\r\n[ \t].*)*", raw, re.M)
    assert unsub and "=?" not in unsub.group(0), "List-Unsubscribe must not be RFC 2047-encoded"

    # lossless: the parts and the subject decode to exactly what the renderer produced
    r = shipped().render(
        step,
        contact(
            COUNTRY_FOR[status], lang, rel, first_name="Alex", email=address(lang, status, rel)
        ),
    )
    own = f"{UNSUBSCRIBE_BASE}/{send_id}"
    assert msg["Subject"] == r.message.subject
    text, html = (msg.get_body((kind,)).get_content() for kind in ("plain", "html"))
    assert as_written(text) == as_written(r.text.replace(UNSUBSCRIBE, own))
    assert as_written(html) == as_written(r.html.replace(UNSUBSCRIBE, own))
    assert own in text


def test_headers_fold_without_breaking_values(workspace: Path, cli) -> None:
    """Long, non-ASCII and [TEST] subjects, a non-ASCII title and a non-ASCII address: every
    header decodes to its value, none is cut or encoded where it must not be."""
    yaml = workspace / "campaigns" / "december.yaml"
    text = yaml.read_text(encoding="utf-8")
    title = "Circulaire de décembre : ratification du PF-PIDESC, édition spéciale de l’année"
    long_en = "Take action during December to advance the ratification of the OP-ICESCR"
    long_es = "¡Actúe en diciembre para impulsar la ratificación del PF-PIDESC en su país, hoy!"
    for old, new in (
        ("title: December reminder-action circular", f"title: '{title}'"),
        (
            "en: Take action during December to advance OP-ICESCR ratification!",
            f"en: {long_en}",
        ),
        ("es: ¡Actúe en diciembre para impulsar la ratificación del PF-PIDESC!", f"es: {long_es}"),
        ("url: https://outreach.escr-net.org/u", "url: https://désabonnement.example.org/ç"),
        ("mailto: unsubscribe@escr-net.org", "mailto: désabonnement@exämple.org"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    yaml.write_text(text, encoding="utf-8")
    contacts = workspace / "lists" / "contacts.csv"
    contacts.write_text(
        "email,first_name,last_name,organization,country,language,relationship\n"
        "zoë@exämple.org,Zoë,Ångström-Müller,Société des droits,FR,fr,member\n"
        "ana@example.org,Ana María,de los Ángeles Fernández-Castillo,Derechos Ya,AR,es,ally\n"
        "sam@example.org,Sam,Lee,Rights Group,GH,en,newcomer\n",
        encoding="utf-8",
    )
    now = ("--now", BEFORE_CIRCULAR)
    circular = ("send", "december", "--step", "circular", "--yes", *now)
    r = cli(workspace, *circular, "--test-to", "staff@example.org")  # one sample per variant
    assert r.exit_code == 0, r.output
    r = cli(workspace, *circular)
    assert r.exit_code == 0, r.output
    folder = workspace / "outbox" / "december" / "2026" / "circular"
    emls = sorted(folder.glob("*.eml")) + sorted((folder / "tests").glob("*.eml"))
    assert len(emls) == 3 + 3  # three contacts, three variants as tests
    subjects = {
        long_en,
        long_es,
        load_campaign(workspace, "december").step("circular").spec.subject["fr"],
    }
    for path in emls:
        data = path.read_bytes()
        msg = check_mime(data)
        test = path.parent.name == "tests"
        subject = str(msg["Subject"])
        assert subject.startswith("[TEST] ") == test
        assert subject.removeprefix("[TEST] ") in subjects
        # List-Id: ASCII on the wire, the title once decoded
        raw_list_id = re.search(rb"^List-Id: (.*(?:\r\n[ \t].*)*)", data, re.M)
        assert raw_list_id and raw_list_id.group(1).isascii()
        phrase, _, ident = str(msg["List-Id"]).rpartition(" ")
        assert ident == "<december.escr-net.org>"
        assert str(make_header(decode_header(phrase))) == title
        # List-Unsubscribe: an IRI and an address that are not ASCII, as URIs
        token = "test" if test else msg["X-Outreach-Send-Id"]
        assert msg["List-Unsubscribe"] == (
            f"<https://xn--dsabonnement-beb.example.org/%C3%A7/{token}>, "
            f"<mailto:d%C3%A9sabonnement@ex%C3%A4mple.org?subject=unsubscribe%20{token}>"
        )
    zoe = next(p for p in emls if p.name.startswith("zo"))
    # an SMTPUTF8 message (RFC 6532): UTF-8 headers, which Python reads from text, not bytes
    msg = email.message_from_string(zoe.read_bytes().decode("utf-8"), policy=policy.strict)
    assert msg["To"].addresses[0].addr_spec == "zoë@exämple.org"
    assert msg["To"].addresses[0].display_name == "Zoë Ångström-Müller"


# ------------------------------------------------------------------------------------------
# Nothing hidden

HIDDEN = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0(?![.\d]*[1-9])"
    r"|max-height\s*:\s*0(?:px)?\s*[;\"]",
    re.I,
)
PREHEADER_EN = {
    "circular": "10 December: Human Rights Day and the 18th anniversary of the OP-ICESCR. "
    "Five actions you can take.",
    "human-rights-day": "28 countries now give their people access to justice at the UN. "
    "Post a message today and ask your government to act.",
    "last-call": "In case you missed our December circular: five actions for OP-ICESCR "
    "ratification, and messages ready to share.",
}


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("lang", LANGS)
def test_preheader_is_the_first_visible_line_and_nothing_is_hidden(step: str, lang: str) -> None:
    r = shipped().render(step, contact("GH", lang, "ally"))
    assert not HIDDEN.search(r.html), HIDDEN.search(r.html)
    # inbox previews show the first text of the body: the preheader, in both parts
    first = r.text.split("\n\n", 1)[0]
    assert r.visible.startswith(squash(first))
    coalition = {"en": "NGO Coalition", "es": "Coalición de ONG", "fr": "Coalition des ONG"}
    assert not first.startswith(coalition[lang]), "the band came first, not the preheader"
    if lang == "en":
        assert first == PREHEADER_EN[step]


_CONTRAST_JS = """
(text) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode()) && !node.textContent.includes(text)) {}
  if (!node) return null;
  const el = node.parentElement;
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let bg = el;
  while (bg && getComputedStyle(bg).backgroundColor.match(/rgba\\(.*, 0\\)|transparent/)) {
    bg = bg.parentElement;
  }
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  const [l1, l2] = [lum(rgb(style.color)), lum(rgb(getComputedStyle(bg).backgroundColor))];
  return {
    height: box.height, width: box.width, top: box.top, fontSize: parseFloat(style.fontSize),
    contrast: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05),
  };
}
"""


@pytest.mark.browser
@requires_chromium
@pytest.mark.parametrize("width", [375, 600])
def test_preheader_is_readable_in_a_browser(tmp_path: Path, width: int) -> None:
    """Chromium lays the preheader out at the top, in a readable size and contrast (WCAG AA)."""
    r = shipped().render("circular", contact("GH", "en", "ally"))
    page_file = tmp_path / "circular.html"
    page_file.write_text(r.html, encoding="utf-8")
    with browser_page(width) as (page, errors):
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        found = page.evaluate(_CONTRAST_JS, PREHEADER_EN["circular"][:40])
        assert errors == []
    assert found is not None, "the preheader is not in the page"
    assert found["height"] > 0 and found["width"] > 0
    assert found["top"] < 100, "the preheader is the first thing in the message"
    assert found["fontSize"] >= 12
    assert found["contrast"] >= 4.5, found


# ------------------------------------------------------------------------------------------
# The plain-text part


class _Anchors(HTMLParser):
    """(href, visible text) of every link in an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._open: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open.append((dict(attrs).get("href") or "", []))

    def handle_data(self, data: str) -> None:
        for _, text in self._open:
            text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            href, text = self._open.pop()
            self.links.append((href, squash("".join(text))))


def anchors(html: str) -> list[tuple[str, str]]:
    p = _Anchors()
    p.feed(html)
    p.close()
    return p.links


@pytest.fixture(scope="module")
def distinct_links(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The shipped campaign with a distinct address for every link (the shipped file still has
    the same placeholder for several), so each action can be matched with its own link."""
    root = copy_workspace(tmp_path_factory.mktemp("links") / "ws")
    path = root / "campaigns" / "december.yaml"
    text, n = re.subn(
        r"(?m)^  (\w+):\n    url: https://www\.escr-net\.org/$",
        lambda m: f"  {m.group(1)}:\n    url: https://links.example.org/{m.group(1)}",
        path.read_text(encoding="utf-8"),
    )
    assert n >= len(ACTION_LINKS) + 2
    path.write_text(text, encoding="utf-8")
    world = World(load_campaign(root, "december"))
    urls = [world.campaign.links[k].url for k in ACTION_LINKS]
    assert len(set(urls)) == len(urls)
    return world


def action_blocks(step: str, text: str) -> list[str]:
    """The five actions of a text part, as written there (numbered sections or bullets)."""
    if step == "human-rights-day":
        return [line for line in text.splitlines() if line.startswith("• ")]
    heads = list(re.finditer(r"(?m)^([1-9])\. ", text))
    blocks = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        blocks.append(text[m.start() : end].split("\n\n\n")[0])
    # the last action ends where the next section (two blank-line-separated headings) starts
    return blocks


@pytest.mark.parametrize(
    ("step", "lang", "status"),
    [(s, la, st) for s in STEPS for la in LANGS for st in STATUSES],
    ids=lambda v: v,
)
def test_text_part_carries_every_action_and_link(distinct_links: World, step, lang, status):
    links = distinct_links.campaign.links
    for rel in RELATIONSHIPS:
        r = distinct_links.render(step, contact(COUNTRY_FOR[status], lang, rel))
        text = r.text
        # each of the five actions, in order, with its own link
        blocks = action_blocks(step, text)
        assert len(blocks) == 5, f"{len(blocks)} actions in the text part ({rel})"
        for n, (block, key) in enumerate(zip(blocks, ACTION_LINKS, strict=True), 1):
            if step != "human-rights-day":
                block = block.split("\n\n" + str(n + 1) + ". ")[0]
            assert f"({links[key].url})" in block, f"action {n} lacks its link {key} ({rel})"
        if step != "human-rights-day":
            assert f"({links['toolkit_booklet_3'].url})" in blocks[1]
        # every link of the HTML, with its words, except the HTML-only share rows
        flat = squash(text)
        for href, label in anchors(r.html):
            if href.startswith(SHARE_PREFIXES):
                continue
            if href.startswith("mailto:"):
                assert urlparse(href).path in flat, href
            elif label and label != href:
                assert f"{label} ({href})" in flat, f"{label!r} → {href} missing ({rel})"
            else:
                assert href in flat, href


# ------------------------------------------------------------------------------------------
# SpamAssassin

# one message per step × language × status; the relationship turns with them, so each step
# and language meets every relationship
SCORED = [
    (step, lang, status, RELATIONSHIPS[(i + j) % len(RELATIONSHIPS)])
    for step in STEPS
    for i, lang in enumerate(LANGS)
    for j, status in enumerate(STATUSES)
]


@pytest.mark.slow
def test_spamassassin_scores_every_step_language_and_status_below_1(outbox, spamassassin):
    paths = [outbox[k] for k in SCORED]
    started = time.perf_counter()
    scores = spamassassin.score_all(paths)
    elapsed = time.perf_counter() - started
    assert len(scores) == len(SCORED) == len(STEPS) * len(LANGS) * len(STATUSES)
    too_high = [s for s in scores if s.points >= SPAM_BAR]
    assert not too_high, "scores ≥ 1.0:\n" + "\n".join(map(str, too_high))
    print(f"spamassassin -t -L: {len(scores)} messages in {elapsed:.1f} s")


REPORT = """\
Content analysis details:   (2.7 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
-0.0 NO_RECEIVED            Informational: message has no Received headers
 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or identical to
                            background
 0.0 MIME_QP_LONG_LINE      RAW: Quoted-printable line longer than 76 chars
 1.0 LONG_INVISIBLE_TEXT    Long block of hidden text - bayes poison?

From: someone
"""


def test_spamassassin_report_is_read() -> None:
    s = parse_report(Path("x.eml"), "Spam detection software…\n\n" + REPORT)
    assert s.points == 2.7
    assert s.rules == (
        ("NO_RECEIVED", -0.0),
        ("HTML_FONT_LOW_CONTRAST", 0.7),
        ("MIME_QP_LONG_LINE", 0.0),
        ("LONG_INVISIBLE_TEXT", 1.0),
    )
    assert str(s) == "x.eml: 2.7 (HTML_FONT_LOW_CONTRAST 0.7, LONG_INVISIBLE_TEXT 1)"


def test_missing_spamassassin_skips_but_fails_where_required(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no spamassassin on it
    monkeypatch.delenv(REQUIRE_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception, match="spamassassin is not installed"):
        require_spamassassin(tmp_path)
    monkeypatch.setenv(REQUIRE_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_VAR):
        require_spamassassin(tmp_path)
