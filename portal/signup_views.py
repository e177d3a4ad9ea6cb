"""Sign-up and accepting an invitation (issue 30, steps 1–2): the pages and their order; the rules are in
`accounts.services` (the organization, the invitation), `oauth.signin` (proving an address with an emailed code) and
`accounts.billing.checkout` (Stripe).

Sign-up: `/signup/` (a work address; a code is mailed) → `/signup/code/` (the code proves the address, kept in the
session) → `/signup/organization/` (name, plan, seats, "I develop too": the organization is made or, on a retry,
updated — never a second one —, the owner signed in, and the browser sent to Stripe Checkout) → `/signup/done/`
(back from Checkout: "waiting for payment confirmation" until Stripe's webhooks make it active; `/signup/status/`
answers the page's polling).

An invitation: `/invitations/<token>/` (who invites whom to what; a code is mailed to the invited address) →
`/invitations/<token>/code/` (the code proves it; the invitee joins, is signed in and sees their key once).

Bad input changes nothing and gets a clear page (400), a limit 429 with Retry-After, Stripe not answering 503 ("try
again"); never a 500 for a client's mistake.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from accounts import services, throttle
from accounts.billing import checkout
from accounts.billing.config import StripeUnavailable
from accounts.choices import Role, SubscriptionStatus
from accounts.exceptions import (
    AccountsError,
    DuplicateEmail,
    InvalidInput,
    InvitationUnusable,
    SeatLimitReached,
    Throttled,
)
from accounts.models import Developer, Invitation, Organization, Plan
from infra.mail import mail_is_printed
from infra.proxy import client_ip
from oauth import signin
from oauth.authentication import mcp_resource
from oauth.models import SignInCode
from oauth.views import signed_in_developer, start_session
from portal.access import page

SIGNUP_CODE = "hotcross_signup_code"  # the code id of the address being proven
SIGNUP_TYPED = "hotcross_signup_typed"  # the address as typed, for the code page
SIGNUP_EMAIL = "hotcross_signup_email"  # the proven address
SIGNUP_FORM = "hotcross_signup_form"  # the organization form's values, kept across Checkout and back
INVITATION_CODE = "hotcross_invitation_code"  # {"invitation": id, "code": code id}
INVITATION_PROVEN = "hotcross_invitation_proven"  # {"invitation": id, "email": proven}: a retry needs no new code

PAID = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
MAX_NAME = 200


def _throttled(request: HttpRequest, template: str, context: dict[str, Any], exc: Any) -> HttpResponse:
    response = page(request, template, {**context, "error": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


def _absolute(request: HttpRequest, name: str) -> str:
    return request.build_absolute_uri(reverse(name))


# --- sign-up: the address -----------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("email")
def start(request: HttpRequest) -> HttpResponse:
    """A work address to prove: a code is mailed to it (the sign-up's and the sign-in's limits both apply)."""
    context: dict[str, Any] = {"title": "Sign up", "email": ""}
    if request.method == "GET":
        return page(request, "portal/signup_start.html", context)
    typed = request.POST.get("email", "")
    context["email"] = typed[:254]
    ip = client_ip(request)
    try:
        email = signin.clean_email(typed)
        throttle.count_signup_start(email, ip)
        started = signin.start_address_proof(email, SignInCode.Purpose.SIGN_UP, ip)
    except (Throttled, signin.Throttled) as exc:
        return _throttled(request, "portal/signup_start.html", context, exc)
    except signin.SignInRefused as exc:
        return page(request, "portal/signup_start.html", {**context, "error": str(exc)}, status=400)
    request.session[SIGNUP_CODE] = started.code_id
    request.session[SIGNUP_TYPED] = started.email
    request.session.pop(SIGNUP_EMAIL, None)
    return HttpResponseRedirect(reverse("signup_code"))


@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("code")
def code(request: HttpRequest) -> HttpResponse:
    """The mailed code proves the address; the proven address is kept in the session for the next step."""
    code_id = request.session.get(SIGNUP_CODE)
    if code_id is None:
        return redirect("signup")
    context: dict[str, Any] = {
        "title": "Confirm your address",
        "email": request.session.get(SIGNUP_TYPED, ""),
        "mail_printed": mail_is_printed(),
    }
    if request.method == "GET":
        return page(request, "portal/signup_code.html", context)
    ip = client_ip(request)
    try:
        if "resend" in request.POST:
            context["notice"] = signin.resend_code(code_id, ip)
            return page(request, "portal/signup_code.html", context)
        proven = signin.finish_address_proof(code_id, request.POST.get("code", ""), SignInCode.Purpose.SIGN_UP, ip)
    except signin.Throttled as exc:
        return _throttled(request, "portal/signup_code.html", context, exc)
    except signin.SignInRefused as exc:
        return page(request, "portal/signup_code.html", {**context, "error": str(exc)}, status=400)
    request.session.pop(SIGNUP_CODE, None)
    request.session[SIGNUP_EMAIL] = proven
    return HttpResponseRedirect(reverse("signup_details"))


# --- sign-up: the organization, then Stripe Checkout ------------------------------------------------------------------


def _form_values(request: HttpRequest, email: str) -> dict[str, Any]:
    """The form as last filled in (kept in the session; back from Checkout too), else the unpaid sign-up's own."""
    kept = request.session.get(SIGNUP_FORM)
    if isinstance(kept, dict) and kept.get("email") == email:
        return kept
    owner = Developer.objects.select_related("organization", "organization__plan").filter(email__iexact=email).first()
    if owner is not None and owner.role == Role.OWNER and owner.organization.subscription_status not in PAID:
        organization = owner.organization
        return {
            "email": email,
            "name": organization.name,
            "plan": organization.plan.code if organization.plan else "",
            "seats": str(organization.max_seats),
            "develops": False,
        }
    return {"email": email, "name": "", "plan": "", "seats": "", "develops": False}


