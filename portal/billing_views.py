"""The organization's billing page (issue 30, item 4): plan, seats paid and held, the subscription's status, the
upcoming invoice, and the way to the Stripe Customer Portal (seat changes, payment method, invoices, cancelling).

Owners and admins see the page; only owners open the Customer Portal (admins are refused with 403 and told why).
Changes made in the portal come back through the Stripe webhooks that already sync status and seats. Stripe not
answering is said on the page ("not available now", "try again"), never a 500.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.billing import checkout, meter_events
from accounts.billing.config import StripeUnavailable
from accounts.choices import Role
from accounts.exceptions import InvalidInput
from accounts.selectors import seats_in_use
from portal.access import manager_required, page


def _billing_page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    organization = request.member.organization
    invoice = None
    invoice_problem = ""
    if organization.stripe_customer_id:
        try:
            invoice = meter_events.upcoming_invoice(organization.stripe_customer_id)
        except StripeUnavailable:
            invoice_problem = "The upcoming invoice is not available now (Stripe did not answer). Try again later."
    else:
        invoice_problem = "No Stripe customer yet: the sign-up's payment is not finished."
    context = {
        "title": "Billing",
        "plan": organization.plan,
        "seats_paid": organization.max_seats,
        "seats_held": seats_in_use(organization),
        "status_label": organization.get_subscription_status_display(),
        "invoice": invoice,
        "invoice_problem": invoice_problem,
        "error": error or None,
        "can_open_portal": request.member.role == Role.OWNER and bool(organization.stripe_customer_id),
    }
    return page(request, "portal/billing.html", context, status=status)


@require_GET
@manager_required
def billing(request: HttpRequest) -> HttpResponse:
    """The billing page, for the organization's owners and admins."""
    return _billing_page(request)


@require_POST
@manager_required
def billing_portal(request: HttpRequest) -> HttpResponse:
    """Open the Stripe Customer Portal (303 to Stripe): owners only."""
    if request.member.role != Role.OWNER:
        context = {
            "title": "For owners only",
            "error": "Only the organization's owners manage its subscription in the Stripe Customer Portal. Ask an "
            "owner to change the seats or the payment method.",
        }
        return page(request, "portal/refused.html", context, status=403)
    return_url = request.build_absolute_uri(reverse("org_billing"))
    try:
        url = checkout.portal_url(request.member.organization, return_url=return_url)
    except StripeUnavailable:
        return _billing_page(request, error="Stripe did not answer, try again in a moment.", status=503)
    except InvalidInput as exc:
        return _billing_page(request, error=str(exc), status=400)
    return HttpResponseRedirect(url, status=303)
