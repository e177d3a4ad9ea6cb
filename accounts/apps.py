from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Organizations and developers"

    def ready(self) -> None:
        from accounts import checks
        from accounts.billing import checks as billing_checks
        from accounts.billing import config, receivers

        checks.register()
        billing_checks.register()
        receivers.connect()
        config.configure_client()
