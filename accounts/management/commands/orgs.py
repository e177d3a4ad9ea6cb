"""`manage.py orgs VERB …`: organizations, developers and keys from the command line.

One verb per line of the old `scripts/admin/manage_orgs.py`, with the same positional arguments, plus new ones.
Every verb takes `--json` for machine-readable output. Mistakes exit non-zero with one line on stderr and write
nothing; every write goes through `accounts.services` (so the seat rules and the admin history are the same as in
the admin).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.apps import apps as django_apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from accounts import legacy, selectors, services
from accounts.billing.sync import sync_from_stripe
from accounts.exceptions import AccountsError
from accounts.management.orgs_output import (
    DEV_COLUMNS,
    ORG_COLUMNS,
    dev_row,
    developer_data,
    format_table,
    org_row,
    organization_data,
    printable,
    short_time,
    terminal_text,
)
from accounts.models import Developer, Organization, PricingModel, SubscriptionStatus
from accounts.services.developers import parse_grace
from accounts.wording import newest_refused, plural


class _OneLineParser(CommandParser):
    """argparse, but a mistake is one line on stderr (and exit 2), not the whole usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
        super().error(message)


# --- the command -----------------------------------------------------------------------------------------------------


class Command(BaseCommand):
    help = (
        "Manage organizations, developers and API keys. "
        "Run `manage.py orgs VERB --help` for a verb's arguments; every verb takes --json."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # A mistyped or missing verb is one line too, like a mistake in a verb's arguments.
        parser.__class__ = _OneLineParser
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(
            dest="verb", metavar="VERB", required=True, parser_class=_OneLineParser, title="verbs"
        )

        def verb(name: str, handler: Callable[[dict[str, Any]], None], help_text: str) -> CommandParser:
            sub = verbs.add_parser(name, help=help_text, description=help_text)
            sub.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
            sub.set_defaults(handler=handler)
            return sub

        p = verb("create-org", self.create_org, "Create an organization.")
        p.add_argument("name", metavar="NAME", help="Organization name, e.g. 'Acme Corp'.")
        p.add_argument("stripe_id", metavar="STRIPE_ID", nargs="?", default=None, help="Stripe customer id (cus_…).")
        p.add_argument("max_seats", metavar="MAX_SEATS", nargs="?", type=int, default=1, help="Seats (default 1).")
        p.add_argument(
            "--status",
            choices=SubscriptionStatus.values,
            default=SubscriptionStatus.INCOMPLETE,
            help="Subscription status (default incomplete; keys work when active or trialing).",
        )
        p.add_argument(
            "--pricing-model", choices=PricingModel.values, default=PricingModel.PER_ORGANIZATION, help="Pricing model."
        )
        p.add_argument("--billing-email", default="", help="Where Stripe sends invoices.")

        p = verb("list-orgs", self.list_orgs, "List organizations with their seats in use.")
        p.add_argument("--status", choices=SubscriptionStatus.values, help="Only organizations with this status.")

        p = verb("show-org", self.show_org, "Show one organization and its developers in seat order.")
        p.add_argument("org_id", metavar="ORG_ID")

        p = verb("update-status", self.update_status, "Set an organization's subscription status.")
        p.add_argument("org_id", metavar="ORG_ID")
        p.add_argument("status", metavar="STATUS", help=f"One of: {', '.join(SubscriptionStatus.values)}.")

        p = verb("update-seats", self.update_seats, "Set an organization's seat count.")
        p.add_argument("org_id", metavar="ORG_ID")
        p.add_argument("max_seats", metavar="N", type=int, help="Seats, 0 or more.")

        p = verb("create-dev", self.create_dev, "Add a developer and print their API key (shown once).")
        p.add_argument("org_id", metavar="ORG_ID")
        p.add_argument("email", metavar="EMAIL")
        p.add_argument("first_name", metavar="FIRST")
        p.add_argument("last_name", metavar="LAST")

        p = verb("list-devs", self.list_devs, "List developers, of one organization or all.")
        p.add_argument("org_id", metavar="ORG_ID", nargs="?", default=None)

        p = verb("revoke-dev", self.revoke_dev, "Revoke a developer's API key (frees the seat).")
        p.add_argument("dev_id", metavar="DEV_ID")

        p = verb(
            "rotate-key",
            self.rotate_key,
            "Issue a new API key (shown once); the old one stops working, at once or after --grace.",
        )
        p.add_argument("dev_id", metavar="DEV_ID")
        p.add_argument(
            "--grace",
            metavar="DURATION",
            default=None,
            help="Let the old key keep working this long (30s, 15m, 2h, 1d; at most 24h), e.g. to roll CI secrets.",
        )

        p = verb("deactivate-dev", self.deactivate_dev, "Deactivate a developer (frees the seat).")
        p.add_argument("dev_id", metavar="DEV_ID")

        p = verb("activate-dev", self.activate_dev, "Reactivate a developer (needs a free seat).")
        p.add_argument("dev_id", metavar="DEV_ID")

        p = verb("set-key-expiry", self.set_key_expiry, "Make a developer's key expire at a time, or never.")
        p.add_argument("dev_id", metavar="DEV_ID")
        p.add_argument(
            "expires_at", metavar="WHEN", help="ISO 8601 time with offset (2027-01-31T00:00+00:00) or never."
        )

        p = verb(
            "sync-stripe",
            self.sync_stripe,
            "Re-fetch subscriptions from Stripe and re-apply status and seats (after missed webhooks).",
        )
        p.add_argument(
            "org_id", metavar="ORG_ID", nargs="?", default=None, help="One organization; default: all with a customer."
        )

        verb(
            "legacy-report",
            self.legacy_report,
            "Before migrating: what the legacy conversion would create from the old customers table, and every "
            "row that would stop it (read-only; exits 1 when a row would stop it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        try:
            options["handler"](options)
        except AccountsError as exc:
            raise CommandError(printable(exc.message)) from None

    # --- output ---

    def emit(self, data: Any, text: str) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(terminal_text(text))

    def warn(self, text: str) -> None:
        if not self.as_json:
            self.stderr.write(f"warning: {terminal_text(text)}")

    # --- organizations ---

    def create_org(self, options: dict[str, Any]) -> None:
        org = services.create_organization(
            name=options["name"],
            stripe_customer_id=options["stripe_id"],
            max_seats=options["max_seats"],
            subscription_status=options["status"],
            pricing_model=options["pricing_model"],
            billing_email=options["billing_email"],
        )
        self.emit(
            organization_data(org, 0),
            f"Created organization {org.name}\n" + format_table(ORG_COLUMNS, [org_row(org, 0)]),
        )

    def list_orgs(self, options: dict[str, Any]) -> None:
        orgs = Organization.objects.with_seats().order_by("name", "id")
        if options["status"]:
            orgs = orgs.filter(subscription_status=options["status"])
        orgs = list(orgs)
        self.emit(
            [organization_data(org, org.seats_used) for org in orgs],
            format_table(ORG_COLUMNS, [org_row(org, org.seats_used) for org in orgs]) if orgs else "No organizations.",
        )

    def show_org(self, options: dict[str, Any]) -> None:
        org = selectors.get_organization(options["org_id"])
        developers = list(selectors.developers_in_seat_order(org).with_old_key_grace())
        used = sum(1 for dev in developers if dev.holds_seat)
        data = organization_data(org, used)
        data["developers"] = [
            {**developer_data(dev), "seat_rank": dev.seat_rank, "over_seat_limit": dev.beyond_seat_limit}
            for dev in developers
        ]
        lines = [
            f"{printable(org.name)}  ({org.id})",
            f"  status        {org.subscription_status}"
            + (f"  (subscription {org.subscription_id})" if org.subscription_id else ""),
            f"  seats         {used} of {org.max_seats} in use"
            + ("  — OVER THE LIMIT" if used > org.max_seats else ""),
            f"  pricing       {org.pricing_model}",
            f"  stripe        {org.stripe_customer_id or '—'}",
            f"  created       {short_time(org.created_at)}",
            "",
        ]
        if developers:
            rows = [
                (str(dev.seat_rank or "—") + (" (no access)" if dev.beyond_seat_limit else ""), *dev_row(dev)[:6])
                for dev in developers
            ]
            lines.append(format_table(("SEAT", *DEV_COLUMNS[:6]), rows))
        else:
            lines.append("No developers.")
        self.emit(data, "\n".join(lines))

    def update_status(self, options: dict[str, Any]) -> None:
        org = selectors.get_organization(options["org_id"])
        old = org.subscription_status
        services.set_status(organization=org, status=options["status"])
        used = selectors.seats_in_use(org)
        self.emit(
            organization_data(org, used),
            f"{printable(org.name)}: subscription status {old} → {org.subscription_status}.",
        )

    def update_seats(self, options: dict[str, Any]) -> None:
        org = selectors.get_organization(options["org_id"])
        old = org.max_seats
        services.set_seats(organization=org, max_seats=options["max_seats"])
        used = selectors.seats_in_use(org)
        if used > org.max_seats:
            self.warn(
                f"{printable(org.name)} has {plural(used, 'developer')} holding seats; "
                f"{newest_refused(used, org.max_seats)} (seat_limit_exceeded) until seats are added or freed."
            )
        self.emit(
            organization_data(org, used), f"{printable(org.name)}: seats {old} → {org.max_seats} ({used} in use)."
        )

    # --- developers ---

    @method_decorator(sensitive_variables("plain_key"))
    def create_dev(self, options: dict[str, Any]) -> None:
        org = selectors.get_organization(options["org_id"])
        dev, plain_key = services.add_developer(
            organization=org, email=options["email"], first_name=options["first_name"], last_name=options["last_name"]
        )
        self.emit(
            {**developer_data(dev), "api_key": plain_key},
            f"Added {dev.email} to {printable(org.name)} (developer {dev.id}).\n"
            f"API key, shown only this once — store it now:\n\n    {plain_key}\n",
        )

    def list_devs(self, options: dict[str, Any]) -> None:
        developers = (
            Developer.objects.select_related("organization")
            .with_old_key_grace()
            .order_by("organization__name", "email")
        )
        if options["org_id"]:
            developers = developers.filter(organization=selectors.get_organization(options["org_id"]))
        developers = list(developers)
        self.emit(
            [developer_data(dev) for dev in developers],
            format_table(DEV_COLUMNS, [dev_row(dev) for dev in developers]) if developers else "No developers.",
        )

    def revoke_dev(self, options: dict[str, Any]) -> None:
        dev = selectors.get_developer(options["dev_id"])
        changed = services.revoke_key(developer=dev)
        text = (
            f"Revoked the key {dev.api_key_prefix}… of {dev.email}."
            if changed
            else (f"{dev.email} has no key to revoke (already revoked {short_time(dev.api_key_revoked_at)}).")
        )
        self.emit(developer_data(dev), text)

    @method_decorator(sensitive_variables("plain_key"))
    def rotate_key(self, options: dict[str, Any]) -> None:
        grace = parse_grace(options["grace"])  # a bad value stops here, before anything is read or written
        dev = selectors.get_developer(options["dev_id"])
        dev, plain_key = services.rotate_key(developer=dev, grace=grace)
        data = developer_data(dev)
        until = dev.old_key_works_until
        old = (
            f"the old one keeps working until {until:%Y-%m-%d %H:%M:%S} UTC, then stops"
            if until
            else "the old one no longer works"
        )
        self.emit(
            {**data, "api_key": plain_key},
            f"New key for {dev.email}; {old}. Shown only this once — store it now:\n\n    {plain_key}\n",
        )

    def deactivate_dev(self, options: dict[str, Any]) -> None:
        dev = selectors.get_developer(options["dev_id"])
        changed = services.deactivate_developer(developer=dev)
        self.emit(developer_data(dev), f"Deactivated {dev.email}." if changed else f"{dev.email} was already inactive.")

    def activate_dev(self, options: dict[str, Any]) -> None:
        dev = selectors.get_developer(options["dev_id"])
        changed = services.activate_developer(developer=dev)
        self.emit(developer_data(dev), f"Activated {dev.email}." if changed else f"{dev.email} was already active.")

    def set_key_expiry(self, options: dict[str, Any]) -> None:
        dev = selectors.get_developer(options["dev_id"])
        raw = options["expires_at"].strip()
        if raw.lower() == "never":
            expires_at = None
        else:
            try:
                expires_at = parse_datetime(raw)
            except ValueError:
                expires_at = None
            if expires_at is None:
                raise CommandError(
                    f"'{raw}' is not a time: use ISO 8601 with an offset, e.g. 2027-01-31T00:00+00:00, or never."
                )
            if timezone.is_naive(expires_at):
                raise CommandError(f"'{raw}' has no offset: add one, e.g. {raw}+00:00.")
        services.set_key_expiry(developer=dev, expires_at=expires_at)
        when = f"{short_time(expires_at)} UTC" if expires_at else "never"
        self.emit(developer_data(dev), f"The key {dev.api_key_prefix}… of {dev.email} expires {when}.")

    # --- Stripe ---

    def sync_stripe(self, options: dict[str, Any]) -> None:
        if options["org_id"]:
            organizations = [selectors.get_organization(options["org_id"])]
        else:
            organizations = list(Organization.objects.exclude(stripe_customer_id=None).order_by("name", "id"))
        results, lines, failures = [], [], []
        for org in organizations:
            try:
                applied = sync_from_stripe(org)
            except AccountsError as exc:
                if options["org_id"]:
                    raise
                failures.append(f"{printable(org.name)} ({org.id}): {exc.message}")
                results.append({**organization_data(org, selectors.seats_in_use(org)), "stripe_error": exc.message})
                continue
            org = applied.organization
            results.append(
                {**organization_data(org, selectors.seats_in_use(org)), "stripe_problem": applied.problem or None}
            )
            line = f"{printable(org.name)}: {org.subscription_status}, {plural(org.max_seats, 'seat')}" + (
                f" (subscription {org.subscription_id})." if org.subscription_id else "."
            )
            lines.append(line)
            if applied.problem:
                self.warn(f"{printable(org.name)}: {applied.problem}")
        if not organizations:
            lines.append("No organization has a Stripe customer id.")
        self.emit(results[0] if options["org_id"] else results, "\n".join(lines))
        if failures:
            raise CommandError(
                f"{len(failures)} of {len(organizations)} organization(s) could not be synced: " + "; ".join(failures)
            )

    # --- legacy conversion ---

    def legacy_report(self, options: dict[str, Any]) -> None:
        report = legacy.plan(connection, django_apps)
        self.emit(report.as_dict(), report.describe())
        if report.problems:
            count = len({p.customer_id for p in report.problems})
            raise CommandError(f"{count} customer(s) would stop the migration; fix them first (listed above).")
