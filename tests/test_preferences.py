"""What the planner makes of recipients' recorded choices (:mod:`outreach.preferences`), and
the public pages' rate limit (:mod:`outreach.web.ratelimit`), on their own."""

from __future__ import annotations

from outreach.preferences import Preferences, fold
from outreach.web import ratelimit
from outreach.web.ratelimit import RateLimit


def test_the_newest_choice_of_a_kind_decides() -> None:
    rows = [
        ("a@x.org", "december", "leave_campaign", None),
        ("b@x.org", "december", "leave_campaign", None),
        ("b@x.org", "december", "rejoin_campaign", None),
        ("c@x.org", "june", "leave_campaign", None),  # another campaign
        ("d@x.org", "*", "language", "es"),
        ("d@x.org", "*", "language", "fr"),
        ("e@x.org", "december", "language", "fr"),  # about this campaign only…
        ("e@x.org", "*", "language", "es"),  # …beats a later one about every mailing
        ("f@x.org", "june", "language", "es"),
        ("g@x.org", "*", "leave_campaign", None),  # leaving is about one campaign
    ]
    prefs = fold(rows, "december")
    assert prefs.left == {"a@x.org"}
    assert prefs.languages == {"d@x.org": "fr", "e@x.org": "fr"}
    assert fold(rows, "june").left == {"c@x.org"}
    assert fold(rows, "june").languages == {"d@x.org": "fr", "e@x.org": "es", "f@x.org": "es"}


def test_a_chosen_language_counts_only_where_the_campaign_offers_it() -> None:
    prefs = Preferences(languages={"d@x.org": "fr"})
    assert prefs.language("D@x.org", ("en", "es", "fr")) == "fr"
    assert prefs.language("d@x.org", ("en", "es")) is None  # then the list's column decides
    assert prefs.language("z@x.org", ("en", "fr")) is None


def test_the_rate_limit_counts_a_window_per_key() -> None:
    now = [1000.0]
    limit = RateLimit(2, 60, lambda: now[0])
    assert limit.hit("a") is None and limit.hit("a") is None
    assert limit.hit("a") == 60  # refused, not counted
    assert limit.hit("b") is None
    now[0] += 59.5
    assert limit.hit("a") == 1
    now[0] += 0.5
    assert limit.hit("a") is None  # the first hit left the window


def test_the_rate_limit_forgets_idle_clients_first(monkeypatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_KEYS", 3)
    now = [0.0]
    limit = RateLimit(1, 60, lambda: now[0])
    for key in ("a", "b"):
        limit.hit(key)
    now[0] = 100.0
    limit.hit("c")
    limit.hit("d")  # a and b are idle: forgotten
    assert set(limit._hits) == {"c", "d"}
    limit.hit("e")
    limit.hit("f")  # nobody idle: the oldest half goes
    assert len(limit._hits) <= 3 and "f" in limit._hits
    assert limit.hit("f") == 60  # the one being counted is kept
