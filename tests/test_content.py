"""The December campaign's content: every relationship × country status × language, for
every step, checked against the issue's quality bars (see notes on issue 5)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from outreach.contacts import load_for_campaign
from outreach.context import join_names, name_in_text
from tests.content_render import (
    FORBIDDEN,
    GMAIL_CLIP,
    UNSUBSCRIBE,
    Rendered,
    contact,
    parse,
    shipped,
    squash,
    world_2015,
)

STEPS = ("circular", "human-rights-day", "last-call")
LANGS = ("en", "es", "fr")
RELATIONSHIPS = ("member", "ally", "newcomer")
# one State per status in 2026: Argentina ratified (and has a known government handle),
# Ghana signed in 2009, Brazil has not signed
COUNTRY_FOR = {"ratified": "AR", "signed": "GH", "not_signed": "BR", "unknown": ""}

STATUS_SENTENCE = {
    ("en", "ratified"): "Argentina ratified the OP-ICESCR on 24 October 2011.",
    ("en", "signed"): "Ghana signed the OP-ICESCR in 2009 but has not ratified it.",
    ("en", "not_signed"): "Brazil has not yet signed the OP-ICESCR.",
    (
        "en",
        "unknown",
    ): "Has your country ratified the OP-ICESCR? Check the status of your country here.",
    ("es", "ratified"): "Argentina ratificó el PF-PIDESC el 24 de octubre de 2011.",
    ("es", "signed"): "Ghana firmó el PF-PIDESC en 2009, pero aún no lo ha ratificado.",
    ("es", "not_signed"): "Brasil aún no ha firmado el PF-PIDESC.",
    (
        "es",
        "unknown",
    ): "¿Ha ratificado su país el PF-PIDESC? Consulte aquí la situación de su país.",
    ("fr", "ratified"): "Votre pays (Argentine) a ratifié le PF-PIDESC le 24 octobre 2011.",
    (
        "fr",
        "signed",
    ): "Votre pays (Ghana) a signé le PF-PIDESC en 2009, mais ne l’a pas encore ratifié.",
    ("fr", "not_signed"): "Votre pays (Brésil) n’a pas encore signé le PF-PIDESC.",
    (
        "fr",
        "unknown",
    ): "Votre pays a-t-il ratifié le PF-PIDESC ? Vérifiez ici où en est votre pays.",
}

# a phrase only the message set for that status contains (hashtag filled in)
SOCIAL_SET = {
    ("en", "ratified"): "Well done #Argentina! By ratifying the OP-ICESCR",
    ("en", "signed"): "Move forward #Ghana and #RatifyOPICESCR",
    ("en", "not_signed"): "What about people in #Brazil?",
    ("en", "unknown"): "Messages for every country.",
    ("es", "ratified"): "¡Bien hecho, #Argentina! Al ratificar el PF-PIDESC",
    ("es", "signed"): "Adelante, #Ghana: #RatifyOPICESCR",
    ("es", "not_signed"): "¿Y qué pasa con la gente en #Brazil?",
    ("es", "unknown"): "Mensajes para todos los países.",
    ("fr", "ratified"): "Bravo #Argentina ! En ratifiant le PF-PIDESC",
    ("fr", "signed"): "En avant #Ghana ! #RatifyOPICESCR",
    ("fr", "not_signed"): "Et qu’en est-il pour #Brazil ?",
    ("fr", "unknown"): "Messages pour tous les pays.",
}
# what each set says before the country's hashtag, to prove the other sets are absent
SOCIAL_SET_STEM = {k: v.split("#")[0] + "#" if "#" in v else v for k, v in SOCIAL_SET.items()}

FOOTER_WHY = {
    "en": "You receive this email because",
    "es": "Recibe este correo porque",
    "fr": "Vous recevez ce courriel parce que",
}
EXPLAINER = {
    "en": "What is the OP-ICESCR?",
    "es": "¿Qué es el PF-PIDESC?",
    "fr": "Qu’est-ce que le PF-PIDESC ?",
}
ACTION_LINKS = ("model_letter", "toolkit_booklet_4", "qa", "national_coalition", "commitment_stamp")
SHARE_HOSTS = ("x.com", "www.facebook.com", "bsky.app", "www.linkedin.com")

MATRIX = [
    (step, rel, status, lang)
    for step in STEPS
    for status in ("ratified", "signed", "not_signed")
    for rel in RELATIONSHIPS
    for lang in LANGS
] + [(step, rel, "unknown", lang) for step in STEPS for rel in RELATIONSHIPS for lang in LANGS]


def prose(text: str) -> str:
    """The text part read as prose: link addresses in brackets left out, one-spaced."""
    return squash(re.sub(r" \((?:https://|mailto:)[^)\s]*\)", "", text))


def render(step: str, status: str, lang: str, rel: str = "member", **kw) -> Rendered:
    return shipped().render(step, contact(COUNTRY_FOR[status], lang, rel, **kw), naive=True)


def check_quality(r: Rendered, lang: str) -> None:
    """The quality bars every rendered message must meet."""
    html_bytes = len(r.html.encode("utf-8"))
    assert html_bytes < GMAIL_CLIP, f"HTML is {html_bytes} bytes, Gmail clips at {GMAIL_CLIP}"
    for part, text in (("subject", r.message.subject), ("html", r.html), ("text", r.text)):
        for bad in FORBIDDEN:
            assert bad not in text, f"{bad!r} in the {part}"
    page = parse(r.html)
    assert page.html_lang == lang
    assert page.hrefs, "no links at all"
    for href in page.hrefs:
        assert href.startswith(("https://", "mailto:")), href
        assert " " not in href, href
    for img in page.images:
        assert img.get("alt"), f"image without alt text: {img}"
    # no empty hashtag or handle left behind by a missing value
    assert not re.search(r"#(?![\w])", r.text), "an empty hashtag"
    assert not re.search(r"(^|\s)@(?!\w)", r.text), "an empty handle"
    # the text part stands on its own: no markup, no HTML-only share rows
    assert "<" not in r.text and "&amp;" not in r.text and "&#" not in r.text
    for share_label in ("Share:", "Compartir:", "Partager"):
        assert share_label not in r.text
    for html_only in (
        "share them in one click",
        "compártalos con un clic",
        "partagez-les en un clic",
    ):
        assert html_only not in r.text
    assert UNSUBSCRIBE in r.text
    # byte-identical to rendering this recipient on their own
    assert r.naive is not None and r.message == r.naive


@pytest.mark.parametrize(("step", "rel", "status", "lang"), MATRIX)
def test_matrix(step: str, rel: str, status: str, lang: str) -> None:
    r = render(step, status, lang, rel)
    assert r.language == lang
    check_quality(r, lang)
    seen, text = r.visible, prose(r.text)

    # the reader's country status, in words, in both parts
    sentence = STATUS_SENTENCE[lang, status]
    assert sentence in seen
    assert sentence in text

    # the message set for this status, and no other
    assert SOCIAL_SET[lang, status] in text
    for (other_lang, other_status), stem in SOCIAL_SET_STEM.items():
        if other_lang == lang and other_status != status:
            assert stem not in text, f"{other_status} messages in a {status} email"

    # the five actions, each with its own link
    links = shipped().campaign.links
    hrefs = parse(r.html).hrefs
    for key in ACTION_LINKS:
        assert links[key].url in hrefs
    if step == "human-rights-day":
        actions = re.search(r"<ul[^>]*>(.*?)</ul>", r.html, re.S)
        assert actions and actions.group(1).count("<li") == 5
    else:
        for n in range(1, 6):
            assert re.search(rf"<h3>{n}\. ", r.html), f"action {n} missing"

    # the newcomer explainer, for newcomers only
    assert (EXPLAINER[lang] in text) == (rel == "newcomer")

    # the footer: postal address, why you receive this, one-click unsubscribe
    assert shipped().campaign.spec.sender.postal_address in text
    assert FOOTER_WHY[lang] in text
    assert UNSUBSCRIBE in hrefs


def test_distinct_links_reach_their_actions() -> None:
    """With a real address per link (2015 fixture), each action links to its own page."""
    r = world_2015().render("circular", contact("BR", "en", "newcomer"), naive=True)
    links = world_2015().campaign.links
    section = r.html.split("Suggested actions", 1)[1].split("Suggested messages", 1)[0]
    for n, key in enumerate(ACTION_LINKS, 1):
        block = section.split(f"<h3>{n}. ", 1)[1].split("<h3>", 1)[0]
        assert f'href="{links[key].url}"' in block, f"action {n} should link to {key}"
    assert f'href="{links["share_plans"].url}"' in r.html
    assert 'href="mailto:ilarrosa@escr-net.org"' in r.html


def test_circular_2015_has_the_seed_figures() -> None:
    """On 2015-12-10 the data give the seed's 21 parties and 7th anniversary."""
    expected = {
        "en": ("21 countries have become party to the OP-ICESCR", "7th anniversary"),
        "es": ("21 países son parte en el PF-PIDESC", "7.º aniversario"),
        "fr": ("21 pays sont devenus parties au PF-PIDESC", "7e anniversaire"),
    }
    germany = {"en": "Germany", "es": "Alemania", "fr": "Allemagne"}
    for lang, (parties, anniversary) in expected.items():
        r = world_2015().render("circular", contact("GH", lang, "ally"), naive=True)
        check_quality(r, lang)
        assert parties in r.visible and parties in squash(r.text)
        assert anniversary in r.text
        # in 2015 Germany had not joined: the seed's example still held
        story = squash(r.text).split("#RatifyOPICESCR")[-2]
        assert germany[lang] in story


