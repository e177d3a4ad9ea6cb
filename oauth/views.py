"""The OAuth pages and endpoints Hotcross adds around django-oauth-toolkit's own views (token, revocation,
registration, RFC 8414 metadata): Protected Resource Metadata for `/mcp`, the rate limit on registration, the
developer's sign-in (emailed code or key), the consent page and `/account/`.

Developers are signed in to Django's session as their shadow user (`oauth.models.DeveloperAccount`); a session of
anyone else (staff) does not count here.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import login, logout, update_session_auth_hash
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from oauth2_provider.models import get_application_model
from oauth2_provider.views import AuthorizationView
from oauth2_provider.views.dynamic_client_registration import (
    DynamicClientRegistrationManagementView,
    DynamicClientRegistrationView,
)
from oauth2_provider.views.metadata import OAuthProtectedResourceMetadataView

from accounts import services
from accounts.exceptions import AccountsError
from accounts.models import Developer
from infra import request_log
from infra.mail import mail_is_printed
from infra.proxy import client_ip
from oauth import grants, signin
from oauth.authentication import mcp_resource
from oauth.models import Grant
from oauth.registration import WINDOW_SECONDS, registration_allowed

SESSION_CODE = "hotcross_sign_in_code"
SESSION_EMAIL = "hotcross_sign_in_email"
SESSION_SIGNED_IN_AT = "hotcross_signed_in_at"
RECENT_SIGN_IN_SECONDS = 600  # rotating one's own key needs a sign-in at most this old


# --- discovery and registration ---------------------------------------------------------------------------------------


class ProtectedResourceMetadataView(OAuthProtectedResourceMetadataView):
    """RFC 9728 for `/mcp` (at /.well-known/oauth-protected-resource/mcp)."""

    def get_resource(self, request: HttpRequest) -> str:
        return mcp_resource()

    def get_authorization_servers(self, request: HttpRequest) -> list[str]:
        return [settings.HOTCROSS_PUBLIC_URL]

    def get_resource_name(self) -> str:
        return "Hotcross MCP server"


class RegistrationView(DynamicClientRegistrationView):
    """RFC 7591 (django-oauth-toolkit's view, with Hotcross's rules): at most HOTCROSS_OAUTH_REGISTRATIONS_PER_HOUR
    per client address; public clients with `authorization_code` (+ `refresh_token`) only, no secret
    (`oauth.registration.registered_metadata`); anything else is refused with the RFC 7591 §3.2.2 error and nothing is
    stored. The answer echoes the registered metadata, `response_types` included."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        from django.core.exceptions import ValidationError
        from django.db import transaction
        from oauth2_provider.views import dynamic_client_registration as dcr

        from oauth.registration import RegistrationRefused, registered_metadata

        if not registration_allowed(request):
            response = JsonResponse(
                {
                    "error": "invalid_client_metadata",
                    "error_description": "Too many client registrations from this address. Try again later.",
                },
                status=429,
            )
            response["Retry-After"] = str(WINDOW_SECONDS)
            return response
        if not dcr._check_permissions(request):
            return dcr._error_response("access_denied", "Registration is not open.", status=401)
        try:
            data, error = dcr._parse_metadata(request.body)
        except RecursionError:  # nested deeper than Python's parser goes; the library only catches ValueError
            data, error = None, dcr._error_response("invalid_client_metadata", "Request body must be valid JSON")
        if error is not None:
            return error
        try:
            fields = registered_metadata(data)
        except RegistrationRefused as refused:
            return JsonResponse({"error": refused.error, "error_description": refused.description}, status=400)
        Application = get_application_model()
        client = Application(user=None, registration_source=Application.RegistrationSource.DCR, **fields)
        try:
            client.full_clean()
        except ValidationError as exc:
            return dcr._error_response("invalid_client_metadata", dcr._validation_error_description(exc))
        with transaction.atomic():
            client.save()
            registration_token = dcr._issue_registration_token(client, None)
        answer = dcr._application_to_response(client, registration_token, request)
        answer["response_types"] = ["code"]
        answer["client_id_issued_at"] = int(client.created.timestamp())
        return JsonResponse(answer, status=201)


