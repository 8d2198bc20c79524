"""Ids and times as the store writes them (the same on every backend)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """The store's time format (UTC, milliseconds): text that sorts in time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


_ID_POOL: list[str] = []
os.register_at_fork(after_in_child=_ID_POOL.clear)  # a forked child must never reuse ids


def new_id() -> str:
    """An id of 32 hex digits (send ids, batch ids): 12 of time in milliseconds, then 20 random.

    The 80 random bits make a send id unguessable, so it can be the token of a one-click
    unsubscribe URL; the time prefix makes inserts land at the end of the index instead of on
    a random page (1M sends: SQLite time 85 s → 51 s). Show or shorten ids by their random
    *end* (:func:`short_id`), never by their prefix. Random bytes come from the OS 10 KiB at
    a time (one ``getrandom`` call per id cost about 10 µs here).
    """
    if not _ID_POOL:
        raw = os.urandom(10 * 1024)
        _ID_POOL.extend(raw[i : i + 10].hex() for i in range(0, len(raw), 10))
    return f"{time.time_ns() // 1_000_000:012x}{_ID_POOL.pop()}"


def short_id(id_: str) -> str:
    """The last 8 hex digits of an id: random, so short forms stay distinct."""
    return id_[-8:]
