"""The staff back office's admin site: Django's, titled for Hotcross. Apps (ours and dj-stripe) register on it as on
any default site (`hotcross.apps.HotcrossAdminConfig` makes it the default)."""

from __future__ import annotations

from django.contrib import admin


class HotcrossAdminSite(admin.AdminSite):
    site_header = "Hotcross back office"
    site_title = "Hotcross back office"
    index_title = "Staff back office"
    # Without the navigation sidebar: dj-stripe registers some fifty models, and the sidebar listing them takes a
    # quarter of every page, pushing the organization list's last columns off screen.
    enable_nav_sidebar = False
