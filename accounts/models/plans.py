"""Plans: what a subscription allows and what it bills by usage (`accounts.plans` reads them)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.choices import AtCap, MeteredBilling


class Plan(models.Model):
    """What a subscription allows (tools, prompts, resources, rate limits, a monthly cap per seat) and what it bills
    by usage.

    An organization's plan is `Organization.plan`, or the plan whose code `HOTCROSS_DEFAULT_PLAN` names when that is
    empty. Organizations with a Stripe subscription get theirs from the price's or product's `hotcross_plan` metadata.
    Empty limits mean no limit."""

    id = models.BigAutoField(primary_key=True)
    code = models.SlugField(
        max_length=64,
        unique=True,
        help_text="A Stripe price or product whose metadata says hotcross_plan=CODE puts its subscribers on this plan.",
    )
    name = models.CharField(max_length=200)
    allows_all_tools = models.BooleanField("every tool", default=True)
    allowed_tools = models.TextField(
        blank=True,
        default="",
        help_text="When not every tool: one tool name or pattern per line (such as docs_* or memory.?), shell-style.",
    )
    allows_all_prompts = models.BooleanField("every prompt", default=True)
    allowed_prompts = models.TextField(
        blank=True,
        default="",
        help_text="When not every prompt: one prompt name or pattern per line, shell-style. None listed: no prompt "
        "(nor completions of a prompt's arguments).",
    )
    allows_all_resources = models.BooleanField("every resource", default=True)
    allowed_resources = models.TextField(
        blank=True,
        default="",
        help_text="When not every resource: one resource URI or pattern per line (such as notes://*), shell-style; a "
        "resource template is listed (and completed) when its URI template matches. None listed: no resource.",
    )
    rate_limit_per_developer = models.PositiveIntegerField(
        "calls per minute per developer", null=True, blank=True, help_text="Empty: no limit."
    )
    rate_limit_per_organization = models.PositiveIntegerField(
        "calls per minute per organization", null=True, blank=True, help_text="Empty: no limit."
    )
    monthly_calls_per_seat = models.PositiveIntegerField(
        "monthly calls per seat", null=True, blank=True, help_text="The cap is this × seats. Empty: no cap."
    )
    at_cap = models.CharField("at the cap", max_length=16, choices=AtCap.choices, default=AtCap.REFUSE)
    metered_billing = models.CharField(
        "usage billed", max_length=16, choices=MeteredBilling.choices, default=MeteredBilling.NONE
    )
    stripe_meter_event_name = models.CharField(
        "Stripe meter event name",
        max_length=100,
        blank=True,
        default="",
        help_text="The event name of the Stripe Billing meter that calls are reported to.",
    )
    stripe_price_id = models.CharField(
        "Stripe seat price",
        max_length=255,
        blank=True,
        default="",
        help_text="price_… sold per seat at sign-up (Stripe Checkout). Empty: not offered at sign-up.",
    )
    signup_min_seats = models.PositiveIntegerField("fewest seats at sign-up", default=1)
    signup_max_seats = models.PositiveIntegerField(
        "most seats at sign-up", null=True, blank=True, help_text="Empty: no bound but the seats' own."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "code"]
        constraints = [
            models.CheckConstraint(condition=models.Q(at_cap__in=AtCap.values), name="plan_at_cap_valid"),
            models.CheckConstraint(
                condition=models.Q(metered_billing__in=MeteredBilling.values), name="plan_metered_billing_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name
