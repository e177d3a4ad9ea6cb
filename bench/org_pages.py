#!/usr/bin/env python
"""Render times of the organization's own pages (/org/, issue 30) on PostgreSQL for an organization with 500 members
and 5 000 000 usage events this month (target: p95 ≤ 200 ms, the same number of queries whatever the size).

    DATABASE_URL is not used: the script makes its own scratch database on the server below (dropped at the end).
    .venv/bin/python bench/org_pages.py [--server postgres://postgres@127.0.0.1:5432] [--runs 20] [--keep]
                                        [--members 500] [--events 5000000] [--no-raw-events]

Loads 200 other organizations of 10 developers (their history and rollups are the rest of the tables), then the
measured organization: 500 members (1 owner, 5 admins, the rest members; some revoked, some inactive, 10 beyond the
paid seats), 20 pending invitations, about 3 000 history lines (owners', staff's, Stripe's), and its usage:

- this month's events: written raw with one `INSERT … SELECT generate_series` into the monthly partition, then rolled
  up by `rebuild_rollups` (the rollups those events make; the pages read only the rollups). `--no-raw-events` writes
  the same volume of rollups directly (faster; for a quick run);
- the earlier days of the 30-day chart: rollups written directly at the same daily volume.

Then requests each page through Django's test client signed in as the owner (DEBUG off: templates cached as in
production), and prints per page the median, p95 and worst time over the runs and the number of SQL queries (that
this number does not grow with the members is asserted in tests/portal/test_org_pages.py; `--members 30` shows it
here too).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
import uuid

from common import load_developers, parser, percentile, scratch_database

SCRATCH_DB = "hotcross_bench_org_pages"
MEMBERS = 500
EVENTS = 5_000_000
OTHER_ORGS = 200
TARGET_MS = 200
OTHER_HISTORY = 1_000_000
TOOLS = "{search,whoami,usage,fetch_page,summarize}"


def parse_args() -> argparse.Namespace:
    arguments = parser(__doc__)
    arguments.add_argument("--runs", type=int, default=20, help="timed requests per page (after 2 warm-up requests)")
    arguments.add_argument("--members", type=int, default=MEMBERS)
    arguments.add_argument("--events", type=int, default=EVENTS, help="usage events this month")
    arguments.add_argument(
        "--other-history",
        type=int,
        default=OTHER_HISTORY,
        help="admin-history lines about other organizations' developers (the table every history page reads)",
    )
    arguments.add_argument(
        "--no-raw-events", action="store_true", help="write this month's rollups directly, without raw events"
    )
    return arguments.parse_args()


def main() -> None:
    args = parse_args()
    env = {"DEBUG": "false", "ALLOWED_HOSTS": "testserver", "LOG_LEVEL": "WARNING", "SECURE_SSL_REDIRECT": "false"}
    with scratch_database(args.server, SCRATCH_DB, keep=args.keep, **env):
        run(args)


def load(args: argparse.Namespace, now: datetime.datetime):
    from django.db import connection

    from accounts import partitions
    from accounts.choices import Role
    from accounts.models import Developer

    load_developers(OTHER_ORGS, 10, now)
    members = args.members
    orgs, developers, _ = load_developers(
        1,
        members,
        now,
        organization=lambda i: {"name": "Measured", "stripe_customer_id": "cus_measured"},
        developer=lambda i: {
            "email": f"member{i:04d}@measured.test",
            "first_name": "Member",
            "last_name": f"Number{i}",
            "role": Role.OWNER if i == 0 else Role.ADMIN if i <= 5 else Role.MEMBER,
            "api_key_revoked_at": now if i % 25 == 7 else None,
            "is_active": i % 50 != 9,
            "seat_claimed_at": now - datetime.timedelta(seconds=members - i),
            "api_key_last_used_at": None if i % 3 == 0 else now - datetime.timedelta(minutes=i),
        },
    )
    org = orgs[0]
    owner = developers[0]
    holders = Developer.objects.filter(organization=org).seat_holders().count()
    org.max_seats = max(1, holders - 10)  # the newest 10 seat holders are beyond the paid seats
    org.save(update_fields=["max_seats"])
    today = now.astimezone(datetime.UTC).date()
    month_first = today.replace(day=1)
    chart_first = today - datetime.timedelta(days=29)
    days_this_month = (today - month_first).days + 1
    per_day = args.events // days_this_month

    started = time.perf_counter()
    if args.no_raw_events:
        _write_rollups(connection, org.id, month_first, today, args.events)
        how = "rollups written directly"
    else:
        partitions.create_partitions(connection, since=now - datetime.timedelta(days=31), until=now)
        _load_events(connection, org.id, args.events, now, month_first)
        loaded = time.perf_counter() - started
        print(f"  {args.events:,} raw events in {loaded:.0f} s", flush=True)
        from accounts.services.usage_upkeep import rebuild_rollups

        rebuild_rollups(since=month_first)
        how = "raw events, rolled up by rebuild_rollups"
    if chart_first < month_first:
        _write_rollups(connection, org.id, chart_first, month_first - datetime.timedelta(days=1), None, per_day)
    print(f"  usage loaded in {time.perf_counter() - started:.0f} s ({how})", flush=True)

    _load_history(org, developers, owner, now, args.other_history)
    _load_invitations(org, owner, now)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute(
            "SELECT COUNT(*), COALESCE(SUM(calls), 0) FROM accounts_usagerollup "
            "WHERE organization_id = %s AND day >= %s",
            [org.id, month_first],
        )
        rows, calls = cursor.fetchone()
    print(f"  this month: {calls:,} calls in {rows:,} rollup rows", flush=True)
    return org, Developer.objects.get(pk=owner.pk)


def _load_events(connection, organization_id, count: int, now: datetime.datetime, first_day: datetime.date) -> None:
    """`count` events of the organization's developers, spread from the month's first day to now, 2 % errors."""
    since = datetime.datetime.combine(first_day, datetime.time.min, tzinfo=datetime.UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH devs AS (
                SELECT id, organization_id, (ROW_NUMBER() OVER (ORDER BY id)) - 1 AS n
                FROM accounts_developer WHERE organization_id = %s
            ), total AS (SELECT COUNT(*) AS c FROM devs)
            INSERT INTO accounts_usageevent (developer_id, organization_id, tool_name, created_at, ok, duration_ms)
            SELECT d.id, d.organization_id, (%s::text[])[1 + (g / total.c) %% 5],
                   %s::timestamptz + (g::float8 / %s) * (%s::timestamptz - %s::timestamptz), g %% 50 <> 0, g %% 300
            FROM generate_series(0, %s - 1) AS g CROSS JOIN total JOIN devs d ON d.n = g %% total.c
            """,
            [organization_id, TOOLS, since, count, now, since, count],
        )


