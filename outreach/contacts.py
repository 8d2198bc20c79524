"""Contact lists (CSV or XLSX) and segments.

Loading never drops a row silently: every row either becomes a :class:`Contact` or produces
an :class:`Issue` that names the file, the row and the column. Warnings (for example a
language the campaign does not offer) keep the contact; errors exclude it, and a send refuses
to start while errors exist unless the coordinator passes ``--skip-invalid``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from email_validator import EmailNotValidError, validate_email

from outreach.campaign import Campaign, Criteria, Segment
from outreach.countries import CountryTable
from outreach.exceptions import ListError, Location

STANDARD_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "organization",
    "country",
    "language",
    "relationship",
    "tags",
)
ALIASES = {
    "e_mail": "email",
    "email_address": "email",
    "e_mail_address": "email",
    "mail": "email",
    "firstname": "first_name",
    "first": "first_name",
    "given_name": "first_name",
    "lastname": "last_name",
    "last": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "organisation": "organization",
    "org": "organization",
    "lang": "language",
    "relation": "relationship",
    "type": "relationship",
    "tag": "tags",
    "contact_id": "id",
}
RELATIONSHIP_ALIASES = {
    "member": "member",
    "members": "member",
    "ally": "ally",
    "allies": "ally",
    "newcomer": "newcomer",
    "newcomers": "newcomer",
    "new": "newcomer",
}
_HTMLISH = re.compile(r"<\s*/?\s*[a-zA-Z!]|javascript:|\bon[a-z]+\s*=|&#?\w+;", re.IGNORECASE)
_TEMPLATEISH = re.compile(r"\{\{|\{%|\[\[|\]\]|<%")
_SUSPICIOUS = re.compile(f"{_HTMLISH.pattern}|{_TEMPLATEISH.pattern}", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WS = re.compile(r"\s+")
_TAG_SPLIT = re.compile(r"[;,]")
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})
_IDENT = re.compile(r"[^0-9a-zA-Z]+")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


@dataclass(slots=True)
class Contact:
    """One valid recipient. ``row`` is the spreadsheet row number (the header is row 1)."""

    source: str
    row: int
    email: str
    contact_id: str
    first_name: str = ""
    last_name: str = ""
    organization: str = ""
    country: str = ""  # ISO alpha-2, "" when unknown
    language: str = "en"  # the language the contact asked for
    relationship: str = "newcomer"
    tags: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.email.lower()

    @property
    def where(self) -> str:
        return f"{self.source}:{self.row}"

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str  # "error" | "warning"
    source: str
    row: int | None
    column: str | None
    message: str
    hint: str | None = None

    @property
    def where(self) -> str:
        loc = self.source + (f":{self.row}" if self.row else "")
        return f"{loc} [{self.column}]" if self.column else loc

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


@dataclass
class ContactList:
    contacts: list[Contact]
    issues: list[Issue]
    rows_read: int
    encodings: dict[str, str]  # source → encoding used

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def error_rows(self) -> list[tuple[str, int]]:
        """(source, row) of every row excluded by an error, in file order."""
        seen = dict.fromkeys((i.source, i.row) for i in self.errors if i.row is not None)
        return list(seen)


# ------------------------------------------------------------------------------------------
# Reading files


@dataclass
class _Table:
    source: str
    header: list[str]
    rows: Iterable[tuple[int, list[str]]]  # (row number as a spreadsheet shows it, values)
    encoding: str
    issues: list[Issue]


def _decode(raw: bytes, source: str) -> tuple[str, str, set[int], list[Issue]]:
    """Decode a CSV export. Returns (text, encoding, undecodable physical lines, issues).

    UTF-8 (with or without BOM) is the norm; a file that is not UTF-8 anywhere is taken as a
    Windows-1252/Latin-1 export (Excel's default on Windows). A file that mixes both has its
    non-UTF-8 lines reported as undecodable rather than guessed.
    """
    issues: list[Issue] = []
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        enc = "utf-8 (BOM)"
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16", set(), issues
        except UnicodeDecodeError as exc:
            raise ListError(
                f"looks like UTF-16 but does not decode ({exc.reason})", where=source
            ) from None
    else:
        enc = "utf-8"
    try:
        return raw.decode("utf-8"), enc, set(), issues
    except UnicodeDecodeError:
        pass
    lines = raw.split(b"\n")
    utf8_lines = 0
    for line in lines:
        if max(line, default=0) >= 0x80:
            try:
                line.decode("utf-8")
                utf8_lines += 1
            except UnicodeDecodeError:
                pass
    # some lines are UTF-8: the others are errors, not guesses; none: a Windows-1252 export
    codec = "utf-8" if utf8_lines else "cp1252"
    enc = "utf-8 (some lines are not)" if utf8_lines else "windows-1252"
    bad: set[int] = set()
    out: list[str] = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(line.decode(codec))
        except UnicodeDecodeError:
            bad.add(n)
            out.append(line.decode(codec, errors="replace"))
    if not utf8_lines:
        issues.append(
            Issue(
                "warning",
                source,
                None,
                None,
                "not UTF-8: read as Windows-1252 (Latin-1)",
                "check accented names below; save the file as 'CSV UTF-8' to silence this",
            )
        )
    return "\n".join(out), enc, bad, issues


# encodings that _decode read as a whole, without replacing anything: the codec that reads the
# same text from the raw bytes (the BOM included)
_STREAMED = {"utf-8": "utf-8", "utf-8 (BOM)": "utf-8-sig", "utf-16": "utf-16"}


def _read_csv(path: Path, source: str) -> _Table:
    """Read the header now and the rows lazily (a million-row list is never held as cells)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ListError(f"cannot read the file: {exc.strerror}", where=source) from None
    text, enc, bad_lines, issues = _decode(raw, source)
    end = text.find("\n")
    first = text if end < 0 else text[:end]
    delimiter = max(",;\t", key=first.count) if first else ","
    codec = _STREAMED.get(enc)
    if codec is not None:
        # decode the bytes again as they are read: io.StringIO(text) would copy the whole
        # text at 4 bytes a character (300 MB for a million rows) for as long as rows are read
        del text
        stream: io.TextIOBase = io.TextIOWrapper(io.BytesIO(raw), encoding=codec, newline="")
    else:  # re-assembled from lines decoded one by one (see _decode)
        del raw
        stream = io.StringIO(text, newline="")
        del text
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ListError(f"malformed CSV header: {exc}", where=Location(source, 1)) from None
    if header is None:
        raise ListError(
            "the file is empty", where=source, hint="add a header row with at least 'email'"
        )

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        try:
            for values in reader:
                end = reader.line_num
                if not "".join(values).strip():
                    pass  # blank line (no cell has anything but whitespace)
                elif bad_lines and any(n in bad_lines for n in range(start, end + 1)):
                    issues.append(
                        Issue(
                            "error",
                            source,
                            start,
                            None,
                            f"cannot decode this row as {enc.split(' ')[0]}",
                            "re-type the accented characters or re-save the file as UTF-8",
                        )
                    )
                else:
                    yield start, values
                start = end + 1
        except csv.Error as exc:
            raise ListError(
                f"malformed CSV: {exc}",
                where=Location(source, start),
                hint="a quote is probably not closed; open the file in a spreadsheet and re-export it",
            ) from None

    return _Table(source, header, rows(), enc, issues)


def _read_xlsx(path: Path, source: str) -> _Table:
    import pandas as pd

    try:
        frame = pd.read_excel(path, dtype=str, keep_default_na=False, na_filter=False, header=None)
    except Exception as exc:  # openpyxl raises many kinds; all mean "not a readable workbook"
        raise ListError(f"cannot read the workbook: {exc}", where=source) from None
    if frame.empty:
        raise ListError("the first sheet is empty", where=source)
    values = frame.to_numpy().tolist()
    header = [str(v) for v in values[0]]
    rows = [
        (i + 1, [str(v) for v in row])
        for i, row in enumerate(values)
        if i > 0 and any(str(v).strip() for v in row)
    ]
    return _Table(source, header, rows, "xlsx", [])


def read_table(path: Path, root: Path) -> _Table:
    """Read one list file (``.csv``, ``.tsv``, ``.txt`` or ``.xlsx``) as text cells."""
    source = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    if not path.is_file():
        raise ListError(
            "contact list not found", where=source, hint="check lists.contacts in the campaign"
        )
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_xlsx(path, source)
    if path.suffix.lower() == ".xls":
        raise ListError(
            "old .xls workbooks are not supported", where=source, hint="save as .xlsx or CSV UTF-8"
        )
    return _read_csv(path, source)


# ------------------------------------------------------------------------------------------
# Validating rows


def normalize_column(name: str) -> str:
    key = _IDENT.sub("_", name.strip().lower()).strip("_")
    return ALIASES.get(key, key)


def clean_text(value: str) -> str:
    """Strip, remove control characters, collapse runs of whitespace, NFC-normalize."""
    if (
        value.isprintable()  # no control characters, and no whitespace but " "
        and "  " not in value
        and value[:1] != " "
        and value[-1:] != " "
        and (value.isascii() or unicodedata.is_normalized("NFC", value))
    ):
        return value  # already clean (the common case; the same result, faster)
    return unicodedata.normalize("NFC", _WS.sub(" ", _CONTROL.sub("", value)).strip())


@lru_cache(maxsize=65536)
def _domain_ok(domain: str) -> str | None:
    """Validate a domain once (via a probe address); None when valid, else the reason."""
    try:
        validate_email(f"probe@{domain}", check_deliverability=False)
        return None
    except EmailNotValidError as exc:
        return str(exc)


def validate_address(email: str) -> tuple[str | None, str | None]:
    """Return ``(normalized, None)`` or ``(None, reason)``, checked with email-validator.

    Plain ASCII dot-atom addresses take a fast path (the domain is validated once and
    cached); everything else goes through email-validator in full. A property test checks
    that both paths agree.
    """
    local, sep, domain = email.rpartition("@")
    if (
        sep
        and email.isascii()
        and len(email) <= 254
        and len(local) <= 64
        and _DOT_ATOM.match(local)
        and "@" not in domain
    ):
        reason = _domain_ok(domain.lower())
        if reason is None:
            return f"{local}@{domain.lower()}", None
        return None, reason
    try:
        return validate_email(email, check_deliverability=False).normalized, None
    except EmailNotValidError as exc:
        return None, str(exc)


@lru_cache(maxsize=4096)
def _language_code(value: str) -> str | None:
    """'es', 'ES', 'es-AR', 'Spanish', 'español', 'Français' → primary language code."""
    v = value.strip()
    if re.fullmatch(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*", v):
        code = re.split(r"[-_]", v)[0].lower()
        from babel.localedata import exists

        if exists(code):
            return code
    return _language_names().get(_fold(v))


@lru_cache(maxsize=1)
def _language_names() -> dict[str, str]:
    from babel import Locale

    names: dict[str, str] = {}
    for display in ("en", "es", "fr", "pt", "ar"):
        for code, name in Locale(display).languages.items():
            if "_" not in code and len(code) <= 3:
                names.setdefault(_fold(name), code)
    return names


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).casefold().strip()


def _contact_id(key: str, explicit: str) -> str:
    if explicit:
        return explicit
    return "c-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def load_contacts(
    paths: Iterable[Path],
    root: Path,
    countries: CountryTable,
    *,
    languages: Iterable[str] = ("en",),
    default_language: str = "en",
    default_relationship: str | None = None,
) -> ContactList:
    """Read and validate every list file; deduplicate addresses case-insensitively."""
    offered = set(languages)
    contacts: list[Contact] = []
    issues: list[Issue] = []
    encodings: dict[str, str] = {}
    seen: dict[str, Contact] = {}
    seen_ids: dict[str, Contact] = {}
    shared_names: dict[str, str] = {}
    memo = _Memo()  # what a country, language or relationship cell gives, once per value
    rows_read = 0
    for path in paths:
        table = read_table(path, root)
        encodings[table.source] = table.encoding
        mark = len(issues)
        columns = [normalize_column(h) for h in table.header]
        if "email" not in columns:
            raise ListError(
                "no 'email' column",
                where=Location(table.source, 1),
                hint=f"the header has: {', '.join(h for h in table.header if h) or '(nothing)'}",
            )
        dupes = {c for c in columns if c and columns.count(c) > 1}
        if dupes:
            raise ListError(
                f"column(s) {', '.join(sorted(dupes))} appear more than once",
                where=Location(table.source, 1),
            )
        width = len(columns)
        for row, values in table.rows:
            rows_read += 1
            if len(values) != width:
                issues.append(
                    Issue(
                        "error",
                        table.source,
                        row,
                        None,
                        f"{len(values)} cells but the header has {width}",
                        "a comma inside a name needs quotes; re-export from a spreadsheet",
                    )
                )
                continue
            record = dict(zip(columns, values, strict=True))
            contact, row_issues = _validate_row(
                record,
                table.source,
                row,
                countries,
                offered,
                default_language,
                default_relationship,
                shared_names,
                memo,
            )
            issues.extend(row_issues)
            if contact is None:
                continue
            key = contact.key
            if key == contact.email:
                key = contact.email  # one string, not a second copy per contact while loading
            first = seen.get(key)
            if first is not None:
                issues.append(
                    Issue(
                        "warning",
                        table.source,
                        row,
                        "email",
                        f"duplicate of {first.where} ({contact.email}); {first.where} is kept",
                    )
                )
                continue
            other = seen_ids.get(contact.contact_id)
            if other is not None:
                issues.append(
                    Issue(
                        "error",
                        table.source,
                        row,
                        "id",
                        f"id {contact.contact_id!r} is already used by {other.where}",
                    )
                )
                continue
            seen[key] = contact
            seen_ids[contact.contact_id] = contact
            contacts.append(contact)
        # rows are read lazily, so the reader's own issues (decoding) are complete only now;
        # report the file's issues in row order, file-wide ones first
        file_issues = issues[mark:] + table.issues
        del issues[mark:]
        issues.extend(sorted(file_issues, key=lambda i: i.row or 0))
    return ContactList(contacts, issues, rows_read, encodings)


