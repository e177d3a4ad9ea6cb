"""Forms of the staff back office. The add form hands its data to `services.add_developer`, which is the validation."""

from __future__ import annotations

from typing import Any

from django import forms

from accounts import services
from accounts.exceptions import AccountsError, DuplicateEmail, SeatLimitReached
from accounts.models import Developer, SubscriptionStatus


class DeveloperAddForm(forms.ModelForm):
    """Creates the developer through the service while validating, so a refusal (a full organization, a taken
    email) appears as a form error in the service's own words, and `plain_key` holds the key to show once."""

    actor: Any = None  # the staff user; set per request by DeveloperAdmin.get_form
    plain_key: str | None = None

    class Meta:
        model = Developer
        fields = ("organization", "email", "first_name", "last_name")

    def _post_clean(self) -> None:
        # Replaces the model validation on purpose: the service validates (and locks the organization row for the
        # seat check), so the rules and their messages are the same as on the command line.
        if self._errors:
            return
        data = self.cleaned_data
        try:
            self.instance, self.plain_key = services.add_developer(
                organization=data["organization"],
                email=data["email"],
                first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""),
                actor=self.actor,
            )
        except SeatLimitReached as exc:
            self.add_error("organization", exc.message)
        except DuplicateEmail as exc:
            self.add_error("email", exc.message)
        except AccountsError as exc:
            self.add_error(None, exc.message)


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
