from django.apps import AppConfig


class OAuthConfig(AppConfig):
    name = "oauth"
    label = "oauth"
    verbose_name = "OAuth for MCP clients"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.signals import access_ended
        from oauth.grants import end_access

        access_ended.connect(end_access, dispatch_uid="oauth.grants.end_access")
