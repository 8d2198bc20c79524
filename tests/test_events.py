"""Event ingestion, suppressions from events, imports, manual suppressions, and follow-up
audiences resolved from stored events."""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.cli import main
from outreach.events import event_id, import_files, ingest, read_file, split_array
from outreach.exceptions import ConfigError, EventError
from outreach.exclusions import Exclusion, Reason
from outreach.ledger import Ledger
from outreach.send import SendOptions, prepare
from outreach.suppressions import (
    add,
    from_event,
    from_events,
    history,
    listing,
    remove,
    rule_for,
)
from outreach.workspace import Workspace
from tests import stores
from tests.dates import LAST_CALL_DUE

pytestmark = pytest.mark.both_backends

FIXTURES = Path(__file__).parent / "fixtures" / "events"


@pytest.fixture
def ws(sent_template: Path, tmp_path: Path) -> Workspace:
    root = stores.copy_workspace(sent_template, tmp_path / "ws")
    w = Workspace.open(root)
    w.env.pop("SENDGRID_API_KEY", None)
    return w


@pytest.fixture
def ledger(ws: Workspace):
    with Ledger.open(ws.db_url(), ws.root) as led:
        yield led


def rows(ledger: Ledger) -> list[dict]:
    """The sent rows, by address."""
    return sorted(ledger.table_rows("sends"), key=lambda r: r["email"])


def ev(row, event: str, **extra) -> dict:
    return {
        "email": row["email"],
        "event": event,
        "timestamp": 1_796_000_000,
        "send_id": row["send_id"],
        "contact_id": row["contact_id"],
        "campaign": row["campaign"],
        "step": row["step"],
        **extra,
    }


# ------------------------------------------------------------------------------------------
# ingest


def test_ingest_matches_dedupes_and_keeps_unmatched(ledger: Ledger) -> None:
    r = rows(ledger)
    batch = [
        ev(r[0], "delivered", sg_event_id="a1"),
        ev(r[1], "open", sg_event_id="a2", sg_machine_open=True),
        {"event": "open", "email": "x@example.org", "sg_event_id": "a3", "campaign": "nope"},
    ]
    res = ingest(ledger, batch, "webhook")
    assert (res.received, res.stored, res.duplicates, res.matched, res.unmatched) == (3, 3, 0, 2, 1)
    assert "no send_id or sg_message_id" in res.unmatched_examples[0]
    again = ingest(ledger, batch, "webhook")
    assert (again.stored, again.duplicates, again.matched, again.unmatched) == (0, 3, 0, 0)
    stored = {
        e["sg_event_id"]: (e["matched"], e["machine_open"], e["send_id"], e["source"])
        for e in ledger.event_rows()
    }
    assert stored["a1"] == (1, 0, r[0]["send_id"], "webhook")
    assert stored["a2"][:2] == (1, 1)
    assert stored["a3"] == (0, 0, None, "webhook")


def test_raw_is_each_events_text_as_received_or_the_event_encoded(ledger: Ledger) -> None:
    r = rows(ledger)
    first = '{"event": "open",  "sg_event_id": "t1", "email": "' + r[0]["email"] + '"}'
    second = '{"event":"click","sg_event_id":"t2","email":"' + r[1]["email"] + '",'
    second += '"url":"https://x.test/?a=%C3%A9&b=\\u00e9"}'
    body = f"[ {first},\n{second} ]"
    items, texts = split_array(body)
    assert items == json.loads(body)
    res = ingest(ledger, items, "webhook", raw=texts)
    assert (res.stored, res.matched) == (2, 0)  # no send_id: unmatched, kept
    raw = {e["sg_event_id"]: e["raw"] for e in ledger.event_rows()}
    assert raw == {"t1": texts[0], "t2": texts[1]}
    assert texts == [first, second]
    ingest(ledger, [ev(r[2], "delivered", sg_event_id="t3")], "webhook")  # without: encoded
    assert json.loads(ledger.event_rows(sg_event_id="t3")[0]["raw"])["sg_event_id"] == "t3"
    with pytest.raises(ValueError, match="1 raw texts for 2 events"):
        ingest(ledger, items, "webhook", raw=texts[:1])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(JSON, max_size=6),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
    st.sampled_from([None, 2]),
    st.booleans(),
    st.sampled_from(["", " ", "\r\n", "\t \n"]),
)
def test_split_array_parses_as_json_loads_and_keeps_each_elements_text(
    value, separators, indent, ascii_only, pad
) -> None:
    text = pad + json.dumps(value, separators=separators, indent=indent, ensure_ascii=ascii_only)
    text += pad
    items, texts = split_array(text)
    assert items == json.loads(text) == value
    assert [json.loads(t) for t in texts] == items
    assert all(t == t.strip() and t in text for t in texts)