def test_germany_is_not_named_as_a_non_party_in_2026() -> None:
    germany = {"en": "Germany", "es": "Alemania", "fr": "Allemagne"}
    story_lead = {
        "en": "But what if you live in Brazil, South Africa, India or Nigeria?",
        "es": "Pero ¿y si vives en Brasil, Sudáfrica, India o Nigeria?",
        "fr": "(Brésil, Afrique du Sud, Inde ou Nigeria, par exemple) ?",
    }
    for lang in LANGS:
        for status in ("ratified", "signed", "not_signed", "unknown"):
            r = render("circular", status, lang)
            assert germany[lang] not in r.text
            assert germany[lang] not in r.visible
            assert story_lead[lang] in squash(r.text)


def test_germany_acceded() -> None:
    sentences = {
        "en": "Germany acceded to the OP-ICESCR on 20 April 2023.",
        "es": "Alemania se adhirió al PF-PIDESC el 20 de abril de 2023.",
        "fr": "Votre pays (Allemagne) a adhéré au PF-PIDESC le 20 avril 2023.",
    }
    for lang, sentence in sentences.items():
        r = shipped().render("circular", contact("DE", lang, "ally"), naive=True)
        check_quality(r, lang)
        assert sentence in squash(r.text)


def test_english_names_take_the_article_where_needed() -> None:
    r = shipped().render("circular", contact("GB", "en", "newcomer"), naive=True)
    assert "Your country: the United Kingdom has not yet signed the OP-ICESCR." in squash(r.text)
    assert "the government of the United Kingdom" not in r.text  # not_signed set has no such line
    r = shipped().render("circular", contact("SB", "en", "ally"), naive=True)
    assert "we urge the government of the Solomon Islands to take the next step" in r.text
    r = shipped().render("circular", contact("SB", "fr", "ally"), naive=True)
    assert "Votre pays (Îles Salomon) a signé le PF-PIDESC en 2009" in squash(r.text)


