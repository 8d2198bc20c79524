"""SendGrid's limits: ≤ batch_size (≤ 1000) personalizations per request, each address once per
request, substitutions and custom_args ≤ 10,000 bytes per personalization, a request < 30 MB."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.exceptions import ListError
from outreach.ledger import new_id
from outreach.transports.base import Batch
from outreach.transports.sendgrid import (
    MAX_FIELD_BYTES,
    MAX_PERSONALIZATIONS,
    MAX_REQUEST_BYTES,
    SendGridTransport,
    _dumps,
)
from outreach.workspace import Workspace
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import KEY, copy_fixture, edit, plan_only, run_send, use_fake


@pytest.fixture
def sg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake(monkeypatch, "http://127.0.0.1:9")  # nothing is sent in these tests
    return copy_fixture(tmp_path / "ws")


def _note(ws: Path, email: str, note: str) -> None:
    edit(
        ws / "lists/contacts.csv",
        f"{email},Dev,Patel,Seva,IN,en,member,x",
        f"{email},Dev,Patel,Seva,IN,en,member,{note}",
    )


def test_documented_limits() -> None:
    assert MAX_PERSONALIZATIONS == 1000
    assert MAX_FIELD_BYTES == 10_000
    assert MAX_REQUEST_BYTES == 30_000_000


def test_recipient_over_the_substitutions_limit_is_named(sg: Path) -> None:
    _note(sg, "dev@example.org", "n" * 6000)  # printed in HTML and text: 12,000+ bytes
    with pytest.raises(ListError) as exc:
        plan_only(sg, "sg", steps=("note",))
    text = str(exc.value)
    assert "dev@example.org" in text
    assert "lists/contacts.csv:5" in text
    assert "substitutions" in text and "10,000" in text
    assert "[[h:contact.note]] is 6,000 bytes" in text
    assert "never truncates" in text


def test_recipient_over_the_custom_args_limit_is_named(sg: Path) -> None:
    edit(sg / "lists/contacts.csv", "email,first_name", "id,email,first_name")
    text = (sg / "lists/contacts.csv").read_text().splitlines()
    rows = [text[0]] + [f"id{i}," + line for i, line in enumerate(text[1:])]
    rows[2] = "x" * 10_001 + rows[2][rows[2].index(",") :]
    (sg / "lists/contacts.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ListError) as exc:
        plan_only(sg, "sg", steps=("note",))
    assert "ben@example.org" in str(exc.value)
    assert "custom_args" in str(exc.value)


def test_long_values_under_the_limit_travel_whole(
    sg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    note = "é" * 2000  # 4,000 bytes in UTF-8, printed twice (HTML, text): under 10,000
    _note(sg, "dev@example.org", note)
    with FakeSendGrid(key=KEY) as fake:
        use_fake(monkeypatch, fake.url)
        summary, _ = run_send(sg, "sg", steps=("note",))
    assert summary.sent == 7
    dev = next(m for m in fake.messages if m.to == "dev@example.org")
    assert f"Note: {note}" in dev.text


# ------------------------------------------------------------------------------------------
# split(): a property test over synthetic recipients


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    use_fake(mp, "http://127.0.0.1:9")
    ws = copy_fixture(tmp_path_factory.mktemp("split") / "ws")
    plan = plan_only(ws, "sg", steps=("note",))
    batch = next(b for b in plan.steps[0].batches if b.size == 2)
    yield Workspace.open(ws), plan.campaign, batch
    mp.undo()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 60),
    cap=st.integers(1, 12),
    addresses=st.integers(1, 80),
    budget=st.sampled_from([None, 1, 3, 8]),
    data=st.data(),
)
def test_split_respects_every_limit(material, n, cap, addresses, budget, data) -> None:
    ws, campaign, batch = material
    t = SendGridTransport(ws, campaign)
    t.max_batch = cap
    template = batch.recipients[0]
    picks = data.draw(st.lists(st.integers(0, addresses - 1), min_size=n, max_size=n))
    recipients = [
        dataclasses.replace(template, send_id=new_id(), to=f"r{k}@example.org") for k in picks
    ]
    if budget is not None:
        # room for `budget` plain personalizations per request (at least one must always fit)
        shape = t._shape(batch.variant, batch.step.id, False)
        base = len(shape.common.encode()) + len('{"personalizations":[]}')
        per = t._measure(batch.variant, batch.step.id, recipients[0], shape) + 1
        t.max_request_bytes = base + per * budget + 250
    chunks = t.split(batch.variant, recipients)
    got = [r.send_id for c, _ in chunks for r in c]
    assert sorted(got) == sorted(r.send_id for r in recipients)  # everyone exactly once
    for c, _ in chunks:
        assert 1 <= len(c) <= cap
        addrs = [r.to.lower() for r in c]
        assert len(addrs) == len(set(addrs))  # each address once per request
        body = t.payload(
            Batch("x", campaign, batch.step, batch.variant, c, provider_batch_id="b" * 40)
        )
        assert len(body.encode()) < t.max_request_bytes
        json.loads(body)
    minimum = -(-n // cap)
    distinct = len(set(picks)) == n
    if distinct and budget is None:
        assert len(chunks) == minimum
    notes = [note for _, ns in chunks for note in ns]
    assert bool(notes) == (len(chunks) > minimum)


def test_split_notes_say_why(material) -> None:
    ws, campaign, batch = material
    t = SendGridTransport(ws, campaign)
    r0 = batch.recipients[0]
    same = [dataclasses.replace(r0, send_id=new_id(), to="same@example.org") for _ in range(3)]
    chunks = t.split(batch.variant, same)
    assert [len(c) for c, _ in chunks] == [1, 1, 1]
    assert "an address may appear only once per request" in chunks[0][1][0]
    t.max_request_bytes = 1  # nothing fits: one message alone is over the limit
    with pytest.raises(ListError, match="30 MB"):
        t.split(batch.variant, [r0])


def test_plan_prints_the_split_note(sg: Path) -> None:
    edit(sg / "campaigns/sg.yaml", "  batch_size: 2\n", "  batch_size: 1\n")
    plan = plan_only(sg, "sg", steps=("note",))
    notes = plan.steps[0].notes
    assert any(
        n.startswith(
            "SendGrid: 7 request(s) for 7 recipient(s) in 6 variant(s), up to 1 per request (minimum 7)"
        )
        for n in notes
    )


# ------------------------------------------------------------------------------------------
# The fast paths agree with the reference ones


_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    # the worst cases: what HTML escaping, JSON escaping, urlencode and upper() grow most
    st.text(alphabet=st.sampled_from('"<&\\\x01ßﬁ😀é a'), max_size=150),
)


def _as_received(data: dict, personalizations) -> list[tuple]:
    """What SendGrid builds per personalization of a request body: subject, HTML and text with
    the substitutions applied (as the fake does), merged custom_args and headers."""
    content = {c["type"]: c["value"] for c in data["content"]}
    filler = FakeSendGrid()._filler
    out = []
    for p in personalizations:
        fill = filler(p.get("substitutions") or {})
        out.append(
            (
                p["to"],
                fill(data["subject"]),
                fill(content["text/html"]),
                fill(content["text/plain"]),
                {**data.get("custom_args", {}), **p["custom_args"]},
                {**data.get("headers", {}), **p.get("headers", {})},
                p.get("send_at"),
            )
        )
    return out


def received(t: SendGridTransport, body: str) -> list[tuple]:
    """What SendGrid builds from a request body (the fast path's)."""
    data = json.loads(body)
    return _as_received(data, data["personalizations"])


def reference(t: SendGridTransport, batch: Batch) -> list[tuple]:
    """The same from the plain form: every marker filled from :meth:`personalization`."""
    shape = t._shape(batch.variant, batch.step.id, batch.test)
    data = json.loads("{" + shape.common + "}")
    return _as_received(data, (t.personalization(batch, r) for r in batch.recipients))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_the_compact_request_says_what_the_plain_one_says(material, data) -> None:
    """Short keys, shared columns, shared prefixes and suffixes, values moved into the content:
    each recipient still gets exactly the plain personalization, and the request is never
    larger than the plain form (which split() sizes)."""
    ws, campaign, batch = material
    t = SendGridTransport(ws, campaign)
    r0 = batch.recipients[0]
    n = data.draw(st.integers(1, 6))
    shared = data.draw(_text)  # some recipients share values: columns can be constant
    recipients = []
    for k in range(n):
        values = {
            key: (shared if data.draw(st.booleans()) else data.draw(_text))
            if isinstance(v, str)
            else v
            for key, v in r0.values.items()
        }
        contact = dataclasses.replace(
            r0.contact, first_name=data.draw(_text), last_name=data.draw(_text)
        )
        recipients.append(
            dataclasses.replace(
                r0, _values=values, contact=contact, send_id=new_id(), to=f"r{k}@example.org"
            )
        )
    b = Batch("x", campaign, batch.step, batch.variant, recipients)
    body = t.payload(b)
    assert received(t, body) == reference(t, b)
    plain = sum(len(_dumps(t.personalization(b, r)).encode()) + 1 for r in recipients)
    shape = t._shape(b.variant, b.step.id, False)
    assert len(body.encode()) <= len(shape.common.encode()) + plain + 30


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_size_bound_is_never_below_the_exact_size(material, data) -> None:
    ws, campaign, batch = material
    t = SendGridTransport(ws, campaign)
    r0 = batch.recipients[0]
    values = {k: data.draw(_text) if isinstance(v, str) else v for k, v in r0.values.items()}
    contact = dataclasses.replace(
        r0.contact, first_name=data.draw(_text), last_name=data.draw(_text)
    )
    r = dataclasses.replace(r0, _values=values, contact=contact, send_id=new_id())
    b = Batch("x", campaign, batch.step, batch.variant, [r])
    shape = t._shape(batch.variant, batch.step.id, False)
    # the quick size bound used by split() is never below the exact size
    bound = t._bounder(batch.variant, batch.step.id, shape)
    try:
        exact = t._measure(batch.variant, batch.step.id, r, shape)
    except ListError:  # really over 10,000 bytes: the bound must say so too
        with pytest.raises(ListError):
            bound(r)
        return
    assert bound(r) >= exact
    subs = t.personalization(b, r).get("substitutions", {})
    assert bound.subs(r.values) >= len(
        json.dumps(subs, ensure_ascii=False, separators=(",", ":")).encode()
    )


def test_every_planned_request_says_what_the_plain_one_says(sg: Path) -> None:
    plan = plan_only(sg, "sg", steps=("note",))
    t = plan.transport
    for b in plan.steps[0].batches:
        assert received(t, t.payload(b)) == reference(t, b)
