"""Command-line interface. Each command parses its options, calls one library function and
prints the result; errors from the library (:class:`OutreachError`) become one-line messages
here, in one place."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from outreach import __version__
from outreach.exceptions import OutreachError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class OutreachGroup(click.Group):
    """Turns library errors into clean messages and exit code 1 (usage errors exit 2)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OutreachError as exc:
            ws = ctx.obj.get("workspace") if isinstance(ctx.obj, dict) else None
            text = ws.redact(str(exc)) if ws is not None else str(exc)
            raise click.ClickException(text) from None
        except KeyboardInterrupt:
            raise click.ClickException(
                "interrupted. What was handed off is recorded; run the same command again to resume."
            ) from None


def _workspace(ctx: click.Context):
    from outreach.workspace import Workspace

    obj = ctx.ensure_object(dict)
    if "workspace" not in obj:
        try:
            obj["workspace"] = Workspace.open(obj.get("root"))
        except OutreachError as exc:
            raise click.ClickException(str(exc)) from None
    return obj["workspace"]


def edition_option(what: str):
    return click.option(
        "--edition",
        type=click.IntRange(1900, 9999),
        metavar="YEAR",
        help=f"The edition (year) to {what}. Default: the current one (see campaigns/README.md).",
    )


def now_option(f):
    return click.option(
        "--now", "now", metavar="ISO-TIME", hidden=True, help="Pretend it is this time (tests)."
    )(f)


def _now(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@click.group(cls=OutreachGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-C",
    "--workspace",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Workspace folder (with campaigns/, lists/, templates/). Default: the current folder.",
)
@click.version_option(__version__, prog_name="outreach")
@click.pass_context
def main(ctx: click.Context, root: Path | None) -> None:
    """Plan, render, send (once) and track the coalition's email campaigns.

    Typical session: `outreach lists check december`, `outreach send december --dry-run`,
    `outreach send december --test-to you@example.org`, then `outreach send december`.
    """
    ctx.ensure_object(dict)["root"] = root
    if ctx.invoked_subcommand:
        from outreach.store import set_application

        set_application(f"outreach {ctx.invoked_subcommand}")  # how the database shows us


# ------------------------------------------------------------------------------------------
# send / status / preview


@main.command()
@click.argument("campaign")
@click.option(
    "--step",
    "steps",
    multiple=True,
    metavar="ID",
    help="Send only this step (repeatable), even before it is due.",
)
@click.option("--dry-run", is_flag=True, help="Show the plan and stop; nothing is sent or written.")
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="Send at most N messages in this run."
)
@click.option(
    "--test-to",
    multiple=True,
    metavar="EMAIL",
    help="Send one sample per variant to this staff address (repeatable), marked [TEST]; not a campaign send.",
)
@click.option(
    "--transport",
    type=click.Choice(["outbox", "sendgrid"]),
    help="Default: sendgrid when SENDGRID_API_KEY is set, else outbox.",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Send to valid contacts even if some rows have errors (skipped rows are listed).",
)
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Resend messages whose earlier hand-off had an unknown outcome.",
)
@click.option(
    "--resend-cancelled",
    is_flag=True,
    help="Send again to recipients whose scheduled send was cancelled (outreach cancel).",
)
@click.option(
    "--allow-late", is_flag=True, help="Send steps that are more than 24 h overdue without asking."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 32),
    metavar="N",
    help="SendGrid requests in flight at once, 1–32 (default: the campaign's "
    "sendgrid.concurrency, 8). Each is still recorded before it leaves.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Send for real although a readiness check failed (✗), e.g. the previous step passed "
    "0.3 % complaints or 2 % hard bounces.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@edition_option("send")
