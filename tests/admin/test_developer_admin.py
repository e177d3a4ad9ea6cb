"""The developer pages: add (key shown once), rotate, revoke, (de)activate, expiry, list — through the test client."""

import datetime
import logging
import re

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from accounts import authentication, keys, selectors, services
from accounts.exceptions import KeyRefused
from accounts.models import Developer, ReplacedKey
from tests.factories import DeveloperFactory, OrganizationFactory

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:accounts_developer_add")
CHANGELIST_URL = reverse("admin:accounts_developer_changelist")
KEY_RE = re.compile(r"hc_live_[A-Za-z0-9]{40}")


def shown_keys(response) -> list[str]:
    return KEY_RE.findall(response.content.decode())


def authenticate_key_id(raw_key: str):
    return authentication.authenticate_key(raw_key).developer_id


def history(obj) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(obj.pk)).order_by("action_time", "id"))


def add(client, org, email="grace@acme.test", **extra):
    data = {"organization": str(org.pk), "email": email, "first_name": "Grace", "last_name": "Hopper", **extra}
    return client.post(ADD_URL, data)


class TestAddDeveloper:
    def test_the_add_form_prefills_the_organization_from_the_link_on_its_page(self, staff_client, org):
        response = staff_client.get(ADD_URL + f"?organization={org.pk}")
        assert response.status_code == 200
        assert f'<option value="{org.pk}" selected>Acme Corp</option>' in response.content.decode()

    def test_adding_shows_the_plain_key_once_and_stores_only_its_hash(self, staff_client, org, caplog):
        caplog.set_level(logging.DEBUG)
        response = add(staff_client, org)
        assert response.status_code == 200
        (key,) = shown_keys(response)
        developer = Developer.objects.get(email="grace@acme.test")
        assert developer.organization == org
        assert developer.api_key_hash == keys.hash_key(key)
        assert developer.api_key_prefix == key[:12]
        assert authentication.authenticate_key(key).developer_id == developer.pk
        body = response.content.decode()
        assert "will not be shown again" in body
        assert "hc-copy" in body and "accounts/copy_key.js" in body
        assert "no-store" in response["Cache-Control"]
        # Nowhere else: not in any session, not in the history, not in the logs.
        assert not any(key in str(s.get_decoded()) for s in Session.objects.all())
        assert not LogEntry.objects.filter(change_message__contains=key).exists()
        assert key not in caplog.text

    def test_reloading_the_key_page_does_not_show_the_key_again(self, staff_client, org):
        first = add(staff_client, org)
        assert len(shown_keys(first)) == 1
        # The same POST again, without the add form's submission id (a hand-made request): the developer exists,
        # so the form refuses and no key appears.
        again = add(staff_client, org)
        assert shown_keys(again) == []
        assert "already exists" in again.content.decode()
        assert Developer.objects.filter(email="grace@acme.test").count() == 1
        # And a plain GET of the page's address is an empty add form.
        assert shown_keys(staff_client.get(ADD_URL)) == []

    def test_a_re_sent_add_form_says_already_added_and_shows_no_key(self, staff_client, org):
        form_page = staff_client.get(ADD_URL).content.decode()
        (submission,) = re.findall(r'name="_hc_add_submission" value="([^"]+)"', form_page)
        first = add(staff_client, org, _hc_add_submission=submission)
        (key,) = shown_keys(first)
        # The browser's reload of the key page sends the same form again.
        again = add(staff_client, org, _hc_add_submission=submission)
        assert again.status_code == 200
        assert shown_keys(again) == []
        body = again.content.decode()
        assert "grace@acme.test was added to Acme Corp by this form already" in body
        assert "Please correct" not in body
        assert "no-store" in again["Cache-Control"]
        developer = Developer.objects.get(email="grace@acme.test")
        assert reverse("admin:accounts_developer_rotate_key", args=[developer.pk]) in body
        assert len(history(developer)) == 1
        # The session remembers which developer the form made, never the key.
        assert not any(key in str(s.get_decoded()) for s in Session.objects.all())

    def test_a_refused_add_keeps_its_submission_id_so_the_corrected_form_still_works(self, staff_client):
        full = OrganizationFactory(name="Tiny Ltd", max_seats=1)
        DeveloperFactory(organization=full)
        roomy = OrganizationFactory(name="Roomy")
        refused = add(staff_client, full, email="late@tiny.test", _hc_add_submission="sub-1")
        assert 'name="_hc_add_submission" value="sub-1"' in refused.content.decode()
        assert len(shown_keys(add(staff_client, roomy, email="late@tiny.test", _hc_add_submission="sub-1"))) == 1
        assert "by this form already" in add(staff_client, roomy, _hc_add_submission="sub-1").content.decode()

    def test_the_history_has_one_addition_by_the_staff_user(self, staff_client, org, superuser):
        add(staff_client, org)
        developer = Developer.objects.get(email="grace@acme.test")
        (entry,) = history(developer)
        assert entry.action_flag == ADDITION
        assert entry.user == superuser
        assert developer.api_key_prefix in entry.change_message

    def test_a_full_organization_refuses_with_the_services_message_as_a_form_error(self, staff_client):
        full = OrganizationFactory(name="Tiny Ltd", max_seats=1)
        DeveloperFactory(organization=full)
        response = add(staff_client, full, email="late@tiny.test")
        assert response.status_code == 200
        assert shown_keys(response) == []
        assert "Tiny Ltd uses 1 of 1 seat." in response.context["adminform"].form.errors["organization"][0]
        assert not Developer.objects.filter(email="late@tiny.test").exists()

    def test_a_taken_email_is_refused_ignoring_case(self, staff_client, org, developer):
        response = add(staff_client, org, email="ADA@acme.test")
        assert shown_keys(response) == []
        assert "already exists" in response.context["adminform"].form.errors["email"][0]

    def test_a_malformed_email_is_a_field_error_and_nothing_is_written(self, staff_client, org):
        response = add(staff_client, org, email="not-an-email")
        assert response.status_code == 200
        assert "email" in response.context["adminform"].form.errors
        assert Developer.objects.count() == 0
        assert LogEntry.objects.count() == 0


