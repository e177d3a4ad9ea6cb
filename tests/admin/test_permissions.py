"""Who may do what: non-staff get the login page, the Support group views everything and revokes keys, no more."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from djstripe import models as djstripe_models

from accounts import authentication
from accounts.models import Developer
from tests.factories import DeveloperFactory

pytestmark = pytest.mark.django_db

DEV_LIST = reverse("admin:accounts_developer_changelist")
ORG_LIST = reverse("admin:accounts_organization_changelist")


def action_names(response) -> set[str]:
    return {value for value, _ in response.context["action_form"].fields["action"].choices if value}


class TestNonStaff:
    @pytest.mark.parametrize("url", [DEV_LIST, ORG_LIST, reverse("admin:accounts_developer_add")])
    def test_anonymous_and_non_staff_users_get_the_login_page(self, client, url):
        assert client.get(url)["Location"].startswith(reverse("admin:login"))
        client.force_login(User.objects.create_user("pat", "pat@example.test", "pw-pat-123"))
        assert client.get(url)["Location"].startswith(reverse("admin:login"))

    def test_non_staff_cannot_rotate_or_revoke(self, client, developer):
        client.force_login(User.objects.create_user("pat", "pat@example.test", "pw-pat-123"))
        for name in ("rotate_key", "revoke_key"):
            url = reverse(f"admin:accounts_developer_{name}", args=[developer.pk])
            assert client.post(url, {"post": "yes"})["Location"].startswith(reverse("admin:login"))
        assert authentication.authenticate_key(developer.plain_key).developer_id == developer.pk


class TestSupportGroup:
    def test_the_group_holds_view_rights_and_revoke_only(self, support_group):
        codenames = set(support_group.permissions.values_list("codename", flat=True))
        assert codenames == {
            "view_organization",
            "view_developer",
            "view_usageevent",
            "revoke_key",
            "view_invitation",
            "change_invitation",  # for the invitations' one write, "revoke"
            "view_alertsent",
        }

    def test_support_sees_both_lists_and_pages_read_only(self, support_client, org, developer):
        assert support_client.get(ORG_LIST).status_code == 200
        assert support_client.get(DEV_LIST).status_code == 200
        org_page = support_client.get(reverse("admin:accounts_organization_change", args=[org.pk]))
        assert org_page.status_code == 200
        body = org_page.content.decode()
        assert 'name="max_seats"' not in body and 'name="_save"' not in body
        assert "Add developer" not in body
        assert support_client.get(reverse("admin:accounts_developer_add")).status_code == 403

    def test_support_can_revoke_but_not_rotate_deactivate_or_delete(self, support_client, developer, support_user):
        developer_actions = action_names(support_client.get(DEV_LIST))
        assert developer_actions == {"revoke_keys"}
        assert action_names(support_client.get(ORG_LIST)) == {"revoke_all_keys"}
        page = support_client.get(reverse("admin:accounts_developer_change", args=[developer.pk])).content.decode()
        assert "Revoke key" in page and "Rotate key" not in page and "deletelink" not in page

        rotate = reverse("admin:accounts_developer_rotate_key", args=[developer.pk])
        assert support_client.get(rotate).status_code == 403
        assert support_client.post(rotate, {"post": "yes"}).status_code == 403
        # An action a user lacks is refused even when posted by hand.
        support_client.post(DEV_LIST, {"action": "deactivate", "_selected_action": [str(developer.pk)], "index": "0"})
        assert Developer.objects.get(pk=developer.pk).is_active

        support_client.post(DEV_LIST, {"action": "revoke_keys", "_selected_action": [str(developer.pk)], "post": "yes"})
        developer.refresh_from_db()
        assert developer.api_key_revoked_at is not None
        entry = developer_history_user(developer)
        assert entry == support_user

    def test_support_reads_every_history_page(self, support_client, org, developer):
        for name, obj in (("organization", org), ("developer", developer)):
            response = support_client.get(reverse(f"admin:accounts_{name}_history", args=[obj.pk]))
            assert response.status_code == 200

    def test_support_gets_no_dj_stripe_pages_and_so_no_links_to_them(self, support_client, client, superuser, org):
        # dj-stripe offers its writing sync actions to anyone who may view its models: Support has no rights there.
        org.subscription_id = "sub_123"
        org.save()
        customers = reverse("admin:djstripe_customer_changelist")
        assert support_client.get(customers).status_code == 403
        body = support_client.get(reverse("admin:accounts_organization_change", args=[org.pk])).content.decode()
        assert "https://dashboard.stripe.com/test/customers/cus_acme" in body
        assert customers not in body and reverse("admin:djstripe_subscription_changelist") not in body
        client.force_login(superuser)  # a superuser is offered the link, once dj-stripe has synced the customer
        djstripe_models.Customer.objects.create(id="cus_acme", livemode=False)
        assert customers in client.get(reverse("admin:accounts_organization_change", args=[org.pk])).content.decode()

    @pytest.mark.parametrize(
        ("model", "action"),
        [("subscription", "_cancel"), ("customer", "_sync_all_instances"), ("customer", "_resync_instances")],
    )
    def test_support_cannot_start_dj_stripe_actions_that_write_to_stripe(
        self, support_client, client, superuser, model, action
    ):
        # dj-stripe's own action view asks only for a staff login; cancelling a subscription in Stripe must not be
        # one POST away for Support (STRIPE_API_HOST points nowhere in tests: a call to Stripe would fail loudly).
        url = f"/admin/djstripe/{model}/action/{action}/{model}/"
        assert support_client.post(url, {"_selected_action": ["1"]}).status_code == 403
        client.force_login(superuser)
        # Who may change the model reaches dj-stripe's view: an empty selection gets its confirmation page again.
        assert client.post(url).status_code == 200

    def test_staff_given_dj_stripe_permissions_still_cannot_start_its_actions(self, client, make_staff):
        # dj-stripe's admin is superuser-only (hotcross.admin_site); its action URL asks the same admin.
        staff = make_staff("view_organization")
        staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="djstripe"))
        client.force_login(User.objects.get(pk=staff.pk))
        assert client.get(reverse("admin:djstripe_customer_changelist")).status_code == 403
        url = "/admin/djstripe/customer/action/_resync_instances/customer/"
        assert client.post(url, {"_selected_action": ["1"]}).status_code == 403

    def test_dj_stripe_action_urls_take_only_dj_stripe_actions_and_posts(self, staff_client):
        assert staff_client.post("/admin/djstripe/customer/action/dispatch/customer/").status_code == 404
        assert staff_client.post("/admin/djstripe/customer/action/_cancel/nomodel/").status_code == 404
        assert staff_client.get("/admin/djstripe/customer/action/_cancel/customer/").status_code == 405

    def test_support_cannot_change_an_organization_by_posting(self, support_client, org):
        url = reverse("admin:accounts_organization_change", args=[org.pk])
        response = support_client.post(url, {"name": "Hijacked", "max_seats": "0"})
        assert response.status_code == 403
        org.refresh_from_db()
        assert org.name == "Acme Corp" and org.max_seats == 3


class TestStaffWithSomePermissions:
    def test_rotate_needs_its_own_permission(self, client, make_staff, developer):
        client.force_login(make_staff("view_developer", "change_developer"))
        assert "rotate_keys" not in action_names(client.get(DEV_LIST))
        assert client.get(reverse("admin:accounts_developer_rotate_key", args=[developer.pk])).status_code == 403

    def test_with_the_rotate_permission_the_action_and_button_appear(self, client, make_staff, developer):
        client.force_login(make_staff("view_developer", "rotate_key"))
        assert "rotate_keys" in action_names(client.get(DEV_LIST))
        assert client.get(reverse("admin:accounts_developer_rotate_key", args=[developer.pk])).status_code == 200

    def test_revoke_needs_its_own_permission(self, client, make_staff, developer):
        client.force_login(make_staff("view_developer", "change_developer"))
        assert "revoke_keys" not in action_names(client.get(DEV_LIST))
        client.post(DEV_LIST, {"action": "revoke_keys", "_selected_action": [str(developer.pk)], "post": "yes"})
        assert authentication.authenticate_key(developer.plain_key).developer_id == developer.pk

    def test_adding_a_developer_needs_the_add_permission(self, client, make_staff, org):
        client.force_login(make_staff("view_developer", "view_organization"))
        response = client.post(reverse("admin:accounts_developer_add"), {"organization": org.pk, "email": "x@y.test"})
        assert response.status_code == 403
        assert not Developer.objects.filter(email="x@y.test").exists()


def developer_history_user(developer):
    from django.contrib.admin.models import LogEntry

    return LogEntry.objects.get(object_id=str(developer.pk)).user


def test_support_group_can_be_given_to_a_new_staff_user(support_group):
    user = User.objects.create_user("new", "new@hotcross.test", "pw-new-123", is_staff=True)
    user.groups.add(support_group)
    user = User.objects.get(pk=user.pk)
    assert user.has_perm("accounts.revoke_key") and user.has_perm("accounts.view_organization")
    assert not user.has_perm("accounts.rotate_key") and not user.has_perm("accounts.change_developer")
    DeveloperFactory()
