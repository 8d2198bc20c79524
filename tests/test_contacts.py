"""Contact lists: encodings, delimiters, XLSX, per-row issues, segments."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.contacts import (
    _DOT_ATOM,
    clean_text,
    load_contacts,
    validate_address,
)
from outreach.countries import CountryTable
from outreach.exceptions import ListError

REPO = Path(__file__).resolve().parent.parent
COUNTRIES = CountryTable.load(REPO / "lists" / "countries.csv")
HEADER = "email,first_name,last_name,organization,country,language,relationship,tags\n"


def load(tmp_path: Path, text: str | bytes, name: str = "c.csv", **kw):
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return load_contacts([path], tmp_path, COUNTRIES, languages=("en", "es", "fr"), **kw)


def messages(result) -> list[str]:
    return [f"{i.row}:{i.column}:{i.message}" for i in result.issues]


def test_the_shipped_list_is_clean_and_covers_every_combination() -> None:
    result = load_contacts(
        [REPO / "lists" / "contacts.csv"], REPO, COUNTRIES, languages=("en", "es", "fr")
    )
    assert result.errors == []  # `outreach send december` needs no --skip-invalid
    # every relationship × status × language combination is present among valid contacts
    from datetime import date

    combos = {
        (c.relationship, COUNTRIES.get(c.country).status(date(2026, 12, 1)), c.language)
        for c in result.contacts
        if c.country
    }
    for rel in ("member", "ally", "newcomer"):
        for status in ("ratified", "signed", "not_signed"):
            for lang in ("en", "es", "fr"):
                assert (rel, status, lang) in combos


def test_the_example_list_has_the_documented_problems() -> None:
    path = REPO / "lists" / "examples" / "with-errors.csv"
    result = load_contacts([path], REPO, COUNTRIES, languages=("en", "es", "fr"))
    errors = {(i.column, i.message.split(" ")[0]) for i in result.errors}
    assert errors == {
        ("email", "invalid"),
        ("country", "unknown"),
        ("first_name", "looks"),
        ("relationship", "unknown"),
        ("language", "unknown"),
    }
    assert any(
        "duplicate of lists/examples/with-errors.csv:2" in i.message for i in result.warnings
    )


def test_basic_row_and_extra_columns(tmp_path: Path) -> None:
    r = load(
        tmp_path,
        "Email,First Name,Country,Language,Relationship,Tags,City\n"
        " Ana@Example.ORG ,Ana, Argentina ,Spanish,Members,press; UN ,Córdoba\n",
    )
    assert not r.errors, messages(r)
    c = r.contacts[0]
    assert (c.email, c.first_name, c.country, c.language, c.relationship) == (
        "Ana@example.org",
        "Ana",
        "AR",
        "es",
        "member",
    )
    assert c.tags == ("press", "un")
    assert c.extra == {"city": "Córdoba"}
    assert c.row == 2


def test_namibia_and_norway_codes_are_countries_not_missing_values(tmp_path: Path) -> None:
    r = load(tmp_path, HEADER + "a@example.org,A,,,NA,en,ally,\nb@example.org,B,,,NO,en,ally,\n")
    assert [c.country for c in r.contacts] == ["NA", "NO"]


def test_duplicates_are_case_insensitive_and_say_which_row_is_kept(tmp_path: Path) -> None:
    r = load(
        tmp_path, HEADER + "ana@example.org,A,,,AR,es,member,\nANA@EXAMPLE.ORG,B,,,AR,es,member,\n"
    )
    assert len(r.contacts) == 1 and r.contacts[0].first_name == "A"
    assert r.warnings[0].row == 3
    assert (
        "duplicate of c.csv:2" in r.warnings[0].message
        and "c.csv:2 is kept" in r.warnings[0].message
    )


def test_unknown_country_gets_a_suggestion(tmp_path: Path) -> None:
    r = load(tmp_path, HEADER + "a@example.org,A,,,Frnace,fr,ally,\n")
    assert "did you mean France (FR)?" in str(r.errors[0])


def test_a_repeated_cell_value_is_reported_on_every_row_that_has_it(tmp_path: Path) -> None:
    """Each distinct country, language and relationship value is checked once per load:
    every row with it still gets its own issues (and the names get theirs, column by column)."""
    rows = [
        "a@example.org,Ana,,,Frnace,xx,friend,",
        "b@example.org,Ben,,,AR,de,ally,",
        "c@example.org,Eve,<b>x</b>,{{ y }},Frnace,xx,friend,",
        "d@example.org,Dev,,,,de,,",
        "e@example.org,Gus,,,AR,de,ally,",
    ]
    r = load(tmp_path, HEADER + "\n".join(rows) + "\n")
    unknown = ["country:unknown country 'Frnace'", "language:unknown language 'xx'"]
    assert messages(r) == [
        *(f"2:{m}" for m in unknown),
        "2:relationship:unknown relationship 'friend'",
        "3:language:'de' is not offered by this campaign; gets 'en'",
        "4:last_name:looks like HTML, script or template code: '<b>x</b>'",
        "4:organization:looks like HTML, script or template code: '{{ y }}'",
        *(f"4:{m}" for m in unknown),
        "4:relationship:unknown relationship 'friend'",
        "5:country:no country: this contact gets the version without a country status",
        "5:language:'de' is not offered by this campaign; gets 'en'",
        "5:relationship:no relationship",
        "6:language:'de' is not offered by this campaign; gets 'en'",
    ]
    assert [c.email for c in r.contacts] == ["b@example.org", "e@example.org"]
    assert r.errors[0].hint == "did you mean France (FR)?"
    assert r.errors[-1].hint.startswith("use member, ally or newcomer")


def test_html_and_template_code_in_names(tmp_path: Path) -> None:
    r = load(
        tmp_path,
        HEADER + "a@example.org,<b>Ana</b>,,,AR,es,ally,\n"
        "b@example.org,{{ 7*7 }},,,AR,es,ally,\nc@example.org,Zoë [[x]],,,AR,es,ally,\n"
        "d@example.org,Ana,O'Brien & Sons,,AR,es,ally,\n",
    )
    assert [i.row for i in r.errors] == [2, 3, 4]
    assert [c.email for c in r.contacts] == ["d@example.org"]


def test_utf8_bom_is_read(tmp_path: Path) -> None:
    r = load(tmp_path, ("\ufeff" + HEADER + "a@example.org,Zoë,,,FR,fr,ally,\n").encode("utf-8"))
    assert r.contacts[0].first_name == "Zoë"
    assert r.encodings["c.csv"] == "utf-8 (BOM)"


LINE_ENDINGS_TEXT = (
    HEADER + 'a@example.org,Zoë,"Line\r\nTwo",,FR,fr,ally,\r\n'
    "\r\nb@example.org,Ana,,,AR,es,ally,\rc@example.org,José,,,ES,es,ally,\n"
    "B@example.org,Dup,,,AR,es,ally,\n"
)


@pytest.mark.parametrize(
    ("encoding", "label"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8 (BOM)"), ("utf-16", "utf-16")],
)
def test_streamed_encodings_read_like_the_decoded_text(
    tmp_path: Path, encoding: str, label: str
) -> None:
    """UTF-8 (with or without BOM) and UTF-16 lists are decoded as they are read: the same
    cells, row numbers and issues as reading the decoded text (CR, CRLF, quoted line breaks)."""
    r = load(tmp_path, LINE_ENDINGS_TEXT.encode(encoding))
    # a Windows-1252 file is decoded line by line and read from the re-assembled text
    expected = load(tmp_path, LINE_ENDINGS_TEXT.encode("cp1252"), name="plain.csv")
    assert r.encodings["c.csv"] == label
    assert [(c.row, c.email, c.first_name, c.last_name) for c in r.contacts] == [
        (2, "a@example.org", "Zoë", "Line Two"),
        (5, "b@example.org", "Ana", ""),
        (6, "c@example.org", "José", ""),
    ]
    assert r.contacts == [replace(c, source="c.csv") for c in expected.contacts]
    assert [(i.row, i.message) for i in r.issues] == [
        (7, "duplicate of c.csv:5 (B@example.org); c.csv:5 is kept")
    ]


def test_latin1_export_is_read_with_a_warning(tmp_path: Path) -> None:
    r = load(tmp_path, (HEADER + "a@example.org,José,Muñoz,,ES,es,ally,\n").encode("cp1252"))
    assert r.contacts[0].first_name == "José" and r.contacts[0].last_name == "Muñoz"
    assert r.encodings["c.csv"] == "windows-1252"
    assert any("Windows-1252" in i.message for i in r.warnings)


def test_mixed_encoding_names_the_rows_it_cannot_decode(tmp_path: Path) -> None:
    data = (HEADER + "a@example.org,José,,,ES,es,ally,\n").encode("utf-8") + (
        "b@example.org,Müller,,,DE,en,ally,\n"
    ).encode("cp1252")
    r = load(tmp_path, data)
    assert [c.email for c in r.contacts] == ["a@example.org"]
    assert r.errors[0].row == 3 and "cannot decode" in r.errors[0].message


def test_semicolon_separated_export(tmp_path: Path) -> None:
    r = load(tmp_path, HEADER.replace(",", ";") + "a@example.org;Ana;;;AR;es;ally;\n")
    assert r.contacts[0].country == "AR"


def test_wrong_number_of_cells(tmp_path: Path) -> None:
    r = load(tmp_path, HEADER + "a@example.org,Ana,Lopez,Org, Inc.,AR,es,ally,\n")
    assert r.errors[0].row == 2 and "9 cells but the header has 8" in r.errors[0].message


def test_unclosed_quote_is_a_malformed_csv_error_with_line(tmp_path: Path) -> None:
    with pytest.raises(ListError) as err:
        load(tmp_path, HEADER + 'a@example.org,"Ana,,,AR,es,ally,\nb@example.org,B,,,AR,es,ally,\n')
    assert "malformed CSV" in str(err.value) and "c.csv:" in str(err.value)


def test_missing_email_column(tmp_path: Path) -> None:
    with pytest.raises(ListError, match="no 'email' column"):
        load(tmp_path, "name,country\nAna,AR\n")


def test_language_not_offered_falls_back_with_a_warning(tmp_path: Path) -> None:
    r = load(tmp_path, HEADER + "a@example.org,A,,,PT,pt,ally,\n")
    assert r.contacts[0].language == "pt"
    assert "'pt' is not offered" in r.warnings[0].message


def test_xlsx(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            ["ana@example.org", "Ana", "AR", "es", "member", "NA"],
            ["bad@", "B", "NA", "en", "ally", ""],
        ],
        columns=["email", "first_name", "country", "language", "relationship", "note"],
    )
    frame.to_excel(tmp_path / "c.xlsx", index=False)
    r = load_contacts([tmp_path / "c.xlsx"], tmp_path, COUNTRIES, languages=("en", "es"))
    assert [c.email for c in r.contacts] == ["ana@example.org"]
    assert r.contacts[0].extra == {"note": "NA"}
    assert r.errors[0].row == 3 and r.errors[0].column == "email"


# -- property tests ----------------------------------------------------------------------

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>&{}[]%\x00"),
    max_size=30,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(names, names, st.sampled_from(["AR", "BR", "GH", "NO", "NA", ""])),
        min_size=1,
        max_size=15,
    )
)
def test_any_names_survive_a_csv_round_trip(tmp_path: Path, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["email", "first_name", "last_name", "country", "relationship"])
    for i, (first, last, country) in enumerate(rows):
        w.writerow([f"p{i}@example.org", first, last, country, "ally"])
    r = load(tmp_path, buf.getvalue())
    assert not r.errors, messages(r)
    assert [c.first_name for c in r.contacts] == [clean_text(f) for f, _, _ in rows]
    assert [c.last_name for c in r.contacts] == [clean_text(last) for _, last, _ in rows]
    assert [c.country for c in r.contacts] == [c for _, _, c in rows]


local_parts = st.text(alphabet="abcXYZ019.!#$%&'*+/=?^_`{|}~-\"@ é", min_size=0, max_size=12)
domains = st.sampled_from(
    [
        "example.org",
        "EXAMPLE.com",
        "a.b",
        "localhost",
        "x.invalid",
        "ex-ample.net",
        "-bad.org",
        "münchen.de",
        "b..c.org",
    ]
)


@given(local=local_parts, domain=domains)
def test_fast_address_check_agrees_with_email_validator(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    ours, _ = validate_address(address)
    try:
        theirs = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        theirs = None
    assert ours == theirs


def test_fast_path_is_taken_for_plain_addresses() -> None:
    assert _DOT_ATOM.match("first.last+tag")
    assert validate_address("First.Last@Example.ORG") == ("First.Last@example.org", None)