@now_option
@click.pass_context
def send(
    ctx,
    campaign,
    steps,
    dry_run,
    limit,
    test_to,
    transport,
    skip_invalid,
    resend_unknown,
    resend_cancelled,
    allow_late,
    concurrency,
    force,
    yes,
    edition,
    now,
):
    """Send the steps of CAMPAIGN that are due (or --step ID), each recipient exactly once.

    Prints a plan first (recipients per segment, country status and language, exclusions,
    batches and the fast readiness checks), asks for confirmation, shows progress and ends with
    a summary. A real send stops on a failed check (✗), such as the reputation guard, unless
    --force. Re-running sends only what has not been sent; an interrupted run can simply be run
    again.
    """
    from outreach.console import RichUI, print_summary
    from outreach.send import SendOptions
    from outreach.send import send as run_send

    ws = _workspace(ctx)
    options = SendOptions(
        steps=tuple(steps),
        dry_run=dry_run,
        limit=limit,
        test_to=tuple(test_to),
        transport=transport,
        skip_invalid=skip_invalid,
        resend_unknown=resend_unknown,
        resend_cancelled=resend_cancelled,
        yes=yes,
        allow_late=allow_late,
        force=force,
        now=_now(now),
        edition=edition,
        concurrency=concurrency,
    )
    summary = run_send(ws, campaign, options, RichUI())
    print_summary(summary)
    if summary.paused or summary.failed:
        ctx.exit(1)


@main.command()
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--skip",
    multiple=True,
    type=click.Choice(["dns", "sendgrid", "endpoints", "spamassassin"]),
    help="Leave out a part that needs the network or a slow tool (repeatable).",
)
@edition_option("check")
@now_option
@click.pass_context
def doctor(ctx, campaign, as_json, skip, edition, now):
    """Check whether CAMPAIGN is ready to send, and say what to fix.

    DNS of the From domain (SPF, DKIM, DMARC), the SendGrid account (key, sender, Event
    Webhook, categories), the unsubscribe endpoints over https, the content (unfilled links,
    Gmail clipping, alt text, SpamAssassin) and the last step's complaint and bounce rates.
    One line per check: ✓ ok, ! warning, ✗ failure, with a fix under each ! and ✗.
    Exit code: 0 all good, 1 a failure, 3 warnings only.
    """
    from outreach.console import print_checkup
    from outreach.doctor import doctor as run_doctor

    checkup = run_doctor(_workspace(ctx), campaign, now=_now(now), edition=edition, skip=skip)
    if as_json:
        click.echo(json.dumps(checkup.as_dict(), indent=2, ensure_ascii=False))
    else:
        print_checkup(
            checkup,
            f"outreach doctor {checkup.campaign} ({checkup.edition} edition): is it ready to send?",
        )
    ctx.exit(checkup.exit_code)


@main.command()
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@edition_option("show")
@now_option
@click.pass_context
def status(ctx, campaign, as_json, edition, now):
    """Show each step of CAMPAIGN's edition: when it is due, its recipients and the ledger
    counts; then every edition the ledger knows."""
    from rich.table import Table

    from outreach.console import console
    from outreach.send import status as get_status

    data = get_status(_workspace(ctx), campaign, _now(now), edition=edition)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(
        title=f"{data['campaign']}, {data['edition']} edition (transport: {data['transport']})"
    )
    for col in ("step", "due", "recipients", "sent", "pending", "failed", "unknown"):
        table.add_column(col, justify="left" if col in ("step", "due") else "right")
    for s in data["steps"]:
        due = s["due_at"].replace("T", " ")[:16] + (" local" if s["local_time"] else "")
        table.add_row(
            s["id"],
            due + ("" if s["due"] else " (not yet)"),
            *(str(s[k]) for k in ("recipients", "sent", "pending", "failed", "unknown")),
        )
    console.print(table)
    if data["invalid_rows"]:
        console.print(
            f"{data['invalid_rows']} invalid row(s) in the lists are not counted (outreach lists check)."
        )
    editions = Table(title="Editions", title_justify="left")
    for col in ("edition", "sent", "pending", "failed", "unknown", "cancelled"):
        editions.add_column(col, justify="left" if col == "edition" else "right")
    for e in data["editions"]:
        label = str(e["edition"]) + (" (current)" if e["current"] else "")
        editions.add_row(
            label, *(str(e[k]) for k in ("sent", "pending", "failed", "unknown", "cancelled"))
        )
    console.print(editions)