HANDLE_CASES = [
    # (country, status, message with the handle, the same message without)
    ("AR", "ratified", "We call on #Argentina @CancilleriaARG to encourage its peers", None),
    ("FI", "ratified", None, "We call on #Finland to encourage its peers"),
    ("UA", "signed", "We call on #Ukraine @MFA_Ukraine to join others", None),
    ("GH", "signed", None, "We call on #Ghana to join others"),
    ("IN", "not_signed", "We call on #India @MEAIndia to #RatifyOPICESCR", None),
    ("BR", "not_signed", None, "We call on #Brazil to #RatifyOPICESCR"),
]


@pytest.mark.parametrize(("code", "status", "with_handle", "without"), HANDLE_CASES)
def test_social_messages_use_the_handle_when_known(code, status, with_handle, without) -> None:
    c = contact(code, "en", "ally")
    r = shipped().render("circular", c, naive=True)
    check_quality(r, "en")
    country = shipped().countries.get(code)
    assert (
        country is not None
        and country.status(shipped().campaign.step("circular").send_at) == status
    )
    if with_handle:
        assert with_handle in r.text
    else:
        assert without in r.text
        assert "@" not in r.text.split("Suggested messages")[1].split("A story")[0]


def share_links(r: Rendered) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {host: [] for host in SHARE_HOSTS}
    for href in parse(r.html).hrefs:
        host = urlparse(href).netloc
        if host in out:
            out[host].append(href)
    return out


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("status", ["ratified", "signed", "not_signed", "unknown"])
def test_share_links_carry_the_message_text(lang: str, status: str) -> None:
    r = render("circular", status, lang)
    links = share_links(r)
    n_messages = len(links["x.com"])
    assert n_messages >= 3
    assert len(links["bsky.app"]) == n_messages
    # the story has Facebook and LinkedIn only
    assert len(links["www.facebook.com"]) == len(links["www.linkedin.com"]) == n_messages + 1
    text = squash(r.text)
    for href in links["x.com"] + links["bsky.app"] + links["www.linkedin.com"]:
        assert re.fullmatch(r"[A-Za-z0-9_.~%/:?=&-]+", href), f"not URL-encoded: {href}"
        query = parse_qs(urlparse(href).query)
        message = query["text"][0]
        assert squash(message) in text, "the shared text is the message the reader sees"
        assert "#" in message or "OP-ICESCR" in message or "PF-PIDESC" in message
    for href in links["www.facebook.com"]:
        query = parse_qs(urlparse(href).query)
        assert query["u"][0].startswith("https://")
    if status != "unknown":
        hashtag = {"ratified": "#Argentina", "signed": "#Ghana", "not_signed": "#Brazil"}[status]
        assert any(hashtag in parse_qs(urlparse(h).query)["text"][0] for h in links["x.com"])


