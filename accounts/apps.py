from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Organizations and developers"

    def ready(self) -> None:
        # Connects the dj-stripe signal receivers that keep organizations in step with Stripe.
        from accounts import billing  # noqa: F401