@pytest.mark.parametrize(
    "text",
    ['{"event": "open"}', "null", "", "  ", "[", "[1,", "[1,]", "[,1]", "[1 2]", "[1] x",
     "[1]]", '["a]', "[tru]", "[1]\x00", "\ufeff[1]"],
)  # fmt: skip
def test_split_array_leaves_anything_else_to_json_loads(text) -> None:
    assert split_array(text) is None
    with contextlib.suppress(json.JSONDecodeError):
        assert not isinstance(json.loads(text), list)


def test_events_without_sg_event_id_get_a_stable_hash_id(ledger: Ledger) -> None:
    r = rows(ledger)
    e = ev(r[0], "click", url="https://www.escr-net.org/")
    assert event_id(e) == event_id(dict(reversed(list(e.items()))))  # key order does not matter
    assert event_id(e) != event_id({**e, "timestamp": e["timestamp"] + 1})
    assert ingest(ledger, [e], "import:a").stored == 1
    assert ingest(ledger, [dict(e)], "import:b").duplicates == 1


def test_fallback_to_sg_message_id_prefix_and_address(ledger: Ledger) -> None:
    r = rows(ledger)
    # as the SendGrid transport records it: one X-Message-Id per request (batch)
    for row, mid in (
        (r[0], "W86EgYT6SQKk0lRflfLRsA"),
        (r[1], "W86EgYT6SQKk0lRflfLRsA"),
        (r[2], "Zz9"),
    ):
        ledger.mark_sent(row["batch_id"], {row["send_id"]: mid})
    batch = [
        {
            "event": "delivered",
            "email": r[1]["email"].upper(),
            "sg_message_id": "W86EgYT6SQKk0lRflfLRsA.filterdrecv-5645d9c87f-78xgx-1-5B1A9A80-11.0",
            "sg_event_id": "m1",
        },
        {
            "event": "delivered",
            "email": "someone@else.org",
            "sg_message_id": "Zz9.x.0",
            "sg_event_id": "m2",
        },
        {
            "event": "delivered",
            "email": "a@b.org",
            "sg_message_id": "nothing.x",
            "sg_event_id": "m3",
        },
    ]
    res = ingest(ledger, batch, "webhook")
    assert (res.matched, res.unmatched) == (2, 1)
    got = {e["sg_event_id"]: e["send_id"] for e in ledger.event_rows(matched=1)}
    assert got == {"m1": r[1]["send_id"], "m2": r[2]["send_id"]}  # m2: the only row of its batch


def test_bad_events_store_nothing(ledger: Ledger) -> None:
    r = rows(ledger)
    with pytest.raises(EventError, match="event #2"):
        ingest(ledger, [ev(r[0], "open", sg_event_id="ok"), "oops"], "webhook")
    with pytest.raises(EventError, match="no 'event' field"):
        ingest(ledger, [{"email": "a@b.org"}], "webhook")
    assert ledger.counts()["events"] == 0


