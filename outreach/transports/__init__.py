"""Transports: where messages go. ``outbox`` writes .eml files; ``sendgrid`` sends for real."""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach.exceptions import OutreachError
from outreach.transports.base import Batch, Capability, Delivery, Recipient, Transport

if TYPE_CHECKING:
    from outreach.campaign import Campaign
    from outreach.workspace import Workspace

NAMES = ("outbox", "sendgrid")

__all__ = [
    "NAMES",
    "Batch",
    "Capability",
    "Delivery",
    "Recipient",
    "Transport",
    "choose",
    "make_transport",
]


def choose(workspace: Workspace, requested: str | None) -> str:
    """The transport to use: the one asked for, else SendGrid when a key is set, else outbox."""
    if requested:
        return requested
    return "sendgrid" if workspace.setting("SENDGRID_API_KEY") else "outbox"


def make_transport(workspace: Workspace, campaign: Campaign, name: str, **kw) -> Transport:
    if name == "outbox":
        from outreach.transports.outbox import OutboxTransport

        return OutboxTransport(workspace, campaign, **kw)
    if name == "sendgrid":
        try:
            from outreach.transports.sendgrid import SendGridTransport
        except ImportError as exc:  # pragma: no cover - only while the module is missing
            raise OutreachError(f"the SendGrid transport is not available: {exc}") from None
        return SendGridTransport(workspace, campaign, **kw)
    raise OutreachError(f"unknown transport {name!r}", hint=f"use one of: {', '.join(NAMES)}")
