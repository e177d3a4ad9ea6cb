"""`manage.py stripe_webhook_endpoint --secret whsec_… [--url …]`: register where Stripe posts, without calling Stripe.

dj-stripe 2.11 checks each webhook against the signing secret stored on its `WebhookEndpoint` row and routes it by
the row's uuid (`/stripe/webhook/<uuid>/`). The path is the only line on stdout, so it composes:

    stripe listen --forward-to "127.0.0.1:8000$(python manage.py stripe_webhook_endpoint --secret whsec_…)"
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from accounts.billing.endpoints import save_webhook_endpoint, webhook_path
from accounts.billing.receivers import SUBSCRIPTION_EVENTS
from accounts.exceptions import AccountsError

LOCAL_BASE_URL = "http://127.0.0.1:8000"


class Command(BaseCommand):
    help = (
        "Create or update a Stripe webhook endpoint here (no call to Stripe) and print its path. "
        "The signing secret is stored on the endpoint and never printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--secret",
            required=True,
            help="The endpoint's signing secret, whsec_… (Stripe's endpoint page, or `stripe listen --print-secret`).",
        )
        parser.add_argument(
            "--url",
            default=None,
            help=(
                "Where Stripe posts: the site's address (https://backoffice.example.com; the endpoint registered "
                "under it is updated, or one is created), or an endpoint's full URL ending in /stripe/webhook/<uuid>/ "
                f"(that endpoint). Default {LOCAL_BASE_URL}, for `stripe listen`."
            ),
        )

    @method_decorator(sensitive_variables("options"))
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            endpoint, created = save_webhook_endpoint(secret=options["secret"], url=options["url"] or LOCAL_BASE_URL)
        except AccountsError as exc:
            raise CommandError(exc.message) from None
        mode = "live" if endpoint.livemode else "test"
        self.stderr.write(
            f"{'Created' if created else 'Updated'} the {mode}-mode webhook endpoint {endpoint.id}.\n"
            f"Stripe must post to {endpoint.url}\n"
            f"Events to send: {', '.join(SUBSCRIPTION_EVENTS)}"
        )
        self.stdout.write(webhook_path(endpoint))
