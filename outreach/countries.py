"""Country data: names, OP-ICESCR status as of a date, hashtags, handles, time zones.

Two halves:

* :class:`CountryTable` reads the shipped ``lists/countries.csv`` (194 rows: the 193 UN
  member States plus the State of Palestine) and its sidecar ``countries.source.yaml``. It
  is used by every command, so it only parses text: no babel, no pycountry, no time-zone
  files are opened. The look-up index (:meth:`CountryTable.lookup`) is built on first use.
* :func:`build_countries` regenerates that CSV from the shared source data
  (``shared/data/op-icescr-status.csv`` and ``icescr-parties.csv``), the CLDR names shipped
  with babel, the tz database shipped with tzdata and the curated
  ``lists/government-handles.csv``.

Status is always computed *as of a date*: a State is a party from its ratification or
accession date on, and a signatory from its signature date on. North Macedonia signed in
2013 on a day nobody could confirm; it counts as a signatory from 31 December 2013.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType

from outreach.exceptions import CountryDataError, Location

__all__ = [
    "AS_OF",
    "COLUMNS",
    "LANGUAGES",
    "STATUSES",
    "Country",
    "CountryTable",
    "build_countries",
]

STATUSES = ("ratified", "signed", "not_signed")
LANGUAGES = ("en", "es", "fr")
COLUMNS = (
    "iso2",
    "name_en",
    "name_es",
    "name_fr",
    "un_name",
    "signature_date",
    "ratification_date",
    "accession",
    "icescr_party",
    "hashtag",
    "government_handle",
    "timezone",
    "note",
)
HANDLE_COLUMNS = ("iso2", "handle", "platform", "verified_on", "note")

#: As-of date of the source data: the latest dated corroboration in op-icescr-status.SOURCES.md
#: (OHCHR press release of 30 Sep 2024: 29 OP parties, 172 Covenant parties).
AS_OF = date(2024, 9, 30)
#: What the UN Treaty Collection header said for that period (signatories, parties).
UN_COUNTS = (46, 29)

OP_STATUS_FILE = "op-icescr-status.csv"
ICESCR_FILE = "icescr-parties.csv"
SOURCE_DESCRIPTION = (
    "OP-ICESCR signatures, ratifications and accessions (UN Treaty Collection MTDSG IV-3-a, "
    "cross-checked; see op-icescr-status.SOURCES.md) and ICESCR party status (MTDSG IV-3)"
)

_CODE_RE = re.compile(r"[A-Z]{2}")
_YEAR_RE = re.compile(r"\d{4}")
_HASHTAG_RE = re.compile(r"[A-Za-z0-9]+")
_HANDLE_RE = re.compile(r"[A-Za-z0-9_]{1,15}")
_TZ_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)+|UTC")
_YES_NO = {"yes": True, "no": False}


# --------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Country:
    """One State: display names, OP-ICESCR dates and campaign details."""

    code: str
    names: Mapping[str, str] = field(hash=False)
    un_name: str
    signature_date: date | None
    signature_year: int | None
    ratification_date: date | None
    accession: bool
    icescr_party: bool
    hashtag: str
    handle: str
    timezone: str
    note: str

    def name(self, lang: str) -> str:
        """Display name in ``lang`` ("fr", "es-419", "fr_CA" ...); English if unknown."""
        primary = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
        return self.names.get(primary) or self.names["en"]

    @property
    def signature_known_from(self) -> date | None:
        """First day on which the signature is certain (31 Dec for a year-only signature)."""
        if self.signature_date is not None:
            return self.signature_date
        if self.signature_year is not None:
            return date(self.signature_year, 12, 31)
        return None

    def is_party(self, as_of: date) -> bool:
        """Party (by ratification or accession) on ``as_of``."""
        return self.ratification_date is not None and self.ratification_date <= _day(as_of)

    def is_signatory(self, as_of: date) -> bool:
        """Signed on or before ``as_of``. A year-only signature counts from 31 Dec of that year."""
        since = self.signature_known_from
        return since is not None and since <= _day(as_of)

    def status(self, as_of: date) -> str:
        """``"ratified"`` (party, also by accession), ``"signed"`` (signed only) or ``"not_signed"``."""
        if self.is_party(as_of):
            return "ratified"
        if self.is_signatory(as_of):
            return "signed"
        return "not_signed"


def _day(as_of: date) -> date:
    """``as_of`` as a plain date (a datetime is cut to its own calendar day)."""
    return as_of.date() if isinstance(as_of, datetime) else as_of


# --------------------------------------------------------------------------------------
# Text folding for look-ups
# --------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[^\W_]+")


def _fold(text: str) -> str:
    """Comparison key: no accents, case or punctuation; "&" = "and"; "Saint" = "St"; no leading "the"."""
    s = unicodedata.normalize("NFKD", text)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).casefold()
    s = s.replace("&", " and ")
    words = _WORD_RE.findall(s)
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    words = [{"saint": "st", "sainte": "ste"}.get(w, w) for w in words]
    return "".join(words)


#: Common names that are neither CLDR's (en/es/fr), the UN's nor pycountry's.
ALIASES: dict[str, tuple[str, ...]] = {
    "AE": ("UAE", "EAU"),
    "BA": ("BiH",),
    "CD": (
        "DRC",
        "DR Congo",
        "RDC",
        "RD Congo",
        "Democratic Republic of Congo",
        "Congo - Kinshasa",
        "Congo Kinshasa",
        "Zaire",
    ),
    "CG": ("Congo - Brazzaville", "Congo Brazzaville", "Republic of Congo", "Congo Republic"),
    "CI": ("Ivory Coast", "Costa de Marfil"),
    "CV": ("Cape Verde", "Cap-Vert"),
    "CZ": ("Czech Republic", "República Checa", "République tchèque"),
    "GB": ("UK", "Great Britain", "Britain"),
    "KP": ("DPRK", "Democratic People's Republic of Korea"),
    "KR": ("ROK", "Republic of Korea"),
    "MD": ("Republic of Moldova",),
    "MK": ("Macedonia", "FYROM", "former Yugoslav Republic of Macedonia"),
    "MM": ("Burma", "Birmania", "Birmanie", "Myanmar (Burma)"),
    "NL": ("Holland", "Holanda", "Hollande", "Kingdom of the Netherlands"),
    "PS": (
        "Palestine",
        "Palestina",
        "Palestinian Territories",
        "Territorios Palestinos",
        "Territoires palestiniens",
    ),
    "SZ": ("Swaziland", "Suazilandia"),
    "TL": ("East Timor", "Timor oriental"),
    "TR": ("Turkey",),
    "TZ": ("United Republic of Tanzania",),
    "US": ("United States of America", "EEUU", "EE UU"),
}


def _pycountry_records() -> list[dict[str, str]]:
    """pycountry's ISO 3166-1 records (alpha_2, alpha_3, name, official_name, common_name)."""
    import pycountry

    keys = ("alpha_2", "alpha_3", "name", "official_name", "common_name")
    return [{k: getattr(c, k) for k in keys if hasattr(c, k)} for c in pycountry.countries]