def _x_length(text: str) -> int:
    """Length as X counts it: every link is 23 characters."""
    return len(re.sub(r"https://\S+", "x" * 23, text))


def _bluesky_length(text: str) -> int:
    """Bluesky's composer counts a link as its shortened display (host and ~15 more)."""
    return len(re.sub(r"https://\S+", "x" * 32, text))


def test_every_x_message_fits_for_every_state_and_language() -> None:
    """With each State's own hashtag and handle, every message fits in an X post (280)."""
    w = shipped()
    longest = 0
    for country in w.countries:
        for lang in LANGS:
            r = w.render("circular", contact(country.code, lang, "ally"))
            for href in share_links(r)["x.com"]:
                message = parse_qs(urlparse(href).query)["text"][0]
                longest = max(longest, _x_length(message))
                assert _x_length(message) <= 280, (country.code, lang, message)
                assert _bluesky_length(message) <= 300, (country.code, lang, message)
    assert longest > 150  # the test measured real messages


def test_unknown_country_gets_a_general_version() -> None:
    for lang in LANGS:
        r = render("circular", "unknown", lang, "newcomer", first_name="", organization="")
        check_quality(r, lang)
        text = squash(r.text)
        assert shipped().campaign.links["status_map"].url in parse(r.html).hrefs
        greeting = {
            "en": "Dear friends,",
            "es": "Estimadas amigas, estimados amigos:",
            "fr": "Chères amies, chers amis,",
        }
        assert greeting[lang] in text
        # no country-specific wording is left half-filled
        assert "Your country:" not in text and "Su país:" not in text and "Votre pays (" not in text


