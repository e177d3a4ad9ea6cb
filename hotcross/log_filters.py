"""Log filters wired in `settings.LOGGING`."""

from __future__ import annotations

import logging


class OneLineForSuspiciousRequests(logging.Filter):
    """Django logs a request it refuses as suspicious (`DisallowedHost` for a Host not in `ALLOWED_HOSTS`, and the
    other `SuspiciousOperation`s, on the `django.security.*` loggers) with the exception's traceback. That is the
    client's mistake, not the server's: keep the record's one line (it says which host) and drop the traceback, so
    a scanner cannot fill the log with them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security.") and record.exc_info:
            record.exc_info = None
            record.exc_text = None
        return True
