"""Rendering: per-variant compilation equals per-recipient rendering, and errors name file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.campaign import load_campaign
from outreach.contacts import Contact, clean_text
from outreach.context import ContextBuilder
from outreach.countries import CountryTable
from outreach.exceptions import TemplateError
from outreach.render import Renderer, lint_template_sources, mjml_to_text

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "render"
CAMPAIGN = load_campaign(REPO, "december", edition=2026)
COUNTRIES = CountryTable.load(REPO / "lists" / "countries.csv")
BUILDER = ContextBuilder(CAMPAIGN, COUNTRIES)

# values a contact list can produce: cleaned text without HTML/template syntax
text_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<>{}[]"),
    max_size=25,
).map(clean_text)
country_codes = st.sampled_from(["AR", "DE", "GH", "BR", "NO", "CD", "FR", "US", "CI", ""])


@st.composite
def contacts(draw) -> Contact:
    return Contact(
        source="t.csv",
        row=2,
        email=draw(
            st.sampled_from(["ana@example.org", "o'brien+x@example.com", "zoë@exämple.org"])
        ),
        contact_id="c-1",
        first_name=draw(text_values),
        last_name=draw(text_values),
        organization=draw(st.one_of(text_values, st.just("AT&T \"quoted\" 'single'"))),
        country=draw(country_codes),
        language=draw(st.sampled_from(["en", "es", "fr", "pt"])),
        relationship=draw(st.sampled_from(["member", "ally", "newcomer"])),
        tags=tuple(draw(st.lists(st.sampled_from(["press", "un", "x"]), max_size=2, unique=True))),
        extra={"city": draw(text_values)},
    )


def _render_both(renderer: Renderer, template: str, contact: Contact, step_index: int = 0):
    step = CAMPAIGN.steps[step_index]
    _tpl, lang = renderer.resolve_template(template, contact.language)
    subject, _ = step.spec.text_for("subject", lang, "en")
    preheader, _ = step.spec.text_for("preheader", lang, "en")
    data = BUILDER.recipient(step, contact, lang, "https://u.example.org/u/abc123")
    variant = renderer.variant(step.id, template, lang, data, subject, preheader)
    fast = variant.fill(data.flat_values())
    naive = renderer.render_naive(template, lang, data, subject, preheader)
    return fast, naive, variant


STRESS = Renderer(FIXTURE)


@settings(max_examples=300, deadline=None)
@given(contact=contacts())
def test_variant_fill_is_byte_identical_to_direct_render_stress_template(contact: Contact) -> None:
    fast, naive, _ = _render_both(STRESS, "stress", contact)
    assert fast.html == naive.html
    assert fast.text == naive.text
    assert fast.subject == naive.subject


SHIPPED = Renderer(REPO / "templates")


@settings(max_examples=200, deadline=None)
@given(contact=contacts(), step_index=st.sampled_from([0, 1, 2]))
def test_variant_fill_is_byte_identical_to_direct_render_shipped_templates(
    contact: Contact, step_index: int
) -> None:
    template = CAMPAIGN.steps[step_index].spec.template
    fast, naive, _ = _render_both(SHIPPED, template, contact, step_index)
    assert fast == naive


def test_variants_are_shared_and_compiles_stay_below_variants() -> None:
    r = Renderer(FIXTURE)
    people = [
        Contact(
            "t.csv",
            i,
            f"p{i}@example.org",
            f"c{i}",
            first_name=f"Name{i}",
            last_name="X",
            country=cc,
            language="en",
            relationship="ally",
            extra={"city": "Quito"},
        )
        for i, cc in enumerate(["GH", "GH", "GH", "BR", "BR", "DE", "DE"] * 10)
    ]
    variants = set()
    for c in people:
        _fast, _naive, v = _render_both(r, "stress", c)
        variants.add(v.id)
    # each direct render compiles once, each new variant once: compiles = recipients + variants
    assert r.compiles == len(people) + len(variants)
    # Ghana signed, Brazil not signed, Germany a party (acceded 2023): one variant per status
    assert len(variants) == 3


def test_slot_decisions_split_variants() -> None:
    r = Renderer(FIXTURE)
    base = dict(
        source="t.csv",
        row=2,
        contact_id="c",
        country="BR",
        language="en",
        relationship="ally",
        extra={"city": ""},
    )
    a = Contact(email="a@example.org", first_name="Ana", **base)
    b = Contact(email="b@example.org", first_name="", **base)
    c = Contact(email="c@example.org", first_name="Bea", tags=("press",), **base)
    ids = {_render_both(r, "stress", x)[2].id for x in (a, b, c)}
    assert len(ids) == 3
    fast_b, _, _ = _render_both(r, "stress", b)
    assert "Hello friend!" in fast_b.html


def test_html_and_text_markers_are_escaped_differently() -> None:
    r = Renderer(FIXTURE)
    c = Contact(
        "t.csv",
        2,
        "a@example.org",
        "c",
        first_name="Tom & Jerry",
        organization='A "B" <c>',
        country="AR",
        language="en",
        relationship="ally",
        extra={"city": "x"},
    )
    fast, _naive, variant = _render_both(r, "stress", c)
    assert "Hello Tom &amp; Jerry" in fast.html
    assert "Hello Tom & Jerry" in fast.text
    assert "Org: A &#34;B&#34; &lt;c&gt;" in fast.html
    subs = variant.substitutions(
        BUILDER.recipient(
            CAMPAIGN.steps[0], c, "en", "https://u.example.org/u/abc123"
        ).flat_values()
    )
    assert subs["[[h:contact.first_name]]"] == "Tom &amp; Jerry"
    assert subs["[[t:contact.first_name]]"] == "Tom & Jerry"
    assert "Go%20%23Argentina%20%26%20Tom%20%26%20Jerry%21" in fast.html


def test_language_fallback_to_default() -> None:
    r = Renderer(FIXTURE)
    assert r.resolve_template("stress", "es") == ("es/stress.mjml", "es")
    assert r.resolve_template("stress", "fr") == ("en/stress.mjml", "en")
    with pytest.raises(TemplateError, match="template 'nope' not found"):
        r.resolve_template("nope", "en")


def _error(template: str) -> TemplateError:
    c = Contact(
        "t.csv",
        2,
        "a@example.org",
        "c",
        first_name="A",
        country="AR",
        language="en",
        relationship="ally",
        extra={"city": ""},
    )
    with pytest.raises(TemplateError) as err:
        _render_both(Renderer(FIXTURE), template, c)
    return err.value


def test_syntax_error_names_template_and_line() -> None:
    err = _error("broken-syntax")
    assert "syntax error" in str(err)
    assert "fixtures/render/en/broken-syntax.mjml:6" in str(err) or "en/broken-syntax.mjml:" in str(
        err
    )


def test_undefined_variable_names_template_and_line() -> None:
    err = _error("undefined")
    assert "undefined variable" in str(err) and "nickname" in str(err)
    assert "en/undefined.mjml:5" in str(err)


def test_unknown_mjml_tag_names_template_and_line() -> None:
    err = _error("bad-mjml")
    assert "unknown tag <mj-colum> (did you mean <mj-column>?)" in str(err)
    assert "en/bad-mjml.mjml:4" in str(err)
    problems = lint_template_sources(FIXTURE)
    assert next((str(w), m) for w, m in problems) == (
        "render/en/bad-mjml.mjml:4",
        "unknown tag <mj-colum> (did you mean <mj-column>?)",
    )


def test_unbalanced_mjml_is_reported() -> None:
    err = _error("unclosed")
    assert "closes <mj-column>" in str(err)


def test_misusing_a_per_recipient_value_is_explained() -> None:
    err = _error("misuse")
    assert "cannot loop over contact.tags" in str(err)
    assert "en/misuse.mjml:4" in str(err)


def test_text_part_keeps_links_and_drops_hidden_blocks() -> None:
    text = mjml_to_text(
        '<mjml><mj-body><mj-section><mj-column><mj-text><h1>Title</h1><p>Read <a href="https://a.org/x">this</a>'
        " &amp; that.</p><ul><li>one</li><li>two</li></ul></mj-text>"
        '<mj-text css-class="text-hide"><p>only in HTML</p></mj-text>'
        '<mj-button href="https://b.org">Act now</mj-button></mj-column></mj-section></mj-body></mjml>'
    )
    assert (
        text
        == "Title\n\nRead this (https://a.org/x) & that.\n\n• one\n• two\n\nAct now: https://b.org\n"
    )


def test_a_filter_that_would_act_on_the_marker_is_an_error_at_its_line() -> None:
    err = _error("replace")
    assert "the filter 'replace' cannot be used on contact.first_name" in str(err)
    assert "en/replace.mjml:4" in str(err)


def test_a_divergence_from_the_direct_render_is_caught_before_sending() -> None:
    r = Renderer(FIXTURE)
    # wordcount is refused on slots; bypass the guard to prove verify() is a second line of defence
    for env in (r.env("en"),):
        from jinja2.filters import do_wordcount

        env.filters["wordcount"] = do_wordcount
    c = Contact(
        "t.csv",
        2,
        "a@example.org",
        "c",
        first_name="Ana",
        last_name="Paula Souza",
        country="AR",
        language="en",
        relationship="ally",
        extra={"city": ""},
    )
    step = CAMPAIGN.steps[0]
    data = BUILDER.recipient(step, c, "en", "https://u.example.org/u/1")
    variant = r.variant(step.id, "wordcount", "en", data, "Hi")
    # the variant counts the words of a marker (1); the direct render counts 3
    with pytest.raises(TemplateError, match="cannot be filled in per variant"):
        r.verify(variant, "wordcount", "en", data, "Hi")


def test_wordcount_on_a_per_recipient_value_is_refused() -> None:
    err = _error("wordcount")
    assert "the filter 'wordcount' cannot be used on contact.full_name" in str(err)
    assert "en/wordcount.mjml:4" in str(err)