def test_greeting_falls_back_to_the_organization() -> None:
    r = render("circular", "signed", "es", "ally", first_name="", organization="Colectivo Sin País")
    assert "Estimado equipo de Colectivo Sin País:" in r.text
    r = render("circular", "signed", "fr", "ally", first_name="Léa")
    assert "Bonjour Léa," in r.text


def test_per_recipient_values_are_escaped() -> None:
    r = render("circular", "ratified", "en", "ally", first_name="Tom & <Jerry>")
    assert "Dear Tom &amp; &lt;Jerry&gt;," in r.html
    assert "Dear Tom & <Jerry>," in r.text


@pytest.mark.parametrize("step", STEPS)
def test_every_shipped_contact_renders_within_the_bars(step: str) -> None:
    """The whole demo list, every step: sizes and placeholders."""
    w = shipped()
    contacts = load_for_campaign(w.campaign, w.countries).contacts
    assert len(contacts) > 50
    sizes = []
    for c in contacts:
        r = w.render(step, c)
        lang = r.language
        check_quality_fast(r, lang)
        sizes.append(len(r.html.encode("utf-8")))
    assert max(sizes) < 60 * 1024, f"largest HTML {max(sizes)} bytes (aim: well under 60 KB)"


def check_quality_fast(r: Rendered, lang: str) -> None:
    assert len(r.html.encode("utf-8")) < GMAIL_CLIP
    for text in (r.message.subject, r.html, r.text):
        for bad in FORBIDDEN:
            assert bad not in text
    assert parse(r.html).html_lang == lang
    assert all(h.startswith(("https://", "mailto:")) for h in parse(r.html).hrefs)


def test_subjects_and_preheaders_are_translated() -> None:
    c = shipped().campaign
    for step in c.steps:
        for lang in LANGS:
            _subject, used = step.spec.text_for("subject", lang, "en")
            _preheader, used_p = step.spec.text_for("preheader", lang, "en")
            assert used == lang and used_p == lang, (step.id, lang)
    r = render("human-rights-day", "signed", "fr")
    # French typography: a no-break space before the colon survives into the subject
    assert (
        r.message.subject == "Aujourd’hui, Journée des droits humains\u00a0: le PF-PIDESC a 18 ans"
    )
    r = render("circular", "signed", "es")
    assert "18.º aniversario del PF-PIDESC" in r.html  # the preheader


def test_human_rights_day_is_sent_at_nine_local_time() -> None:
    step = shipped().campaign.step("human-rights-day")
    assert step.local_time and step.wall_clock[0].month == 12 and step.wall_clock[0].day == 10
    assert step.wall_clock[1].hour == 9
    last = shipped().campaign.step("last-call")
    assert last.spec.audience.did_not_open == "circular"


# ------------------------------------------------------------------------------------------
# Context helpers added for the content


def test_join_names_lists_as_each_language_writes_them() -> None:
    assert (
        join_names(["Brazil", "South Africa", "India"], "en", "or")
        == "Brazil, South Africa or India"
    )
    assert join_names(["Argentina", "France"], "en") == "Argentina and France"
    assert join_names(["Brasil", "Sudáfrica", "India"], "es") == "Brasil, Sudáfrica e India"
    assert join_names(["Brasil", "Hungría"], "es") == "Brasil y Hungría"
    assert join_names(["Brasil", "Omán"], "es", "or") == "Brasil u Omán"
    assert join_names(["Brésil", "Inde"], "fr", "or") == "Brésil ou Inde"
    assert join_names([], "fr") == ""


def test_name_in_text() -> None:
    countries = shipped().countries
    assert name_in_text(countries.get("US"), "en") == "the United States"
    assert name_in_text(countries.get("AR"), "en") == "Argentina"
    assert name_in_text(countries.get("US"), "es") == "Estados Unidos"
