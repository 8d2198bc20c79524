"""``outreach users`` and ``outreach audit`` through the CLI (CliRunner), on every store backend:
prompts, --password-stdin, errors for people, and no secret ever printed or stored in clear."""

from __future__ import annotations

import json

import pytest

from tests import stores

pytestmark = [pytest.mark.both_backends, pytest.mark.usefixtures("fast_argon2")]

PASSWORD = "a long staff password"


def add(cli, ws, email="ana@example.org", role="admin", password=PASSWORD, *extra):
    return cli(
        ws, "users", "add", email, "--role", role, "--password-stdin", *extra, input=password + "\n"
    )


def test_add_asks_for_the_password_twice_without_echo(cli, workspace) -> None:
    r = cli(
        workspace,
        "users",
        "add",
        "Ana@Example.org",
        "--role",
        "viewer",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert r.exit_code == 0, r.output
    assert "Password:" in r.output and "Repeat for confirmation:" in r.output
    assert "added ana@example.org (viewer)" in r.output
    assert PASSWORD not in r.output
    [user] = stores.rows(workspace, "users")
    assert (user["email"], user["role"]) == ("ana@example.org", "viewer")
    assert user["password_hash"].startswith("$argon2id$") and PASSWORD not in repr(user)


def test_add_reads_the_password_from_stdin(cli, workspace) -> None:
    r = add(
        cli,
        workspace,
        "ana@example.org",
        "admin",
        PASSWORD,
        "--by",
        "coordinator",
        "--reason",
        "runs the campaign",
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "added ana@example.org (admin)"
    [entry] = stores.rows(workspace, "audit_log")
    assert (entry["who"], entry["action"], entry["target"], entry["why"], entry["via"]) == (
        "coordinator",
        "user_add",
        "ana@example.org",
        "runs the campaign",
        "cli",
    )


@pytest.mark.parametrize(
    ("email", "role", "password", "message"),
    [
        (
            "ana@example.org",
            "admin",
            "tiny-pw",
            "the password is too short (7 characters; at least 12)",
        ),
        ("not-an-address", "admin", PASSWORD, "'not-an-address' is not a valid address"),
        ("ana@example.org", "admin", "ana@example.org", "must not be the account's address"),
    ],
)
def test_add_refuses_bad_input_in_one_line(cli, workspace, email, role, password, message):
    r = add(cli, workspace, email, role, password)
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and message in r.output.splitlines()[0]
    assert "Traceback" not in r.output and password not in r.output.replace(email, "")
    assert stores.rows(workspace, "users") == []


def test_an_unknown_role_is_a_usage_error(cli, workspace) -> None:
    r = add(cli, workspace, "ana@example.org", "owner")
    assert r.exit_code == 2 and "'owner' is not one of 'viewer', 'admin'" in r.output


def test_an_account_is_added_once(cli, workspace) -> None:
    assert add(cli, workspace).exit_code == 0
    r = add(cli, workspace, "ANA@example.org", "viewer")
    assert r.exit_code == 1 and "ana@example.org already has an account" in r.output
    assert "outreach users set-password" in r.output


def test_list_shows_accounts_without_secrets(cli, workspace) -> None:
    assert cli(workspace, "users", "list").output.startswith("no accounts yet")
    add(cli, workspace, "ana@example.org", "admin")
    add(cli, workspace, "bo@example.org", "viewer")
    r = cli(workspace, "users", "list")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].startswith("ana@example.org  admin  last login never  sessions 0")
    assert lines[1].startswith("bo@example.org  viewer")
    data = json.loads(cli(workspace, "users", "list", "--json").output)
    assert [(a["email"], a["role"], a["tokens"]) for a in data] == [
        ("ana@example.org", "admin", []),
        ("bo@example.org", "viewer", []),
    ]
    assert "argon2" not in r.output and "hash" not in json.dumps(data)


def test_set_password_changes_it_and_ends_sessions(cli, workspace) -> None:
    from outreach import accounts
    from outreach.store import Store
    from tests.dates import webhook_now

    add(cli, workspace)
    now = webhook_now()
    with stores.open_store(workspace) as store:
        attempt = accounts.begin_login(store, "ana@example.org", "127.0.0.1", now)
        check = accounts.check_password(attempt.user.password_hash, PASSWORD)
        assert accounts.finish_login(store, attempt, check, now, client=None, user_agent=None)
        assert store.session_count() == 1
    new = "another long password"
    r = cli(
        workspace, "users", "set-password", "ana@example.org", "--password-stdin", input=new + "\n"
    )
    assert r.exit_code == 0, r.output
    assert "new password set for ana@example.org; its sessions have ended" in r.output
    assert new not in r.output
    with Store.open(stores.store_url(workspace)) as store:
        assert store.session_count() == 0
        user = store.user_by_email("ana@example.org")
        assert accounts.check_password(user.password_hash, new).ok
        assert not accounts.check_password(user.password_hash, PASSWORD).ok
    r = cli(
        workspace,
        "users",
        "set-password",
        "nobody@example.org",
        "--password-stdin",
        input=new + "\n",
    )
    assert r.exit_code == 1 and "no account nobody@example.org" in r.output


def test_a_token_is_printed_once_and_stored_as_a_digest(cli, workspace) -> None:
    from outreach.accounts import digest

    add(cli, workspace)
    r = cli(workspace, "users", "token", "ana@example.org", "--label", "monitoring")
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert token.startswith("ot_") and len(token) > 40
    token_id = token.split("_")[1]
    assert f"token {token_id} for ana@example.org: shown once" in r.stderr
    [row] = stores.rows(workspace, "api_tokens")
    assert row["id"] == token_id and row["token_hash"] == digest(token)
    assert token not in repr(stores.rows(workspace, "api_tokens"))
    listed = cli(workspace, "users", "list")
    assert f"tokens {token_id}" in listed.output and token not in listed.output
    again = cli(workspace, "users", "token", "ana@example.org").stdout.strip()
    assert again != token


def test_revoke_token(cli, workspace) -> None:
    add(cli, workspace)
    token = cli(workspace, "users", "token", "ana@example.org").stdout.strip()
    token_id = token.split("_")[1]
    r = cli(workspace, "users", "revoke-token", token_id, "--reason", "rotated")
    assert (r.exit_code, r.output.strip()) == (0, f"revoked token {token_id}")
    [row] = stores.rows(workspace, "api_tokens")
    assert row["revoked_at"] is not None
    assert "tokens none" in cli(workspace, "users", "list").output
    r = cli(workspace, "users", "revoke-token", token_id)
    assert r.exit_code == 1 and f"no live API token {token_id}" in r.output


def test_remove_ends_everything(cli, workspace) -> None:
    add(cli, workspace)
    cli(workspace, "users", "token", "ana@example.org")
    r = cli(workspace, "users", "remove", "ana@example.org", "--reason", "left the coalition")
    assert (r.exit_code, r.output.strip()) == (0, "removed ana@example.org")
    assert stores.rows(workspace, "users") == []
    assert all(t["revoked_at"] for t in stores.rows(workspace, "api_tokens"))
    r = cli(workspace, "users", "remove", "ana@example.org")
    assert r.exit_code == 1 and "no account ana@example.org" in r.output


def test_audit_lists_every_change_newest_first(cli, workspace) -> None:
    add(cli, workspace, "ana@example.org", "admin", PASSWORD, "--by", "coordinator")
    token = cli(workspace, "users", "token", "ana@example.org", "--by", "coordinator").stdout
    cli(workspace, "users", "revoke-token", token.split("_")[1], "--by", "coordinator")
    cli(workspace, "users", "remove", "ana@example.org", "--by", "coordinator", "--reason", "left")
    r = cli(workspace, "audit")
    assert r.exit_code == 0
    actions = [line.split()[3] for line in r.output.splitlines()]
    assert actions == ["user_remove", "token_revoke", "token_create", "user_add"]
    assert "coordinator (cli)" in r.output and "— left" in r.output
    assert token.strip() not in r.output
    data = json.loads(cli(workspace, "audit", "--json", "--limit", "1").output)
    assert [e["action"] for e in data] == ["user_remove"]


def test_every_users_command_has_help(cli, workspace) -> None:
    r = cli(workspace, "users", "--help")
    for command in ("add", "list", "remove", "set-password", "token", "revoke-token"):
        assert command in r.output
        sub = cli(workspace, "users", command, "--help")
        assert sub.exit_code == 0 and len(sub.output.splitlines()) > 3
    assert "--password-stdin" in cli(workspace, "users", "add", "--help").output
    assert "--limit" in cli(workspace, "audit", "--help").output
