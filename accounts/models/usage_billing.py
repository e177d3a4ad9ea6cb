"""Usage billing through Stripe Billing meters (issue 16, part 2: `accounts.billing.usage`): the meter
events sent or to send, and how far each organization billed by usage has been worked out."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.models.organizations import Organization


class MeterReportState(models.TextChoices):
    PENDING = "pending", "Pending (to send, or sent and not yet recorded)"
    ACCEPTED = "accepted", "Accepted by Stripe"
    EXPIRED = "expired", "Too old for Stripe (never sent)"


class MeterReport(models.Model):
    """One meter event for Stripe: an organization's billable calls of one reporting interval (`sequence` 0), or the
    calls that arrived late for an interval already reported (`sequence` 1, 2…). The `identifier` is deterministic
    (organization + interval [+ sequence]), so a resend after a crash or a retry is recognized by Stripe as a
    duplicate and never billed twice. Written before sending; marked accepted after."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="meter_reports")
    interval_start = models.DateTimeField()
    interval_end = models.DateTimeField()
    sequence = models.PositiveIntegerField(default=0, help_text="0: the interval's report; 1, 2…: late calls.")
    identifier = models.CharField(max_length=100, unique=True, editable=False)
    event_name = models.CharField(max_length=100)
    stripe_customer_id = models.CharField("Stripe customer id", max_length=255)
    value = models.BigIntegerField()
    timestamp = models.DateTimeField(help_text="The meter event's time: inside the interval.")
    state = models.CharField(max_length=16, choices=MeterReportState.choices, default=MeterReportState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-interval_start", "organization", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "interval_start", "sequence"], name="meter_report_unique"),
            models.CheckConstraint(condition=models.Q(state__in=MeterReportState.values), name="meter_report_state"),
            models.CheckConstraint(condition=models.Q(value__gt=0), name="meter_report_value_positive"),
        ]
        indexes = [models.Index(fields=["state", "interval_start"], name="meter_report_state_idx")]

    def __str__(self) -> str:
        return self.identifier


class UsageBillingState(models.Model):
    """Per organization billed by usage: since when (`billing_since`, the start of the interval in which it was first
    seen billable), how far its intervals have been worked out (`planned_until`), and the last error."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, primary_key=True, related_name="usage_billing"
    )
    billing_since = models.DateTimeField(null=True, blank=True)
    planned_until = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"usage billing of {self.organization_id}"