class _Index:
    """Code and folded-name look-up tables, built once per table."""

    __slots__ = ("alpha2", "alpha3", "keys", "names")

    def __init__(self, countries: Iterable[Country]) -> None:
        by_code = {c.code: c for c in countries}
        self.alpha2: dict[str, Country] = dict(by_code)
        self.alpha3: dict[str, Country] = {}
        self.names: dict[str, Country] = {}

        def add(key_text: str | None, country: Country) -> None:
            if key_text:
                key = _fold(key_text)
                if key:
                    self.names.setdefault(key, country)  # first source wins (see order below)

        # Priority: our display names and UN names, then aliases, then pycountry's names.
        for c in by_code.values():
            for lang in LANGUAGES:
                add(c.names.get(lang), c)
            add(c.un_name, c)
        for code, aliases in ALIASES.items():
            if code in by_code:
                for alias in aliases:
                    add(alias, by_code[code])
        for rec in _pycountry_records():
            c = by_code.get(rec.get("alpha_2", ""))
            if c is None:
                continue
            if rec.get("alpha_3"):
                self.alpha3[rec["alpha_3"]] = c
            for k in ("name", "official_name", "common_name"):
                add(rec.get(k), c)
        self.keys = list(self.names)


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------


class CountryTable:
    """All countries of ``lists/countries.csv``, in code order, with look-ups and counts."""

    def __init__(
        self,
        countries: Iterable[Country],
        *,
        path: Path | None = None,
        source: str = "",
        source_files: tuple[str, ...] = (),
        as_of: date | None = None,
    ) -> None:
        self._by_code: dict[str, Country] = {c.code: c for c in sorted(countries, key=_code)}
        self.path = path
        self.source = source
        self.source_files = source_files
        self.as_of = as_of
        self._index: _Index | None = None

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> CountryTable:
        """Read and validate ``countries.csv`` (and ``countries.source.yaml`` beside it, if any).

        Raises :class:`CountryDataError` naming ``path:line`` and the column at fault.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise CountryDataError(
                "country table not found",
                where=Location(path),
                hint="regenerate it with `outreach countries build` (see lists/README.md)",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CountryDataError(
                f"cannot read country table: {exc}", where=Location(path)
            ) from exc
        countries = _parse_countries_csv(text, path)
        source, files, as_of = _read_sidecar(sidecar_path(path))
        return cls(countries, path=path, source=source, source_files=files, as_of=as_of)

    # -- container protocol ------------------------------------------------------------

    def __iter__(self) -> Iterator[Country]:
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Country):
            return self._by_code.get(item.code) == item
        if isinstance(item, str):
            return self.get(item) is not None
        return False

    def __repr__(self) -> str:
        return f"<CountryTable {len(self)} countries from {self.path or '?'}>"

    def get(self, code: str) -> Country | None:
        """The country with ISO alpha-2 ``code`` (any case), or None."""
        return self._by_code.get(code.strip().upper())

    # -- look-ups ------------------------------------------------------------------------

    def _get_index(self) -> _Index:
        if self._index is None:
            self._index = _Index(self._by_code.values())
        return self._index

    def lookup(self, text: str) -> Country | None:
        """Exact look-up of an alpha-2/alpha-3 code, a display name (en/es/fr), the UN name,
        pycountry's names or a common alias; ignores case, accents and punctuation.

        A 2- or 3-letter input is tried as a code first ("NA" is Namibia, "ESP" Spain).
        Returns None rather than guessing: use :meth:`suggest` for typos.
        """
        if not isinstance(text, str):
            return None
        raw = text.strip()
        if len(raw) == 2 and raw.isascii():  # the common case: a code, no index needed
            found = self.get(raw.upper())
            if found is not None:
                return found
        index = self._get_index()
        if raw.isascii() and raw.isalpha():
            up = raw.upper()
            if len(up) == 2 and up in index.alpha2:
                return index.alpha2[up]
            if len(up) == 3 and up in index.alpha3:
                return index.alpha3[up]
        key = _fold(raw)
        return index.names.get(key) if key else None

    def suggest(self, text: str, n: int = 3) -> list[Country]:
        """Up to ``n`` countries whose names are close to ``text`` (for "did you mean ...?").

        An exact match, if any, comes first.
        """
        out: list[Country] = []
        exact = self.lookup(text)
        if exact is not None:
            out.append(exact)
        key = _fold(text)
        if key and n > len(out):
            index = self._get_index()
            import difflib

            for match in difflib.get_close_matches(key, index.keys, n=n * 6, cutoff=0.6):
                c = index.names[match]
                if c not in out:
                    out.append(c)
                if len(out) >= n:
                    break
        return out[:n]

    # -- status as of a date ---------------------------------------------------------

    def age_warning(self, on: date) -> str | None:
        """A warning when the treaty data is more than a year older than ``on`` (the send
        date it is used for), or undated."""
        if self.as_of is None:
            return (
                "lists/countries.csv has no as-of date: check it against the UN Treaty Collection"
            )
        age = (on - self.as_of).days
        if age > 365:
            return (
                f"country data is as of {self.as_of.isoformat()} ({age // 365} year(s) before "
                f"the send date, {on.isoformat()}): "
                "check lists/countries.csv against the UN Treaty Collection before sending"
            )
        return None

    def parties(self, as_of: date) -> list[Country]:
        """States party on ``as_of`` (ratification or accession), in code order."""
        return [c for c in self if c.is_party(as_of)]

    def signatories_only(self, as_of: date) -> list[Country]:
        """States that had signed but were not yet parties on ``as_of``, in code order."""
        return [c for c in self if c.is_signatory(as_of) and not c.is_party(as_of)]

    def counts(self, as_of: date) -> dict[str, int]:
        """Headline numbers on ``as_of``.

        ``signatories`` counts every State that had signed (parties included, accessions
        not, as the UN does); ``signed_only`` + ``parties`` + ``not_signed`` = ``total``.
        """
        parties = signatories = signed_only = 0
        for c in self:
            party, signed = c.is_party(as_of), c.is_signatory(as_of)
            parties += party
            signatories += signed
            signed_only += signed and not party
        total = len(self)
        return {
            "parties": parties,
            "signatories": signatories,
            "signed_only": signed_only,
            "not_signed": total - parties - signed_only,
            "total": total,
        }


def _code(c: Country) -> str:
    return c.code


def sidecar_path(csv_path: Path) -> Path:
    """``lists/countries.csv`` → ``lists/countries.source.yaml``."""
    return csv_path.with_name(csv_path.stem + ".source.yaml")


# --------------------------------------------------------------------------------------
# Parsing and validating countries.csv
# --------------------------------------------------------------------------------------


def _err(
    path: Path, line: int | None, column: str | None, message: str, hint: str | None = None
) -> CountryDataError:
    col = COLUMNS.index(column) + 1 if column in COLUMNS else None
    return CountryDataError(message, where=Location(path, line, key=column, column=col), hint=hint)


_FIX_HINT = "fix lists/countries.csv, or regenerate it with `outreach countries build`"


def _parse_date(value: str, path: Path, line: int, column: str) -> date:
    try:
        if len(value) != 10:  # fromisoformat also takes "20110101" and "2011-W01-1"
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise _err(
            path, line, column, f"not a date: {value!r} (expected YYYY-MM-DD)", _FIX_HINT
        ) from None


def _parse_bool(value: str, path: Path, line: int, column: str) -> bool:
    try:
        return _YES_NO[value.strip().lower()]
    except KeyError:
        raise _err(path, line, column, f"expected yes or no, got {value!r}", _FIX_HINT) from None


_tz_names: frozenset[str] | None = None


def _tzdata_dir() -> Path | None:
    """The installed ``tzdata`` package folder, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("tzdata")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        return Path(folder)
    return None