class RegistrationManagementView(DynamicClientRegistrationManagementView):
    """RFC 7592 (django-oauth-toolkit's view): a client reads, updates or deletes its own registration with its
    registration token. A body nested deeper than Python's parser goes is a 400, as on registration."""

    def put(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        from oauth2_provider.views import dynamic_client_registration as dcr

        try:
            return super().put(request, *args, **kwargs)
        except RecursionError:
            return dcr._error_response("invalid_client_metadata", "Request body must be valid JSON")


# --- who is signed in ---------------------------------------------------------------------------------------------


def signed_in_developer(request: HttpRequest) -> Developer | None:
    user = request.user
    if not user.is_authenticated or user.is_staff:
        return None
    account = getattr(user, "developer_account", None)
    return None if account is None else account.developer


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    base = admin.site.each_context(request)
    base.update({"site_title": "Hotcross", "site_header": "Hotcross", "has_permission": False})
    return render(request, template, {**base, **context}, status=status)


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("account")


def start_session(request: HttpRequest, developer: Developer) -> None:
    """Sign `developer` in to this browser (their shadow user), now: a recent sign-in."""
    user = grants.shadow_user(developer=developer)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SESSION_SIGNED_IN_AT] = int(time.time())


def _sign_in(request: HttpRequest, developer: Developer) -> HttpResponse:
    target = _safe_next(request)
    start_session(request, developer)
    return HttpResponseRedirect(target)


def signed_in_recently(request: HttpRequest) -> bool:
    signed_in_at = request.session.get(SESSION_SIGNED_IN_AT)
    return isinstance(signed_in_at, int) and 0 <= time.time() - signed_in_at <= RECENT_SIGN_IN_SECONDS


# --- sign-in --------------------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    """Enter an email address (a code is mailed) or paste an API key."""
    error = None
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.method == "POST":
        if "key" in request.POST:
            try:
                developer = signin.sign_in_with_key(request.POST.get("key", ""))
            except signin.SignInRefused as refused:
                error = str(refused)
            else:
                request_log.note_developer(developer.pk)  # the request's log line names who signed in
                return _sign_in(request, developer)
        else:
            try:
                started = signin.start_email_sign_in(request.POST.get("email", ""), client_ip(request))
            except signin.Throttled as throttled:
                context = {"title": "Sign in", "error": str(throttled), "next": next_url}
                response = _page(request, "oauth/sign_in.html", context, 429)
                response["Retry-After"] = str(throttled.retry_after)
                return response
            except signin.SignInRefused as refused:
                error = str(refused)
            else:
                request.session[SESSION_CODE] = started.code_id
                request.session[SESSION_EMAIL] = started.email
                target = reverse("sign_in_code")
                return HttpResponseRedirect(f"{target}?next={_quote(next_url)}" if next_url else target)
    status = 400 if error else 200
    return _page(request, "oauth/sign_in.html", {"title": "Sign in", "error": error, "next": next_url}, status)


@require_http_methods(["GET", "POST"])
def sign_in_code(request: HttpRequest) -> HttpResponse:
    code_id = request.session.get(SESSION_CODE)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if code_id is None:
        return redirect("sign_in")
    error = notice = throttled = None
    if request.method == "POST":
        try:
            if "resend" in request.POST:
                notice = signin.resend_code(code_id, client_ip(request))
            else:
                developer = signin.finish_email_sign_in(code_id, request.POST.get("code", ""), client_ip(request))
                request.session.pop(SESSION_CODE, None)
                return _sign_in(request, developer)
        except signin.Throttled as refused:
            error, throttled = str(refused), refused
        except signin.SignInRefused as refused:
            error = str(refused)
    context = {
        "title": "Enter your code",
        "email": request.session.get(SESSION_EMAIL, ""),
        "error": error,
        "notice": notice,
        "next": next_url,
        "mail_printed": mail_is_printed(),
    }
    if throttled is None:
        return _page(request, "oauth/sign_in_code.html", context, 400 if error else 200)
    response = _page(request, "oauth/sign_in_code.html", context, 429)
    response["Retry-After"] = str(throttled.retry_after)
    return response


@require_http_methods(["POST"])
def sign_out(request: HttpRequest) -> HttpResponse:
    if signed_in_developer(request) is not None:
        logout(request)
    return redirect("sign_in")


# --- consent ----------------------------------------------------------------------------------------------------------


class ConsentView(AuthorizationView):
    """django-oauth-toolkit's authorization endpoint, with Hotcross's sign-in and consent page. Only a signed-in
    developer in good standing may allow; the grant is recorded when they do."""

    template_name = "oauth/consent.html"

    def get_login_url(self) -> str:
        return reverse("sign_in")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        developer = signed_in_developer(request)
        if developer is None:
            return self.handle_no_permission()
        refused = _refused_session(request, developer)
        if refused is not None:
            return refused
        self.developer = developer
        return super().dispatch(request, *args, **kwargs)

    def handle_no_permission(self) -> HttpResponse:
        return _sign_in_again(self.request, self.request.get_full_path())

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(admin.site.each_context(self.request))
        context.update(
            {
                "title": "Allow access",
                "site_header": "Hotcross",
                "has_permission": False,
                "developer": self.developer,
                "organization": self.developer.organization,
            }
        )
        return context

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        if form.cleaned_data.get("allow") and response.status_code in (301, 302):
            location = response.get("Location", "")
            if "code=" in urlsplit(location).query:
                client = get_application_model().objects.get(client_id=form.cleaned_data["client_id"])
                grants.record_grant(developer=self.developer, client=client, actor=self.request.user)
        return response


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


