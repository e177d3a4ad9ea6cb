"""Customers' own pages (issue 30): sign-up (`signup_views`), accepting an invitation (`signup_views`), and the
organization's pages for owners and admins (`org_views`; billing: `billing_views`)."""

from django.urls import path

from portal import billing_views, org_views, signup_views

urlpatterns = [
    # sign-up: address → code → organization, plan and seats → Stripe Checkout → waiting for payment confirmation
    path("signup/", signup_views.start, name="signup"),
    path("signup/code/", signup_views.code, name="signup_code"),
    path("signup/organization/", signup_views.details, name="signup_details"),
    path("signup/done/", signup_views.done, name="signup_done"),
    path("signup/status/", signup_views.status, name="signup_status"),
    # an invitation: the link → a code to the invited address → joined (the key shown once)
    path("invitations/<str:token>/", signup_views.invitation, name="invitation"),
    path("invitations/<str:token>/code/", signup_views.invitation_code, name="invitation_code"),
    # the organization's pages (owners and admins of that organization only)
    path("org/", org_views.members, name="org_home"),
    path("org/invite/", org_views.invite, name="org_invite"),
    path("org/invitations/<uuid:invitation_id>/", org_views.invitation_action, name="org_invitation"),
    path("org/members/<uuid:member_id>/", org_views.member_action, name="org_member"),
    path("org/seat/", org_views.own_seat, name="org_seat"),
    path("org/usage/", org_views.usage, name="org_usage"),
    path("org/billing/", billing_views.billing, name="org_billing"),
    path("org/billing/portal/", billing_views.billing_portal, name="org_billing_portal"),
    path("org/history/", org_views.history, name="org_history"),
]
