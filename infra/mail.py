"""Where this deployment's mail goes, for the pages and banners that must tell a person where to look."""

from __future__ import annotations

from django.conf import settings

CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


def mail_is_printed() -> bool:
    """Whether mail is printed on the server's output instead of sent (`EMAIL_URL=consolemail://`, `make run`'s)."""
    return settings.EMAIL_BACKEND == CONSOLE_BACKEND