@main.command()
@click.argument("campaign")
@click.option("--step", "step", required=True, metavar="ID", help="The step whose sends to cancel.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@edition_option("cancel")
@now_option
@click.pass_context
def cancel(ctx, campaign, step, yes, edition, now):
    """Cancel the scheduled SendGrid deliveries of STEP that have not gone out yet.

    Local-time steps are handed to SendGrid up to 72 h ahead; this cancels them through
    SendGrid's scheduled sends and marks them cancelled in the ledger (they are not resent).
    """
    from outreach.console import RichUI, say
    from outreach.scheduled import cancel as run_cancel

    ws = _workspace(ctx)
    preview = run_cancel(ws, campaign, step, now=_now(now), dry_run=True, edition=edition)
    if preview.nothing:
        say(
            f"Nothing to cancel: step {step} has no scheduled SendGrid delivery still ahead"
            + (f" ({preview.delivered} already delivered)." if preview.delivered else ".")
        )
        return
    question = (
        f"Cancel {preview.cancelled} scheduled message(s) of step {step} "
        f"({len(preview.batches)} SendGrid batch(es))?"
    )
    if not (yes or RichUI().confirm(question)):
        raise click.ClickException("not cancelled")
    result = run_cancel(ws, campaign, step, now=_now(now), edition=edition)
    for batch_id, outcome, n in result.batches:
        say(f"SendGrid batch {batch_id}: {outcome} ({n} message(s))")
    say(
        f"Cancelled {result.cancelled} scheduled message(s) of step {step}; they will not be resent."
    )
    if result.last_minute:
        say(
            f"{result.last_minute} of them were due within 10 minutes: SendGrid does not "
            "guarantee those are stopped."
        )
    if result.delivered:
        say(f"{result.delivered} message(s) of this step had already gone out.")


@main.command()
@click.argument("campaign")
@click.option("--step", "step", required=True, metavar="ID", help="The step to preview.")
@click.option("--contact", "email", metavar="EMAIL", help="The contact's address.")
@click.option(
    "--row",
    metavar="N",
    help="The contact's row in the list (as a spreadsheet shows it; FILE:N for another list).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the files. Default: previews/CAMPAIGN/STEP/.",
)
@click.option("--open", "open_", is_flag=True, help="Open the HTML in a browser.")
@edition_option("preview")
@now_option
@click.pass_context
def preview(ctx, campaign, step, email, row, output, open_, edition, now):
    """Write the HTML and text of STEP for one contact, exactly as it would be sent."""
    from outreach.preview import preview as run_preview

    if bool(email) == bool(row):
        raise click.UsageError("pass exactly one of --contact EMAIL or --row N")
    r = run_preview(
        _workspace(ctx),
        campaign,
        step,
        email=email,
        row=row,
        out_dir=output,
        edition=edition,
        now=_now(now),
    )
    c = r.contact
    click.echo(
        f"{c.email} ({c.where}): {c.relationship}, {c.country or 'no country'}, "
        f"language {r.language}, variant {r.variant.id}, {r.edition} edition"
    )
    click.echo(f"Subject: {r.message.subject}")
    click.echo(f"HTML:    {r.html_path} ({len(r.message.html.encode()) / 1024:.1f} KB)")
    click.echo(f"Text:    {r.text_path}")
    if not r.identical_to_direct:
        raise click.ClickException(
            "internal check failed: the variant render differs from a direct render"
        )
    if open_:
        import webbrowser

        if not webbrowser.open(r.html_path.resolve().as_uri()):
            click.echo(f"No browser to open here: open {r.html_path} yourself.")


# ------------------------------------------------------------------------------------------
# lists / countries


@main.group()
def lists():
    """Check contact lists."""


@lists.command("check")
@click.argument("campaign", required=False)
@click.option(
    "--list",
    "paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Check this CSV/XLSX file (repeatable) instead of the campaign's lists, e.g. before "
    "adding it (try lists/examples/with-errors.csv).",
)
@edition_option("count country statuses for")
@now_option
@click.pass_context
def lists_check(ctx, campaign, paths, edition, now):
    """Validate the lists of CAMPAIGN row by row and count contacts per segment.

    Reports invalid addresses, duplicates, unknown countries (with a suggestion), unknown
    relationships or languages, rows that cannot be decoded, and HTML or code in names.
    Exits 1 when there are errors.
    """
    from outreach.campaign import load_campaign, only_campaign
    from outreach.console import print_check
    from outreach.contacts import check_lists
    from outreach.countries import CountryTable

    ws = _workspace(ctx)
    c = load_campaign(ws.root, campaign or only_campaign(ws.root), edition=edition, now=_now(now))
    countries = CountryTable.load(c.countries_path())
    report = check_lists(c, countries, [ws.root / p for p in paths] or None)
    as_of = f"{report.as_of.isoformat()}, {c.edition} edition"
    print_check(report.contacts, report.counts, as_of, report.warnings)
    if report.contacts.errors:
        ctx.exit(1)


@main.group()
def countries():
    """Country data (lists/countries.csv)."""


@countries.command("build")
@click.option(
    "--source",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder with op-icescr-status.csv and icescr-parties.csv. Default: ../shared/data.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: lists/countries.csv."
)
@click.pass_context
def countries_build(ctx, source, out):
    """Regenerate lists/countries.csv from the shared treaty data."""
    from outreach.countries import build_countries

    ws = _workspace(ctx)
    source = source or ws.root.parent / "shared" / "data"
    out = out or ws.root / "lists" / "countries.csv"
    handles = ws.root / "lists" / "government-handles.csv"
    notes = build_countries(source, out, handles if handles.exists() else None)
    for n in notes:
        click.echo(n)
    click.echo(f"wrote {out}")


# ------------------------------------------------------------------------------------------
# events / suppressions / report


def serve_options(f):
    """The options of `outreach serve` (and of its old name, `outreach events serve`)."""
    options = [
        click.option(
            "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
        ),
        click.option(
            "--port",
            default=8025,
            show_default=True,
            type=click.IntRange(0, 65535),
            help="Port to listen on (0: any free port).",
        ),
        click.option(
            "--workers",
            default=1,
            show_default=True,
            type=click.IntRange(min=1),
            metavar="N",
            help="Worker processes (each with its own database connection).",
        ),
        click.option(
            "--proxy-headers",
            is_flag=True,
            help="Behind a reverse proxy (Caddy, nginx): trust its X-Forwarded-Proto and "
            "X-Forwarded-For, so that generated URLs and redirects keep https.",
        ),
        click.option(
            "--forwarded-allow-ips",
            metavar="ADDRESSES",
            help="With --proxy-headers: the proxies' addresses or networks, comma-separated "
            "('*' trusts any). Default: 127.0.0.1,::1.",
        ),
        click.option(
            "--max-age",
            default=600,
            show_default=True,
            type=click.IntRange(min=1),
            metavar="SECONDS",
            help="Reject signed requests whose timestamp is further than this from now (replays).",
        ),
        click.option(
            "--max-body",
            default=5 * 1024 * 1024,
            show_default=True,
            type=click.IntRange(min=1),
            metavar="BYTES",
            help="Reject webhook bodies larger than this (413).",
        ),
        click.option(
            "--insecure-no-verify",
            "insecure",
            is_flag=True,
            help="Accept unsigned events (local tests only; warns on every request).",
        ),
        click.option(
            "--insecure-no-auth",
            "no_auth",
            is_flag=True,
            help="Serve the staff dashboard and API without a login, everyone an admin (local "
            "use only; warns loudly). Otherwise OUTREACH_SECRET_KEY must be set.",
        ),
        now_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


@main.command("serve")
@serve_options
@click.pass_context
def serve(ctx, now, **options):
    """Run the web service: SendGrid's signed Event Webhook (POST /events), the one-click
    unsubscribe links (/u/<id>), GET /healthz (which also checks the database), and behind a
    staff login (/login; accounts: `outreach users`) the dashboard and the JSON API (/api/).

    Needs SENDGRID_WEBHOOK_PUBLIC_KEY and OUTREACH_SECRET_KEY (environment or .env). Events are
    answered 2xx only once they are stored; forged, replayed, malformed and oversized requests
    are rejected and counted in the log. Behind Caddy or nginx, pass --proxy-headers.
    Deployment: docs/deploy.md.
    """
    from outreach.web.serve import ServeOptions
    from outreach.web.serve import serve as run_serve

    at = _now(now)
    run_serve(_workspace(ctx), ServeOptions(**options, now=at.timestamp() if at else None))


@main.group()
def events():
    """Tracking events: imports of exported events (the webhook is `outreach serve`)."""


@events.command("serve")
@serve_options
@click.pass_context
def events_serve(ctx, **options):
    """The old name of `outreach serve` (same options); kept so that existing units work."""
    click.echo("note: `outreach events serve` is now `outreach serve` (same options).", err=True)
    ctx.invoke(serve, **options)


@events.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def events_import(ctx, files, as_json):
    """Load events from exported FILES (JSON array, NDJSON or CSV); duplicates are skipped."""
    from outreach.console_tracking import print_import
    from outreach.events import import_files

    result = import_files(_workspace(ctx), files)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "total": result.total.as_dict(),
                    "files": {k: v.as_dict() for k, v in result.files.items()},
                },
                indent=2,
            )
        )
        return
    print_import(result)


