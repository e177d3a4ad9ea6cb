"""Local webhook-endpoint rows: where Stripe posts, and the signing secret dj-stripe checks, without calling Stripe.

dj-stripe 2.11 routes each webhook by the `WebhookEndpoint` row's uuid (`/stripe/webhook/<uuid>/`) and checks it
against the secret stored on that row (`manage.py stripe_webhook_endpoint`, and the demo seeding).
"""

from __future__ import annotations

import datetime
import logging
import re
import uuid
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables
from djstripe.enums import WebhookEndpointStatus
from djstripe.models import WebhookEndpoint
from djstripe.settings import djstripe_settings

from accounts.billing.config import live_mode
from accounts.billing.receivers import ENDPOINT_EVENTS
from accounts.exceptions import InvalidInput

logger = logging.getLogger(__name__)

_SECRET_PATTERN = re.compile(r"whsec_[A-Za-z0-9+/=_-]{8,200}")


def webhook_path(endpoint: WebhookEndpoint) -> str:
    return reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": endpoint.djstripe_uuid})


@sensitive_variables("secret")
def save_webhook_endpoint(
    *, secret: str, url: str | None = None, replace_secret: bool = True
) -> tuple[WebhookEndpoint, bool]:
    """Create or update a webhook endpoint row without calling Stripe. Returns (endpoint, created).

    `url` is where Stripe posts. With a `/stripe/webhook/<uuid>/` path, that uuid names the endpoint; otherwise it is
    the site's address and the endpoint already registered under it is updated, or a new one is made. Without `url`,
    the site's address is the HOTCROSS_PUBLIC_URL setting.
    `replace_secret=False` leaves an existing endpoint's secret as it is (the demo seeding must not undo a secret set
    for `stripe listen`).
    """
    secret = (secret or "").strip()
    if not _SECRET_PATTERN.fullmatch(secret):
        raise InvalidInput("The signing secret must look like whsec_… (Stripe shows it on the endpoint's page).")
    url = (url or settings.HOTCROSS_PUBLIC_URL or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise InvalidInput(f"'{url}' is not an http(s) URL.") from None
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc.lower(), "", "", ""))  # host names ignore case
    nil = uuid.UUID(int=0)
    prefix = reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": nil}).removesuffix(f"{nil}/")
    named = re.fullmatch(re.escape(prefix) + r"([0-9a-fA-F-]{36})/?", parts.path)
    if not named and parts.path not in ("", "/"):
        raise InvalidInput(
            f"Give the site's address ({base}) or an endpoint's full URL ({base}{prefix}<uuid>/), not '{url}'."
        )
    livemode = live_mode()
    with transaction.atomic():
        if named:
            try:
                endpoint_uuid = uuid.UUID(named.group(1))
            except ValueError:
                raise InvalidInput(f"'{named.group(1)}' in the URL is not a uuid.") from None
            endpoint = WebhookEndpoint.objects.select_for_update().filter(djstripe_uuid=endpoint_uuid).first()
        else:
            endpoint_uuid = uuid.uuid4()
            endpoints = list(
                WebhookEndpoint.objects.select_for_update().filter(url__startswith=base + prefix, livemode=livemode)
            )
            if len(endpoints) > 1:
                raise InvalidInput(
                    f"{len(endpoints)} endpoints are registered under {base}; name one with its full URL "
                    f"({base}{prefix}<uuid>/)."
                )
            endpoint = endpoints[0] if endpoints else None
        created = endpoint is None
        if created:
            endpoint = WebhookEndpoint(
                id=f"we_local_{endpoint_uuid.hex}",
                djstripe_uuid=endpoint_uuid,
                livemode=livemode,
                enabled_events=list(ENDPOINT_EVENTS),
                status=WebhookEndpointStatus.enabled,
                api_version=djstripe_settings.STRIPE_API_VERSION,
                stripe_data={},
                created=datetime.datetime.now(tz=datetime.UTC),
            )
        if created or replace_secret:
            endpoint.secret = secret
        endpoint.url = base + webhook_path(endpoint)
        endpoint.save()
    logger.info(
        "stripe webhook endpoint %s id=%s url=%s", "created" if created else "updated", endpoint.id, endpoint.url
    )
    return endpoint, created
