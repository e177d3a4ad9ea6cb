"""`manage.py seed_demo`: a staff login, a demo organization and a developer key for trying Hotcross locally.

`make run` runs it on every start. It creates what is missing and leaves what exists alone: a staff password
changed since, the staff's sessions, the demo developer's key (and its state). The key is printed once, when the
developer is created; later runs show its prefix and how to get a new one, or rotate it when asked (`--rotate-key`,
`make run ROTATE_DEMO_KEY=1`).
"""

from __future__ import annotations

import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from djstripe.models import WebhookEndpoint

from accounts import services
from accounts.billing.endpoints import save_webhook_endpoint, webhook_path
from accounts.exceptions import AccountsError
from accounts.models import Developer, Organization, Plan, PricingModel, SubscriptionStatus
from accounts.services import plans as plan_services
from infra.mail import mail_is_printed

DEMO_ORG_NAME = "Demo Org"
DEMO_STRIPE_ID = "cus_demo"
DEMO_EMAIL = "dev@demo.example"
DEMO_PLAN_CODE = "demo"


def python_and_manage() -> str:
    """The absolute interpreter and manage.py, so a command printed here works from any directory."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(settings.BASE_DIR) / 'manage.py'))}"


class Command(BaseCommand):
    help = (
        "Create what is missing of the demo staff user, organization and developer (never changing what exists), "
        "and print the login, the URLs and the developer's key (shown once, or with --rotate-key)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin", help="Staff username (default admin).")
        parser.add_argument(
            "--password",
            default="hotcross-demo",
            help="Staff password when the user is created (default hotcross-demo).",
        )
        parser.add_argument(
            "--base-url", default=None, help="Where the server listens (default: the HOTCROSS_PUBLIC_URL setting)."
        )
        parser.add_argument(
            "--rotate-key",
            action="store_true",
            help="Give the existing demo developer a new key and print it (the previous one stops working).",
        )
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    @method_decorator(sensitive_variables("key", "options"))
    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo creates a known staff password; run it with DEBUG=true (or --force).")
        base = (options["base_url"] or settings.HOTCROSS_PUBLIC_URL).rstrip("/")
        key: str | None = None
        try:
            with transaction.atomic():
                user_model = get_user_model()
                user, user_created = user_model.objects.get_or_create(
                    username=options["username"],
                    defaults={"email": "admin@demo.example", "is_staff": True, "is_superuser": True},
                )
                if user_created:
                    user.set_password(options["password"])
                    user.save(update_fields=["password"])

                # A demo plan (issue 16): every tool, a fair-use rate limit and a monthly cap, for the demo
                # organization when it is first made; staff change it in the admin (Plans).
                plan = Plan.objects.filter(code=DEMO_PLAN_CODE).first() or plan_services.save_plan(
                    plan=Plan(
                        code=DEMO_PLAN_CODE,
                        name="Demo",
                        rate_limit_per_developer=600,
                        monthly_calls_per_seat=10_000,
                    )
                )
                org = Organization.objects.filter(stripe_customer_id=DEMO_STRIPE_ID).first()
                if org is None:
                    org = services.create_organization(
                        name=DEMO_ORG_NAME,
                        stripe_customer_id=DEMO_STRIPE_ID,
                        max_seats=5,
                        subscription_status=SubscriptionStatus.ACTIVE,
                        pricing_model=PricingModel.PER_ORGANIZATION,
                        billing_email="billing@demo.example",
                    )
                    plan_services.set_plan(organization=org, plan=plan)
                developer = Developer.objects.filter(email__iexact=DEMO_EMAIL).select_related("organization").first()
                if developer is None:
                    developer, key = services.add_developer(
                        organization=org, email=DEMO_EMAIL, first_name="Demo", last_name="Developer"
                    )
                elif options["rotate_key"]:
                    if not developer.is_active:
                        services.activate_developer(developer=developer)
                    developer, key = services.rotate_key(developer=developer)

                # A local webhook endpoint, so the webhook URL below is real. Its secret is random and never shown:
                # `manage.py stripe_webhook_endpoint --secret whsec_…` (from `stripe listen`) sets the real one, and
                # a later run keeps it. One demo endpoint: a run on another address moves it there (same uuid and
                # secret) instead of registering one more per port.
                local = list(WebhookEndpoint.objects.filter(id__startswith="we_local_", livemode=False)[:2])
                url = base + webhook_path(local[0]) if len(local) == 1 else base
                endpoint, _ = save_webhook_endpoint(
                    secret=f"whsec_{secrets.token_urlsafe(32)}", url=url, replace_secret=False
                )
        except AccountsError as exc:
            raise CommandError(exc.message) from None

        if user_created or check_password(options["password"], user.password):  # never re-hashes or saves
            login = f"login {user.get_username()} / {options['password']}"
        else:
            login = f"login {user.get_username()} (your password; `manage.py changepassword {user.get_username()}`)"
        developer_org = developer.organization
        lines = [
            "",
            "Hotcross back office demo",
            f"  admin        {base}/admin/   {login}",
            f"  MCP (HTTP)   {base}/mcp   header  Authorization: Bearer <key>  (or X-API-Key: <key>)",
            f"               {base}/mcp/key   keys only, for clients that drop a header once a server offers OAuth",
            f"  webhooks     {endpoint.url}",
            "                (its signing secret: manage.py stripe_webhook_endpoint --secret whsec_…)",
            f"  health       {base}/healthz",
            f"  sign-up      {base}/signup/   teams buy seats themselves (needs STRIPE_TEST_SECRET_KEY and a plan "
            "with a Stripe seat price: docs/teams.md)",
            *(
                ["  sign-in mail printed in this terminal, not sent (EMAIL_URL=consolemail://): codes are here"]
                if mail_is_printed()
                else []
            ),
            f"  organization {org.name} ({org.id}), {org.max_seats} seats, {org.subscription_status}",
            f"  developer    {developer.email} ({developer.id})",
            f"  demo plan    {plan.name} ({plan.code}): {plan.rate_limit_per_developer} calls/min per developer, "
            f"{plan.monthly_calls_per_seat} calls/month per seat (admin → Plans)",
        ]
        if developer_org.pk != org.pk:
            lines.append(f"                (in {developer_org.name}, {developer_org.id})")
        if key is not None:
            lines += [
                f"  API key      {key}",
                "                (shown this once: copy it now; `make run` keeps it until you ask for a new one)",
            ]
        else:
            state = developer.key_state
            lines += [
                f"  API key      {developer.api_key_prefix}… ({state}; shown only when it was issued)",
                f"                new key: make run ROTATE_DEMO_KEY=1, or {python_and_manage()} orgs rotate-key "
                f"{developer.id}",
            ]
        lines += [f"  MCP (stdio)  HOTCROSS_API_KEY=<key> {python_and_manage()} mcp_server", ""]
        self.stdout.write("\n".join(lines))