class TestRotate:
    def confirm_and_rotate(self, client, developer):
        page = client.post(
            CHANGELIST_URL, {"action": "rotate_keys", "_selected_action": [str(developer.pk)], "index": "0"}
        )
        assert page.status_code == 200
        assert "Rotate key?" in page.content.decode()
        assert shown_keys(page) == []
        version = page.context["hidden"][0]
        data = {"action": "rotate_keys", "_selected_action": [str(developer.pk)], "post": "yes", version[0]: version[1]}
        return data, client.post(CHANGELIST_URL, data)

    def test_rotate_action_confirms_then_shows_the_new_key_once_and_the_old_key_stops(
        self, staff_client, developer, superuser
    ):
        old_key = developer.plain_key
        _, response = self.confirm_and_rotate(staff_client, developer)
        (new_key,) = shown_keys(response)
        assert new_key != old_key
        assert "no-store" in response["Cache-Control"]
        assert authentication.authenticate_key(new_key).developer_id == developer.pk
        with pytest.raises(KeyRefused) as refused:
            authentication.authenticate_key(old_key)
        assert refused.value.code == "key_rotated"
        assert "The old key no longer works." in response.content.decode()
        assert "Add another developer" not in response.content.decode()
        (entry,) = history(developer)
        assert entry.action_flag == CHANGE and entry.user == superuser and "Rotated key" in entry.change_message

    def test_replaying_the_confirmed_post_rotates_nothing_and_shows_no_key(self, staff_client, developer):
        data, first = self.confirm_and_rotate(staff_client, developer)
        (new_key,) = shown_keys(first)
        replay = staff_client.post(CHANGELIST_URL, data, follow=True)
        assert shown_keys(replay) == []
        assert "the key changed after the confirmation page was opened" in replay.content.decode()
        assert authentication.authenticate_key(new_key).developer_id == developer.pk
        assert len(history(developer)) == 1

    def test_rotate_button_on_the_change_page(self, staff_client, developer):
        url = reverse("admin:accounts_developer_rotate_key", args=[developer.pk])
        change = staff_client.get(reverse("admin:accounts_developer_change", args=[developer.pk]))
        assert url in change.content.decode()
        page = staff_client.get(url)
        assert page.status_code == 200 and shown_keys(page) == []
        name, value = page.context["hidden"][0]
        response = staff_client.post(url, {"post": "yes", name: value})
        (new_key,) = shown_keys(response)
        assert authentication.authenticate_key(new_key).developer_id == developer.pk
        assert shown_keys(staff_client.post(url, {"post": "yes", name: value}, follow=True)) == []

    def test_rekeying_a_revoked_developer_of_a_full_organization_says_why(self, staff_client, org, developer):
        developer.api_key_revoked_at = timezone.now()
        developer.save()
        DeveloperFactory.create_batch(3, organization=org)
        _, response = self.confirm_and_rotate(staff_client, developer)
        assert shown_keys(response) == []
        response = staff_client.get(CHANGELIST_URL)
        assert "Acme Corp uses 3 of 3 seats." in response.content.decode()

    def test_rotate_with_a_grace_period_keeps_the_old_key_working_on_the_same_seat(self, staff_client, org, developer):
        page = staff_client.post(
            CHANGELIST_URL, {"action": "rotate_keys", "_selected_action": [str(developer.pk)], "index": "0"}
        )
        assert 'name="grace"' in page.content.decode()
        name, value = page.context["hidden"][0]
        data = {"action": "rotate_keys", "_selected_action": [str(developer.pk)], "post": "yes", name: value}
        response = staff_client.post(CHANGELIST_URL, {**data, "grace": "15m"})
        (new_key,) = shown_keys(response)
        until = ReplacedKey.objects.get(developer=developer).grace_until
        assert datetime.timedelta(minutes=14) < until - timezone.now() <= datetime.timedelta(minutes=15)
        assert f"The old key keeps working until {until:%Y-%m-%d %H:%M:%S} UTC" in response.content.decode()
        assert authenticate_key_id(developer.plain_key) == authenticate_key_id(new_key) == developer.pk
        assert selectors.seats_in_use(org) == 1
        change = staff_client.get(reverse("admin:accounts_developer_change", args=[developer.pk])).content.decode()
        assert "Old key works until" in change and f"{until:%H:%M}" in change

    def test_the_rotate_button_takes_a_grace_period_too(self, staff_client, developer):
        url = reverse("admin:accounts_developer_rotate_key", args=[developer.pk])
        name, value = staff_client.get(url).context["hidden"][0]
        response = staff_client.post(url, {"post": "yes", name: value, "grace": "2h"})
        assert len(shown_keys(response)) == 1
        assert authenticate_key_id(developer.plain_key) == developer.pk

    @pytest.mark.parametrize(
        ("grace", "says"), [("25h", "A grace period is at most 24 hours"), ("later", "is not a grace period")]
    )
    def test_a_bad_grace_period_is_a_form_error_and_rotates_nothing(self, staff_client, developer, grace, says):
        url = reverse("admin:accounts_developer_rotate_key", args=[developer.pk])
        name, value = staff_client.get(url).context["hidden"][0]
        response = staff_client.post(url, {"post": "yes", name: value, "grace": grace})
        assert response.status_code == 200
        assert shown_keys(response) == []
        assert says in response.context["form"].errors["grace"][0]
        assert Developer.objects.get(pk=developer.pk).api_key_hash == developer.api_key_hash
        assert not ReplacedKey.objects.exists() and history(developer) == []

    def test_the_confirmation_speaks_of_one_developer_when_there_is_one(self, staff_client, org, developer):
        one = staff_client.post(
            CHANGELIST_URL, {"action": "rotate_keys", "_selected_action": [str(developer.pk)], "index": "0"}
        ).content.decode()
        assert "The developer gets a new key" in one and "Each developer" not in one
        other = DeveloperFactory(organization=org)
        two = staff_client.post(
            CHANGELIST_URL,
            {"action": "rotate_keys", "_selected_action": [str(developer.pk), str(other.pk)], "index": "0"},
        ).content.decode()
        assert "Each developer gets a new key" in two
        button = staff_client.get(reverse("admin:accounts_developer_rotate_key", args=[developer.pk]))
        assert "The developer gets a new key" in button.content.decode()

    def test_messages_naming_a_developer_do_not_start_with_the_email(self, staff_client, org):
        """The admin capitalises the first letter of every message: "Erin@demo.example: …" is not her address."""
        erin = DeveloperFactory(organization=org, email="erin@demo.example")
        data, first = self.confirm_and_rotate(staff_client, erin)
        assert len(shown_keys(first)) == 1
        reloaded = staff_client.post(CHANGELIST_URL, data, follow=True).content.decode()
        assert "Nothing was done for erin@demo.example: the key changed" in reloaded
        assert "Erin@" not in reloaded

        services.revoke_key(developer=erin)
        DeveloperFactory.create_batch(3, organization=org)
        _, refused = self.confirm_and_rotate(staff_client, Developer.objects.get(pk=erin.pk))
        assert shown_keys(refused) == []
        full = staff_client.get(CHANGELIST_URL).content.decode()
        assert "Nothing was done for erin@demo.example: Acme Corp uses 3 of 3 seats." in full
        assert "Erin@" not in full