KINDS = ["delivered", "open", "click", "bounce", "spamreport", "unsubscribe", "dropped"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    picks=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(KINDS), st.integers(0, 3), st.booleans()),
        max_size=40,
    ),
    split=st.integers(0, 40),
)
def test_ingest_is_idempotent_whatever_the_batches(
    ws: Workspace, backend: str, tmp_path_factory, picks, split
) -> None:
    """Same events in any batching, any number of times: each stored once, same suppressions."""
    fresh = stores.new_url(backend, tmp_path_factory.mktemp("example"))
    stores.copy_store(ws.db_url(), fresh)  # the sent rows, no event yet
    with Ledger.open(fresh) as led:
        r = rows(led)
        events = []
        for i, kind, n, with_id in picks:
            e = ev(r[i], kind, timestamp=1_796_000_000 + n)
            if kind == "bounce":
                e["type"] = "bounce" if n % 2 else "blocked"
            if kind == "dropped":
                e["reason"] = "Invalid" if n % 2 else "Spam Content"
            if with_id:
                e["sg_event_id"] = f"{i}-{kind}-{n}"
            events.append(e)
        unique = len({event_id(e) for e in events})
        first = ingest(led, events[:split], "webhook")
        second = ingest(led, events[split:], "webhook")
        third = ingest(led, events, "webhook")
        assert first.stored + second.stored == unique
        assert third.stored == 0 and third.duplicates == len(events)
        assert led.counts()["events"] == unique
        expected = {
            e["email"].lower()
            for e in events
            if rule_for(e) is not None and rule_for(e)[0] == "suppress"
        }
        assert set(led.suppressed()) == expected


SUPPRESSING = [
    ("bounce", {"type": "bounce"}),
    ("bounce", {"type": "blocked"}),
    ("dropped", {"reason": "Invalid"}),
    ("spamreport", {}),
    ("unsubscribe", {}),
    ("group_unsubscribe", {}),
    ("group_resubscribe", {}),
    ("open", {}),
]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    picks=st.lists(
        st.tuples(
            st.integers(0, 9), st.sampled_from(SUPPRESSING), st.integers(0, 3), st.booleans()
        ),
        max_size=30,
    ),
    before=st.lists(st.tuples(st.integers(0, 9), st.sampled_from(SUPPRESSING[:6])), max_size=4),
)
def test_batched_suppressions_equal_one_event_at_a_time(
    ws: Workspace, backend: str, tmp_path_factory, picks, before
) -> None:
    """``from_events`` (one read, batched writes) leaves the same suppressions and the same
    log as ``from_event`` applied event by event, from the same starting suppressions."""
    r = None
    results = []
    for batched in (True, False):
        fresh = stores.new_url(backend, tmp_path_factory.mktemp("example"))
        stores.copy_store(ws.db_url(), fresh)
        with Ledger.open(fresh) as led:
            r = rows(led)
            for i, (kind, extra) in before:  # suppressions already there
                from_event(led, ev(r[i], kind, **extra), source="webhook", who="earlier")
            events = [
                ev(r[i], kind, timestamp=1_796_000_000 + n, **extra)
                | ({"email": r[i]["email"].upper()} if upper else {})
                for i, (kind, extra), n, upper in picks
            ]
            with led.transaction():
                if batched:
                    n = from_events(led, events, source="webhook", who="SendGrid")
                else:
                    n = sum(from_event(led, e, source="webhook", who="SendGrid") for e in events)
            results.append(
                (
                    n,
                    sorted(led.table_rows("suppressions"), key=lambda x: x["email"]),
                    [
                        {k: v for k, v in x.items() if k not in ("id", "at")}
                        for x in led.table_rows("suppression_log")
                    ],
                )
            )
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------
# suppression rules
# ------------------------------------------------------------------------------------------
# suppression rules


