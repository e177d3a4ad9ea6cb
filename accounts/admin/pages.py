"""The back office's own pages: "are you sure?" before an action, and the one page a new key is ever shown on.

Shapes follow Django's own: a confirmation page like `delete_selected`'s (posting it back with `post=yes`
performs), and extra admin views returning a `TemplateResponse` like `UserAdmin.user_change_password`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.forms import Form
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from accounts.models import Developer


def confirmation(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    title: str,
    question: str,
    objects: Sequence[Any],
    submit: str,
    action: str | None = None,
    form: Form | None = None,
    hidden: Iterable[tuple[str, str]] = (),
    details: Sequence[str] = (),
    danger: bool = False,
    cancel_url: str | None = None,
) -> TemplateResponse:
    """An "are you sure?" page in the style of `delete_selected`: posting it back (with `post=yes`) performs."""
    opts = model_admin.opts
    media = model_admin.media + form.media if form is not None else model_admin.media
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": opts,
        "question": question,
        "objects": objects,
        "details": details,
        "submit": submit,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "object_ids": [str(obj.pk) for obj in objects] if action else [],
        "form": form,
        "hidden": list(hidden),
        "danger": danger,
        "cancel_url": cancel_url or reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "media": media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/accounts/confirm.html", context)


def key_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    issued: list[tuple[Developer, str]],
    *,
    title: str,
    added: bool = False,
    already_added: Developer | None = None,
    old_keys_until: dict[Any, datetime.datetime] | None = None,
) -> TemplateResponse:
    """The one page a plain key ever appears on. It is the response to the POST that made the key: nothing is
    stored, so reloading or going back cannot show it again (`already_added`: the page a re-sent add gets).
    `added`: the keys are of developers just added (the page then offers to add another; a rotation's does not).
    `old_keys_until`: developer id → when the replaced key stops working (a rotation with a grace period)."""
    old_keys_until = old_keys_until or {}
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": model_admin.opts,
        "issued": [
            {
                "developer": developer,
                "key": key,
                "old_key_until": (
                    f"{old_keys_until[developer.pk]:%Y-%m-%d %H:%M:%S} UTC" if developer.pk in old_keys_until else ""
                ),
            }
            for developer, key in issued
        ],
        "added": added,
        "already_added": already_added,
        "can_rotate": already_added is not None and request.user.has_perm("accounts.rotate_key"),
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    response = TemplateResponse(request, "admin/accounts/developer/key_shown_once.html", context)
    add_never_cache_headers(response)
    return response
