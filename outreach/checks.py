"""Readiness checks: what ``outreach doctor`` and the ``send`` plan report, one line each.

A :class:`Check` is a verdict (:class:`Status`: ✓ ok, ! warning, ✗ failure) on one thing a
coordinator can fix, with the result in plain words and, unless it passed, a one-line fix.
A :class:`Checkup` is the list, with the exit code ``outreach doctor`` uses: 0 all good,
1 a failure, 3 warnings only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warning"
    FAIL = "failure"

    @property
    def mark(self) -> str:
        return {"ok": "✓", "warning": "!", "failure": "✗"}[self.value]


class Area(StrEnum):
    """The groups of checks, in the order doctor prints them."""

    DNS = "DNS"
    SENDGRID = "SendGrid"
    ENDPOINTS = "Endpoints"
    CONTENT = "Content"
    REPUTATION = "Reputation"


@dataclass
class Check:
    id: str  # stable, for --json: e.g. "dns.spf"
    area: Area
    status: Status
    title: str  # what was checked: "SPF of escr-net.org"
    result: str  # what was found, one line
    fix: str | None = None  # one line; None when it passed
    details: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        return f"{self.status.mark} {self.title}: {self.result}"

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "area": self.area.value,
            "status": self.status.value,
            "title": self.title,
            "result": self.result,
            "fix": self.fix,
            "details": self.details,
        }


def ok(id: str, area: Area, title: str, result: str, details: list[str] | None = None) -> Check:
    return Check(id, area, Status.OK, title, result, None, details or [])


def warn(id: str, area: Area, title: str, result: str, fix: str, **kw) -> Check:
    return Check(id, area, Status.WARN, title, result, fix, **kw)


def fail(id: str, area: Area, title: str, result: str, fix: str, **kw) -> Check:
    return Check(id, area, Status.FAIL, title, result, fix, **kw)


@dataclass
class Checkup:
    """The checks of one campaign, in order."""

    campaign: str
    edition: int | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why

    def extend(self, checks: Iterable[Check]) -> None:
        self.checks.extend(checks)

    def with_status(self, status: Status) -> list[Check]:
        return [c for c in self.checks if c.status is status]

    @property
    def failures(self) -> list[Check]:
        return self.with_status(Status.FAIL)

    @property
    def warnings(self) -> list[Check]:
        return self.with_status(Status.WARN)

    @property
    def exit_code(self) -> int:
        """0 all good, 1 a failure, 3 warnings only."""
        if self.failures:
            return 1
        return 3 if self.warnings else 0

    def as_dict(self) -> dict:
        return {
            "campaign": self.campaign,
            "edition": self.edition,
            "exit_code": self.exit_code,
            "counts": {s.value: len(self.with_status(s)) for s in Status},
            "checks": [c.as_dict() for c in self.checks],
            "notes": self.notes,
        }