def _details_page(
    request: HttpRequest,
    plans: list[Plan],
    values: dict[str, Any],
    error: str = "",
    status: int = 200,
    notice: str = "",
) -> HttpResponse:
    offered = [(plan, *services.signup_seat_bounds(plan)) for plan in plans]
    context = {
        "title": "Your organization",
        "email": values["email"],
        "values": values,
        "plans": offered,
        "error": error or None,
        "notice": notice or None,
        "sign_in_instead": status == 409,
    }
    return page(request, "portal/signup_details.html", context, status=status)


@require_http_methods(["GET", "POST"])
def details(request: HttpRequest) -> HttpResponse:
    """Organization name, plan and seats: the organization (made once per address, updated on a retry), its owner
    signed in, then Stripe Checkout (303)."""
    email = request.session.get(SIGNUP_EMAIL)
    if not email:
        if request.method == "GET":
            return redirect("signup")
        context = {"title": "Sign up", "email": "", "error": "Confirm your email address first: start here."}
        return page(request, "portal/signup_start.html", context, status=400)
    plans = services.signup_plans()
    if request.method == "GET":
        values = _form_values(request, email)
        notice = (
            "Checkout was cancelled: nothing was paid. Change anything and continue."
            if "cancelled" in request.GET
            else ""
        )
        return _details_page(request, plans, values, notice=notice)
    values = {
        "email": email,
        "name": request.POST.get("name", "").strip()[:MAX_NAME],
        "plan": request.POST.get("plan", "")[:100],
        "seats": request.POST.get("seats", "").strip()[:12],
        "develops": request.POST.get("develops") in ("on", "1", "true"),
    }
    request.session[SIGNUP_FORM] = values
    plan = next((p for p in plans if p.code == values["plan"]), None)
    if plan is None:
        return _details_page(request, plans, values, "Choose one of the plans offered.", 400)
    try:
        seats = int(values["seats"])
    except ValueError:
        return _details_page(request, plans, values, "Enter the number of seats as a whole number.", 400)
    try:
        organization, owner = services.start_organization(
            owner_email=email, name=values["name"], plan=plan, seats=seats, develops=values["develops"]
        )
    except DuplicateEmail as exc:
        return _details_page(request, plans, values, str(exc), 409)
    except AccountsError as exc:
        return _details_page(request, plans, values, str(exc), 400)
    success_url = _absolute(request, "signup_done") + "?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = _absolute(request, "signup_details") + "?cancelled=1"
    try:
        url = checkout.create_checkout(organization, success_url=success_url, cancel_url=cancel_url)
    except StripeUnavailable:
        error = "Stripe did not answer, try again in a moment. Your organization is kept: nothing is paid yet."
        return _details_page(request, plans, values, error, 503)
    except InvalidInput as exc:
        return _details_page(request, plans, values, str(exc), 400)
    # Signed in only now: a 5xx answer above saves no session (Django's), so the sign-up's session stays as it was.
    start_session(request, owner)  # may start a new session: what this sign-up keeps is written after
    request.session[SIGNUP_EMAIL] = email
    request.session[SIGNUP_FORM] = values
    return HttpResponseRedirect(url, status=303)


# --- sign-up: back from Checkout --------------------------------------------------------------------------------------


def _owned_organization(request: HttpRequest) -> Organization | None:
    developer = signed_in_developer(request)
    if developer is None or developer.role != Role.OWNER or not developer.is_active:
        return None
    return Organization.objects.select_related("plan").get(pk=developer.organization_id)


@require_GET
def done(request: HttpRequest) -> HttpResponse:
    """Back from Checkout: the finished session is brought home at once (as its webhook would), then the page waits
    for payment confirmation (polling `/signup/status/`) until the organization is active. Only for the signed-in
    owner of an organization not yet paid, and only that organization's session: anyone else's visit, with any
    session id, asks Stripe nothing (the webhooks bring every session home anyway)."""
    session_id = request.GET.get("session_id", "")
    organization = _owned_organization(request)
    problem = ""
    if session_id and organization is not None and organization.subscription_status not in PAID:
        try:
            if checkout.complete_checkout(session_id, of=organization) is not None:
                organization.refresh_from_db()
        except StripeUnavailable:
            problem = "Stripe did not answer just now; your payment is confirmed as soon as its message arrives."
        except InvalidInput:
            problem = "That Checkout session is not one of ours."
    context = {
        "title": "Welcome" if organization and organization.subscription_status in PAID else "Waiting for payment",
        "organization_signed_up": organization,
        "paid": organization is not None and organization.subscription_status in PAID,
        "develops": bool((request.session.get(SIGNUP_FORM) or {}).get("develops")),
        "notice": problem or None,
    }
    response = page(request, "portal/signup_done.html", context)
    add_never_cache_headers(response)
    return response