def _known_timezone(name: str) -> bool:
    """Cheap existence check: tzdata's list of zone names, else a real ZoneInfo load."""
    global _tz_names
    if _tz_names is None:
        folder = _tzdata_dir()
        try:
            text = (folder / "zones").read_text(encoding="utf-8") if folder else ""
        except OSError:  # pragma: no cover - tzdata always ships "zones"
            text = ""
        _tz_names = frozenset(text.split())
    if name in _tz_names:
        return True
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _parse_countries_csv(text: str, path: Path) -> list[Country]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise _err(path, 1, None, "empty file: no header row", _FIX_HINT) from None
    except csv.Error as exc:
        raise _err(path, reader.line_num, None, f"bad CSV: {exc}", _FIX_HINT) from None
    header = [h.strip() for h in header]
    for name in header:
        if name not in COLUMNS:
            raise CountryDataError(
                f"unknown column {name!r}",
                where=Location(path, 1, key=name, column=header.index(name) + 1),
                hint=f"expected the columns {', '.join(COLUMNS)}",
            )
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise _err(
            path,
            1,
            missing[0],
            f"missing column(s): {', '.join(missing)}",
            f"expected the columns {', '.join(COLUMNS)}",
        )
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise _err(path, 1, dup, f"column {dup!r} appears twice", _FIX_HINT)

    countries: list[Country] = []
    seen: dict[str, int] = {}
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _err(path, reader.line_num, None, f"bad CSV: {exc}", _FIX_HINT) from None
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise _err(
                path,
                line,
                None,
                f"row has {len(values)} fields, the header has {len(header)}",
                _FIX_HINT,
            )
        row = {h: v.strip() for h, v in zip(header, values, strict=True)}
        country = _parse_row(row, path, line)
        if country.code in seen:
            raise _err(
                path,
                line,
                "iso2",
                f"{country.code} appears twice (first on line {seen[country.code]})",
                _FIX_HINT,
            )
        seen[country.code] = line
        countries.append(country)
    if not countries:
        raise _err(path, None, None, "no countries in the table", _FIX_HINT)
    return countries


