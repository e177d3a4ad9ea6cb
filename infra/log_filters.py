"""Log filters wired in `settings.LOGGING` (on the console handler, so they see every record, whatever its logger:
Django's, uvicorn's access and error logs, ours, libraries')."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

REDACTED = "[redacted]"

# A developer key (`hc_live_…`, legacy `mp_live_…`), also with its underscores percent-encoded.
_KEY = re.compile(r"\b(?:hc|mp)(?:_|%5[Ff])live(?:_|%5[Ff])[A-Za-z0-9]*")
# The value of a query parameter (or form field) that carries a credential: `?code=…`, `&access_token=…`, …
SECRET_PARAMETERS = (
    "code",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "token",
    "client_secret",
    "password",
    "secret",
)
# Only in a query string or form body (after `?`, `&`, `;` or at the start): our own log lines say `code=key_revoked`
# (a refusal's stable code, not a credential) after a space.
_PARAMETER = re.compile(r"(?i)((?:^|[?&;])(?:" + "|".join(SECRET_PARAMETERS) + r")=)[^&;\s\"'#]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
# An invitation link's token, in a path: `/invitations/<token>/…` (the link is the invitation's secret).
_INVITATION = re.compile(r"(?<!/org)(/invitations/)[^/?#\s\"']+")


def redact(text: str) -> str:
    """`text` without credentials: keys, the values of credential query parameters, bearer tokens, invitation
    tokens in paths."""
    if not text:
        return text
    text = _KEY.sub(REDACTED, text)
    text = _INVITATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _PARAMETER.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


_exceptions = logging.Formatter()


class RedactSecrets(logging.Filter):
    """No key, token or authorization code reaches a log line, whoever logs it: uvicorn's access log writes query
    strings in full (`POST /mcp?api_key=hc_live_…`), an exception's message may quote a URL. The record's message,
    its exception's text and its stack are written here already redacted (the formatters print what they find)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: say so, never fail the line
            message = f"{record.msg!r} (log arguments that do not fit: {record.args!r})"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        request = getattr(record, "request", None)
        if isinstance(request, dict) and isinstance(request.get("path"), str):
            record.request = {**request, "path": redact(request["path"])}
        return True


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


class OneLineForDatabaseOutages(logging.Filter):
    """A request answered 503 because the database did not answer (`hotcross.middleware`) is an outage, not a bug:
    Django's `django.request` line says which request, without the traceback (one per request during an outage)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "django.request" and record.exc_info and _is_outage(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True


class FewerPoolRetries(logging.Filter):
    """psycopg_pool logs every failed attempt to connect (with libpq's two-line message) and every reconnection that
    gave up: an unreachable database made a command print ~9 of them before its own one line. The first is kept,
    in one line; the next ones are dropped for `SECONDS`, then one more says how many were."""

    SECONDS = 30.0

    def __init__(self) -> None:
        super().__init__()
        self._shown_at: float | None = None
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "psycopg.pool" or record.levelno > logging.WARNING:
            return True
        now = time.monotonic()
        if self._shown_at is not None and now - self._shown_at < self.SECONDS:
            self._dropped += 1
            return False
        message = record.getMessage().split("\n", 1)[0]
        if self._dropped:
            message += f" ({self._dropped} more such lines in the last {self.SECONDS:g} s)"
        record.msg, record.args = message, None
        self._shown_at, self._dropped = now, 0
        return True


def _is_outage(exc: Any) -> bool:
    from infra.db import is_database_outage  # not at import: settings load this module before Django is set up

    return is_database_outage(exc)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """Django's LOGGING: one console handler for every logger (uvicorn's too) with these filters, `log_format`
    "plain" or "json" (`infra.request_log.JsonFormatter`), the root at `level`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": "infra.request_log.JsonFormatter"},
        },
        # Every record goes through the one console handler, whatever its logger (uvicorn's included, below): no key,
        # token or code in any line (query strings included); a request refused as suspicious (a Host not in
        # ALLOWED_HOSTS, …) or answered 503 for a database outage is one line, without a traceback.
        "filters": {
            "one_line_for_suspicious_requests": {"()": "infra.log_filters.OneLineForSuspiciousRequests"},
            "one_line_for_database_outages": {"()": "infra.log_filters.OneLineForDatabaseOutages"},
            "fewer_pool_retries": {"()": "infra.log_filters.FewerPoolRetries"},
            "redact_secrets": {"()": "infra.log_filters.RedactSecrets"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": [
                    "one_line_for_suspicious_requests",
                    "one_line_for_database_outages",
                    "fewer_pool_retries",
                    "redact_secrets",
                ],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # uvicorn's own loggers (its access log among them) write through the same handler as everything else, so
            # LOG_FORMAT and the filters apply to them; their levels stay uvicorn's (--log-level, --no-access-log).
            "uvicorn": {"handlers": ["console"], "propagate": False},
            "uvicorn.access": {"handlers": ["console"], "propagate": False},
            **({"hotcross.request": {"level": "INFO"}} if log_format == "json" else {}),
        },
    }