@pytest.mark.parametrize(
    ("event", "extra", "reason"),
    [
        ("bounce", {"type": "bounce", "status": "5.1.1"}, "bounce"),
        ("bounce", {}, "bounce"),  # older payloads have no type: a bounce is hard
        ("bounce", {"type": "blocked"}, None),
        ("dropped", {"reason": "Invalid"}, "dropped"),
        ("dropped", {"reason": "Bounced Address"}, "dropped"),
        ("dropped", {"reason": "Spam Content (if spam checker app enabled)"}, None),
        ("spamreport", {}, "spamreport"),
        ("unsubscribe", {}, "unsubscribe"),
        ("group_unsubscribe", {"asm_group_id": 7}, "group_unsubscribe"),
        ("deferred", {}, None),
        ("open", {}, None),
    ],
)
def test_suppression_rules(ledger: Ledger, event, extra, reason) -> None:
    r = rows(ledger)[0]
    res = ingest(ledger, [ev(r, event, sg_event_id="s1", **extra)], "webhook")
    assert ledger.suppressed().get(r["email"].lower()) == reason
    assert res.suppressions_changed == (1 if reason else 0)
    if reason:
        [entry] = history(ledger)
        assert entry["action"] == "add" and entry["source"] == "webhook"
        assert entry["who"] == "SendGrid Event Webhook" and entry["at"] and entry["note"]


def test_group_resubscribe_lifts_only_a_group_unsubscribe(ledger: Ledger) -> None:
    r = rows(ledger)
    ingest(ledger, [ev(r[0], "group_unsubscribe", sg_event_id="g1", timestamp=100)], "webhook")
    ingest(ledger, [ev(r[0], "group_resubscribe", sg_event_id="g2", timestamp=200)], "webhook")
    assert r[0]["email"].lower() not in ledger.suppressed()
    # a hard bounce is not lifted by a resubscribe, and replaces a group unsubscribe
    batch = [
        ev(r[1], "group_unsubscribe", sg_event_id="h1", timestamp=100),
        ev(r[1], "bounce", type="bounce", sg_event_id="h2", timestamp=150),
        ev(r[1], "group_resubscribe", sg_event_id="h3", timestamp=200),
    ]
    ingest(ledger, batch, "webhook")
    assert ledger.suppressed()[r[1]["email"].lower()] == "bounce"
    # a resubscribe older than the unsubscribe (events arrive out of order) changes nothing
    ingest(ledger, [ev(r[2], "group_unsubscribe", sg_event_id="i1", timestamp=300)], "webhook")
    ingest(ledger, [ev(r[2], "group_resubscribe", sg_event_id="i2", timestamp=200)], "webhook")
    assert ledger.suppressed()[r[2]["email"].lower()] == "group_unsubscribe"


def test_manual_add_remove_and_list(ledger: Ledger) -> None:
    assert add(ledger, "Someone@Example.org", "asked by phone", by="ivahanna")
    assert not add(ledger, "someone@example.org", "again", by="ivahanna")
    [s] = listing(ledger).suppressions
    assert (s.email, s.reason, s.source, s.created_by, s.detail) == (
        "someone@example.org",
        "manual",
        "manual",
        "ivahanna",
        "asked by phone",
    )
    with pytest.raises(ConfigError, match="--reason"):
        remove(ledger, "someone@example.org", "  ")
    with pytest.raises(ConfigError, match="not a valid address"):
        add(ledger, "not-an-address", "x")
    assert remove(ledger, "someone@example.org", "wrong person", by="bob")
    assert not remove(ledger, "someone@example.org", "again", by="bob")
    log = listing(ledger, "someone@example.org").log
    assert [(e["action"], e["who"], e["note"]) for e in log] == [
        ("add", "ivahanna", "asked by phone"),
        ("remove", "bob", "wrong person"),
    ]