class TestRevoke:
    def test_revoke_action_asks_first_then_revokes_at_once(self, staff_client, developer, superuser):
        ask = staff_client.post(
            CHANGELIST_URL, {"action": "revoke_keys", "_selected_action": [str(developer.pk)], "index": "0"}
        )
        assert ask.status_code == 200 and "Revoke key?" in ask.content.decode()
        developer.refresh_from_db()
        assert developer.api_key_revoked_at is None

        done = staff_client.post(
            CHANGELIST_URL, {"action": "revoke_keys", "_selected_action": [str(developer.pk)], "post": "yes"}
        )
        assert done.status_code == 302
        with pytest.raises(KeyRefused) as refused:
            authentication.authenticate_key(developer.plain_key)
        assert refused.value.code == "key_revoked"
        (entry,) = history(developer)
        assert entry.user == superuser and "Revoked key" in entry.change_message

    def test_revoke_button_on_the_change_page(self, staff_client, developer):
        url = reverse("admin:accounts_developer_revoke_key", args=[developer.pk])
        assert staff_client.get(url).status_code == 200
        response = staff_client.post(url, {"post": "yes"})
        assert response.status_code == 302
        developer.refresh_from_db()
        assert developer.api_key_revoked_at is not None
        # Revoked: the button is gone.
        change = staff_client.get(reverse("admin:accounts_developer_change", args=[developer.pk]))
        assert url not in change.content.decode()

    def test_an_unknown_developer_is_a_404(self, staff_client):
        url = reverse("admin:accounts_developer_revoke_key", args=["00000000-0000-0000-0000-000000000000"])
        assert staff_client.get(url).status_code == 404


