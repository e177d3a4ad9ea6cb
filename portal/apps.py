from django.apps import AppConfig


class PortalConfig(AppConfig):
    """Customers' own pages (floor 4): sign-up with Stripe Checkout, the organization's pages for owners and admins,
    accepting an invitation. Every write goes through `accounts.services`."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "portal"
    verbose_name = "Customer pages"