# --- /account/ ------------------------------------------------------------------------------------------------------


def _refused_session(request: HttpRequest, developer: Developer) -> HttpResponse | None:
    """A developer whom the key check would refuse now (revoked, expired, deactivated, subscription, seats) has no
    web session either: it ends here, with the key check's words. An active owner or admin keeps theirs for /org/
    (/account/ sends them there)."""
    refusal = signin.standing_message(developer)
    if refusal is None:
        return None
    if developer.is_active and developer.manages:
        # an owner or admin stays signed in to manage the organization (/org/), seat or not, paid or not yet
        if request.resolver_match and request.resolver_match.url_name == "account":
            return HttpResponseRedirect(reverse("org_home"))
        return _page(request, "oauth/refused.html", {"title": "Not with this account", "error": refusal}, status=403)
    logout(request)
    return _page(request, "oauth/refused.html", {"title": "You cannot sign in", "error": refusal}, status=403)


def _sign_in_again(request: HttpRequest, path: str) -> HttpResponse:
    return HttpResponseRedirect(f"{reverse('sign_in')}?next={_quote(path)}")


@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    developer = signed_in_developer(request)
    if developer is None:
        return _sign_in_again(request, reverse("account"))
    refused = _refused_session(request, developer)
    if refused is not None:
        return refused
    error = notice = None
    if request.method == "POST":
        if "rotate_key" in request.POST:  # the old one-click form: rotating now goes through its confirmation page
            return HttpResponseRedirect(reverse("account_rotate_key"))
        if "revoke_grant" in request.POST:
            raw = request.POST.get("revoke_grant", "")
            grant = Grant.objects.filter(developer=developer, pk=int(raw)).first() if raw.isdigit() else None
            if grant is None:
                error = "That grant is not yours or no longer exists."
            elif grants.revoke_grant(grant=grant, actor=request.user):
                notice = f"{grant.client} can no longer use your account."
    return _account_page(request, developer, error=error, notice=notice)


def _account_page(
    request: HttpRequest, developer: Developer, *, new_key: str | None = None, **messages: str | None
) -> HttpResponse:
    developer.refresh_from_db()
    live = Grant.objects.filter(developer=developer, revoked_at=None).select_related("client").order_by("-created_at")
    context = {
        "title": "Your Hotcross account",
        "developer": developer,
        "organization": developer.organization,
        "grants": live,
        "new_key": new_key,
        "mcp_url": mcp_resource(),
        "error": messages.get("error"),
        "notice": messages.get("notice"),
    }
    response = _page(request, "account/account.html", context, 400 if messages.get("error") else 200)
    if new_key:
        response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
def rotate_own_key(request: HttpRequest) -> HttpResponse:
    """The developer rotates their own key: only with a sign-in of the last 10 minutes (else sign in again), after a
    confirmation page, with the grace period staff may give (the old key keeps working that long). Their other web
    sessions and unused authorization codes end (`grants.end_web_sign_ins`); this one stays."""
    path = reverse("account_rotate_key")
    developer = signed_in_developer(request)
    if developer is None:
        return _sign_in_again(request, path)
    refused = _refused_session(request, developer)
    if refused is not None:
        return refused
    if not signed_in_recently(request):
        return _sign_in_again(request, path)
    error = None
    if request.method == "POST":
        try:
            grace = services.parse_grace(request.POST.get("grace"))
            developer, new_key = services.rotate_key(
                developer=developer,
                actor=request.user,
                if_key_version=request.POST.get("key_version") or "",
                grace=grace,
            )
        except AccountsError as exc:
            error = str(exc)
        else:
            request.user.refresh_from_db(fields=["password"])
            update_session_auth_hash(request, request.user)  # this session stays; every other one ended
            return _account_page(request, developer, new_key=new_key, notice=_rotated_notice(developer))
    developer.refresh_from_db()
    context = {
        "title": "Rotate your API key",
        "developer": developer,
        "error": error,
        "grace_choices": [("", "no grace: the old key stops now"), ("1h", "1 hour"), ("24h", "24 hours")],
    }
    return _page(request, "account/rotate_key.html", context, 400 if error else 200)


def _rotated_notice(developer: Developer) -> str:
    from accounts.models import ReplacedKey

    replaced = ReplacedKey.objects.filter(developer=developer).order_by("-replaced_at").first()
    if replaced is not None and replaced.grace_until is not None:
        return f"Your old key keeps working until {replaced.grace_until:%Y-%m-%d %H:%M} UTC."
    return "Your old key no longer works."
