"""SpamAssassin for tests: Debian's ``spamassassin -t -L`` (local tests only, no network).

Without spamassassin the tests that need it are skipped and say so, except where
``OUTREACH_REQUIRE_SPAMASSASSIN=1`` (CI sets it, see .ci/run): there a missing spamassassin
is a failure, so a CI image without it cannot pass by skipping.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import policy
from pathlib import Path

import pytest

REQUIRE_VAR = "OUTREACH_REQUIRE_SPAMASSASSIN"
TIMEOUT = 60  # seconds per message (about 1 s alone, 0.4 s more in a run of several)


@dataclass(frozen=True)
class Score:
    """What ``spamassassin -t`` said about one message."""

    path: Path
    points: float
    rules: tuple[tuple[str, float], ...]  # (rule, points) for every rule that fired

    def __str__(self) -> str:
        fired = ", ".join(f"{r} {p:g}" for r, p in self.rules if p) or "no scoring rule"
        return f"{self.path.name}: {self.points:g} ({fired})"


_POINTS = re.compile(r"^Content analysis details:\s+\((-?[\d.]+) points", re.M)
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s", re.M)


def parse_report(path: Path, report: str) -> Score:
    """Read the points and the rules from the report ``spamassassin -t`` appends."""
    m = _POINTS.search(report)
    if m is None:
        raise AssertionError(f"no SpamAssassin report for {path}:\n{report[-2000:]}")
    # the table: after the "---- ----…" rule, up to the first blank line
    table = report[m.end() :].split("\n----", 1)[-1].split("\n\n", 1)[0]
    rules = tuple((rule, float(points)) for points, rule in _RULE.findall(table))
    return Score(path, float(m.group(1)), rules)


class SpamAssassin:
    """Runs ``spamassassin -t -L`` on .eml files.

    Loading SpamAssassin's rules takes most of a run (about 0.6 s of the 0.9 s one message
    takes), so :meth:`score_all` passes a share of the files to each of a few processes, which
    check them one after the other (``spamassassin -t -L a.eml b.eml …``), and reads each
    message's report back by its Message-ID. ``HOME`` points at a folder of the test session,
    so the preferences and learning state of whoever runs the tests are neither read nor
    written.
    """

    def __init__(self, executable: str, home: Path) -> None:
        self.executable = executable
        self.env = {**os.environ, "HOME": str(home)}

    def _run(self, paths: list[Path]) -> list[Score]:
        proc = subprocess.run(
            [self.executable, "-t", "-L", *map(str, paths)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=self.env,
            timeout=TIMEOUT * len(paths),
            check=False,
        )
        out = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise AssertionError(
                f"spamassassin exited with {proc.returncode}: {proc.stderr[-2000:]!r}"
            )
        reports = list(_POINTS.finditer(out))
        if len(reports) != len(paths):
            raise AssertionError(
                f"{len(reports)} reports for {len(paths)} messages:\n{out[-2000:]}"
            )
        scores, start = [], 0
        for path, m in zip(paths, reports, strict=True):
            # the message comes back above its report: check that it is the one we expect
            message_id = _message_id(path)
            if message_id not in out[start : m.start()]:
                raise AssertionError(f"the report for {path.name} is not where expected")
            scores.append(parse_report(path, out[m.start() :]))
            start = m.end()
        return scores

    def score(self, path: Path) -> Score:
        return self._run([path])[0]

    def score_all(self, paths: Iterable[Path], processes: int | None = None) -> list[Score]:
        """Scores in the order of ``paths``, from ``processes`` spamassassin runs at once."""
        paths = list(paths)
        n = max(1, min(processes or os.cpu_count() or 2, 4, len(paths)))
        shares = [paths[i::n] for i in range(n)]
        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(self._run, shares))
        by_path = {s.path: s for share in results for s in share}
        return [by_path[p] for p in paths]


def _message_id(path: Path) -> str:
    with path.open("rb") as f:
        msg = email.message_from_binary_file(f, policy=policy.default)
    value = msg["Message-ID"]
    if not value:
        raise AssertionError(f"{path} has no Message-ID")
    return str(value)


def find_spamassassin() -> str | None:
    return shutil.which("spamassassin")


def require_spamassassin(home: Path) -> SpamAssassin:
    """A :class:`SpamAssassin`, or skip the test (fail it under ``OUTREACH_REQUIRE_SPAMASSASSIN``)."""
    exe = find_spamassassin()
    if exe is None:
        reason = "Debian's spamassassin is not installed (apt-get install spamassassin)"
        if os.environ.get(REQUIRE_VAR, "") not in ("", "0"):
            pytest.fail(f"{reason}, and {REQUIRE_VAR} is set", pytrace=False)
        pytest.skip(reason)
    return SpamAssassin(exe, home)
