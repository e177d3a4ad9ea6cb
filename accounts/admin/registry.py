"""What the admin site has registered: a model's admin, asked what a user may do with the model."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.db.models import Model


def registered_admin(site: admin.AdminSite, model: type[Model]) -> admin.ModelAdmin | None:
    """The model admin registered for `model` on `site`, or None: callers then ask it what a user may do, so the
    admin's own permission rules (such as `hotcross.admin_site.SuperuserOnlyAdmin`) decide everywhere."""
    try:
        return site.get_model_admin(model)
    except NotRegistered:
        return None
