#!/usr/bin/env python
"""Admin page render times on PostgreSQL with 10 000 organizations and 100 000 developers (target: ≤ 300 ms).

    DATABASE_URL is not used: the script makes its own scratch database on the server below (dropped at the end).
    .venv/bin/python bench/admin_pages.py [--server postgres://postgres@127.0.0.1:5432] [--runs 20] [--keep]
                                          [--database hotcross_bench_admin]
                                          [--orgs 10000]   (a smaller --orgs only checks that the script works)

Loads 10 000 organizations, 100 000 developers (some revoked, some inactive, a few organizations over their seat
limit), 200 000 usage events over the last 30 days and 3 000 Stripe webhook deliveries over three days (some failed),
then requests each page (the index is the staff dashboard) through Django's test client as a
logged-in superuser (DEBUG off, so templates are cached as in production) and prints, per page, the median, p95 and
worst time over the runs and the number of SQL queries.
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import time

from common import load_developers, parser, percentile, scratch_database

ORGS = 10_000
DEVS_PER_ORG = 10
EVENTS_PER_ORG = 20
TARGET_MS = 300
SCRATCH_DB = "hotcross_bench_admin"


def parse_args() -> argparse.Namespace:
    arguments = parser(__doc__)
    arguments.add_argument("--database", default=SCRATCH_DB, help=f"the scratch database's name (default {SCRATCH_DB})")
    arguments.add_argument("--runs", type=int, default=20, help="timed requests per page (after 2 warm-up requests)")
    arguments.add_argument(
        "--orgs",
        type=int,
        default=ORGS,
        help=f"organizations to load (default {ORGS}, the size the target is for); developers and events scale with it",
    )
    return arguments.parse_args()


def main() -> None:
    args = parse_args()
    env = {"DEBUG": "false", "ALLOWED_HOSTS": "testserver", "LOG_LEVEL": "WARNING"}
    with scratch_database(args.server, args.database, keep=args.keep, **env):
        run(args)


def load(now: datetime.datetime, orgs_count: int) -> None:
    from accounts.models import UsageEvent

    rng = random.Random(6)
    statuses = ["active"] * 7 + ["trialing", "past_due", "canceled"]

    def claimed(i: int) -> datetime.datetime:
        return now - datetime.timedelta(days=(i * 7919) % 900, seconds=i)

    orgs, developers, _ = load_developers(
        orgs_count,
        DEVS_PER_ORG,
        now,
        organization=lambda i: {
            "subscription_status": rng.choice(statuses),
            # One organization in fifty was downgraded below its seats in use.
            "max_seats": DEVS_PER_ORG - 3 if i % 50 == 0 else DEVS_PER_ORG,
            "created_at": now - datetime.timedelta(days=rng.randint(0, 900)),
        },
        developer=lambda i: {
            "first_name": "Dev",
            "last_name": f"Number{i}",
            "api_key_created_at": claimed(i),
            "api_key_revoked_at": now if i % 17 == 0 else None,
            "api_key_last_used_at": now - datetime.timedelta(minutes=rng.randint(0, 60 * 24 * 60)),
            "is_active": i % 23 != 0,
            "seat_claimed_at": claimed(i),
            "created_at": claimed(i),
        },
    )
    # The measured organization (the first) gets a busy month; the rest of the events are spread over everyone.
    events = [
        UsageEvent(
            developer=developers[j % DEVS_PER_ORG],
            organization=orgs[0],
            tool_name="whoami",
            created_at=now - datetime.timedelta(minutes=rng.randint(0, 60 * 24 * 30)),
            ok=j % 20 != 0,
        )
        for j in range(5_000)
    ]
    for _ in range(orgs_count * EVENTS_PER_ORG - len(events)):
        d = rng.randrange(len(developers))
        events.append(
            UsageEvent(
                developer=developers[d],
                organization=orgs[d // DEVS_PER_ORG],
                tool_name="usage",
                created_at=now - datetime.timedelta(minutes=rng.randint(0, 60 * 24 * 30)),
            )
        )
    UsageEvent.objects.bulk_create(events, batch_size=10_000)
    load_webhooks(now)


def load_webhooks(now: datetime.datetime) -> None:
    """3 000 webhook deliveries over the last three days, one in fifty failed (the dashboard counts the last 24 h)."""
    from django.db.models import DurationField, ExpressionWrapper, F, Value
    from djstripe.models import WebhookEventTrigger

    WebhookEventTrigger.objects.bulk_create(
        WebhookEventTrigger(
            remote_ip="127.0.0.1",
            headers={},
            body="{}",
            valid=i % 100 != 0,
            processed=i % 50 != 0,
            exception="KeyError" if i % 50 == 0 else "",
        )
        for i in range(3_000)
    )
    # `created` is auto_now_add: spread the deliveries afterwards, one every 86.4 seconds back from now.
    first = WebhookEventTrigger.objects.order_by("pk").values_list("pk", flat=True).first()
    step = ExpressionWrapper((F("pk") - first) * Value(datetime.timedelta(seconds=86.4)), output_field=DurationField())
    WebhookEventTrigger.objects.update(created=Value(now) - step)


def run(args: argparse.Namespace) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from django.utils import timezone

    from accounts.models import Organization

    print(
        f"PostgreSQL scratch database {args.database}: migrating and loading {args.orgs} organizations, "
        f"{args.orgs * DEVS_PER_ORG} developers, {max(args.orgs * EVENTS_PER_ORG, 5_000)} usage events…",
        flush=True,
    )
    started = time.perf_counter()
    for app in ("contenttypes", "auth", "sessions", "admin", "djstripe", "accounts"):
        call_command("migrate", app, verbosity=0)
    load(timezone.now(), args.orgs)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # the steady state autovacuum keeps (statistics, visibility map)
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)

    user = User.objects.create_superuser("bench", "bench@example.com", "bench-password")
    client = Client()
    client.force_login(user)
    busy = Organization.objects.get(name="Org 00000")
    org_list = reverse("admin:accounts_organization_changelist")
    dev_list = reverse("admin:accounts_developer_changelist")
    pages = [
        ("index: the staff dashboard", reverse("admin:index")),
        ("organizations: list", org_list),
        ("organizations: sorted by seats used", org_list + "?o=3"),
        ("organizations: over seat limit", org_list + "?over_seat_limit=yes"),
        ("organizations: search a developer email", org_list + "?q=dev99999@example.com"),
        (
            "organizations: change page (10 devs, 5 000 events)",
            reverse("admin:accounts_organization_change", args=[busy.pk]),
        ),
        ("developers: list", dev_list),
        (
            "developers: active, not revoked, org active",
            dev_list + "?is_active__exact=1&revoked=no&organization__subscription_status__exact=active",
        ),
        ("developers: search", dev_list + "?q=Number4242"),
    ]
    print(f"\n{'page':<52} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    worst = 0.0
    for name, url in pages:
        for _ in range(2):
            assert client.get(url).status_code == 200, url
        samples = []
        for _ in range(args.runs):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - start) * 1000
            assert response.status_code == 200, url
            samples.append(elapsed)
        ordered = sorted(samples)
        p95 = percentile(ordered, 0.95)
        worst = max(worst, p95)
        print(f"{name:<52} {statistics.median(ordered):8.1f} {p95:8.1f} {ordered[-1]:8.1f} {len(queries):8d}")
    verdict = "within" if worst <= TARGET_MS else "OVER"
    size = "" if args.orgs == ORGS else f" (at {args.orgs} organizations, not the target's {ORGS})"
    print(f"\nslowest p95: {worst:.1f} ms — {verdict} the {TARGET_MS} ms target{size}")


if __name__ == "__main__":
    main()
