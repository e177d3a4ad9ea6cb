"""The OAuth tests' settings; the flow's helpers and the real server (`oauth_server`) are in tests/support/oauth.py."""

import pytest


@pytest.fixture(autouse=True)
def _oauth_settings(settings):
    settings.HOTCROSS_PUBLIC_URL = "http://testserver"
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": "http://testserver"}
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    from django.core.cache import cache

    cache.clear()
