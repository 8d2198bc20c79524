"""Rendering: Jinja2 → MJML → responsive HTML, plus a plain-text part and the subject.

The expensive work is done once per *structural variant*, not once per recipient. A variant
is rendered with **slots** in place of per-recipient values (a name, a country's hashtag, an
unsubscribe URL). A slot prints as a marker such as ``[[contact.first_name]]``; after MJML
compilation the markers are renamed ``[[h:…]]`` in the HTML (the value is HTML-escaped when
filled) and ``[[t:…]]`` in the text part and subject (raw value). Filling a recipient is then
a string join, and SendGrid can do it server-side from per-personalization substitutions.

What a template *decides* from a per-recipient value (``{% if country.handle %}``, ``==``,
``in``, even whether a printed value is empty) is recorded while the variant renders; a
recipient reuses a variant only if every recorded decision comes out the same for them. So
the output is byte-identical to rendering each recipient on their own (a property test checks
this), while MJML compiles once per variant.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import markupsafe
import mjml
from jinja2 import filters as jfilters

from outreach.exceptions import Location, TemplateError

MARKER_RE = re.compile(r"\[\[([a-z_][\w.]*(?:\|[a-z_]+)*)\]\]")
FILLED_RE = re.compile(r"\[\[([ht]):([a-z_][\w.]*(?:\|[a-z_]+)*)\]\]")
_HTML_SPECIAL = re.compile(r"[&<>'\"]")  # what markupsafe.escape replaces
TEMPLATE_EXT = ".mjml"

# ------------------------------------------------------------------------------------------
# Per-recipient value transforms (each must be a pure str → str function that works
# character by character, so that it can be applied to a slot or to the text around it).


@functools.lru_cache(maxsize=1 << 16)
def _urlencode(value: str) -> str:
    return quote(value, safe="")


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "urlencode": _urlencode,
    "upper": str.upper,
    "lower": str.lower,
}
# These are fine on a bare slot but not on text that *contains* a slot.
WHOLE_VALUE_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "title": str.title,
    "capitalize": str.capitalize,
    "trim": str.strip,
}
ALL_TRANSFORMS = {**TRANSFORMS, **WHOLE_VALUE_TRANSFORMS}


def apply_transforms(value: Any, chain: Iterable[str]) -> str:
    text = "" if value is None else str(value)
    for name in chain:
        text = ALL_TRANSFORMS[name](text)
    return text


# ------------------------------------------------------------------------------------------
# Slots


class SlotMisuse(Exception):
    """A template did something with a per-recipient value that cannot be substituted."""


class Recorder:
    """Collects the decisions a variant's rendering took on per-recipient values."""

    def __init__(self) -> None:
        self.conditions: dict[tuple[str, str, Any], Any] = {}

    def record(self, key: str, op: str, arg: Any, result: Any) -> None:
        self.conditions.setdefault((key, op, _hashable(arg)), result)


def _hashable(arg: Any) -> Any:
    if isinstance(arg, list | tuple | set | frozenset):
        return tuple(_hashable(a) for a in arg)
    return arg


def evaluate(op: str, value: Any, arg: Any) -> Any:
    if op == "bool":
        return bool(value)
    if op == "eq":
        return value == arg
    if op == "contains":
        return arg in value
    if op == "len":
        return len(value)
    raise AssertionError(op)


