"""Who is on a customer page, and the pages' shared look. Every `/org/` view is wrapped in `manager_required`: the
signed-in person must be an active owner or admin, and everything the view reads or writes is of *their*
organization (`request.member.organization`); objects named in a URL are looked up inside it (`member_of`,
`invitation_of`), so another organization's ids are 404s, never someone else's data."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from accounts.choices import Role
from accounts.models import Developer, Invitation
from oauth.views import signed_in_developer

View = Callable[..., HttpResponse]


def page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """A customer page in the admin's look, without the admin's navigation."""
    base = admin.site.each_context(request)
    base.update({"site_title": "Hotcross", "site_header": "Hotcross", "has_permission": False})
    member = getattr(request, "member", None)
    if member is not None:
        base.update({"member": member, "organization": member.organization, "is_owner": member.role == Role.OWNER})
    return render(request, template, {**base, **context}, status=status)


def sign_in_first(request: HttpRequest) -> HttpResponse:
    from urllib.parse import quote

    return HttpResponseRedirect(f"{reverse('sign_in')}?next={quote(request.get_full_path(), safe='')}")


def manager_required(view: View) -> View:
    """The view runs for a signed-in, active owner or admin (`request.member`, organization loaded); anyone else is
    sent to sign in (nobody signed in) or refused with 403 (a member, a deactivated person, staff)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        developer = signed_in_developer(request)
        if developer is None:
            return sign_in_first(request)
        developer = Developer.objects.select_related("organization", "organization__plan").get(pk=developer.pk)
        if not developer.is_active or not developer.manages:
            context = {
                "title": "Not for your role",
                "error": "These pages are for your organization's owners and admins. Your own key and sign-ins are "
                "on your account page.",
            }
            return page(request, "portal/refused.html", context, status=403)
        request.member = developer
        return view(request, *args, **kwargs)

    return wrapped


def member_of(request: HttpRequest, member_id: uuid.UUID | str) -> Developer:
    """A person of the signed-in manager's organization; 404 for anyone else's."""
    found = Developer.objects.filter(pk=member_id, organization_id=request.member.organization_id).first()
    if found is None:
        raise Http404("No such member in your organization.")
    return found


def invitation_of(request: HttpRequest, invitation_id: uuid.UUID | str) -> Invitation:
    """An invitation of the signed-in manager's organization; 404 for anyone else's."""
    found = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(pk=invitation_id, organization_id=request.member.organization_id)
        .first()
    )
    if found is None:
        raise Http404("No such invitation in your organization.")
    return found
