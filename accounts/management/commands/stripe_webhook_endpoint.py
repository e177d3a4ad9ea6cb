"""`manage.py stripe_webhook_endpoint --secret whsec_… [--url …] [--print-url]`: register where Stripe posts, without
calling Stripe.

dj-stripe 2.11 checks each webhook against the signing secret stored on its `WebhookEndpoint` row and routes it by
the row's uuid (`/stripe/webhook/<uuid>/`). Without `--url` the endpoint is the one under HOTCROSS_PUBLIC_URL (what
`make run` serves). Only the endpoint's path — or with `--print-url` its full URL — goes to stdout, so it composes:

    stripe listen --forward-to "$(python manage.py stripe_webhook_endpoint --print-url --secret whsec_…)"
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from accounts.billing.endpoints import save_webhook_endpoint, webhook_path
from accounts.billing.receivers import ENDPOINT_EVENTS
from accounts.exceptions import AccountsError


class Command(BaseCommand):
    help = (
        "Create or update a Stripe webhook endpoint here (no call to Stripe) and print its path (or, with "
        "--print-url, its full URL). The signing secret is stored on the endpoint and never printed."
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
                "(that endpoint). Default: the HOTCROSS_PUBLIC_URL setting (what `make run` serves)."
            ),
        )
        parser.add_argument(
            "--print-url",
            action="store_true",
            help="Print the endpoint's full URL (what `stripe listen --forward-to` takes) instead of its path.",
        )

    @method_decorator(sensitive_variables("options"))
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            endpoint, created = save_webhook_endpoint(secret=options["secret"], url=options["url"])
        except AccountsError as exc:
            raise CommandError(exc.message) from None
        mode = "live" if endpoint.livemode else "test"
        self.stderr.write(
            f"{'Created' if created else 'Updated'} the {mode}-mode webhook endpoint {endpoint.id}.\n"
            f"Stripe must post to {endpoint.url}\n"
            f"Events to send: {', '.join(ENDPOINT_EVENTS)}"
        )
        self.stdout.write(endpoint.url if options["print_url"] else webhook_path(endpoint))
