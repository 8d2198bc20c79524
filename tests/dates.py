"""Fixed instants for the shipped December campaign: tests pass these as ``now`` (``--now``
on the command line) so that no test depends on the day it runs."""

# before the circular (2026-12-01 09:00 New York): nothing is due, --step sends early
BEFORE_CIRCULAR = "2026-11-25T12:00:00+00:00"
# the circular is due (09:30 in New York on 1 December), nothing else is
CIRCULAR_DUE = "2026-12-01T14:30:00+00:00"
# the day after the last call (2026-12-15 09:00 New York): every step of 2026 has come
LAST_CALL_DUE = "2026-12-16T12:00:00+00:00"
# the webhook's clock (Unix seconds): the day after the circular, 2026-12-02 12:00 UTC; signed
# test requests carry this timestamp and the servers under test read this clock
WEBHOOK_NOW = 1_796_212_800


def webhook_now():
    """:data:`WEBHOOK_NOW` as an aware datetime (for ``now=`` of reports and plans)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(WEBHOOK_NOW, UTC)
