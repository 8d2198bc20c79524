"""YAML for humans: what the coordinator typed is what they get.

PyYAML implements YAML 1.1, where ``NO`` (Norway) is ``False``, ``09:00`` is the integer 540
and ``2026-12-10 09:00`` silently becomes a naive datetime. We load with a narrower resolver,
close to YAML 1.2's core schema: only ``true``/``false`` are booleans, only ``null``/``~``/empty
are null, integers (without leading zeros) and floats are plain decimal, and *everything else
stays a string*. Dates
and times are parsed later by the campaign model, with proper error messages.

We also remember the line of every key and sequence item, so validation errors can say
``campaigns/december.yaml:23``, and we reject duplicate keys (PyYAML silently keeps the last).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from outreach.exceptions import ConfigError, Location

PathKey = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML-1.2-core-like implicit typing."""


_Loader.yaml_implicit_resolvers = {}
_RESOLVERS = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    # a leading zero means a code (postal code, phone), not an octal number: keep it a string
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$",
        "-+0123456789.",
    ),
]
for _tag, _pattern, _first in _RESOLVERS:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


class LineMap:
    """Maps a key path such as ``("steps", 1, "send_at")`` to its 1-based line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: dict[PathKey, int] = {}

    def add(self, key: PathKey, line: int) -> None:
        self._lines.setdefault(key, line)

    def line(self, key: PathKey) -> int | None:
        """Line of ``key`` or of its nearest ancestor that has one."""
        key = tuple(key)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return self._lines.get(())

    def where(self, key: PathKey) -> Location:
        return Location(self.path, self.line(key), format_key(key))


def format_key(key: PathKey) -> str:
    """``("steps", 1, "send_at")`` → ``steps[1].send_at``."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _construct(loader: _Loader, node: yaml.Node, key: PathKey, lines: LineMap) -> Any:
    lines.add(key, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        for knode, vnode in node.value:
            k = loader.construct_object(knode, deep=True)
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise ConfigError(
                    "mapping keys must be plain words",
                    where=Location(lines.path, knode.start_mark.line + 1, format_key(key)),
                )
            k = str(k) if k is not None else ""
            line = knode.start_mark.line + 1
            if k in seen:
                raise ConfigError(
                    f"duplicate key {k!r} (first defined on line {seen[k]})",
                    where=Location(lines.path, line, format_key((*key, k))),
                    hint="remove one of them; YAML would silently keep only the last",
                )
            seen[k] = line
            lines.add((*key, k), line)
            result[k] = _construct(loader, vnode, (*key, k), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, (*key, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(path: Path, display: Path | None = None) -> tuple[Any, LineMap]:
    """Parse ``path`` and return ``(data, line_map)``; syntax errors become :class:`ConfigError`.

    ``display`` is how the file is named in messages (e.g. relative to the workspace).
    """
    lines = LineMap(display or path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("file not found", where=Location(lines.path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not valid UTF-8 (byte {exc.start})",
            where=Location(lines.path),
            hint="save the file as UTF-8",
        ) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, lines
        return _construct(loader, node, (), lines), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise ConfigError(
            f"YAML syntax error: {problem}",
            where=Location(lines.path, line),
            hint="check indentation and quoting around this line",
        ) from None
    finally:
        loader.dispose()