class TestActivation:
    def test_deactivate_frees_the_seat_and_activate_takes_it_back(self, staff_client, org, developer, superuser):
        response = staff_client.post(
            CHANGELIST_URL, {"action": "deactivate", "_selected_action": [str(developer.pk)], "index": "0"}
        )
        assert response.status_code == 302
        assert selectors.seats_in_use(org) == 0
        with pytest.raises(KeyRefused) as refused:
            authentication.authenticate_key(developer.plain_key)
        assert refused.value.code == "developer_inactive"

        staff_client.post(CHANGELIST_URL, {"action": "activate", "_selected_action": [str(developer.pk)], "index": "0"})
        assert selectors.seats_in_use(org) == 1
        assert [e.change_message for e in history(developer)] == ["Deactivated.", "Activated."]
        assert {e.user for e in history(developer)} == {superuser}

    def test_activating_into_a_full_organization_shows_the_services_message(self, staff_client, org):
        waiting = DeveloperFactory(organization=org, is_active=False)
        DeveloperFactory.create_batch(3, organization=org)
        response = staff_client.post(
            CHANGELIST_URL, {"action": "activate", "_selected_action": [str(waiting.pk)], "index": "0"}, follow=True
        )
        assert "Acme Corp uses 3 of 3 seats." in response.content.decode()
        waiting.refresh_from_db()
        assert waiting.is_active is False


