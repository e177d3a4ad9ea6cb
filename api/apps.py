from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.signals import usage_prune_requested
        from api.reported_usage import pruned_on_request

        # `manage.py usage prune` (accounts) prunes this app's idempotency records too.
        usage_prune_requested.connect(pruned_on_request, dispatch_uid="api.reported_usage.pruned_on_request")