# an issue as a cell's check gives it, before it is placed in a file and a row:
# (severity, column, message, hint)
_Found = tuple[tuple[str, str, str, str | None], ...]
_MEMO_MAX = 4096  # distinct values remembered per column (a list has a few hundred at most)


class _Memo:
    """The outcome of checking a country, language or relationship cell, per raw value: the
    same for every row with that value in one :func:`load_contacts` call (its countries,
    languages and defaults), so each distinct value is checked once."""

    __slots__ = ("country", "language", "relationship")

    def __init__(self) -> None:
        self.country: dict[str, tuple[str, _Found]] = {}
        self.language: dict[str, tuple[str, _Found]] = {}
        self.relationship: dict[str, tuple[str | None, _Found]] = {}

    @staticmethod
    def checked(table: dict, raw: str, check: Callable[..., tuple], *args: object) -> tuple:
        """``check(raw, *args)``, remembered in ``table`` (up to :data:`_MEMO_MAX` values)."""
        got = table.get(raw)
        if got is None:
            got = check(raw, *args)
            if len(table) < _MEMO_MAX:
                table[raw] = got
        return got


def _check_country(raw_value: str, countries: CountryTable) -> tuple[str, _Found]:
    """(ISO code or "", issues) for a country cell."""
    raw_country = clean_text(raw_value)
    if not raw_country:
        return "", (
            (
                "warning",
                "country",
                "no country: this contact gets the version without a country status",
                None,
            ),
        )
    found = countries.lookup(raw_country)
    if found is not None:
        return found.code, ()
    close = countries.suggest(raw_country, 1)
    hint = f"did you mean {close[0].name('en')} ({close[0].code})?" if close else None
    return "", (
        (
            "error",
            "country",
            f"unknown country {raw_country!r}",
            hint or "use an ISO code like AR, or the name",
        ),
    )


