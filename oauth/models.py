"""OAuth for MCP clients: the registered clients, the link from a developer to the Django user that OAuth grants and
tokens belong to, each developer's grants, and the one-time codes of the email sign-in.

django-oauth-toolkit keeps grants and tokens (its `AccessToken`, `RefreshToken`, `Grant` rows) for
`settings.AUTH_USER_MODEL`. Developers are not Django users, so each developer who signs in gets one *shadow user*
(`DeveloperAccount.user`): not staff, no usable password, never able to sign in to the admin. Everything that
decides access goes back to the developer (`oauth.authentication`), never to that user.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication

from oauth.client_values import redirect_uri_problem, unsafe_character


class Client(AbstractApplication):
    """An OAuth client (django-oauth-toolkit's application, swapped in by OAUTH2_PROVIDER_APPLICATION_MODEL): what
    MCP clients register for themselves (RFC 7591 or a Client ID Metadata Document), or staff add. Staff may block
    one: it then gets no authorization and no token, and its tokens are gone (`oauth.grants`)."""

    blocked_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        verbose_name = "OAuth client"

    def __str__(self) -> str:
        return self.name or self.client_id

    @property
    def self_registered(self) -> bool:
        return self.registration_source != self.RegistrationSource.MANUAL

    @property
    def redirect_hosts(self) -> list[str]:
        return sorted({urlsplit(uri).netloc for uri in self.redirect_uris.split() if uri})

    def clean(self) -> None:
        problems = [p for p in (redirect_uri_problem(uri) for uri in self.redirect_uris.split()) if p]
        if problems:
            raise ValidationError({"redirect_uris": problems})
        if unsafe_character(self.name):
            raise ValidationError({"name": "A client name may not hold control characters."})
        if self.self_registered and (
            self.client_type != self.CLIENT_PUBLIC or self.authorization_grant_type != self.GRANT_AUTHORIZATION_CODE
        ):  # what registration (RFC 7591/7592) and metadata documents may make: public, authorization code
            raise ValidationError("A self-registered client is public and uses the authorization_code grant only.")
        super().clean()

    def is_usable(self, request: object) -> bool:
        return self.blocked_at is None


class DeveloperAccount(models.Model):
    """A developer's shadow Django user, which django-oauth-toolkit's grants and tokens point at."""

    developer = models.OneToOneField("accounts.Developer", on_delete=models.CASCADE, related_name="oauth_account")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="developer_account")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"OAuth account of developer {self.developer_id}"


class Grant(models.Model):
    """A developer's consent to one client: what staff and the developer see and revoke. The tokens themselves are
    django-oauth-toolkit's (for the developer's shadow user and this client); revoking deletes them."""

    developer = models.ForeignKey("accounts.Developer", on_delete=models.CASCADE, related_name="oauth_grants")
    client = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth grant"
        constraints = [models.UniqueConstraint(fields=["developer", "client"], name="oauth_grant_one_per_client")]

    def __str__(self) -> str:
        return f"{self.client} for developer {self.developer_id}"


class SignInCode(models.Model):
    """One emailed sign-in code. Made for unknown addresses too (developer empty, nothing sent), so the page answers
    the same whoever asks. Only the code's hash is kept. An address has at most one unused code: a new start ends
    the earlier ones (`email_key` finds them)."""

    class Purpose(models.TextChoices):
        SIGN_IN = "sign_in", "sign in"
        SIGN_UP = "sign_up", "sign up (a new organization)"
        INVITATION = "invitation", "accept an invitation"

    email = models.CharField(max_length=254)
    email_key = models.CharField(max_length=254, default="", help_text="The address in lower case.")
    # sign_in: mailed to developers only. sign_up and invitation prove an address that is no developer's yet: mailed to
    # any address (within the same limits), and a right code gives the address, not a developer.
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.SIGN_IN)
    developer = models.ForeignKey("accounts.Developer", null=True, blank=True, on_delete=models.CASCADE)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField()
    sends = models.PositiveSmallIntegerField(default=1)
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["email_key", "used_at"], name="oauth_signincode_email_key")]

    def __str__(self) -> str:
        return f"sign-in code for {self.email}"


class SignInEvent(models.Model):
    """One counted step of the email sign-in, for its limits (`oauth.signin`): a code made (a start or a resend: a
    mail when the address is a developer's) or a code tried. Kept a day, for any address, known or not, so the
    limits hold across every worker and say nothing about who is a developer."""

    class Kind(models.TextChoices):
        CODE = "code", "code made"
        GUESS = "guess", "code tried"

    kind = models.CharField(max_length=5, choices=Kind.choices)
    email_key = models.CharField(max_length=254)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    wrong = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["email_key", "kind", "created_at"], name="oauth_signinevent_address"),
            models.Index(fields=["client_ip", "kind", "created_at"], name="oauth_signinevent_client"),
            models.Index(fields=["created_at"], name="oauth_signinevent_created"),
        ]

    def __str__(self) -> str:
        return f"sign-in {self.kind} for {self.email_key}"


class SpentCode(models.Model):
    """An authorization code already exchanged (its hash): presented again, what it issued is revoked."""

    code_hash = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    spent_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return "spent authorization code"
