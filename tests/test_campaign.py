"""Campaign files: YAML traps, validation errors with file:line, cross-references."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach.campaign import load_campaign
from outreach.exceptions import ConfigError
from outreach.yamlload import load_yaml


def edit(ws: Path, old: str, new: str) -> None:
    path = ws / "campaigns" / "december.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(ws: Path, needle: str) -> int:
    lines = (ws / "campaigns" / "december.yaml").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


NY = ZoneInfo("America/New_York")
NOV_2026 = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_shipped_campaign_loads(workspace: Path) -> None:
    c = load_campaign(workspace, "december", now=NOV_2026)
    assert c.recurring and c.edition == 2026
    assert [s.id for s in c.steps] == ["circular", "human-rights-day", "last-call"]
    assert c.steps[0].send_at == datetime(2026, 12, 1, 9, 0, tzinfo=NY)
    assert c.steps[1].local_time
    assert c.steps[2].spec.audience.did_not_open == "circular"
    assert set(c.languages) == {"en", "es", "fr"}


def test_yaml_traps_parse_as_meant(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(
        "country: NO\nother: no\nyes_: Yes\nat: 09:00\nwhen: 2026-12-10 09:00\nn: 012\nm: 12\nok: true\n"
    )
    data, _ = load_yaml(p)
    assert data == {
        "country": "NO",
        "other": "no",
        "yes_": "Yes",
        "at": "09:00",
        "when": "2026-12-10 09:00",
        "n": "012",
        "m": 12,
        "ok": True,
    }


def test_norway_in_a_segment_stays_a_country(workspace: Path) -> None:
    edit(workspace, "    tags: [no-december]", "    tags: [no-december]\n    country: [NO, GB]")
    c = load_campaign(workspace, "december")
    assert c.segments["no-december"].country == ["NO", "GB"]


def test_duplicate_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    p = tmp_path / "d.yaml"
    p.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(p)
    assert "d.yaml:3" in str(err.value) and "line 1" in str(err.value)


def test_yaml_syntax_error_names_the_line(workspace: Path) -> None:
    edit(workspace, "title: December reminder-action circular", "title: [unclosed")
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    assert "campaigns/december.yaml:" in str(err.value)
    assert "YAML syntax error" in str(err.value)


def test_mistyped_key_suggests_the_right_one(workspace: Path) -> None:
    n = line_of(workspace, "  reply_to: ilarrosa")
    edit(workspace, "  reply_to: ilarrosa", "  reply_too: ilarrosa")
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    text = str(err.value)
    assert f"campaigns/december.yaml:{n}" in text
    assert "sender.reply_too" in text
    assert "did you mean 'reply_to'" in text
    assert "missing required key 'reply_to'" in text


def test_wrong_date_names_file_line_and_key(workspace: Path) -> None:
    n = line_of(workspace, "send_at: 12-01 09:00")
    edit(workspace, "send_at: 12-01 09:00", "send_at: 12-32 09:00")
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    assert str(err.value).startswith(
        f"campaigns/december.yaml:{n}: steps[0].send_at: '12-32 09:00' is not a date"
    )
    assert "MM-DD HH:MM, e.g. 12-01 09:00" in str(err.value)


def test_date_without_time_is_an_error(workspace: Path) -> None:
    edit(workspace, "send_at: 12-01 09:00", "send_at: 12-01")
    with pytest.raises(ConfigError, match="has no time of day"):
        load_campaign(workspace, "december")


# -- editions ---------------------------------------------------------------------------------


def one_off(ws: Path) -> None:
    """Turn the shipped yearly campaign into a one-off campaign in 2026."""
    edit(ws, "recurs: yearly\n", "")
    for day in ("12-01", "12-10", "12-15"):
        edit(ws, f"send_at: {day} 09:00", f"send_at: 2026-{day} 09:00")


def test_a_yearly_campaign_writes_dates_without_a_year(workspace: Path) -> None:
    n = line_of(workspace, "send_at: 12-01 09:00")
    edit(workspace, "send_at: 12-01 09:00", "send_at: 2027-12-01 09:00")
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    text = str(err.value)
    assert text.startswith(f"campaigns/december.yaml:{n}: steps[0].send_at:")
    assert "has a year, but the campaign recurs every year" in text and "(12-01 09:00)" in text


def test_a_one_off_campaign_needs_years(workspace: Path) -> None:
    edit(workspace, "recurs: yearly\n", "")
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    assert "'12-01 09:00' has no year" in str(err.value)
    assert "recurs: yearly" in str(err.value)


def test_29_february_is_refused_in_a_yearly_campaign(workspace: Path) -> None:
    edit(workspace, "send_at: 12-01 09:00", "send_at: 02-29 09:00")
    with pytest.raises(ConfigError, match="29 February does not come every year"):
        load_campaign(workspace, "december")


@pytest.mark.parametrize(
    ("now", "edition"),
    [
        ("2026-03-01T00:00:00+00:00", 2026),
        ("2026-12-01T14:30:00+00:00", 2026),
        # the 2026 edition stays current until its last step (15 Dec, 09:00 New York) is 30 days past
        ("2027-01-14T13:59:00+00:00", 2026),
        ("2027-01-14T14:00:00+00:00", 2027),
        ("2027-12-01T15:00:00+00:00", 2027),
        ("2028-12-05T12:00:00+00:00", 2028),
    ],
)
def test_the_current_edition(workspace: Path, now: str, edition: int) -> None:
    c = load_campaign(workspace, "december", now=datetime.fromisoformat(now))
    assert c.edition == edition
    assert c.steps[0].send_at == datetime(edition, 12, 1, 9, tzinfo=NY)
    assert c.steps[2].send_at == datetime(edition, 12, 15, 9, tzinfo=NY)


def test_an_edition_chosen_explicitly(workspace: Path) -> None:
    c = load_campaign(workspace, "december", edition=2015, now=NOV_2026)
    assert c.edition == 2015 and c.steps[1].wall_clock[0].isoformat() == "2015-12-10"
    other = c.for_edition(2030)
    assert other.steps[0].send_at == datetime(2030, 12, 1, 9, tzinfo=NY)
    assert c.steps[0].send_at.year == 2015  # the original is unchanged


def test_a_january_step_belongs_to_the_edition_of_the_december_before(workspace: Path) -> None:
    edit(workspace, "send_at: 12-15 09:00", "send_at: 01-08 09:00")
    c = load_campaign(workspace, "december", edition=2026, now=NOV_2026)
    assert c.steps[2].send_at == datetime(2027, 1, 8, 9, tzinfo=NY)
    # and the 2026 edition stays current until 30 days after it
    mid_jan = datetime(2027, 1, 20, tzinfo=UTC)
    assert load_campaign(workspace, "december", now=mid_jan).edition == 2026


def test_a_one_off_campaign_has_one_edition(workspace: Path) -> None:
    one_off(workspace)
    c = load_campaign(workspace, "december", now=datetime(2029, 1, 1, tzinfo=UTC))
    assert not c.recurring and c.edition == 2026
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december", edition=2027)
    assert "does not recur: its only edition is 2026" in str(err.value)
    assert "recurs: yearly" in str(err.value)


def test_naive_time_uses_campaign_timezone_or_fails_without_one(workspace: Path) -> None:
    edit(workspace, "timezone: America/New_York\n", "")
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    assert "has no timezone and the campaign declares none" in str(err.value)
    assert "steps[0].send_at" in str(err.value)


def test_explicit_offset_wins(workspace: Path) -> None:
    edit(workspace, "send_at: 12-01 09:00", "send_at: 12-01T09:00+01:00")
    c = load_campaign(workspace, "december", now=NOV_2026)
    assert c.steps[0].send_at.utcoffset().total_seconds() == 3600
    assert c.steps[0].send_at == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_local_time_step_rejects_an_offset(workspace: Path) -> None:
    edit(workspace, "send_at: 12-10 09:00", "send_at: 12-10 09:00+02:00")
    with pytest.raises(ConfigError, match="wall-clock time without a UTC offset"):
        load_campaign(workspace, "december")


def test_unknown_segment_in_audience(workspace: Path) -> None:
    n = line_of(workspace, "segments: [members, allies, newcomers]")
    edit(
        workspace, "segments: [members, allies, newcomers]", "segments: [members, alies, newcomers]"
    )
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    text = str(err.value)
    assert f"campaigns/december.yaml:{n}" in text
    assert "unknown segment 'alies'" in text and "did you mean 'allies'" in text


def test_follow_up_must_refer_to_an_earlier_step(workspace: Path) -> None:
    edit(workspace, "did_not_open: circular", "did_not_open: last-call")
    with pytest.raises(ConfigError, match="not an earlier step"):
        load_campaign(workspace, "december")


def test_unknown_campaign_lists_the_existing_ones(workspace: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "decmber")
    assert "did you mean 'december'" in str(err.value)


def test_relationship_value_is_checked(workspace: Path) -> None:
    edit(workspace, "relationship: member", "relationship: memebr")
    with pytest.raises(ConfigError) as err:
        load_campaign(workspace, "december")
    assert "segments.members.relationship" in str(err.value)


def test_unfilled_links_are_warned(workspace: Path) -> None:
    c = load_campaign(workspace, "december", now=NOV_2026)
    warnings = "\n".join(c.warnings())
    assert "model_letter" in warnings
    assert "status_map" not in warnings  # the UN Treaty Collection page is real


def test_missing_subject_in_default_language(workspace: Path) -> None:
    edit(
        workspace, "      en: Take action during December to advance OP-ICESCR ratification!\n", ""
    )
    with pytest.raises(ConfigError, match="no subject in the default language 'en'"):
        load_campaign(workspace, "december")


def test_one_follow_up_filter_per_step(workspace: Path) -> None:
    edit(
        workspace, "did_not_open: circular", "did_not_open: circular\n      did_not_click: circular"
    )
    with pytest.raises(
        ConfigError, match="one follow-up filter, this one has did_not_open and did_not_click"
    ):
        load_campaign(workspace, "december")