def _check_language(raw_value: str, offered: set[str], default_language: str) -> tuple[str, _Found]:
    """(language code, issues) for a language cell."""
    raw_lang = clean_text(raw_value)
    if not raw_lang:
        return default_language, ()
    code = _language_code(raw_lang)
    if code is None:
        return default_language, (
            (
                "error",
                "language",
                f"unknown language {raw_lang!r}",
                "use a code such as en, es or fr",
            ),
        )
    if offered and code not in offered:
        return code, (
            (
                "warning",
                "language",
                f"{code!r} is not offered by this campaign; gets {default_language!r}",
                None,
            ),
        )
    return code, ()


def _check_relationship(
    raw_value: str, default_relationship: str | None
) -> tuple[str | None, _Found]:
    """(relationship or None, issues) for a relationship cell."""
    raw_rel = clean_text(raw_value).lower()
    relationship = RELATIONSHIP_ALIASES.get(raw_rel) if raw_rel else default_relationship
    if relationship is not None:
        return relationship, ()
    if raw_rel:
        return None, (
            (
                "error",
                "relationship",
                f"unknown relationship {raw_rel!r}",
                "use member, ally or newcomer",
            ),
        )
    return None, (
        (
            "error",
            "relationship",
            "no relationship",
            "use member, ally or newcomer (or set defaults.relationship in the campaign)",
        ),
    )


