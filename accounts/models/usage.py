"""Usage: one event per served MCP tool call, and their rollups per day (written by `accounts.services.usage`)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.models.organizations import Developer, Organization


class UsageEvent(models.Model):
    """One served MCP `tools/call` (metering and the admin usage chart)."""

    id = models.BigAutoField(primary_key=True)
    developer = models.ForeignKey(Developer, on_delete=models.CASCADE, related_name="usage_events")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage_events")
    tool_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["developer", "created_at"], name="usage_developer_time_idx"),
            models.Index(fields=["organization", "created_at"], name="usage_organization_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} by {self.developer_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class UsageRollup(models.Model):
    """Served calls per (organization, developer, tool, UTC day): calls, errors (calls not ok) and their total
    duration. Written in the same statement or transaction as the raw events (`accounts.services.usage`), so the
    rollups always equal the events; every read of usage figures (the `usage` tool, the organization page, the
    dashboard) comes from here and costs the same whatever the number of events. `manage.py usage rebuild-rollups`
    rebuilds them from the raw events and checks them."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage_rollups")
    developer = models.ForeignKey(Developer, on_delete=models.CASCADE, related_name="usage_rollups")
    tool_name = models.CharField(max_length=200)
    day = models.DateField(help_text="The UTC day of the calls.")
    calls = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    duration_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "organization", "developer", "tool_name"]
        constraints = [
            # The upsert's conflict target; its leading columns also serve an organization's days.
            models.UniqueConstraint(
                fields=["organization", "day", "developer", "tool_name"], name="usage_rollup_unique"
            ),
        ]
        indexes = [models.Index(fields=["developer", "day"], name="usage_rollup_developer_day_idx")]

    def __str__(self) -> str:
        return f"{self.tool_name} by {self.developer_id} on {self.day}: {self.calls}"
