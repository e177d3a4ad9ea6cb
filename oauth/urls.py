"""URLs of OAuth for MCP clients. django-oauth-toolkit's views keep its URL names (namespace `oauth2_provider`), which
its RFC 8414 metadata reverses."""

from django.urls import include, path
from oauth2_provider import views as dot

from oauth import views

oauth_patterns = [
    path("authorize/", views.ConsentView.as_view(), name="authorize"),
    path("token/", dot.TokenView.as_view(), name="token"),
    path("revoke/", dot.RevokeTokenView.as_view(), name="revoke-token"),
    path("register/", views.RegistrationView.as_view(), name="dcr-register"),
    # RFC 7592: a client reads, updates or deletes its own registration with the token it was given.
    path(
        "register/<str:client_id>/",
        views.RegistrationManagementView.as_view(),
        name="dcr-register-management",
    ),
]

urlpatterns = [
    path(
        ".well-known/oauth-authorization-server",
        dot.OAuthServerMetadataView.as_view(),
        name="oauth-authorization-server",
    ),
    path(
        ".well-known/oauth-protected-resource/mcp",
        views.ProtectedResourceMetadataView.as_view(),
        name="oauth-protected-resource-mcp",
    ),
    path("oauth/", include((oauth_patterns, "oauth2_provider"))),
    path("account/", views.account, name="account"),
    path("account/rotate-key/", views.rotate_own_key, name="account_rotate_key"),
    path("account/sign-in/", views.sign_in, name="sign_in"),
    path("account/sign-in/code/", views.sign_in_code, name="sign_in_code"),
    path("account/sign-out/", views.sign_out, name="sign_out"),
]
