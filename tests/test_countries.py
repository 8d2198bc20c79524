"""Tests for outreach.countries and the shipped lists/countries.csv."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import unicodedata
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.countries import (
    CAPITAL_ZONES,
    COLUMNS,
    STATUSES,
    Country,
    CountryTable,
    _zone_tab,
    build_countries,
)
from outreach.exceptions import CountryDataError

REPO = Path(__file__).resolve().parents[1]
LISTS = REPO / "lists"
COUNTRIES_CSV = LISTS / "countries.csv"
HANDLES_CSV = LISTS / "government-handles.csv"


def _shared_data() -> Path:
    env = os.environ.get("OUTREACH_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(
    not (SHARED / "op-icescr-status.csv").is_file(),
    reason=f"shared data not found at {SHARED} (set OUTREACH_SHARED_DATA)",
)

TABLE = CountryTable.load(COUNTRIES_CSV)
COUNTRIES = list(TABLE)


def d(text: str) -> date:
    return date.fromisoformat(text)


def c(code: str) -> Country:
    country = TABLE.get(code)
    assert country is not None, code
    return country


# --------------------------------------------------------------------------------------
# The shipped table
# --------------------------------------------------------------------------------------


def test_194_rows_unique_and_sorted_by_code():
    assert len(TABLE) == 194
    codes = [x.code for x in TABLE]
    assert codes == sorted(set(codes))
    raw_codes = [row["iso2"] for row in csv.DictReader(COUNTRIES_CSV.open(encoding="utf-8"))]
    assert raw_codes == codes  # the file itself is sorted, not only the table


def test_header_is_exactly_the_documented_columns():
    with COUNTRIES_CSV.open(encoding="utf-8") as f:
        assert tuple(next(csv.reader(f))) == COLUMNS
    assert COLUMNS[:5] == ("iso2", "name_en", "name_es", "name_fr", "un_name")
    assert COLUMNS[-1] == "note"


@needs_shared
def test_every_state_of_the_icescr_file_is_present():
    rows = list(csv.DictReader((SHARED / "icescr-parties.csv").open(encoding="utf-8")))
    assert len(rows) == 194
    for row in rows:
        country = TABLE.get(row["iso2"])
        assert country is not None, row["iso2"]
        assert country.icescr_party is (row["icescr_party"] == "yes"), row["iso2"]
    assert {r["iso2"] for r in rows} == {x.code for x in TABLE}


@needs_shared
def test_op_rows_are_carried_over_faithfully():
    rows = list(csv.DictReader((SHARED / "op-icescr-status.csv").open(encoding="utf-8")))
    assert len(rows) == 52
    for row in rows:
        x = c(row["iso2"])
        assert x.un_name == row["un_name"]
        assert x.signature_date == (d(row["signature_date"]) if row["signature_date"] else None)
        assert x.ratification_date == (
            d(row["ratification_date"]) if row["ratification_date"] else None
        )
        assert x.accession is (row["accession"] == "yes")
    op_codes = {r["iso2"] for r in rows}
    for x in TABLE:
        if x.code not in op_codes:
            assert (x.un_name, x.signature_year, x.ratification_date) == ("", None, None), x.code


@pytest.mark.parametrize(
    ("as_of", "parties", "signatories"),
    [
        ("2009-09-29", 0, 29),  # UN press release L/T/4418: 29 signatures at the 2009 Treaty Event
        ("2010-09-23", 3, 35),  # UN News: 35 signatories, 3 ratifications
        ("2013-02-05", 10, 42),  # Uruguay's ratification, the 10th
        ("2015-12-10", 21, 45),  # the seed circular's figure
        ("2024-02-05", 28, 46),  # UN says 29: one party is missing from the source data
    ],
)
def test_counts_as_of_a_date(as_of, parties, signatories):
    counts = TABLE.counts(d(as_of))
    assert counts["parties"] == parties
    assert counts["signatories"] == signatories
    assert len(TABLE.parties(d(as_of))) == parties
    assert counts["total"] == 194
    assert counts["parties"] + counts["signed_only"] + counts["not_signed"] == 194
    assert counts["signed_only"] == len(TABLE.signatories_only(d(as_of)))


def test_counts_change_on_the_day_of_deposit():
    assert TABLE.counts(d("2013-02-04"))["parties"] == 9
    assert TABLE.counts(d("2013-02-05"))["parties"] == 10
    assert c("UY").status(d("2013-02-04")) == "signed"
    assert c("UY").status(d("2013-02-05")) == "ratified"


def test_as_of_may_be_a_datetime():
    from datetime import datetime

    assert c("AR").status(datetime(2011, 10, 24, 23, 59)) == "ratified"
    assert c("AR").status(datetime(2011, 10, 23, 23, 59)) == "signed"
    assert TABLE.counts(datetime(2015, 12, 10, 12, 0))["parties"] == 21


def test_germany_acceded_in_2023():
    de = c("DE")
    assert de.accession is True
    assert de.signature_date is None and de.signature_year is None
    assert not de.is_party(d("2015-12-31"))
    assert de.status(d("2015-12-31")) == "not_signed"
    assert de.is_party(d("2023-12-31"))
    assert de.status(d("2023-04-20")) == "ratified"
    assert de.status(d("2023-04-19")) == "not_signed"
    assert de not in TABLE.parties(d("2015-12-10"))
    assert de in TABLE.parties(d("2023-12-31"))


def test_ghana_signed_brazil_not():
    for as_of in (d("2024-02-05"), TABLE.as_of):
        assert c("GH").status(as_of) == "signed"
        assert c("BR").status(as_of) == "not_signed"
    assert c("GH") in TABLE.signatories_only(d("2024-02-05"))


def test_argentina_ratified_2011_10_24():
    ar = c("AR")
    assert ar.signature_date == d("2009-09-24")
    assert ar.ratification_date == d("2011-10-24")
    assert ar.accession is False
    assert ar.status(d("2011-10-23")) == "signed"
    assert ar.status(d("2011-10-24")) == "ratified"
    assert ar.status(d("2009-09-23")) == "not_signed"


def test_north_macedonia_signed_in_2013_without_a_date():
    mk = c("MK")
    assert mk.signature_date is None
    assert mk.signature_year == 2013
    assert mk.ratification_date is None
    assert not mk.is_signatory(d("2013-12-30"))
    assert mk.is_signatory(d("2013-12-31"))
    assert mk.status(d("2024-02-05")) == "signed"
    assert mk.note  # the doubt is recorded
    raw = {r["iso2"]: r for r in csv.DictReader(COUNTRIES_CSV.open(encoding="utf-8"))}
    assert raw["MK"]["signature_date"] == "2013"


def test_accessions_have_no_signature():
    accessions = [x for x in TABLE if x.accession]
    assert {x.code for x in accessions} == {"CF", "DE", "HN", "NE", "SM", "SS"}
    for x in accessions:
        assert x.signature_date is None and x.signature_year is None
        assert x.ratification_date is not None


def test_signature_year_matches_signature_date():
    for x in TABLE:
        if x.signature_date is not None:
            assert x.signature_year == x.signature_date.year


def test_every_op_party_is_a_covenant_party():
    for x in TABLE.parties(d("2030-01-01")):
        assert x.icescr_party, x.code
    assert c("US").icescr_party is False  # signed the Covenant only


@settings(max_examples=60, deadline=None)
@given(
    st.dates(min_value=date(2008, 1, 1), max_value=date(2030, 12, 31)),
    st.integers(min_value=0, max_value=3000),
)
def test_counts_never_decrease_and_partition(first, days):
    later = first + timedelta(days=days)
    a, b = TABLE.counts(first), TABLE.counts(later)
    assert a["parties"] <= b["parties"]
    assert a["signatories"] <= b["signatories"]
    for counts in (a, b):
        assert counts["parties"] + counts["signed_only"] + counts["not_signed"] == 194
    statuses = [x.status(first) for x in TABLE]
    assert set(statuses) <= set(STATUSES)
    assert statuses.count("ratified") == a["parties"]
    assert statuses.count("signed") == a["signed_only"]


# --------------------------------------------------------------------------------------
# Names, hashtags, handles, zones, notes
# --------------------------------------------------------------------------------------


def test_names_in_three_languages():
    de = c("DE")
    assert (de.names["en"], de.names["es"], de.names["fr"]) == ("Germany", "Alemania", "Allemagne")
    assert c("ES").names["es"] == "España"
    assert c("GB").name("fr") == "Royaume-Uni"
    assert c("US").name("es") == "Estados Unidos"
    for x in TABLE:
        for lang in ("en", "es", "fr"):
            assert x.names[lang].strip() == x.names[lang] != "", (x.code, lang)
    differing = sum(len({x.names["en"], x.names["es"], x.names["fr"]}) == 3 for x in TABLE)
    assert differing > 60  # translated, not English copied three times


def test_name_falls_back_to_english():
    assert c("DE").name("de") == "Germany"
    assert c("DE").name("fr-CA") == "Allemagne"
    assert c("DE").name("es_419") == "Alemania"
    assert c("DE").name("EN") == "Germany"


def test_names_suit_a_letter():
    assert c("CD").names == {
        "en": "Democratic Republic of the Congo",
        "es": "República Democrática del Congo",
        "fr": "République démocratique du Congo",
    }
    assert c("CG").name("en") == "Republic of the Congo"
    assert c("PS").name("en") == "State of Palestine"
    assert c("PS").name("fr") == "État de Palestine"
    assert c("MM").name("en") == "Myanmar"
    assert c("BA").name("en") == "Bosnia and Herzegovina"
    assert c("CV").name("en") == "Cabo Verde"
    for x in TABLE:
        for lang, name in x.names.items():
            assert not any(bad in name for bad in ("&", "(", " - ", "St. ")), (x.code, lang, name)
            assert len(name) <= 35, (x.code, lang, name)


def test_hashtags():
    assert c("ZA").hashtag == "SouthAfrica"
    assert c("CV").hashtag == "CaboVerde"
    assert c("CI").hashtag == "CoteDIvoire"
    assert c("CD").hashtag == "DRCongo"
    assert c("TR").hashtag == "Turkiye"
    assert c("GW").hashtag == "GuineaBissau"
    tags = [x.hashtag for x in TABLE]
    assert len(set(tags)) == len(tags)
    for tag in tags:
        assert tag.isascii() and tag.isalnum() and tag[0].isupper(), tag


def test_government_handles_come_from_the_curated_file_only():
    rows = list(csv.DictReader(HANDLES_CSV.open(encoding="utf-8")))
    curated = {r["iso2"]: r["handle"] for r in rows}
    assert {x.code: x.handle for x in TABLE if x.handle} == curated
    assert c("FR").handle == "francediplo"
    assert c("DE").handle == "AuswaertigesAmt"
    assert c("BR").handle == ""
    for r in rows:
        assert "verify" in r["note"].lower(), r
        assert r["platform"] == "x"
        assert not r["handle"].startswith("@")


def test_every_timezone_loads_and_capitals_are_right():
    for x in TABLE:
        ZoneInfo(x.timezone)
    expected = {
        "US": "America/New_York",
        "BR": "America/Sao_Paulo",
        "RU": "Europe/Moscow",
        "AU": "Australia/Sydney",
        "CA": "America/Toronto",
        "MX": "America/Mexico_City",
        "ID": "Asia/Jakarta",
        "KZ": "Asia/Almaty",
        "CD": "Africa/Kinshasa",
        "CL": "America/Santiago",
        "ES": "Europe/Madrid",
        "PT": "Europe/Lisbon",
        "EC": "America/Guayaquil",
        "KI": "Pacific/Tarawa",
        "FM": "Pacific/Pohnpei",
        "PG": "Pacific/Port_Moresby",
        "MN": "Asia/Ulaanbaatar",
        "AR": "America/Argentina/Buenos_Aires",
        "UA": "Europe/Kyiv",
        "UZ": "Asia/Tashkent",
        "PS": "Asia/Hebron",
        "DE": "Europe/Berlin",
        "FR": "Europe/Paris",
        "IN": "Asia/Kolkata",
    }
    assert {code: c(code).timezone for code in expected} == expected


def test_every_multi_zone_state_has_a_checked_capital_zone():
    zones = _zone_tab()
    multi = {code for code, zs in zones.items() if len(zs) > 1 and code in TABLE}
    assert multi - set(CAPITAL_ZONES) == set(), "add these to CAPITAL_ZONES"
    for code, zone in CAPITAL_ZONES.items():
        assert zone in zones[code], (code, zone)


def test_doubt_notes():
    assert "low confidence" in c("NE").note
    assert "2014-11-07" in c("NE").note
    for code in ("NE", "MK", "SM", "SS", "CY", "AO", "ME", "VE", "PT", "CF", "HN", "BF"):
        assert c(code).note, code
    for code in ("FR", "SV", "FI", "NL"):
        assert c(code).note, code
    assert c("AR").note == "" and c("GH").note == "" and c("BR").note == ""


def test_sidecar():
    assert TABLE.as_of == date(2024, 9, 30)
    assert "IV-3-a" in TABLE.source
    assert "shared/data/op-icescr-status.csv" in TABLE.source_files
    assert "shared/data/icescr-parties.csv" in TABLE.source_files


# --------------------------------------------------------------------------------------
# Look-ups
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("brasil", "BR"),
        ("Brazil", "BR"),
        ("Brésil", "BR"),
        ("Côte d'Ivoire", "CI"),
        ("Côte d’Ivoire", "CI"),
        ("cote divoire", "CI"),
        ("COTE D'IVOIRE", "CI"),
        ("USA", "US"),
        ("usa", "US"),
        ("US", "US"),
        ("ESP", "ES"),
        ("es", "ES"),
        ("NA", "NA"),
        ("na", "NA"),
        ("Namibia", "NA"),
        ("UK", "GB"),
        ("Great Britain", "GB"),
        ("Ivory Coast", "CI"),
        ("Turkey", "TR"),
        ("Türkiye", "TR"),
        ("Czech Republic", "CZ"),
        ("Swaziland", "SZ"),
        ("Burma", "MM"),
        ("DRC", "CD"),
        ("RDC", "CD"),
        ("Congo-Kinshasa", "CD"),
        ("Congo", "CG"),  # the UN name of the Republic of the Congo
        ("Holland", "NL"),
        ("the Netherlands", "NL"),
        ("Netherlands (Kingdom of the)", "NL"),
        ("The Gambia", "GM"),
        ("Bolivia (Plurinational State of)", "BO"),
        ("Venezuela (Bolivarian Republic of)", "VE"),
        ("Iran (Islamic Republic of)", "IR"),
        ("Russian Federation", "RU"),
        ("Viet Nam", "VN"),
        ("Republic of Korea", "KR"),
        ("Saint Kitts & Nevis", "KN"),
        ("St. Kitts and Nevis", "KN"),
        ("St Lucia", "LC"),
        ("Cape Verde", "CV"),
        ("Palestine", "PS"),
        ("Macedonia", "MK"),
        ("  germany  ", "DE"),
        ("Alemania", "DE"),
        ("Allemagne", "DE"),
        ("DEU", "DE"),
    ],
)
def test_lookup(text, code):
    found = TABLE.lookup(text)
    assert found is not None, text
    assert found.code == code


@pytest.mark.parametrize("text", ["Argentinia", "Frnace", "", "   ", "Atlantis", "XX", "ZZZ", "-"])
def test_lookup_does_not_guess(text):
    assert TABLE.lookup(text) is None


@pytest.mark.parametrize(
    ("typo", "code"),
    [
        ("Argentinia", "AR"),
        ("Frnace", "FR"),
        ("Brasil", "BR"),
        ("Germnay", "DE"),
        ("Marocco", "MA"),
    ],
)
def test_suggest(typo, code):
    suggestions = TABLE.suggest(typo)
    assert suggestions, typo
    assert suggestions[0].code == code
    assert len(suggestions) <= 3
    assert len({x.code for x in suggestions}) == len(suggestions)


def test_suggest_nothing_for_noise():
    assert TABLE.suggest("qqqqqqqqqq") == []
    assert len(TABLE.suggest("Guinea", n=5)) == 5


def test_get_and_contains():
    assert TABLE.get("na") is c("NA")
    assert TABLE.get("XX") is None
    assert "DE" in TABLE and "de" in TABLE and c("DE") in TABLE
    assert "XX" not in TABLE and 42 not in TABLE


def _strip_accents(text: str) -> str:
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )


NAMED = [(x.code, name) for x in COUNTRIES for name in (*x.names.values(), x.un_name) if name]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(NAMED), st.data())
def test_lookup_ignores_case_and_accents_for_every_name(pair, data):
    code, name = pair
    if data.draw(st.booleans(), label="strip accents"):
        name = _strip_accents(name)
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    name = "".join(ch.swapcase() if flip else ch for ch, flip in zip(name, flips, strict=True))
    pad = data.draw(st.sampled_from(["", " ", "  ", "\t"]))
    found = TABLE.lookup(pad + name + pad)
    assert found is not None and found.code == code, (name, code)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(COUNTRIES), st.lists(st.booleans(), min_size=2, max_size=2))
def test_lookup_by_code_any_case(country, flips):
    text = "".join(ch.lower() if f else ch for ch, f in zip(country.code, flips, strict=True))
    assert TABLE.lookup(text) is country


def test_no_display_name_is_shared_by_two_states():
    from outreach.countries import _fold

    owner: dict[str, str] = {}
    for x in TABLE:
        for name in (*x.names.values(), x.un_name):
            if name:
                assert owner.setdefault(_fold(name), x.code) == x.code, name


# --------------------------------------------------------------------------------------
# Loading errors
# --------------------------------------------------------------------------------------


def _copy_with(tmp_path: Path, edit) -> tuple[Path, list[str]]:
    lines = COUNTRIES_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    lines = edit(lines)
    path = tmp_path / "countries.csv"
    path.write_text("".join(lines), encoding="utf-8")
    return path, lines


def _line_of(lines: list[str], code: str) -> int:
    return next(i for i, line in enumerate(lines, start=1) if line.startswith(code + ","))


def _replace_in_row(code: str, old: str, new: str):
    def edit(lines):
        return [
            line.replace(old, new, 1) if line.startswith(code + ",") else line for line in lines
        ]

    return edit


@pytest.mark.parametrize(
    ("code", "old", "new", "column"),
    [
        ("AR", "2011-10-24", "2011-13-24", "ratification_date"),
        ("AR", "2009-09-24", "24/09/2009", "signature_date"),
        ("AR", ",no,yes,", ",maybe,yes,", "accession"),
        ("AR", "America/Argentina/Buenos_Aires", "America/Atlantis", "timezone"),
        ("AR", "CancilleriaARG", "@CancilleriaARG", "government_handle"),
        ("DE", ",2023-04-20,yes,", ",2023-04-20,no,", "accession"),  # ratified without signing
        ("AR", ",Argentina,CancilleriaARG,", ",#Argentina,CancilleriaARG,", "hashtag"),
    ],
)
def test_load_errors_name_file_line_and_column(tmp_path, code, old, new, column):
    path, lines = _copy_with(tmp_path, _replace_in_row(code, old, new))
    assert "".join(lines) != COUNTRIES_CSV.read_text(encoding="utf-8"), "edit did not apply"
    with pytest.raises(CountryDataError) as info:
        CountryTable.load(path)
    message = str(info.value)
    assert f"{path}:{_line_of(lines, code)}" in message
    assert column in message


def test_load_error_for_unknown_column(tmp_path):
    path, _ = _copy_with(
        tmp_path, lambda lines: [lines[0].replace("hashtag", "hash_tag"), *lines[1:]]
    )
    with pytest.raises(CountryDataError) as info:
        CountryTable.load(path)
    assert f"{path}:1" in str(info.value)
    assert "hash_tag" in str(info.value)


def test_load_error_for_duplicate_code(tmp_path):
    path, lines = _copy_with(tmp_path, lambda lines: [*lines, lines[_line_of(lines, "FR") - 1]])
    with pytest.raises(CountryDataError) as info:
        CountryTable.load(path)
    assert f"{path}:{len(lines)}" in str(info.value)
    assert "FR appears twice" in str(info.value)


def test_load_error_for_short_row(tmp_path):
    path, lines = _copy_with(tmp_path, _replace_in_row("BR", ",America/Sao_Paulo,", ","))
    with pytest.raises(CountryDataError, match="fields") as info:
        CountryTable.load(path)
    assert f"{path}:{_line_of(lines, 'BR')}" in str(info.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(CountryDataError, match="not found"):
        CountryTable.load(tmp_path / "nope.csv")


def test_sidecar_is_optional_and_any_yaml_form_is_read(tmp_path):
    path, _ = _copy_with(tmp_path, lambda lines: lines)
    table = CountryTable.load(path)
    assert (table.as_of, table.source, len(table)) == (None, "", 194)
    sidecar = tmp_path / "countries.source.yaml"
    sidecar.write_text("{source: {description: hand-made, files: [a.csv]}, as_of: 2024-09-30}\n")
    table = CountryTable.load(path)
    assert (table.as_of, table.source, table.source_files) == (
        date(2024, 9, 30),
        "hand-made",
        ("a.csv",),
    )
    sidecar.write_text('as_of: "30 Sep 2024"\n')
    with pytest.raises(CountryDataError, match="as_of"):
        CountryTable.load(path)
    sidecar.write_text("as_of: [unclosed\n")
    with pytest.raises(CountryDataError, match=r"countries\.source\.yaml"):
        CountryTable.load(path)


def test_load_is_light():
    """Loading must not pull in babel or pycountry (they cost 20-60 ms each; only building
    the table and name look-ups need them)."""
    code = (
        "import sys, time; from pathlib import Path\n"
        "from outreach.countries import CountryTable\n"
        f"t = CountryTable.load(Path({str(COUNTRIES_CSV)!r}))\n"
        "assert len(t) == 194 and t.as_of is not None\n"
        "print(sorted(m for m in ('babel', 'pycountry') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------
# Regeneration
# --------------------------------------------------------------------------------------


def _sidecar_without_timestamp(path: Path) -> list[str]:
    return [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if not line.startswith("generated_")
    ]


@needs_shared
def test_build_reproduces_the_committed_files(tmp_path):
    out = tmp_path / "lists" / "countries.csv"
    notes = build_countries(SHARED, out, HANDLES_CSV)
    assert out.read_bytes() == COUNTRIES_CSV.read_bytes(), (
        "lists/countries.csv is stale: regenerate it (see lists/README.md)"
    )
    assert _sidecar_without_timestamp(out.with_name("countries.source.yaml")) == (
        _sidecar_without_timestamp(LISTS / "countries.source.yaml")
    )
    text = "\n".join(notes)
    assert "28 parties" in text and "29" in text  # the missing 29th party is reported
    assert "NE" in text and "MK" in text


@needs_shared
def test_build_reports_bad_source_rows(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "icescr-parties.csv").write_bytes((SHARED / "icescr-parties.csv").read_bytes())
    lines = (SHARED / "op-icescr-status.csv").read_text(encoding="utf-8").splitlines()
    lineno = next(i for i, line in enumerate(lines, start=1) if line.startswith("AR,"))
    lines[lineno - 1] = lines[lineno - 1].replace("2011-10-24", "2011-10-32")
    (shared / "op-icescr-status.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "countries.csv"
    with pytest.raises(CountryDataError) as info:
        build_countries(shared, out)
    assert f"op-icescr-status.csv:{lineno}" in str(info.value)
    assert "ratification_date" in str(info.value)
    assert not out.exists()