def _write_rollups(
    connection,
    organization_id,
    first: datetime.date,
    last: datetime.date,
    total: int | None,
    per_day: int | None = None,
) -> None:
    """Rollups of the organization's developers × 5 tools × the days [first, last]: `total` calls in all (or
    `per_day` a day), evenly."""
    days = (last - first).days + 1
    developers_sql = "SELECT COUNT(*) FROM accounts_developer WHERE organization_id = %s"
    with connection.cursor() as cursor:
        cursor.execute(developers_sql, [organization_id])
        developers = cursor.fetchone()[0]
        per_row = max(1, (total if total is not None else per_day * days) // (developers * 5 * days))
        cursor.execute(
            """
            INSERT INTO accounts_usagerollup (organization_id, developer_id, tool_name, day, calls, errors, duration_ms)
            SELECT d.organization_id, d.id, t.tool, day::date, %s, %s / 50, %s * 150
            FROM accounts_developer d
            CROSS JOIN unnest(%s::text[]) AS t(tool)
            CROSS JOIN generate_series(%s::date, %s::date, interval '1 day') AS day
            WHERE d.organization_id = %s
            """,
            [per_row, per_row, per_row, TOOLS, first, last, organization_id],
        )


def _load_history(org, developers, owner, now: datetime.datetime, other_lines: int) -> None:
    """3 000 lines on the organization and its members (owners', staff's, the system's), and `other_lines` on other
    organizations' developers (one `INSERT … SELECT generate_series`)."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType

    from accounts import audit
    from accounts.models import Developer, Organization
    from oauth import grants

    users = get_user_model()
    staff = users.objects.create_user("staffer", is_staff=True)
    system = audit.system_user()
    owner_user = grants.shadow_user(developer=owner)
    admin_user = grants.shadow_user(developer=developers[1])
    who = [owner_user, admin_user, staff, system]
    developer_type = ContentType.objects.get_for_model(Developer)
    organization_type = ContentType.objects.get_for_model(Organization)
    entries = [
        LogEntry(
            action_time=now - datetime.timedelta(minutes=i),
            user=who[i % len(who)],
            content_type=developer_type,
            object_id=str(developers[i % len(developers)].pk),
            object_repr=developers[i % len(developers)].email,
            action_flag=CHANGE,
            change_message=f"Bench line {i}.",
        )
        for i in range(2_800)
    ]
    entries += [
        LogEntry(
            action_time=now - datetime.timedelta(minutes=i, seconds=30),
            user=who[i % len(who)],
            content_type=organization_type,
            object_id=str(org.pk),
            object_repr=org.name,
            action_flag=CHANGE,
            change_message=f"Organization line {i}.",
        )
        for i in range(200)
    ]
    LogEntry.objects.bulk_create(entries, batch_size=5_000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH devs AS (
                SELECT id::text AS id, email, (ROW_NUMBER() OVER (ORDER BY id)) - 1 AS n
                FROM accounts_developer WHERE organization_id <> %s
            ), total AS (SELECT COUNT(*) AS c FROM devs)
            INSERT INTO django_admin_log
                (action_time, user_id, content_type_id, object_id, object_repr, action_flag, change_message)
            SELECT %s::timestamptz - g * interval '1 minute', %s, %s, d.id, d.email, %s, 'Another organization''s line.'
            FROM generate_series(0, %s - 1) AS g CROSS JOIN total JOIN devs d ON d.n = g %% total.c
            """,
            [org.pk, now, staff.pk, developer_type.pk, CHANGE, other_lines],
        )