@main.group()
def suppressions():
    """Addresses that are never emailed again (bounces, complaints, unsubscribes, manual)."""


@suppressions.command("list")
@click.option("--email", metavar="EMAIL", help="Only this address (with its history).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def suppressions_list(ctx, email, as_json):
    """List active suppressions (newest first)."""
    from dataclasses import asdict

    from outreach.console_tracking import print_suppressions
    from outreach.suppressions import listing

    result = listing(_workspace(ctx), email)
    if as_json:
        click.echo(json.dumps(asdict(result), indent=2))
        return
    print_suppressions(result)


@suppressions.command("add")
@click.argument("email")
@click.option("--reason", required=True, help="Why (recorded in the log).")
@click.option("--by", metavar="WHO", help="Who is making the change. Default: the OS user.")
@click.pass_context
def suppressions_add(ctx, email, reason, by):
    """Suppress EMAIL by hand."""
    from outreach.suppressions import add

    changed = add(_workspace(ctx), email, reason, by)
    click.echo(f"suppressed {email}" if changed else f"{email} was already suppressed")


@suppressions.command("remove")
@click.argument("email")
@click.option("--reason", required=True, help="Why (recorded in the log).")
@click.option("--by", metavar="WHO", help="Who is making the change. Default: the OS user.")
@click.pass_context
def suppressions_remove(ctx, email, reason, by):
    """Lift the suppression of EMAIL (it can be emailed again)."""
    from outreach.suppressions import remove

    changed = remove(_workspace(ctx), email, reason, by)
    if not changed:
        raise click.ClickException(f"{email} is not suppressed")
    click.echo(f"lifted the suppression of {email}")


@suppressions.command("sync")
@click.option("--by", metavar="WHO", help="Recorded in the log. Default: the OS user.")
@click.pass_context
def suppressions_sync(ctx, by):
    """Add SendGrid's bounces, spam reports, invalid emails and unsubscribes to the local list.

    Blocks are read and counted but not suppressed (they are temporary refusals).
    """
    from outreach.suppressions import sync

    res = sync(_workspace(ctx), by=by)
    for name, n in res.fetched.items():
        click.echo(f"{name:>20}: {n} read")
    click.echo(
        f"{res.changed} new suppression(s) in {res.requests} request(s)"
        + (
            f"; {res.blocks_not_suppressed} block(s) not suppressed (soft)"
            if res.blocks_not_suppressed
            else ""
        )
    )


@main.command()
@click.argument("campaign")
@click.option("--step", metavar="ID", help="Only this step.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="table for the terminal; json/csv are stable (docs/report-format.md); html is one self-contained file with charts.",
)
@click.option(
    "--transport",
    type=click.Choice(["outbox", "sendgrid"]),
    help="Whose sends to report on. Default: sendgrid if it sent anything, else outbox.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.option(
    "--edition",
    type=click.IntRange(1900, 9999),
    metavar="YEAR",
    help="The edition (year) to report on. Default: the latest with sends.",
)
@click.option(
    "--compare",
    type=click.IntRange(1900, 9999),
    metavar="YEAR",
    help="Show this other edition side by side (sent, delivered, open and click rates, clicks "
    "per link, unsubscribes) with the change.",
)
@now_option
@click.pass_context
def report(ctx, campaign, step, fmt, transport, output, edition, compare, now):
    """Delivery, opens (people, not machines), clicks per link, bounces and unsubscribes of
    CAMPAIGN, per step and by segment, relationship, country status, country and language."""
    from outreach import report as reports
    from outreach.report_formats import render, render_comparison

    ws = _workspace(ctx)
    options = {"transport": transport, "edition": edition, "now": _now(now)}
    if compare is not None:
        cmp = reports.comparison(ws, campaign, compare, step, **options)
        if fmt == "table" and output is None:
            from outreach.report_table import print_comparison

            print_comparison(cmp)
            return
        text = render_comparison(cmp, fmt)
    else:
        rep = reports.report(ws, campaign, step, **options)
        if fmt == "table" and output is None:
            from outreach.report_table import print_report

            print_report(rep)
            return
        text = render(rep, fmt)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


# ------------------------------------------------------------------------------------------
# users (staff accounts of `outreach serve`)


def _new_password(password_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked twice without echo."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def by_option(f):
    return click.option(
        "--by", metavar="WHO", help="Who is making the change (audit log). Default: the OS user."
    )(f)


def why_option(f):
    return click.option("--reason", "why", metavar="TEXT", help="Why (recorded in the audit log).")(
        f
    )


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)


@main.group()
def users():
    """Staff accounts for the dashboard and the JSON API of `outreach serve`.

    viewers read; admins also change suppressions. Passwords are stored as argon2 hashes,
    API tokens as SHA-256 digests; every change is in the audit log (`outreach audit`).
    """


@users.command("add")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(["viewer", "admin"]),
    required=True,
    help="viewer: reads the dashboard and the API; admin: also changes suppressions.",
)
@password_stdin_option
@by_option
@why_option
@click.pass_context
def users_add(ctx, email, role, password_stdin, by, why):
    """Create an account for EMAIL (the password is asked for, or read with --password-stdin)."""
    from outreach.accounts import add_user
    from outreach.suppressions import default_user

    ws = _workspace(ctx)
    key = add_user(ws, email, role, _new_password(password_stdin), by=by or default_user(), why=why)
    click.echo(f"added {key} ({role})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def users_list(ctx, as_json):
    """List the accounts: role, last login, open sessions, live API token ids."""
    from dataclasses import asdict

    from outreach.accounts import accounts

    found = accounts(_workspace(ctx))
    if as_json:
        click.echo(json.dumps([asdict(a) for a in found], indent=2))
        return
    if not found:
        click.echo("no accounts yet: outreach users add EMAIL --role admin")
        return
    for a in found:
        tokens = ", ".join(a.tokens) or "none"
        click.echo(
            f"{a.email}  {a.role}  last login {a.last_login_at or 'never'}  "
            f"sessions {a.sessions}  tokens {tokens}"
        )


@users.command("remove")
@click.argument("email")
@by_option
@why_option
@click.pass_context
def users_remove(ctx, email, by, why):
    """Delete EMAIL's account: its sessions end and its API tokens stop working at once."""
    from outreach.accounts import remove_user
    from outreach.suppressions import default_user

    remove_user(_workspace(ctx), email, by=by or default_user(), why=why)
    click.echo(f"removed {email.strip().lower()}")


@users.command("set-password")
@click.argument("email")
@password_stdin_option
@by_option
@why_option
@click.pass_context
def users_set_password(ctx, email, password_stdin, by, why):
    """Give EMAIL a new password (asked for, or read with --password-stdin); logs it out everywhere."""
    from outreach.accounts import set_password
    from outreach.suppressions import default_user

    ws = _workspace(ctx)
    set_password(ws, email, _new_password(password_stdin), by=by or default_user(), why=why)
    click.echo(f"new password set for {email.strip().lower()}; its sessions have ended")


@users.command("token")
@click.argument("email")
@click.option("--label", metavar="TEXT", help="What the token is for (shown in the audit log).")
@by_option
@click.pass_context
def users_token(ctx, email, label, by):
    """Make an API token for EMAIL (sent as `Authorization: Bearer TOKEN`; it acts with the
    account's role). It is printed once: only its digest is stored."""
    from outreach.accounts import new_token
    from outreach.suppressions import default_user

    made = new_token(_workspace(ctx), email, by=by or default_user(), label=label)
    click.echo(made.token)
    click.echo(
        f"token {made.id} for {email.strip().lower()}: shown once; revoke with "
        f"`outreach users revoke-token {made.id}`",
        err=True,
    )


@users.command("revoke-token")
@click.argument("token_id", metavar="ID")
@by_option
@why_option
@click.pass_context
def users_revoke_token(ctx, token_id, by, why):
    """Revoke an API token by its ID (`outreach users list` shows them)."""
    from outreach.accounts import revoke_token
    from outreach.suppressions import default_user

    revoke_token(_workspace(ctx), token_id, by=by or default_user(), why=why)
    click.echo(f"revoked token {token_id}")


@main.command()
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(min=1), help="How many entries."
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def audit(ctx, limit, as_json):
    """The audit log of admin changes (accounts, tokens, suppressions changed from the
    dashboard or the API): when, who, what, why, and from where. Newest first."""
    from outreach.accounts import audit_log

    entries = audit_log(_workspace(ctx), limit)
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        why = f" — {e['why']}" if e["why"] else ""
        click.echo(f"{e['at']}  {e['who']} ({e['via']})  {e['action']} {e['target'] or ''}{why}")


# ------------------------------------------------------------------------------------------
# db


@main.group()
def db():
    """The store behind the ledger: SQLite (one machine) or PostgreSQL (shared), by OUTREACH_DB."""


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def db_status(ctx, as_json):
    """Print the backend, where it is (password hidden), the schema version and rows per table.

    Opening the store creates or upgrades its schema first.
    """
    from outreach.store.admin import status

    st = status(_workspace(ctx))
    if as_json:
        click.echo(json.dumps(st.as_dict(), indent=2))
        return
    click.echo(f"backend: {st.backend}")
    click.echo(f"store:   {st.location}")
    click.echo(f"schema:  {st.schema} (revision {st.revision})")
    for table, n in st.counts.items():
        click.echo(f"{table:>16}: {n}")


@db.command("copy")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="The empty store to copy into, e.g. postgresql://user:password@host:5432/outreach.",
)
@click.pass_context
def db_copy(ctx, to):
    """Copy this workspace's ledger (OUTREACH_DB, default .outreach/outreach.db) into an empty
    store: sends, batches, runs, test sends, events, suppressions and their log, staff accounts,
    API tokens and the audit log (not sessions: people log in again).

    Refuses a target that holds data and any send running meanwhile; checks the counts and
    keeps nothing in the target if they differ. The source is not changed. Then set
    OUTREACH_DB to the new URL wherever outreach runs.
    """
    from outreach.store.admin import copy

    res = copy(_workspace(ctx), to)
    click.echo(f"copied {res.rows} row(s) from {res.source} to {res.target}")
    for table, (before, after) in res.counts.items():
        click.echo(f"{table:>16}: {before} → {after}")
    click.echo("counts match. Next: set OUTREACH_DB to the new URL wherever outreach runs.")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
