"""`manage.py seed_demo`: a staff login, a demo organization and a developer key for trying Hotcross locally.

Safe to run again: nothing is duplicated. The demo developer's key is stored only as a hash, so each run rotates it
and prints the new one.
"""

from __future__ import annotations

import secrets
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from accounts import services
from accounts.billing.endpoints import save_webhook_endpoint
from accounts.models import Developer, Organization, PricingModel, SubscriptionStatus

DEMO_ORG_NAME = "Demo Org"
DEMO_STRIPE_ID = "cus_demo"
DEMO_EMAIL = "dev@demo.example"


class Command(BaseCommand):
    help = "Create (or refresh) the demo staff user, organization and developer, and print the login and key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin", help="Staff username (default admin).")
        parser.add_argument("--password", default="hotcross-demo", help="Staff password (default hotcross-demo).")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the server will listen.")
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    @method_decorator(sensitive_variables("key"))
    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo creates a known staff password; run it with DEBUG=true (or --force).")
        with transaction.atomic():
            user_model = get_user_model()
            user, _ = user_model.objects.get_or_create(
                username=options["username"], defaults={"email": "admin@demo.example"}
            )
            user.is_staff = user.is_superuser = user.is_active = True
            user.set_password(options["password"])
            user.save()

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
            developer = Developer.objects.filter(email=DEMO_EMAIL).first()
            if developer is None:
                developer, key = services.add_developer(
                    organization=org, email=DEMO_EMAIL, first_name="Demo", last_name="Developer"
                )
            else:
                if not developer.is_active:
                    services.activate_developer(developer=developer)
                developer, key = services.rotate_key(developer=developer)

            # A local webhook endpoint, so the webhook URL below is real. Its secret is random and never shown:
            # `manage.py stripe_webhook_endpoint --secret whsec_…` (from `stripe listen`) sets the real one.
            base = options["base_url"].rstrip("/")
            endpoint, _ = save_webhook_endpoint(
                secret=f"whsec_{secrets.token_urlsafe(32)}", url=base, replace_secret=False
            )

        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Hotcross back office demo",
                    f"  admin        {base}/admin/   login {options['username']} / {options['password']}",
                    f"  MCP (HTTP)   {base}/mcp   header  Authorization: Bearer <key>",
                    f"  webhooks     {endpoint.url}",
                    "                (its signing secret: manage.py stripe_webhook_endpoint --secret whsec_…)",
                    f"  health       {base}/healthz",
                    f"  organization {org.name} ({org.id}), {org.max_seats} seats, {org.subscription_status}",
                    f"  developer    {developer.email}",
                    f"  API key      {key}",
                    "                (a new key on every run; the previous one stops working)",
                    f"  MCP (stdio)  HOTCROSS_API_KEY=<key> DEBUG=true {sys.executable} manage.py mcp_server",
                    "",
                ]
            )
        )