_STANDARD = frozenset((*STANDARD_COLUMNS, "id", ""))  # the columns that are not extra


def _validate_row(
    rec: dict[str, str],
    source: str,
    row: int,
    countries: CountryTable,
    offered: set[str],
    default_language: str,
    default_relationship: str | None,
    shared: dict[str, str] | None = None,
    memo: _Memo | None = None,
) -> tuple[Contact | None, list[Issue]]:
    """One row → a contact and its issues. ``shared`` holds one copy of each name seen so far
    (first names and organizations repeat a lot in real lists: one string object each);
    ``memo`` the outcome of each country, language and relationship value checked so far."""
    issues: list[Issue] = []

    def err(col: str | None, msg: str, hint: str | None = None) -> None:
        issues.append(Issue("error", source, row, col, msg, hint))

    raw_email = rec.get("email", "").strip()
    email: str | None = None
    if not raw_email:
        err("email", "no address")
    else:
        email, reason = validate_address(raw_email)
        if email is None:
            err("email", f"invalid address {raw_email!r}: {reason}")

    first, last, org = names = [
        clean_text(rec.get(col, "")) for col in ("first_name", "last_name", "organization")
    ]
    # one search for the three (the common case: nothing found); a match never spans the
    # "\x00" between them, which clean_text has removed from every value
    if _SUSPICIOUS.search(f"{first}\x00{last}\x00{org}"):
        for col, value in zip(("first_name", "last_name", "organization"), names, strict=True):
            if _SUSPICIOUS.search(value):
                err(
                    col,
                    f"looks like HTML, script or template code: {value[:40]!r}",
                    "type plain text",
                )
    if shared is not None:
        first = shared.setdefault(first, first)
        last = shared.setdefault(last, last)
        org = shared.setdefault(org, org)

    memo = memo or _Memo()
    country, country_issues = memo.checked(
        memo.country, rec.get("country", ""), _check_country, countries
    )
    language, language_issues = memo.checked(
        memo.language, rec.get("language", ""), _check_language, offered, default_language
    )
    relationship, relationship_issues = memo.checked(
        memo.relationship, rec.get("relationship", ""), _check_relationship, default_relationship
    )
    for severity, col, msg, hint in (*country_issues, *language_issues, *relationship_issues):
        issues.append(Issue(severity, source, row, col, msg, hint))

    raw_tags = rec.get("tags", "")
    tags = (
        tuple(
            dict.fromkeys(
                t for t in (clean_text(x).lower() for x in _TAG_SPLIT.split(raw_tags)) if t
            )
        )
        if raw_tags
        else ()
    )
    extra = {}
    for col, value in rec.items():
        if col not in _STANDARD:
            value = clean_text(value)
            if _TEMPLATEISH.search(value):
                err(col, f"looks like template code: {value[:40]!r}", "type plain text")
            extra[col] = value

    extra = extra or _NO_EXTRA  # most lists have no extra columns: share one empty mapping
    if email is None or relationship is None or any(i.severity == "error" for i in issues):
        return None, issues
    contact = Contact(  # the fields in order (positional arguments are the fast call)
        source,
        row,
        email,
        _contact_id(email.lower(), clean_text(rec.get("id", ""))),
        first,
        last,
        org,
        country,
        language,
        relationship,
        tags,
        extra,
    )
    return contact, issues


