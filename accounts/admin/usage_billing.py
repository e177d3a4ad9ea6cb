"""Usage billing in the back office: the organization page's section (this month's metered usage, reported up to,
pending, last error, the upcoming invoice from Stripe) and a read-only list of the meter reports.

The section costs no query for an organization whose plan bills no usage. The upcoming invoice is asked of Stripe
with a bounded timeout (`INVOICE_TIMEOUT_SECONDS`, or `STRIPE_TIMEOUT_SECONDS` when shorter); when Stripe cannot be
asked the section says why, and the page is served as always.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

from accounts import plans
from accounts.admin.base import ReadOnlyAdmin
from accounts.admin.registry import registered_admin
from accounts.billing import config, meter_events, usage
from accounts.models import MeterReport, Organization

logger = logging.getLogger(__name__)

INVOICE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class UsageBillingSection:
    status: usage.UsageBillingStatus | None  # None: not billed by usage
    plan_name: str
    invoice: meter_events.UpcomingInvoice | None
    invoice_problem: str
    reports_url: str


def usage_billing_section(
    organization: Organization, site: admin.AdminSite, request: HttpRequest
) -> UsageBillingSection:
    """The section's figures; no query when the organization's plan bills no usage (the section is then left out)."""
    plan = plans.effective_plan(organization)
    if not plans.bills_usage(plan):
        return UsageBillingSection(None, plan.name if plan else "", None, "", "")
    url = reports_url(site, request, organization)
    status = usage.usage_billing_status(organization)
    invoice, problem = None, ""
    if not organization.stripe_customer_id:
        problem = "No Stripe customer: nothing is reported, and there is no invoice to preview."
    elif config.key_problem():
        problem = f"The upcoming invoice is not shown: {config.key_problem()}"
    else:
        timeout = min(INVOICE_TIMEOUT_SECONDS, float(settings.STRIPE_TIMEOUT_SECONDS))
        try:
            invoice = meter_events.upcoming_invoice(organization.stripe_customer_id, timeout=timeout)
        except config.StripeUnavailable as exc:
            problem = exc.message
        except Exception:  # the page is served whatever Stripe answers
            logger.exception("Upcoming invoice of %s", organization.pk)
            problem = "The upcoming invoice could not be read (an unexpected answer from Stripe; see the log)."
    return UsageBillingSection(status, plan.name if plan else "", invoice, problem, url)


def reports_url(site: admin.AdminSite, request: HttpRequest, organization: Organization) -> str:
    """The organization's meter reports in the list below, when this user may see it; "" otherwise."""
    model_admin = registered_admin(site, MeterReport)
    if model_admin is None or not model_admin.has_view_permission(request):
        return ""
    return reverse("admin:accounts_meterreport_changelist") + f"?organization__id__exact={organization.pk}"


@admin.register(MeterReport)
class MeterReportAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """What was reported to Stripe: read-only (the ledger is written by `manage.py billing report-usage` only)."""

    list_display = (
        "identifier",
        "organization",
        "interval_start",
        "sequence",
        "value",
        "state",
        "attempts",
        "reported_at",
        "last_error",
    )
    list_filter = ("state", "event_name")
    list_select_related = ("organization",)
    search_fields = ("=identifier", "=stripe_customer_id", "organization__name")
    date_hierarchy = "interval_start"
    list_per_page = 100
    show_full_result_count = False
    readonly_fields = [field.name for field in MeterReport._meta.fields]
    fields = readonly_fields
