"""The staff back office's admin site: Django's, titled for Hotcross. Apps (ours and dj-stripe) register on it as on
any default site (`hotcross.apps.HotcrossAdminConfig` makes it the default).

- The index is a dashboard for the people who run the business (`accounts.admin.dashboard`), above the app list.
- The app list puts Hotcross first; dj-stripe's some fifty models come last, as one "Stripe (synced data)" section
  in the order staff need them, folded on the index (its first models named in the fold's title).
- dj-stripe's pages are for superusers only: its admin offers actions that write to Stripe to anyone who may view
  its models, and its synced data is for diagnosing billing, not for everyday support.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.db.models.base import ModelBase
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse

# Apps in the index's order (the others follow, alphabetically, then dj-stripe).
APPS_FIRST = ("accounts",)
STRIPE_APP = "djstripe"
STRIPE_SECTION = "Stripe (synced data)"
# dj-stripe's models staff open most, in this order; the others follow alphabetically.
STRIPE_MODELS_FIRST = ("customer", "subscription", "webhookeventtrigger", "event", "invoice", "price", "product")


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """Mixed into every dj-stripe model admin: superusers only (and then what dj-stripe's admin allows), whatever
    model permissions a staff user was given, so the index, the pages, the lists and the links agree."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


class HotcrossAdminSite(admin.AdminSite):
    site_header = "Hotcross back office"
    site_title = "Hotcross back office"
    index_title = "Staff back office"
    # Without the navigation sidebar: dj-stripe registers some fifty models, and the sidebar listing them takes a
    # quarter of every page, pushing the organization list's last columns off screen.
    enable_nav_sidebar = False
    # One word for an empty value on every admin page (Django's is "-", which reads as a minus or a typo).
    empty_value_display = "none"

    def register(
        self, model_or_iterable: Any, admin_class: type[admin.ModelAdmin] | None = None, **options: Any
    ) -> None:
        """Django's; dj-stripe's model admins become superuser-only (`SuperuserOnlyAdmin`)."""
        models = [model_or_iterable] if isinstance(model_or_iterable, ModelBase) else list(model_or_iterable)
        for model in models:
            model_admin = admin_class or admin.ModelAdmin
            if model._meta.app_label == STRIPE_APP and not issubclass(model_admin, SuperuserOnlyAdmin):
                model_admin = type(model_admin.__name__, (SuperuserOnlyAdmin, model_admin), {"__module__": __name__})
            super().register(model, model_admin, **options)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """Hotcross first, dj-stripe last as one "Stripe (synced data)" section (superusers only: see
        `SuperuserOnlyAdmin`) with the models staff need first."""
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            if app["app_label"] == STRIPE_APP:
                app["name"] = STRIPE_SECTION
                app["models"].sort(key=_stripe_model_order)

        def place(app: dict[str, Any]) -> tuple[int, int]:
            if app["app_label"] in APPS_FIRST:
                return (0, APPS_FIRST.index(app["app_label"]))
            return (2, 0) if app["app_label"] == STRIPE_APP else (1, 0)

        return sorted(app_list, key=place)  # stable: the others stay alphabetical

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """Django's index with the staff dashboard above the app list (for those who may view organizations)."""
        # Imported here: accounts.admin registers its model admins on this site, which must exist first.
        from accounts.admin.dashboard import dashboard

        apps = self.get_app_list(request)
        context = {
            "dashboard": dashboard(request, self),
            # dj-stripe's some fifty models are one folded section below the others (superusers only see it)
            "app_list": [app for app in apps if app["app_label"] != STRIPE_APP],
            "stripe_apps": [app for app in apps if app["app_label"] == STRIPE_APP],
        }
        return super().index(request, {**context, **(extra_context or {})})

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


def _stripe_model_order(model: dict[str, Any]) -> tuple[int, str]:
    name = model["object_name"].lower()
    first = STRIPE_MODELS_FIRST.index(name) if name in STRIPE_MODELS_FIRST else len(STRIPE_MODELS_FIRST)
    return (first, str(model["name"]))
