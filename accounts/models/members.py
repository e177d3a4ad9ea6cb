"""What customer owners do without staff (issue 30): invitations to their organization, the alerts mailed to them,
and the counted steps of the self-service limits. The rules are in `accounts.services.members`, `accounts.alerts`
and `accounts.throttle`."""

from __future__ import annotations

import datetime
import uuid

from django.db import models
from django.utils import timezone

from accounts.choices import AlertKind, Role
from accounts.models.organizations import Developer, Organization


class InvitationQuerySet(models.QuerySet):
    def pending(self, now: datetime.datetime | None = None) -> InvitationQuerySet:
        """Neither accepted nor revoked, not expired."""
        return self.filter(accepted_at=None, revoked_at=None, expires_at__gt=now or timezone.now())


class Invitation(models.Model):
    """An invitation to join an organization, mailed as a link. Only the token's SHA-256 is kept; the token works once,
    until `expires_at`, and not after a revocation or a resend (which mails a new token)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    with_seat = models.BooleanField(
        default=True, help_text="The invitee gets a key (takes a seat) on accepting. Members always do."
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        Developer, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitations_sent"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(default=timezone.now, editable=False)
    sends = models.PositiveSmallIntegerField(default=1, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True, editable=False)
    accepted_by = models.ForeignKey(
        Developer, null=True, blank=True, on_delete=models.SET_NULL, related_name="invitation_accepted"
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="invitation_role_valid"),
        ]
        indexes = [models.Index(fields=["organization", "accepted_at", "revoked_at"], name="invitation_org_open_idx")]

    def __str__(self) -> str:
        return f"invitation of {self.email}"

    @property
    def state(self) -> str:
        """One word for lists: accepted, revoked, expired, pending."""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class AlertSent(models.Model):
    """An alert mailed to an organization's owners, once per kind and period (`period`: the UTC month for the cap
    alerts, the day otherwise): the unique row is what makes it once."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts_sent")
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    period = models.CharField(max_length=10)
    sent_at = models.DateTimeField(default=timezone.now)
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "kind", "period"], name="alert_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.period})"


class ThrottleEvent(models.Model):
    """One counted step of a self-service limit (sign-up starts, invitations), per address and per client address,
    in the database so the limits hold across workers (`accounts.throttle`). Kept a day."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32)
    email_key = models.CharField(max_length=254, default="")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "email_key", "created_at"], name="throttle_address_idx"),
            models.Index(fields=["kind", "client_ip", "created_at"], name="throttle_client_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} at {self.created_at:%Y-%m-%d %H:%M}"
