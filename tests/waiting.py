"""Waiting in tests: always with a deadline, and failing at once when a child process died.

Timed waits on threading primitives (``Condition.wait(t)``, ``Event.wait(t)``,
``queue.get(timeout=t)``) never return under libfaketime, which the suite must survive, so
these helpers poll with ``time.sleep`` against ``time.monotonic``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

POLL = 0.01


class ChildDied(AssertionError):
    """The process a test was waiting on exited before the awaited condition came true."""


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    *,
    proc: subprocess.Popen | None = None,
    what: str = "the condition",
) -> bool:
    """True as soon as ``predicate()`` is; False after ``timeout`` seconds.

    With ``proc``: raise :class:`ChildDied` (with the child's output when it was piped) the
    moment the child exits while the predicate is still false.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            out = ""
            if proc.stdout is not None:
                out = proc.stdout.read()
                out = out.decode(errors="replace") if isinstance(out, bytes) else out
            raise ChildDied(
                f"the child process exited with {proc.returncode} before {what}:\n{out[-3000:]}"
            )
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
