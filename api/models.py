"""What the API must remember: the client event ids of reported usage, so a retried batch is not counted twice."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ReportedEvent(models.Model):
    """One usage event a client reported through `POST /api/v1/usage`, by its own id (unique per developer)."""

    id = models.BigAutoField(primary_key=True)
    developer = models.ForeignKey("accounts.Developer", on_delete=models.CASCADE, related_name="reported_events")
    client_event_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["developer", "client_event_id"], name="reported_event_once_per_developer")
        ]
        # `manage.py usage prune` deletes by age (api.reported_usage.prune_reported_events).
        indexes = [models.Index(fields=["received_at"], name="reported_event_received_at")]

    def __str__(self) -> str:
        return f"{self.client_event_id} of {self.developer_id}"