class TestExpiry:
    def test_set_key_expiry_asks_for_a_time_then_the_key_expires(self, staff_client, developer):
        ask = staff_client.post(
            CHANGELIST_URL, {"action": "set_key_expiry", "_selected_action": [str(developer.pk)], "index": "0"}
        )
        assert ask.status_code == 200 and 'type="datetime-local"' in ask.content.decode()
        past = (timezone.now() - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
        done = staff_client.post(
            CHANGELIST_URL,
            {"action": "set_key_expiry", "_selected_action": [str(developer.pk)], "post": "yes", "expires_at": past},
        )
        assert done.status_code == 302
        with pytest.raises(KeyRefused) as refused:
            authentication.authenticate_key(developer.plain_key)
        assert refused.value.code == "key_expired"

    def test_a_bad_time_is_a_form_error_and_nothing_changes(self, staff_client, developer):
        response = staff_client.post(
            CHANGELIST_URL,
            {"action": "set_key_expiry", "_selected_action": [str(developer.pk)], "post": "yes", "expires_at": "soon"},
        )
        assert response.status_code == 200
        assert response.context["form"].errors["expires_at"]
        developer.refresh_from_db()
        assert developer.api_key_expires_at is None
        assert history(developer) == []

    def test_empty_means_never(self, staff_client, developer):
        developer.api_key_expires_at = timezone.now() - datetime.timedelta(days=1)
        developer.save()
        staff_client.post(
            CHANGELIST_URL,
            {"action": "set_key_expiry", "_selected_action": [str(developer.pk)], "post": "yes", "expires_at": ""},
        )
        assert authentication.authenticate_key(developer.plain_key).developer_id == developer.pk


class TestChangelistAndChangePage:
    def test_columns_and_no_hash_anywhere(self, staff_client, developer):
        body = staff_client.get(CHANGELIST_URL).content.decode()
        for text in ("ada@acme.test", "Acme Corp", developer.api_key_prefix, "active"):
            assert text in body
        change = staff_client.get(reverse("admin:accounts_developer_change", args=[developer.pk])).content.decode()
        assert developer.api_key_hash not in body and developer.api_key_hash not in change
        assert 'name="role"' in change  # the one field edited in place (services.set_role)
        assert 'name="api_key_prefix"' not in change

    def test_short_labels_and_never_for_a_key_not_used_yet(self, staff_client, developer):
        body = staff_client.get(CHANGELIST_URL).content.decode()
        assert "Key last used" in body and "api key last used" not in body.lower()
        row = body[body.index("ada@acme.test") :]
        assert "never" in row[: row.index("</tr>")]
        change = staff_client.get(reverse("admin:accounts_developer_change", args=[developer.pk])).content.decode()
        for label in ("Key prefix", "Key created", "Key last used", "Key expires"):
            assert f">{label}:<" in change
        assert "Api key" not in change and "API key created at" not in change

        used = timezone.now() - datetime.timedelta(hours=1)
        Developer.objects.filter(pk=developer.pk).update(api_key_last_used_at=used)
        row = staff_client.get(CHANGELIST_URL).content.decode()
        assert "never" not in row[row.index("ada@acme.test") :].split("</tr>")[0]

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("q=ada@acme", {"ada@acme.test"}),
            ("q=Hopper", {"grace@other.test"}),
            ("is_active__exact=0", {"off@other.test"}),
            ("revoked=yes", {"gone@acme.test"}),
            ("revoked=no", {"ada@acme.test", "grace@other.test", "off@other.test"}),
            ("organization__subscription_status__exact=canceled", {"grace@other.test", "off@other.test"}),
        ],
    )
    def test_search_and_filters(self, staff_client, org, developer, query, expected):
        other = OrganizationFactory(subscription_status="canceled")
        DeveloperFactory(organization=other, email="grace@other.test", last_name="Hopper")
        DeveloperFactory(organization=other, email="off@other.test", is_active=False)
        DeveloperFactory(organization=org, email="gone@acme.test", api_key_revoked_at=timezone.now())
        response = staff_client.get(f"{CHANGELIST_URL}?{query}")
        assert response.status_code == 200
        assert {d.email for d in response.context["cl"].result_list} == expected

    def test_search_by_key_prefix(self, staff_client, developer):
        DeveloperFactory()
        response = staff_client.get(f"{CHANGELIST_URL}?q={developer.api_key_prefix}")
        assert [d.pk for d in response.context["cl"].result_list] == [developer.pk]

    def test_there_is_no_delete(self, staff_client, developer):
        response = staff_client.get(CHANGELIST_URL)
        assert "delete_selected" not in response.content.decode()
        assert staff_client.get(reverse("admin:accounts_developer_delete", args=[developer.pk])).status_code == 403