class Slot:
    """A per-recipient value inside a variant render: prints as a marker, records decisions."""

    __slots__ = ("_chain", "_key", "_rec", "_value")

    def __init__(self, key: str, value: Any, recorder: Recorder, chain: tuple[str, ...] = ()):
        self._key = key
        self._value = value
        self._rec = recorder
        self._chain = chain

    def _ask(self, op: str, arg: Any = None) -> Any:
        result = evaluate(op, self._value, arg)
        self._rec.record(self._key, op, arg, result)
        return result

    def derive(self, transform: str) -> Slot:
        return Slot(self._key, self._value, self._rec, (*self._chain, transform))

    def marker(self) -> str:
        # an empty value prints nothing, and that is a decision like any other
        if not self._ask("bool"):
            return ""
        return "[[" + "|".join((self._key, *self._chain)) + "]]"

    __str__ = marker

    def __html__(self) -> str:
        return self.marker()

    def __bool__(self) -> bool:
        return self._ask("bool")

    def __eq__(self, other: object) -> bool:
        return self._ask("eq", other)

    def __ne__(self, other: object) -> bool:
        return not self._ask("eq", other)

    def __hash__(self) -> int:
        return hash(self._key)

    def __contains__(self, item: object) -> bool:
        return self._ask("contains", item)

    def __len__(self) -> int:
        return self._ask("len")

    def __iter__(self):
        raise SlotMisuse(f"cannot loop over {self._key}: it differs per recipient")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name.startswith("jinja"):
            raise AttributeError(name)  # introspection by Jinja/markupsafe
        raise SlotMisuse(f"{self._key} differs per recipient; '.{name}' cannot be used on it")

    def _compare(self, other: object) -> bool:
        raise SlotMisuse(f"cannot compare {self._key} with < or >: it differs per recipient")

    __lt__ = __le__ = __gt__ = __ge__ = _compare  # type: ignore[assignment]


class Namespace:
    """``contact`` / ``country`` in templates: slots for per-recipient fields, plain values
    for structural ones. With ``recorder=None`` every field is a plain value (naive render)."""

    def __init__(
        self,
        prefix: str,
        values: Mapping[str, Any],
        structural: Mapping[str, Any],
        recorder: Recorder | None,
    ) -> None:
        self._prefix = prefix
        self._values = values
        self._structural = structural
        self._rec = recorder

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._structural:
            return self._structural[name]
        if name in self._values:
            value = self._values[name]
            if self._rec is None:
                return value
            return Slot(f"{self._prefix}.{name}", value, self._rec)
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.__getattr__(name)
        except AttributeError:
            raise KeyError(name) from None

    def __contains__(self, name: str) -> bool:
        return name in self._structural or name in self._values


def _lift(name: str, fn: Callable[[str], str], whole_only: bool) -> Callable[[Any], Any]:
    """Make a str→str filter work on slots and on text containing slot markers."""

    def flt(value: Any) -> Any:
        if isinstance(value, Slot):
            return value.derive(name)
        text = str(value)
        if "[[" not in text:
            out = fn(text)
            return markupsafe.Markup(out) if isinstance(value, markupsafe.Markup) else out
        if whole_only:
            raise SlotMisuse(
                f"'{name}' cannot be applied to text that contains a per-recipient value; "
                "apply it to the value itself"
            )
        parts = []
        pos = 0
        for m in MARKER_RE.finditer(text):
            parts.append(fn(text[pos : m.start()]))
            parts.append(f"[[{m.group(1)}|{name}]]")
            pos = m.end()
        parts.append(fn(text[pos:]))
        out = "".join(parts)
        return markupsafe.Markup(out) if isinstance(value, markupsafe.Markup) else out

    return flt