def _load_invitations(org, owner, now: datetime.datetime) -> None:
    from accounts.models import Invitation

    Invitation.objects.bulk_create(
        Invitation(
            organization=org,
            email=f"invited{i}@measured.test",
            role="member",
            token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
            invited_by=owner,
            created_at=now - datetime.timedelta(hours=i),
            sent_at=now - datetime.timedelta(hours=i),
            expires_at=now + datetime.timedelta(days=3),
        )
        for i in range(20)
    )


def run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from oauth import grants

    print(
        f"PostgreSQL scratch database {SCRATCH_DB}: migrating and loading {args.members} members, "
        f"{args.events:,} events this month…",
        flush=True,
    )
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    _, owner = load(args, timezone.now())
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)

    client = Client()
    client.force_login(grants.shadow_user(developer=owner), backend="django.contrib.auth.backends.ModelBackend")
    pages = [
        ("members: /org/", "/org/"),
        ("usage: /org/usage/", "/org/usage/"),
        ("history: /org/history/", "/org/history/"),
        ("history: page 40", "/org/history/?page=40"),
        ("history: CSV (all lines, streamed)", "/org/history/?format=csv"),
    ]

    def get(url: str):
        response = client.get(url)
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
        return response

    print(f"\n{'page':<40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    worst = 0.0
    for name, url in pages:
        for _ in range(2):
            warm = get(url)
            assert warm.status_code == 200, (url, warm.status_code, warm.get("Location"))
        samples = []
        for _ in range(args.runs):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = get(url)
                elapsed = (time.perf_counter() - start) * 1000
            assert response.status_code == 200, url
            samples.append(elapsed)
        ordered = sorted(samples)
        p95 = percentile(ordered, 0.95)
        if "CSV" not in name:
            worst = max(worst, p95)
        print(f"{name:<40} {statistics.median(ordered):8.1f} {p95:8.1f} {ordered[-1]:8.1f} {len(queries):8d}")
    verdict = "within" if worst <= TARGET_MS else "OVER"
    size = "" if args.members == MEMBERS and args.events == EVENTS else " (not the target's size)"
    print(f"\nslowest page p95 (the CSV export aside): {worst:.1f} ms — {verdict} the {TARGET_MS} ms target{size}")


if __name__ == "__main__":
    main()