@require_GET
def status(request: HttpRequest) -> JsonResponse:
    """The signed-in owner's organization's payment state, for the waiting page's polling."""
    organization = _owned_organization(request)
    if organization is None:
        response = JsonResponse({"error": "Sign in as the organization's owner."}, status=401)
    else:
        response = JsonResponse(
            {
                "organization": organization.name,
                "status": organization.subscription_status,
                "active": organization.subscription_status in PAID,
                "seats": organization.max_seats,
            }
        )
    add_never_cache_headers(response)
    return response


# --- an invitation ----------------------------------------------------------------------------------------------------


def _unusable(request: HttpRequest, exc: AccountsError, status: int = 410) -> HttpResponse:
    context = {"title": "Invitation not usable", "error": str(exc)}
    return page(request, "portal/invitation_unusable.html", context, status=status)


def _invitation_context(invitation: Invitation) -> dict[str, Any]:
    return {
        "title": f"Join {invitation.organization.name}",
        "invitation": invitation,
        "role": Role(invitation.role).label.lower(),
        "invited_by": invitation.invited_by.email if invitation.invited_by_id else "",
    }


@require_http_methods(["GET", "POST"])
@sensitive_variables("token")
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Who invites whom to which organization, as what; the button mails a code to the invited address."""
    try:
        found = services.invitation_for(token)
    except InvitationUnusable as exc:
        return _unusable(request, exc)
    context = _invitation_context(found)
    if request.method == "GET":
        return page(request, "portal/invitation_accept.html", context)
    ip = client_ip(request)
    try:
        started = signin.start_address_proof(found.email, SignInCode.Purpose.INVITATION, ip)
    except signin.Throttled as exc:
        return _throttled(request, "portal/invitation_accept.html", context, exc)
    except signin.SignInRefused as exc:
        return page(request, "portal/invitation_accept.html", {**context, "error": str(exc)}, status=400)
    request.session[INVITATION_CODE] = {"invitation": str(found.pk), "code": started.code_id}
    return HttpResponseRedirect(reverse("invitation_code", args=[token]))


@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("code")
@sensitive_variables("token", "plain_key")
def invitation_code(request: HttpRequest, token: str) -> HttpResponse:
    """The code proves the invited address; the invitee joins (`services.accept_invitation`), is signed in and sees
    their key once. No free seat: a clear page, the invitation stays usable (a retry needs no new code)."""
    try:
        found = services.invitation_for(token)
    except InvitationUnusable as exc:
        return _unusable(request, exc)
    context = {**_invitation_context(found), "mail_printed": mail_is_printed()}
    started = request.session.get(INVITATION_CODE) or {}
    proven_before = request.session.get(INVITATION_PROVEN) or {}
    retry = proven_before.get("invitation") == str(found.pk)
    if started.get("invitation") != str(found.pk) and not retry:
        return redirect("invitation", token=token)
    context["retry"] = retry
    if request.method == "GET":
        return page(request, "portal/invitation_code.html", context)
    ip = client_ip(request)
    if retry and "code" not in request.POST:
        proven = proven_before["email"]
    else:
        try:
            if "resend" in request.POST:
                context["notice"] = signin.resend_code(started.get("code"), ip)
                return page(request, "portal/invitation_code.html", context)
            proven = signin.finish_address_proof(
                started.get("code"), request.POST.get("code", ""), SignInCode.Purpose.INVITATION, ip
            )
        except signin.Throttled as exc:
            return _throttled(request, "portal/invitation_code.html", context, exc)
        except signin.SignInRefused as exc:
            return page(request, "portal/invitation_code.html", {**context, "error": str(exc)}, status=400)
        request.session.pop(INVITATION_CODE, None)
    try:
        developer, plain_key = services.accept_invitation(token=token, email=proven)
    except SeatLimitReached as exc:
        request.session[INVITATION_PROVEN] = {"invitation": str(found.pk), "email": proven}
        context = {**context, "error": str(exc), "retry": True}
        return page(request, "portal/invitation_no_seat.html", context, status=409)
    except InvitationUnusable as exc:
        return _unusable(request, exc)
    except AccountsError as exc:
        return _unusable(request, exc, status=400)
    request.session.pop(INVITATION_PROVEN, None)
    start_session(request, developer)
    context = {
        "title": f"Welcome to {found.organization.name}",
        "developer": developer,
        "organization_joined": found.organization,
        "plain_key": plain_key,
        "mcp_url": mcp_resource(),
    }
    response = page(request, "portal/invitation_joined.html", context)
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store"
    return response