# filters that handle per-recipient values correctly (ours, or harmless on a marker)
SLOT_SAFE_FILTERS = frozenset(
    {
        "e",
        "escape",
        "default",
        "d",
        "string",
        "urlencode",
        "safe",
        *TRANSFORMS,
        *WHOLE_VALUE_TRANSFORMS,
    }
)
SLOT_ONLY_FILTERS = frozenset({"length", "count"})  # fine on a bare slot (recorded), not on text


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse a per-recipient value in a filter that would act on its marker, not its value."""

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            if (isinstance(arg, Slot) and name not in SLOT_ONLY_FILTERS) or (
                isinstance(arg, str) and "[[" in arg
            ):
                key = arg._key if isinstance(arg, Slot) else "a per-recipient value"
                raise SlotMisuse(
                    f"the filter '{name}' cannot be used on {key}: it differs per recipient "
                    "(allowed: urlencode, upper, lower, title, capitalize, trim, default, length)"
                )
        return fn(*args, **kwargs)

    return guarded


def _safe(value: Any) -> Any:
    if isinstance(value, Slot) or "[[" in str(value):
        raise SlotMisuse("'safe' cannot be used on per-recipient values; they are always escaped")
    return jfilters.do_mark_safe(value)


def _urlencode_filter(value: Any) -> Any:
    if isinstance(value, Mapping) or (
        not isinstance(value, str | Slot) and isinstance(value, Iterable)
    ):
        return jfilters.do_urlencode(value)
    return _lift("urlencode", _urlencode, False)(value)


# ------------------------------------------------------------------------------------------
# Messages and variants


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    html: str
    text: str


@dataclass
class _Compiled:
    """A marker-bearing string split once, so filling is a join."""

    parts: list[str]  # literal, marker, literal, marker, ..., literal
    markers: list[tuple[str, str, tuple[str, ...]]]  # (kind, key, chain) per marker

    @classmethod
    def of(cls, text: str) -> _Compiled:
        parts: list[str] = []
        markers = []
        pos = 0
        for m in FILLED_RE.finditer(text):
            parts.append(text[pos : m.start()])
            key, *chain = m.group(2).split("|")
            markers.append((m.group(1), key, tuple(chain)))
            pos = m.end()
        parts.append(text[pos:])
        return cls(parts, markers)

    def fill(self, values: Mapping[str, Any]) -> str:
        if not self.markers:
            return self.parts[0]
        out = [self.parts[0]]
        for (kind, key, chain), literal in zip(self.markers, self.parts[1:], strict=True):
            v = apply_transforms(values[key], chain)
            out.append(str(markupsafe.escape(v)) if kind == "h" else v)
            out.append(literal)
        return "".join(out)


@dataclass
class Variant:
    """One compiled structural variant of a step's message."""

    step: str
    template: str  # template file used, relative to templates/
    language: str  # language of the template (after fallback)
    base: tuple  # the structural key
    conditions: dict[tuple[str, str, Any], Any]
    subject: str
    html: str
    text: str
    source: str = ""  # the MJML after Jinja, with [[h:…]] markers (for verification)
    id: str = ""
    _subject: _Compiled = field(init=False, repr=False)
    _html: _Compiled = field(init=False, repr=False)
    _text: _Compiled = field(init=False, repr=False)
    _specs: list[tuple[str, bool, str, tuple[str, ...]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._subject = _Compiled.of(self.subject)
        self._html = _Compiled.of(self.html)
        self._text = _Compiled.of(self.text)
        # (marker, html-escaped?, key, transforms) for every distinct marker, parsed once
        specs = {}
        for compiled in (self._subject, self._html, self._text):
            for kind, key, chain in compiled.markers:
                marker = "[[" + kind + ":" + "|".join((key, *chain)) + "]]"
                specs[marker] = (marker, kind == "h", key, chain)
        self._specs = sorted(specs.values())
        digest = hashlib.sha256(
            repr(
                (self.step, self.template, self.base, sorted(self.conditions.items(), key=repr))
            ).encode()
        ).hexdigest()
        self.id = digest[:10]

    def accepts(self, values: Mapping[str, Any]) -> bool:
        for (key, op, arg), result in self.conditions.items():
            if op == "bool":  # the most frequent decision, inlined (what evaluate does)
                if bool(values[key]) != result:
                    return False
            elif evaluate(op, values[key], arg) != result:
                return False
        return True

    def fill(self, values: Mapping[str, Any]) -> Message:
        return Message(self._subject.fill(values), self._html.fill(values), self._text.fill(values))

    def markers(self) -> set[str]:
        """Every marker string (as it appears in the content) used by this variant."""
        return {spec[0] for spec in self._specs}

    def substitutions(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Marker → filled value, for a provider that substitutes server-side."""
        subs = {}
        escape, special = markupsafe.escape, _HTML_SPECIAL.search
        for marker, html, key, chain in self._specs:
            v = values[key]
            if chain or type(v) is not str:
                v = apply_transforms(v, chain)
            subs[marker] = str(escape(v)) if html and special(v) else v
        return subs


# ------------------------------------------------------------------------------------------
# Recipient data: what the context builder hands to the renderer


@dataclass
class RecipientData:
    """Everything a template sees for one recipient, split into structural and slot values."""

    base: tuple  # structural key (hashable)
    structural: dict[str, Any]  # top-level structural variables (campaign, step, stats, …)
    namespaces: dict[str, tuple[dict[str, Any], dict[str, Any]]]  # name → (slot values, structural)
    top_slots: dict[str, Any]  # top-level per-recipient variables (unsubscribe_url, …)
    # the same values flat, if the builder provides a compact mapping of its own
    values: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    _flat: Mapping[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def flat_values(self) -> Mapping[str, Any]:
        """``{"contact.first_name": …, "unsubscribe_url": …}`` (built once, then shared)."""
        if self.values is not None:
            return self.values
        if self._flat is None:
            flat = dict(self.top_slots)
            for name, (values, _) in self.namespaces.items():
                for k, v in values.items():
                    flat[f"{name}.{k}"] = v
            self._flat = flat
        return self._flat


# ------------------------------------------------------------------------------------------
# The engine


class Renderer:
    """Loads templates from ``templates/`` and renders variants and recipients."""

    def __init__(self, templates_dir: Path, default_language: str = "en") -> None:
        self.dir = templates_dir
        self.default_language = default_language
        self._envs: dict[str, jinja2.Environment] = {}
        self._subject_env = self._make_env(None, autoescape=False)
        self._variants: dict[tuple, list[Variant]] = {}
        self._resolved: dict[tuple[str, str], tuple[str, str]] = {}
        self.compiles = 0  # MJML compilations (for the benchmark and tests)

    # -- environments ------------------------------------------------------------------------

    def _make_env(self, lang: str | None, autoescape: bool) -> jinja2.Environment:
        search = [str(self.dir / lang), str(self.dir)] if lang else [str(self.dir)]
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            undefined=jinja2.StrictUndefined,
            autoescape=autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        for name, fn in TRANSFORMS.items():
            env.filters[name] = _lift(name, fn, False)
        for name, fn in WHOLE_VALUE_TRANSFORMS.items():
            env.filters[name] = _lift(name, fn, True)
        env.filters["urlencode"] = _urlencode_filter
        env.filters["safe"] = _safe
        for name, fn in list(env.filters.items()):
            if name not in SLOT_SAFE_FILTERS:
                env.filters[name] = _guard_filter(name, fn)
        return env

    def env(self, lang: str) -> jinja2.Environment:
        if lang not in self._envs:
            self._envs[lang] = self._make_env(lang, autoescape=True)
        return self._envs[lang]

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one Renderer per run; bounded
    def _text_template(self, source: str) -> jinja2.Template:
        """A subject or preheader, compiled once (they are rendered for every variant)."""
        return self._subject_env.from_string(source)

    def resolve_template(self, name: str, lang: str) -> tuple[str, str]:
        """(template file relative to templates/, language used) with fallback to default."""
        found = self._resolved.get((name, lang))
        if found is not None:
            return found
        for candidate in dict.fromkeys((lang, self.default_language)):
            rel = f"{candidate}/{name}{TEMPLATE_EXT}"
            if (self.dir / rel).is_file():
                self._resolved[(name, lang)] = (rel, candidate)
                return rel, candidate
        raise TemplateError(
            f"template {name!r} not found for {lang!r} nor for the default {self.default_language!r}",
            where=Location(self.dir / self.default_language / f"{name}{TEMPLATE_EXT}"),
            hint=f"create templates/{self.default_language}/{name}{TEMPLATE_EXT}",
        )

    # -- rendering ---------------------------------------------------------------------------

    def _context(self, data: RecipientData, recorder: Recorder | None) -> dict[str, Any]:
        ctx = dict(data.structural)
        for name, (values, structural) in data.namespaces.items():
            ctx[name] = Namespace(name, values, structural, recorder)
        for key, value in data.top_slots.items():
            ctx[key] = value if recorder is None else Slot(key, value, recorder)
        return ctx

    def _jinja(
        self, template: str, lang: str, ctx: dict[str, Any], subject: str, preheader: str | None
    ):
        env = self.env(lang)
        try:
            subject_out = self._text_template(subject).render(ctx)
            if preheader is not None:
                ctx = {**ctx, "preheader": self._text_template(preheader).render(ctx)}
            else:
                ctx = {**ctx, "preheader": ""}
            body = env.get_template(template.split("/", 1)[1]).render(ctx)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error: {exc.message}",
                where=Location(_rel(exc.filename, self.dir) or "subject", exc.lineno),
                hint="check the {{ }} / {% %} tags on this line",
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(
                f"template {exc.name!r} not found (included from {template})",
                where=Location(self.dir / template.split("/", 1)[0]),
                hint="every language folder needs its own copy of each partial",
            ) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"undefined variable: {exc.message}",
                where=_template_location(exc, self.dir, template),
                hint="check the spelling, or add the column to the contact list",
            ) from None
        except SlotMisuse as exc:
            raise TemplateError(
                str(exc), where=_template_location(exc, self.dir, template)
            ) from None
        return subject_out, body

    def compile_mjml(self, source: str, template: str) -> str:
        """MJML → HTML, with our own structural check first (MRML accepts unknown tags)."""
        problems = lint_mjml(source)
        if problems:
            line, msg = problems[0]
            text = source.splitlines()[line - 1].strip() if line else ""
            found = _find_in_templates(self.dir, text)
            raise TemplateError(
                f"MJML error: {msg}",
                where=found or Location(f"{template} (rendered)", line),
                details=[f"rendered line {line}: {text[:120]}"] if text else [],
            )
        self.compiles += 1
        try:
            return mjml.mjml2html(source, disable_comments=True)
        except (ValueError, RuntimeError) as exc:
            raise TemplateError(
                f"MJML could not compile: {exc}", where=Location(template)
            ) from None

    def variant(
        self,
        step: str,
        template_name: str,
        lang: str,
        data: RecipientData,
        subject: str,
        preheader: str | None = None,
    ) -> Variant:
        """The compiled variant this recipient belongs to (rendered on first use)."""
        template, used_lang = self.resolve_template(template_name, lang)
        values = data.flat_values()
        found = self.rendered_variant(step, template, data.base, values)
        if found is not None:
            return found
        bucket = self._variants.setdefault((step, template, data.base), [])
        recorder = Recorder()
        ctx = self._context(data, recorder)
        subject_out, body = self._jinja(template, used_lang, ctx, subject, preheader)
        _check_markers(body + subject_out, template, values)
        html_out = _tag(self.compile_mjml(body, template), "h")
        text_out = _tag(mjml_to_text(body), "t")
        subject_out = _tag(_one_line(subject_out), "t")
        v = Variant(
            step,
            template,
            used_lang,
            data.base,
            dict(recorder.conditions),
            subject_out,
            html_out,
            text_out,
            _tag(body, "h"),
        )
        bucket.append(v)
        return v

    def rendered_variant(
        self, step: str, template: str, base: tuple, values: Mapping[str, Any]
    ) -> Variant | None:
        """The variant already rendered for (step, template file, structural key) whose
        recorded decisions ``values`` satisfy, or None (then :meth:`variant` renders one).

        What :meth:`variant` looks up first, without the recipient's full template data: a
        planner builds that data only for a recipient no rendered variant accepts.
        """
        for v in self._variants.get((step, template, base), ()):
            if v.accepts(values):
                return v
        return None

    def render_naive(
        self,
        template_name: str,
        lang: str,
        data: RecipientData,
        subject: str,
        preheader: str | None = None,
    ) -> Message:
        """Render one recipient directly (no slots, no cache). The reference behaviour."""
        template, used_lang = self.resolve_template(template_name, lang)
        ctx = self._context(data, None)
        subject_out, body = self._jinja(template, used_lang, ctx, subject, preheader)
        return Message(
            _one_line(subject_out), self.compile_mjml(body, template), mjml_to_text(body)
        )

    def verify(
        self,
        variant: Variant,
        template_name: str,
        lang: str,
        data: RecipientData,
        subject: str,
        preheader: str | None = None,
    ) -> None:
        """Guard: one recipient rendered directly must equal the variant filled for them.

        Compares the Jinja output (before MJML, so no extra compile), the text part and the
        subject. The property tests prove MJML passes the markers through unchanged.
        """
        template, used_lang = self.resolve_template(template_name, lang)
        naive_subject, body = self._jinja(
            template, used_lang, self._context(data, None), subject, preheader
        )
        values = data.flat_values()
        filled = variant.fill(values)
        if (
            _Compiled.of(variant.source).fill(values) != body
            or mjml_to_text(body) != filled.text
            or _one_line(naive_subject) != filled.subject
        ):
            raise TemplateError(
                "a template uses a per-recipient value in a way that cannot be filled in per variant",
                where=Location(template),
                hint="print values as they are ({{ contact.first_name }}), test them with if/==/in, "
                "or use the filters urlencode, upper, lower",
            )

    def variants(self) -> list[Variant]:
        return [v for bucket in self._variants.values() for v in bucket]


def _one_line(text: str) -> str:
    """A subject on one line: runs of ASCII whitespace become one space (no-break spaces stay)."""
    return re.sub(r"[ \t\r\n\f\v]+", " ", text).strip(" ")


def _tag(text: str, kind: str) -> str:
    return MARKER_RE.sub(lambda m: f"[[{kind}:{m.group(1)}]]", text)


def _check_markers(body: str, template: str, values: Mapping[str, Any]) -> None:
    """Every ``[[…]]`` left by Jinja must be an intact marker of a known per-recipient value."""
    stray = re.search(r"\[\[(?![a-z_][\w.]*(?:\|[a-z_]+)*\]\])", body)
    if stray:
        line = body.count("\n", 0, stray.start()) + 1
        raise TemplateError(
            "'[[' is reserved for per-recipient values (or a filter cut one apart)",
            where=Location(f"{template} (rendered)", line),
            hint="write &#91;&#91; for the characters themselves; per-recipient values take "
            "only the filters urlencode, upper, lower, title, capitalize, trim",
        )
    for m in MARKER_RE.finditer(body):
        key, *chain = m.group(1).split("|")
        if key not in values or any(t not in ALL_TRANSFORMS for t in chain):
            line = body.count("\n", 0, m.start()) + 1
            raise TemplateError(
                f"a filter changed the per-recipient value marker {m.group(0)}",
                where=Location(f"{template} (rendered)", line),
                hint="per-recipient values take only the filters urlencode, upper, lower, title, "
                "capitalize, trim",
            )


def _rel(filename: str | None, root: Path) -> str | None:
    if not filename:
        return None
    try:
        return str(Path(filename).resolve().relative_to(root.resolve().parent))
    except ValueError:
        return filename


def _template_location(exc: BaseException, root: Path, template: str) -> Location:
    """The innermost template frame of a Jinja traceback (Jinja rewrites them to template lines)."""
    tb = exc.__traceback__
    found: Location | None = None
    root_s = str(root.resolve())
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname.startswith(root_s) or fname == "<template>":
            found = Location(
                _rel(fname, root) if fname != "<template>" else "subject", tb.tb_lineno
            )
        tb = tb.tb_next
    return found or Location(template)


def _find_in_templates(root: Path, line_text: str) -> Location | None:
    """Best effort: which template source line produced this rendered line."""
    needle = line_text.strip()
    if len(needle) < 8 or "[[" in needle:
        return None
    for path in sorted(root.rglob(f"*{TEMPLATE_EXT}")):
        for n, src in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if src.strip() == needle:
                return Location(_rel(str(path), root), n)
    return None


# ------------------------------------------------------------------------------------------
# MJML structure check

MJML_TAGS = frozenset(
    [
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-html-attribute",
        "mj-selector",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-raw",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
        "mj-include",
        "mj-all",
        "mj-class",
    ]
)
# components whose content is HTML/CSS/text, not MJML
ENDING_TAGS = frozenset(
    [
        "mj-text",
        "mj-button",
        "mj-table",
        "mj-raw",
        "mj-navbar-link",
        "mj-social-element",
        "mj-style",
        "mj-title",
        "mj-preview",
        "mj-accordion-title",
        "mj-accordion-text",
    ]
)
_TAG_RE = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b([^>]*?)(/?)>", re.DOTALL)


def lint_mjml(source: str) -> list[tuple[int, str]]:
    """Unknown ``mj-`` tags and unbalanced nesting, as (line, message)."""
    problems: list[tuple[int, str]] = []
    stack: list[tuple[str, int]] = []
    for m in _TAG_RE.finditer(source):
        closing, name, _attrs, selfclose = m.groups()
        line = source.count("\n", 0, m.start()) + 1
        if stack and stack[-1][0] in ENDING_TAGS and not (closing and name == stack[-1][0]):
            continue  # inside mj-text & co. only the closing tag matters
        if name not in MJML_TAGS:
            close = _close_tag(name)
            problems.append((line, f"unknown tag <{name}>{close}"))
            continue
        if selfclose:
            continue
        if not closing:
            stack.append((name, line))
        elif not stack:
            problems.append((line, f"</{name}> closes nothing"))
        elif stack[-1][0] != name:
            problems.append(
                (line, f"</{name}> closes <{stack[-1][0]}> opened on line {stack[-1][1]}")
            )
            stack.pop()
        else:
            stack.pop()
    for name, line in stack:
        problems.append((line, f"<{name}> is never closed"))
    return problems


def lint_template_sources(root: Path) -> list[tuple[Location, str]]:
    """Unknown ``mj-`` tags in the template files themselves (exact file:line)."""
    out = []
    for path in sorted(root.rglob(f"*{TEMPLATE_EXT}")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"</?(mj-[a-z-]+)", text):
            if m.group(1) not in MJML_TAGS:
                line = text.count("\n", 0, m.start()) + 1
                out.append(
                    (
                        Location(_rel(str(path), root), line),
                        f"unknown tag <{m.group(1)}>{_close_tag(m.group(1))}",
                    )
                )
    return out


def _close_tag(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(MJML_TAGS), n=1)
    return f" (did you mean <{close[0]}>?)" if close else ""


# ------------------------------------------------------------------------------------------
# Plain text from MJML

_SKIP = frozenset(
    {"mj-head", "mj-raw", "style", "script", "head", "title", "mj-style", "mj-preview"}
)
_BLOCK = frozenset(
    [
        "p",
        "div",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "tr",
        "blockquote",
        "section",
        "mj-text",
        "mj-section",
        "mj-column",
        "mj-wrapper",
        "mj-table",
    ]
)


class _TextMaker(HTMLParser):
    """Turns the MJML body (after Jinja) into a readable plain-text part.

    It never wraps or pads by length: per-recipient values are filled in afterwards (by us or
    by SendGrid), so the layout must not depend on how long they are.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.href: list[str | None] = []
        self.link_text: list[list[str]] = []
        self.button: str | None = None

    def _emit(self, text: str) -> None:
        if self.link_text:
            self.link_text[-1].append(text)
        else:
            self.out.append(text)

    def _block(self, blank: bool = True) -> None:
        self.out.append("\n\n" if blank else "\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = f"{a.get('css-class') or ''} {a.get('class') or ''}".split()
        if self.skip or tag in _SKIP or "text-hide" in classes:
            if tag not in ("br", "img", "mj-image", "mj-divider", "mj-spacer", "hr"):
                self.skip += 1
            return
        if tag == "mj-button":
            self._block()
            self.button = a.get("href") or ""
            self.link_text.append([])
        elif tag == "a":
            self.href.append(a.get("href"))
            self.link_text.append([])
        elif tag == "li":
            self._block(False)
            self._emit("  • ")
        elif tag in ("br",):
            self._block(False)
        elif tag in ("mj-divider", "hr"):
            self._block()
            self._emit("――――――――――")
            self._block()
        elif tag in _BLOCK:
            self._block()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "img", "mj-image", "mj-divider", "mj-spacer", "hr"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag not in ("br", "img", "mj-image", "mj-divider", "mj-spacer", "hr"):
                self.skip -= 1
            return
        if tag == "mj-button" and self.link_text:
            label = _squash("".join(self.link_text.pop()))
            self._emit(f"{label}: {self.button}" if self.button else label)
            self.button = None
            self._block()
        elif tag == "a" and self.link_text:
            label = _squash("".join(self.link_text.pop()))
            href = self.href.pop() if self.href else None
            if href and not href.startswith("mailto:") and href != label:
                self._emit(f"{label} ({href})" if label else href)
            else:
                self._emit(label)
        elif tag in _BLOCK:
            self._block()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self._emit(data)

    def result(self) -> str:
        # _squash on every line: the runs it replaces never contain a line break, so the
        # whole text is squashed at once and only the ends of each line stripped
        text = _SPACES.sub(" ", "".join(self.out))
        text = "\n".join([line.strip() for line in text.split("\n")])
        text = _BLANK_LINES.sub("\n\n", text).strip()
        return text + "\n"


_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def mjml_to_text(source: str) -> str:
    """The plain-text part of a message, from its MJML (after Jinja)."""
    maker = _TextMaker()
    maker.feed(source)
    maker.close()
    return maker.result()