def _parse_row(row: dict[str, str], path: Path, line: int) -> Country:
    code = row["iso2"]
    if not _CODE_RE.fullmatch(code):
        raise _err(path, line, "iso2", f"not an ISO alpha-2 code: {code!r}", _FIX_HINT)
    names = {lang: row[f"name_{lang}"] for lang in LANGUAGES}
    for lang, value in names.items():
        if not value:
            raise _err(path, line, f"name_{lang}", f"{code}: empty name", _FIX_HINT)

    sig_raw = row["signature_date"]
    signature_date: date | None = None
    signature_year: int | None = None
    if _YEAR_RE.fullmatch(sig_raw):
        signature_year = int(sig_raw)
    elif sig_raw:
        signature_date = _parse_date(sig_raw, path, line, "signature_date")
        signature_year = signature_date.year
    rat_raw = row["ratification_date"]
    ratification_date = _parse_date(rat_raw, path, line, "ratification_date") if rat_raw else None
    accession = _parse_bool(row["accession"], path, line, "accession")
    icescr_party = _parse_bool(row["icescr_party"], path, line, "icescr_party")

    if accession and ratification_date is None:
        raise _err(
            path,
            line,
            "accession",
            f"{code}: accession=yes needs the accession date in ratification_date",
            _FIX_HINT,
        )
    if accession and signature_year is not None:
        raise _err(
            path,
            line,
            "signature_date",
            f"{code}: an accession has no signature; clear signature_date or set accession=no",
            _FIX_HINT,
        )
    if ratification_date is not None and not accession and signature_year is None:
        raise _err(
            path,
            line,
            "accession",
            f"{code}: a ratification needs a signature; if the State acceded, set accession=yes",
            _FIX_HINT,
        )
    if (
        ratification_date is not None
        and signature_date is not None
        and signature_date > ratification_date
    ):
        raise _err(
            path,
            line,
            "signature_date",
            f"{code}: signed {signature_date} after ratifying {ratification_date}",
            _FIX_HINT,
        )
    if ratification_date is not None and not icescr_party:
        raise _err(
            path,
            line,
            "icescr_party",
            f"{code}: a party to the Optional Protocol must be a party to the Covenant",
            _FIX_HINT,
        )

    hashtag = row["hashtag"]
    if not _HASHTAG_RE.fullmatch(hashtag):
        raise _err(
            path,
            line,
            "hashtag",
            f"{code}: hashtag must be letters and digits only, without '#': {hashtag!r}",
            _FIX_HINT,
        )
    handle = row["government_handle"]
    if handle and not _HANDLE_RE.fullmatch(handle):
        raise _err(
            path,
            line,
            "government_handle",
            f"{code}: not a handle (letters, digits, '_', at most 15, without '@'): {handle!r}",
            _FIX_HINT,
        )
    tz = row["timezone"]
    if not (_TZ_RE.fullmatch(tz) and _known_timezone(tz)):
        raise _err(path, line, "timezone", f"{code}: unknown IANA time zone {tz!r}", _FIX_HINT)

    return Country(
        code=code,
        names=MappingProxyType(names),
        un_name=row["un_name"],
        signature_date=signature_date,
        signature_year=signature_year,
        ratification_date=ratification_date,
        accession=accession,
        icescr_party=icescr_party,
        hashtag=hashtag,
        handle=handle,
        timezone=tz,
        note=row["note"],
    )


