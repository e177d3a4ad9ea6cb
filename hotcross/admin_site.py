"""The staff back office's admin site: Django's, titled for Hotcross. Apps (ours and dj-stripe) register on it as on
any default site (`hotcross.apps.HotcrossAdminConfig` makes it the default)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class HotcrossAdminSite(admin.AdminSite):
    site_header = "Hotcross back office"
    site_title = "Hotcross back office"
    index_title = "Staff back office"
    # Without the navigation sidebar: dj-stripe registers some fifty models, and the sidebar listing them takes a
    # quarter of every page, pushing the organization list's last columns off screen.
    enable_nav_sidebar = False

    def admin_view(self, view: Callable[..., HttpResponse], cacheable: bool = False) -> Callable[..., HttpResponse]:
        """Django's, and an action posted with an id that is not one (`_selected_action=abc`) is a 400, not the
        server error the changelist would give when its action reads the selection (on every model admin,
        dj-stripe's included)."""
        guarded = super().admin_view(view, cacheable)
        model_admin = getattr(view, "__self__", None)
        if not isinstance(model_admin, admin.ModelAdmin):
            return guarded

        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                pk = model_admin.model._meta.pk
                for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
                    try:
                        pk.clean(value, None)
                    except (ValidationError, ValueError, TypeError):
                        return HttpResponseBadRequest("A selected object's id is not valid.")
            return guarded(request, *args, **kwargs)

        return checked