def load_for_campaign(
    campaign: Campaign, countries: CountryTable, paths: list[Path] | None = None
) -> ContactList:
    """Load the campaign's lists (or ``paths``) with its languages and defaults; an empty list
    is an error."""
    paths = paths or campaign.contact_paths()
    result = load_contacts(
        paths,
        campaign.root,
        countries,
        languages=campaign.languages,
        default_language=campaign.default_language,
        default_relationship=campaign.spec.defaults.relationship,
    )
    if result.rows_read == 0:
        raise ListError(
            "the contact list has no rows",
            where=", ".join(_shown(p, campaign.root) for p in paths),
            hint="add contacts below the header row",
        )
    return result


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


# ------------------------------------------------------------------------------------------
# Segments


def country_status(contact: Contact, countries: CountryTable, as_of: date) -> str:
    if not contact.country:
        return "unknown"
    c = countries.get(contact.country)
    return c.status(as_of) if c else "unknown"


def matches(criteria: Criteria, contact: Contact, status: str) -> bool:
    # reads only these fields of the contact: the planner decides a segment once per
    # (country, relationship, language, tags) — extend its key with any field read here
    if criteria.relationship and contact.relationship not in criteria.relationship:
        return False
    if criteria.country_status and status not in criteria.country_status:
        return False
    if criteria.language and contact.language not in criteria.language:
        return False
    if criteria.country and contact.country not in criteria.country:
        return False
    return not (criteria.tags and not set(criteria.tags).intersection(contact.tags))


