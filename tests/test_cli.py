"""Small CLI surfaces: help texts, version, countries build."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import main

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in _commands(main)], ids=" ".join)
def test_every_command_has_help(path) -> None:
    r = CliRunner().invoke(main, [*path, "--help"])
    assert r.exit_code == 0
    cmd = dict(_commands(main))[path]
    assert cmd.help and len(cmd.help.strip()) > 10
    for param in cmd.params:
        if param.param_type_name == "option" and not param.hidden and param.name != "help":
            assert param.help, f"{' '.join(path)} --{param.name} has no help text"


def test_version() -> None:
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("outreach, version ")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the checkout")
def test_countries_build_reproduces_the_shipped_file(workspace: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "countries.csv"
    r = cli(workspace, "countries", "build", "--source", str(SHARED), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output
    assert out.read_text(encoding="utf-8") == (workspace / "lists" / "countries.csv").read_text(
        encoding="utf-8"
    )