def test_suppressions_cli(ws: Workspace) -> None:
    runner = CliRunner()
    base = ["-C", str(ws.root), "suppressions"]
    res = runner.invoke(main, [*base, "add", "a@example.org", "--reason", "asked"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, [*base, "list", "--json"])
    data = json.loads(res.output)
    assert data["suppressions"][0]["email"] == "a@example.org"
    assert data["suppressions"][0]["created_by"]  # the OS user by default
    res = runner.invoke(main, [*base, "list", "--email", "a@example.org"])
    assert "asked" in res.output and "History" in res.output
    res = runner.invoke(main, [*base, "remove", "b@example.org", "--reason", "x"])
    assert res.exit_code == 1 and "is not suppressed" in res.output
    res = runner.invoke(main, [*base, "add", "a@example.org"])
    assert res.exit_code == 2  # --reason is required


# ------------------------------------------------------------------------------------------
# imports


def test_import_json_ndjson_csv_with_dedupe(ws: Workspace) -> None:
    with Ledger.open(ws.db_url(), ws.root) as led:
        r = rows(led)
    a = [ev(r[0], "delivered", sg_event_id="j1"), ev(r[1], "open", sg_event_id="j2")]
    (ws.root / "a.json").write_text(json.dumps(a))
    nd = [ev(r[1], "open", sg_event_id="j2"), ev(r[2], "spamreport", sg_event_id="j3")]
    (ws.root / "b.ndjson").write_text("\n".join(json.dumps(e) for e in nd) + "\n\n")
    csv_text = (
        "event,email,timestamp,sg_event_id,send_id,sg_machine_open,type\n"
        f"open,{r[3]['email']},1796000000,j4,{r[3]['send_id']},true,\n"
        f"bounce,{r[4]['email']},1796000000,j5,{r[4]['send_id']},,blocked\n"
    )
    (ws.root / "c.csv").write_text(csv_text)
    res = import_files(ws, [ws.root / "a.json", ws.root / "b.ndjson", ws.root / "c.csv"])
    assert (res.total.received, res.total.stored, res.total.duplicates) == (6, 5, 1)
    assert res.total.suppressions_changed == 1  # the spam report (the block is soft)
    with Ledger.open(ws.db_url(), ws.root) as led:
        [row] = led.event_rows(sg_event_id="j4")
    assert (row["machine_open"], row["timestamp"], row["matched"], row["source"]) == (
        1,
        1796000000,
        1,
        "import:c.csv",
    )
    out = CliRunner().invoke(
        main, ["-C", str(ws.root), "events", "import", str(ws.root / "a.json")]
    )
    assert out.exit_code == 0 and "0 stored, 2 duplicate(s)" in out.output


def test_import_errors_say_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"event": "open"},\n {"event": \n')
    with pytest.raises(EventError) as exc:
        read_file(bad)
    assert exc.value.where.line == 4
    nd = tmp_path / "bad.ndjson"
    nd.write_text('{"event": "open"}\n{oops}\n')
    with pytest.raises(EventError) as exc:
        read_file(nd)
    assert exc.value.where.line == 2
    nocol = tmp_path / "x.csv"
    nocol.write_text("email,timestamp\na@b.org,1\n")
    with pytest.raises(EventError, match="no 'event' column"):
        read_file(nocol)
    latin = tmp_path / "l.json"
    latin.write_bytes('[{"event":"open","email":"jos\xe9@x.org"}]'.encode("latin-1"))
    with pytest.raises(EventError, match="not UTF-8"):
        read_file(latin)
    obj = tmp_path / "o.json"
    obj.write_text('[{"event": "open"}, 5]')
    with pytest.raises(EventError, match="event #2"):
        read_file(obj)
    res = CliRunner().invoke(main, ["-C", str(tmp_path), "events", "import", str(bad)])
    assert res.exit_code in (1, 2)
    assert "Traceback" not in res.output


def test_import_fixture_files(ws: Workspace) -> None:
    """Real-shaped SendGrid exports kept under tests/fixtures/events."""
    res = import_files(ws, sorted(FIXTURES.glob("*")))
    assert res.total.stored == res.total.unmatched  # they name sends of another ledger
    assert res.total.stored >= 10
    assert {"processed", "delivered", "open", "click", "bounce"} <= set(res.total.by_event)


# ------------------------------------------------------------------------------------------
# the planner: suppressions and follow-up audiences


def _plan(ws: Workspace, step: str):
    with Ledger.open(ws.db_url(), ws.root) as led:
        plan = prepare(
            ws,
            "december",
            SendOptions(
                steps=(step,),
                dry_run=True,
                skip_invalid=True,
                transport="outbox",
                now=datetime.fromisoformat(LAST_CALL_DUE),
            ),
            led,
        )
    return plan.steps[0]


def test_plan_excludes_suppressed_and_says_why(ws: Workspace, ledger: Ledger) -> None:
    r = rows(ledger)
    ingest(ledger, [ev(r[0], "bounce", type="bounce", sg_event_id="b")], "webhook")
    add(ledger, r[1]["email"], "asked", by="me")
    sp = _plan(ws, "human-rights-day")
    emails = {x.contact.email for x in sp.recipients}
    assert r[0]["email"] not in emails and r[1]["email"] not in emails
    assert (
        sp.exclusions[Exclusion(Reason.SUPPRESSED, "bounce")] == 1
        and sp.exclusions[Exclusion(Reason.SUPPRESSED, "manual")] == 1
    )
    assert r[0]["email"] in " ".join(sp.examples[Exclusion(Reason.SUPPRESSED, "bounce")])


def _with_audience(ws: Workspace, audience_yaml: str) -> None:
    path = ws.root / "campaigns" / "december.yaml"
    text = path.read_text()
    text = text.replace("      did_not_open: circular\n", audience_yaml)
    path.write_text(text)


def test_did_not_open_ignores_machine_opens(ws: Workspace, ledger: Ledger) -> None:
    r = rows(ledger)
    sp = _plan(ws, "last-call")
    assert len(sp.recipients) == 57
    assert any("no tracking events recorded yet" in n for n in sp.notes)
    ingest(
        ledger,
        [
            ev(r[0], "open", sg_machine_open=False, sg_event_id="1"),
            ev(r[1], "open", sg_machine_open=True, sg_event_id="2"),
            ev(r[2], "open", sg_machine_open="true", sg_event_id="3"),  # CSV-style boolean
            ev(r[3], "click", url="https://www.escr-net.org/", sg_event_id="4"),
        ],
        "webhook",
    )
    sp = _plan(ws, "last-call")
    emails = {x.contact.email for x in sp.recipients}
    assert r[0]["email"] not in emails and r[3]["email"] not in emails
    assert r[1]["email"] in emails and r[2]["email"] in emails
    assert len(emails) == 55 and sp.exclusions[Exclusion(Reason.OPENED, step="circular")] == 2


def test_did_not_click_and_clicked_link(ws: Workspace, ledger: Ledger) -> None:
    r = rows(ledger)
    ingest(
        ledger,
        [
            ev(r[0], "click", url="https://www.escr-net.org/", sg_event_id="1"),
            ev(r[1], "click", url="https://www.ohchr.org/en/treaty-bodies/cescr", sg_event_id="2"),
            ev(r[2], "open", sg_event_id="3"),
        ],
        "webhook",
    )
    _with_audience(ws, "      did_not_click: circular\n")
    sp = _plan(ws, "last-call")
    assert {x.contact.email for x in sp.recipients} == {x["email"] for x in r[2:]}
    assert sp.exclusions[Exclusion(Reason.CLICKED, step="circular")] == 2
    shutil.copy(ws.root / "campaigns" / "december.yaml", ws.root / "dec.bak")
    path = ws.root / "campaigns" / "december.yaml"
    path.write_text(
        path.read_text().replace(
            "      did_not_click: circular\n", "      clicked: {step: circular, link: committee}\n"
        )
    )
    sp = _plan(ws, "last-call")
    assert [x.contact.email for x in sp.recipients] == [r[1]["email"]]
    assert sp.exclusions[Exclusion(Reason.DID_NOT_CLICK, "committee", "circular")] == 56
    path.write_text(path.read_text().replace("link: committee}", "}"))
    sp = _plan(ws, "last-call")
    assert {x.contact.email for x in sp.recipients} == {r[0]["email"], r[1]["email"]}