def _read_sidecar(path: Path) -> tuple[str, tuple[str, ...], date | None]:
    """(source description, source file paths, as_of) from the YAML sidecar, if present."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "", (), None
    except (OSError, UnicodeDecodeError) as exc:
        raise CountryDataError(f"cannot read: {exc}", where=Location(path)) from None
    data = _parse_yaml(text, path)
    if data is None:
        return "", (), None
    if not isinstance(data, dict):
        raise CountryDataError("expected a mapping", where=Location(path, 1))
    src = data.get("source") or {}
    if isinstance(src, str):
        description, files = src, ()
    elif isinstance(src, dict):
        description = str(src.get("description") or "")
        files = tuple(
            str(f["path"] if isinstance(f, dict) else f) for f in (src.get("files") or ())
        )
    else:
        raise CountryDataError(
            "source: expected a mapping (description, files)", where=Location(path, key="source")
        )
    raw = data.get("as_of")
    as_of: date | None
    if raw is None or raw == "":
        as_of = None
    elif isinstance(raw, date):
        as_of = raw
    else:
        try:
            as_of = date.fromisoformat(str(raw))
        except ValueError:
            raise CountryDataError(
                f"as_of: not a date: {raw!r} (expected YYYY-MM-DD)",
                where=Location(path, key="as_of"),
            ) from None
    return description, files, as_of


def _parse_yaml(text: str, path: Path) -> object:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CountryDataError(
            f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
            where=Location(path, mark.line + 1 if mark else None),
            hint="regenerate it with `outreach countries build`",
        ) from None


# --------------------------------------------------------------------------------------
# Building countries.csv from the shared data
# --------------------------------------------------------------------------------------

#: CLDR (via babel) display names replaced because they do not suit a letter to a government.
#: babel's CLDR import keeps only the main form of each territory name and drops CLDR's
#: "-alt-" forms (e.g. CD-alt-variant "Congo (DRC)", PS-alt-short "Palestine"), so these
#: are typed here, in all three languages where the main form is unsuitable. Keep it short.
NAME_OVERRIDES: dict[str, dict[str, str]] = {
    # CLDR: "Congo - Kinshasa" / "Congo-Kinshasa"
    "CD": {
        "en": "Democratic Republic of the Congo",
        "es": "República Democrática del Congo",
        "fr": "République démocratique du Congo",
    },
    # CLDR: "Congo - Brazzaville" / "Congo" / "Congo-Brazzaville"
    "CG": {"en": "Republic of the Congo", "es": "República del Congo", "fr": "République du Congo"},
    # CLDR: "Palestinian Territories" / "Territorios Palestinos" / "Territoires palestiniens"
    "PS": {"en": "State of Palestine", "es": "Estado de Palestina", "fr": "État de Palestine"},
    # CLDR: "Myanmar (Burma)" / "Myanmar (Birmania)" / "Myanmar (Birmanie)"
    "MM": {"en": "Myanmar", "es": "Myanmar", "fr": "Myanmar"},
    # CLDR: en "Cape Verde", fr "Cap-Vert". The State asked the UN (2013) to use "Cabo Verde"
    # in every language; the UN and the OP table use it (CLDR has it as en CV-alt-variant).
    "CV": {"en": "Cabo Verde", "fr": "Cabo Verde"},
    # CLDR fr: "Timor oriental"; the State's name in French UN documents is "Timor-Leste".
    "TL": {"fr": "Timor-Leste"},
    # CLDR English short forms with "&" and "St.": spelled out as in the UN names.
    "AG": {"en": "Antigua and Barbuda"},
    "BA": {"en": "Bosnia and Herzegovina"},
    "KN": {"en": "Saint Kitts and Nevis"},
    "LC": {"en": "Saint Lucia"},
    "ST": {"en": "São Tomé and Príncipe"},
    "TT": {"en": "Trinidad and Tobago"},
    "VC": {"en": "Saint Vincent and the Grenadines"},
}

#: Hashtags that do not follow the CamelCase rule (the rule would give a long or unusual tag).
HASHTAG_OVERRIDES: dict[str, str] = {
    "CD": "DRCongo",
    "CG": "CongoBrazzaville",
    "PS": "Palestine",
}

#: The capital's IANA zone for every State with several zones in the tz database's zone.tab.
#: Every multi-zone State is listed (not only those whose first zone.tab entry is wrong) so
#: that each was checked; the entries marked "!" differ from zone.tab's first zone.
CAPITAL_ZONES: dict[str, str] = {
    "AR": "America/Argentina/Buenos_Aires",
    "AU": "Australia/Sydney",  # ! Canberra (zone.tab lists Lord Howe first)
    "BR": "America/Sao_Paulo",  # ! Brasília
    "CA": "America/Toronto",  # ! Ottawa
    "CD": "Africa/Kinshasa",
    "CL": "America/Santiago",
    "CN": "Asia/Shanghai",  # Beijing
    "CY": "Asia/Nicosia",
    "DE": "Europe/Berlin",
    "EC": "America/Guayaquil",  # Quito
    "ES": "Europe/Madrid",
    "FM": "Pacific/Pohnpei",  # ! Palikir (zone.tab lists Chuuk first)
    "ID": "Asia/Jakarta",
    "KI": "Pacific/Tarawa",
    "KZ": "Asia/Almaty",  # Astana
    "MH": "Pacific/Majuro",
    "MN": "Asia/Ulaanbaatar",
    "MX": "America/Mexico_City",
    "MY": "Asia/Kuala_Lumpur",
    "NZ": "Pacific/Auckland",  # Wellington
    "PG": "Pacific/Port_Moresby",
    "PS": "Asia/Hebron",  # ! Ramallah, West Bank (zone.tab lists Gaza first)
    "PT": "Europe/Lisbon",
    "RU": "Europe/Moscow",  # ! zone.tab lists Kaliningrad first
    "UA": "Europe/Kyiv",  # ! zone.tab lists Simferopol (Crimea) first
    "US": "America/New_York",  # Washington, DC
    "UZ": "Asia/Tashkent",  # ! zone.tab lists Samarkand first
}

#: Signatures whose year only is known (the shared CSV leaves the date empty).
YEAR_ONLY_SIGNATURES: dict[str, int] = {
    # SOURCES.md: MKD statement to CESCR (2016) "in 2013 ... signed"; not yet signed on 20 May 2013.
    "MK": 2013,
}

#: One line per doubtful OP-ICESCR row, condensed from op-icescr-status.SOURCES.md
#: ("Uncertain rows").
DOUBTS: dict[str, str] = {
    "NE": "accession date 2014-11-07 low confidence (single source; 7 Mar 2014 also circulates); year 2014 confirmed",
    "MK": "signed in 2013, exact day unknown (after 20 May 2013); a signatory from 31 Dec 2013 on",
    "SM": "date 2015-08-04 single source and 'accession' inferred (no signature found); verify both",
    "SS": "accession 2024-02-05 from one publisher (UN Geneva); row not seen on the UN page",
    "CY": "the single UN date 2021-01-29 is read as a signature (column not visible); not a party",
    "AO": "signature: UN date 2013-09-24 used; whatconvention gives 2013-09-23",
    "ME": "ratification day 2013-09-24 from whatconvention only (month and year confirmed)",
    "VE": "ratification day 2018-10-10 from whatconvention only (year confirmed)",
    "PT": "ratification day 2013-01-28 only from the 2013 UN scrape (party before 5 Feb 2013 confirmed)",
    "CF": "accession day only from the UN page (year confirmed)",
    "HN": "accession day only from the UN page (year confirmed)",
    "BF": "signature date only from UN Treaty Collection data, not cross-checked",
    "FR": "signature day 2012-12-11 only from UN Treaty Collection data, not cross-checked",
    "SV": "ratification day only from the UN (month and year confirmed)",
    "FI": "ratification day only from the UN (month and year consistent)",
    "NL": "signed 2009, not ratified (Dutch sources 2022/2024); un_name is the UN's post-2023 form",
}

#: Doubts about the Covenant column (from icescr-parties.csv and SOURCES.md).
ICESCR_DOUBTS: dict[str, str] = {
    "TV": "ICESCR 'no' is uncertain (one source says party since 1976)",
}


def _hashtag(name_en: str) -> str:
    """CamelCase of the English name: accents dropped, each word capitalised, punctuation removed."""
    s = unicodedata.normalize("NFKD", name_en)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    words = re.findall(r"[A-Za-z0-9]+", s)
    return "".join(w[0].upper() + w[1:] for w in words)


def _read_source_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line, row) pairs of a shared CSV; the header must contain ``columns``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CountryDataError(
            f"cannot read source data: {exc.strerror or exc}",
            where=Location(path),
            hint="set OUTREACH_SHARED_DATA or pass the folder holding the shared CSVs",
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        raise CountryDataError(
            f"missing column(s): {', '.join(missing)}",
            where=Location(path, 1, key=missing[0]),
            hint=f"expected the columns {', '.join(columns)}",
        )
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise CountryDataError("wrong number of fields", where=Location(path, reader.line_num))
        rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()}))
    return rows


def _source_date(value: str, path: Path, line: int, column: str) -> date | None:
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise CountryDataError(
            f"not a date: {value!r} (expected YYYY-MM-DD)",
            where=Location(path, line, key=column),
        ) from None


def _source_bool(value: str, path: Path, line: int, column: str) -> bool:
    try:
        return _YES_NO[value.lower()]
    except KeyError:
        raise CountryDataError(
            f"expected yes or no, got {value!r}", where=Location(path, line, key=column)
        ) from None


def _zone_tab() -> dict[str, list[str]]:
    """Country code → zones, in zone.tab order, from the tz database shipped by tzdata."""
    folder = _tzdata_dir()
    if folder is None:  # pragma: no cover - tzdata is a dependency
        raise CountryDataError("the tzdata package is not installed", hint="pip install tzdata")
    text = (folder / "zoneinfo" / "zone.tab").read_text(encoding="utf-8")
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        zones.setdefault(parts[0], []).append(parts[2])
    return zones


def _display_names(code: str, locales: dict[str, Mapping[str, str]]) -> dict[str, str]:
    names = {}
    override = NAME_OVERRIDES.get(code, {})
    for lang in LANGUAGES:
        name = override.get(lang) or locales[lang].get(code)
        if not name:
            raise CountryDataError(f"{code}: CLDR has no {lang} name and there is no override")
        names[lang] = name
    return names


def _read_handles(path: Path, known: set[str]) -> dict[str, str]:
    rows = _read_source_csv(path, HANDLE_COLUMNS)
    handles: dict[str, str] = {}
    for line, row in rows:
        code, handle = row["iso2"].upper(), row["handle"].lstrip("@")
        where = Location(path, line)
        if code not in known:
            raise CountryDataError(
                f"unknown iso2 code {code!r}", where=Location(path, line, "iso2")
            )
        if code in handles:
            raise CountryDataError(f"{code} appears twice", where=where)
        if handle and not _HANDLE_RE.fullmatch(handle):
            raise CountryDataError(
                f"not a handle: {handle!r}", where=Location(path, line, "handle")
            )
        if row["platform"].lower() not in ("x", "twitter"):
            raise CountryDataError(
                f"platform {row['platform']!r}: only X/Twitter handles go in countries.csv",
                where=Location(path, line, "platform"),
            )
        if handle:
            handles[code] = handle
    return handles


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_countries(shared_data: Path, out_csv: Path, handles_csv: Path | None = None) -> list[str]:
    """Regenerate ``out_csv`` (and its ``.source.yaml`` sidecar) from the shared data.

    ``shared_data`` holds ``op-icescr-status.csv`` and ``icescr-parties.csv``.
    ``handles_csv`` defaults to ``government-handles.csv`` beside ``out_csv`` (if present).
    Returns human-readable notes: counts, overrides used, rows with doubts.
    """
    from babel import Locale

    shared_data, out_csv = Path(shared_data), Path(out_csv)
    op_path, icescr_path = shared_data / OP_STATUS_FILE, shared_data / ICESCR_FILE
    if handles_csv is None:
        default = out_csv.parent / "government-handles.csv"
        handles_csv = default if default.is_file() else None

    icescr_rows = _read_source_csv(icescr_path, ("iso2", "icescr_party", "icescr_status"))
    icescr: dict[str, bool] = {}
    for line, row in icescr_rows:
        code = row["iso2"]
        if not _CODE_RE.fullmatch(code):
            raise CountryDataError(
                f"not an ISO alpha-2 code: {code!r}", where=Location(icescr_path, line, "iso2")
            )
        if code in icescr:
            raise CountryDataError(f"{code} appears twice", where=Location(icescr_path, line))
        icescr[code] = _source_bool(row["icescr_party"], icescr_path, line, "icescr_party")

    op: dict[str, dict] = {}
    for line, row in _read_source_csv(
        op_path, ("iso2", "un_name", "signature_date", "ratification_date", "accession")
    ):
        code = row["iso2"]
        where = Location(op_path, line)
        if code not in icescr:
            raise CountryDataError(
                f"{code!r} is not in {ICESCR_FILE}", where=Location(op_path, line, "iso2")
            )
        if code in op:
            raise CountryDataError(f"{code} appears twice", where=where)
        sig = _source_date(row["signature_date"], op_path, line, "signature_date")
        rat = _source_date(row["ratification_date"], op_path, line, "ratification_date")
        acc = _source_bool(row["accession"], op_path, line, "accession")
        year = sig.year if sig else YEAR_ONLY_SIGNATURES.get(code)
        if sig is None and rat is None and year is None:
            raise CountryDataError(
                f"{code}: no signature, ratification or accession date",
                where=where,
                hint="fill a date, or add the year to YEAR_ONLY_SIGNATURES in outreach/countries.py",
            )
        if acc and (rat is None or sig is not None):
            raise CountryDataError(
                f"{code}: an accession needs a ratification_date and no signature_date",
                where=where,
            )
        op[code] = {"un_name": row["un_name"], "sig": sig, "year": year, "rat": rat, "acc": acc}

    handles = _read_handles(handles_csv, set(icescr)) if handles_csv else {}
    locales = {lang: Locale.parse(lang).territories for lang in LANGUAGES}
    zone_tab = _zone_tab()

    notes: list[str] = []
    out_rows: list[list[str]] = []
    hashtags: dict[str, str] = {}
    for code in sorted(icescr):
        names = _display_names(code, locales)
        zones = zone_tab.get(code, [])
        if code in CAPITAL_ZONES:
            tz = CAPITAL_ZONES[code]
        elif len(zones) == 1:
            tz = zones[0]
        elif zones:
            tz = zones[0]
            notes.append(
                f"{code}: several zones {zones}; used the first, {tz}: add to CAPITAL_ZONES"
            )
        else:
            raise CountryDataError(
                f"{code}: not in the tz database's zone.tab; add to CAPITAL_ZONES"
            )
        hashtag = HASHTAG_OVERRIDES.get(code) or _hashtag(names["en"])
        if hashtag in hashtags:
            raise CountryDataError(f"{code}: hashtag {hashtag} already used by {hashtags[hashtag]}")
        hashtags[hashtag] = code
        o = op.get(code)
        sig_text = ""
        if o:
            sig_text = o["sig"].isoformat() if o["sig"] else (str(o["year"]) if o["year"] else "")
        out_rows.append(
            [
                code,
                names["en"],
                names["es"],
                names["fr"],
                o["un_name"] if o else "",
                sig_text,
                o["rat"].isoformat() if o and o["rat"] else "",
                "yes" if o and o["acc"] else "no",
                "yes" if icescr[code] else "no",
                hashtag,
                handles.get(code, ""),
                tz,
                "; ".join(d for d in (DOUBTS.get(code), ICESCR_DOUBTS.get(code)) if d),
            ]
        )

    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(out_rows)
    csv_text = buf.getvalue()

    # Validate what we are about to write with the same reader the commands use.
    table = CountryTable(_parse_countries_csv(csv_text, out_csv), path=out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    out_csv.write_text(csv_text, encoding="utf-8", newline="")
    inputs = [
        ("shared/data/" + OP_STATUS_FILE, op_path),
        ("shared/data/" + ICESCR_FILE, icescr_path),
    ]
    if handles_csv:
        inputs.append(("lists/" + Path(handles_csv).name, Path(handles_csv)))
    sidecar_path(out_csv).write_text(_sidecar_text(inputs), encoding="utf-8")

    c = table.counts(AS_OF)
    ratified = sum(1 for x in table.parties(AS_OF) if not x.accession)
    notes.insert(0, f"wrote {out_csv} ({len(table)} States) and {sidecar_path(out_csv).name}")
    notes.append(
        f"OP-ICESCR as of {AS_OF}: {c['parties']} parties ({ratified} ratifications, "
        f"{c['parties'] - ratified} accessions), {c['signatories']} signatories, "
        f"{c['signed_only']} signed only, {c['not_signed']} not signed"
    )
    gaps = [
        f"{ours} {what} where the UN counts {theirs}"
        for what, ours, theirs in (
            ("signatories", c["signatories"], UN_COUNTS[0]),
            ("parties", c["parties"], UN_COUNTS[1]),
        )
        if ours != theirs
    ]
    if gaps:
        notes.append(
            f"the source CSV has {' and '.join(gaps)} (UN Treaty Collection header, 2024): "
            "see SOURCES.md 'Unresolved'; no row was invented"
        )
    notes.append(f"ICESCR parties: {sum(icescr.values())}")
    doubtful = sorted({*DOUBTS, *ICESCR_DOUBTS} & set(icescr))
    notes.append(f"{len(doubtful)} rows carry a doubt note: {', '.join(doubtful)}")
    for code, year in sorted(YEAR_ONLY_SIGNATURES.items()):
        o = op.get(code)
        if o is None:
            notes.append(
                f"{code}: year-only signature {year} configured, but {code} is not in the OP table"
            )
        elif o["sig"] is not None:
            notes.append(f"{code}: the OP table now has a signature date; year-only {year} unused")
        else:
            notes.append(f"{code}: signature year {year} only (no date)")
    for code in sorted(set(DOUBTS) - set(op)):
        notes.append(f"{code}: has a doubt note but is not in the OP table; check DOUBTS")
    notes.append(
        f"CLDR names overridden for: {', '.join(sorted(NAME_OVERRIDES))}; "
        f"hashtag overrides: {', '.join(sorted(HASHTAG_OVERRIDES))}"
    )
    notes.append(
        f"government handles: {len(handles)} (unverified: the coordinator must verify them before sending)"
    )
    return notes


def _generated_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sidecar_text(inputs: list[tuple[str, Path]]) -> str:
    import babel

    from outreach import __version__

    try:
        import tzdata

        tz_version = getattr(tzdata, "IANA_VERSION", "?")
    except ImportError:  # pragma: no cover
        tz_version = "?"
    cldr = getattr(getattr(babel, "core", None), "get_cldr_version", lambda: "?")()
    lines = [
        "# Provenance of countries.csv. Written by build_countries (`outreach countries build`);",
        "# do not edit by hand. See lists/README.md.",
        "source:",
        f"  description: {json.dumps(SOURCE_DESCRIPTION, ensure_ascii=False)}",
        "  files:",
    ]
    for rel, path in inputs:
        lines += [f"    - path: {rel}", f"      sha256: {_sha256(path)}"]
    lines += [
        "# as_of: the latest dated corroboration in op-icescr-status.SOURCES.md (OHCHR press",
        "# release of 30 Sep 2024: 29 OP parties, 172 Covenant parties). The data describe",
        "# the status as of roughly Feb-Sep 2024.",
        f'as_of: "{AS_OF.isoformat()}"',
        f'generated_by: "outreach {__version__} build_countries; babel {babel.__version__} '
        f'(CLDR {cldr}); tzdata {tz_version}"',
        f'generated_at: "{_generated_at()}"',
        "",
    ]
    return "\n".join(lines)
