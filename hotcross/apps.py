from django.contrib.admin.apps import AdminConfig


class HotcrossAdminConfig(AdminConfig):
    """Django's admin with the back office's own site as the default (`hotcross.admin_site`)."""

    default_site = "hotcross.admin_site.HotcrossAdminSite"