def in_segment(segment: Segment, contact: Contact, status: str) -> bool:
    if not matches(segment, contact, status):
        return False
    return not (
        segment.exclude is not None
        and not segment.exclude.is_empty()
        and matches(segment.exclude, contact, status)
    )


def segment_of(
    names: Iterable[str], segments: dict[str, Segment], contact: Contact, status: str
) -> str | None:
    """The first of ``names`` whose segment includes ``contact`` (None if none)."""
    for name in names:
        if in_segment(segments[name], contact, status):
            return name
    return None


@dataclass
class CheckReport:
    contacts: ContactList
    as_of: date
    counts: dict[str, Counter]  # segment → Counter[(status, language)]
    warnings: list[str]  # the campaign's (unfilled links, unsubscribe, country data age)


def check_lists(
    campaign: Campaign, countries: CountryTable, paths: list[Path] | None = None
) -> CheckReport:
    """Validate the campaign's lists (or other ``paths``, e.g. a list before it is added) and
    count contacts per segment × status × language.

    Statuses are computed as of the edition's first send date.
    """
    contacts = load_for_campaign(campaign, countries, paths)
    as_of = campaign.first_send_date()
    counts: dict[str, Counter] = {}
    for name, seg in campaign.segments.items():
        cnt: Counter = Counter()
        for c in contacts.contacts:
            status = country_status(c, countries, as_of)
            if in_segment(seg, c, status):
                cnt[(status, c.language)] += 1
        counts[name] = cnt
    return CheckReport(contacts, as_of, counts, campaign.warnings(countries))
