"""Forms of the back office. They validate with the services' own rules (so the messages are the command line's);
the admin's `save_model` then writes through the services."""

from __future__ import annotations

import datetime

from django import forms

from accounts import services
from accounts.exceptions import AccountsError, DuplicateEmail, SeatLimitReached
from accounts.models import Developer, SubscriptionStatus
from accounts.services.developers import parse_grace


class DeveloperAddForm(forms.ModelForm):
    """Organization, email and names of a new developer; `services.check_new_developer` says whether they can be
    added (a full organization, a taken email), in the service's own words."""

    class Meta:
        model = Developer
        fields = ("organization", "email", "first_name", "last_name")

    def clean(self) -> dict:
        data = super().clean()
        if self._errors:
            return data
        try:
            services.check_new_developer(
                organization=data["organization"],
                email=data["email"],
                first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""),
            )
        except SeatLimitReached as exc:
            self.add_error("organization", exc.message)
        except DuplicateEmail as exc:
            self.add_error("email", exc.message)
        except AccountsError as exc:
            self.add_error(None, exc.message)
        return data

    def validate_unique(self) -> None:
        # Emails are unique ignoring case: `check_new_developer` says so in the service's words (and the database
        # constraint backs it); the model's own check would add a second, differently worded error.
        pass


class StatusForm(forms.Form):
    status = forms.ChoiceField(label="New subscription status", choices=SubscriptionStatus.choices)


class KeyExpiryForm(forms.Form):
    expires_at = forms.DateTimeField(
        label="Key expires at (UTC)",
        required=False,
        help_text="Leave empty for a key that never expires. A time in the past stops the key at once.",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class RotateKeyForm(forms.Form):
    """The rotation's grace period, read with the command line's rule (`parse_grace`: 30s, 15m, 2h, 1d; at most 24h)."""

    grace = forms.CharField(
        label="Old key keeps working for",
        required=False,
        max_length=40,
        help_text="Empty: the old key stops at once. Or a grace period (30s, 15m, 2h, 1d; at most 24h) so a team "
        "can switch to the new key, e.g. in CI secrets, without downtime; both keys use the developer's one seat.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. 15m", "size": 10}),
    )

    def clean_grace(self) -> datetime.timedelta | None:
        try:
            return parse_grace(self.cleaned_data["grace"])
        except AccountsError as exc:
            raise forms.ValidationError(exc.message) from None
