"""The old system's `customers` table, read once by the legacy conversion (`accounts.legacy`)."""

from __future__ import annotations

from django.db import models


class LegacyCustomer(models.Model):
    """A row of the old system's `customers` table (1 customer = 1 Stripe customer = 1 key). Read-only.

    Unmanaged: Django never creates or drops the table; it exists only where the old system ran. The migration
    `0002_legacy_conversion` turns each row into a developer and an organization (see `accounts.legacy`).
    """

    id = models.UUIDField(primary_key=True)
    stripe_customer_id = models.TextField(null=True, blank=True)
    email = models.TextField()
    first_name = models.TextField(null=True, blank=True)
    last_name = models.TextField(null=True, blank=True)
    company = models.TextField(null=True, blank=True)
    subscription_status = models.TextField(null=True, blank=True)
    subscription_updated_at = models.DateTimeField(null=True, blank=True)
    api_key_hash = models.TextField(null=True, blank=True)
    api_key_prefix = models.TextField(null=True, blank=True)
    api_key_created_at = models.DateTimeField(null=True, blank=True)
    api_key_revoked_at = models.DateTimeField(null=True, blank=True)
    api_key_last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "customers"
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email
