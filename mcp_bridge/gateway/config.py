"""The gateway's settings, read and validated once (`manage.py check` reports what `upstream_config()` raises)."""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SCOPES = ("shared", "organization")


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the upstream MCP server is and how the bridge runs it."""

    command: tuple[str, ...] = ()  # stdio: the program and its arguments
    url: str = ""  # streamable HTTP
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    scope: str = "shared"
    timeout: float = 30.0
    start_timeout: float = 60.0
    refresh_seconds: float = 300.0
    idle_seconds: float = 600.0
    max_processes: int = 20
    data_dir: Path = Path("var/upstream")

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def describe(self) -> str:
        """The upstream for logs and operators: the command, or the URL without user info or query (headers and
        environment values are left out: they hold credentials)."""
        if not self.url:
            return shlex.join(self.command)
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path}"


def _json_object(name: str, raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f'{name} must be a JSON object of strings, like {{"NAME": "value"}}: {exc}'
        ) from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ImproperlyConfigured(f'{name} must be a JSON object of strings, like {{"NAME": "value"}}.')
    return value


_NAMES = (
    "HOTCROSS_MCP_UPSTREAM",
    "HOTCROSS_MCP_UPSTREAM_ENV",
    "HOTCROSS_MCP_UPSTREAM_HEADERS",
    "HOTCROSS_MCP_UPSTREAM_SCOPE",
    "HOTCROSS_MCP_UPSTREAM_TIMEOUT",
    "HOTCROSS_MCP_UPSTREAM_START_TIMEOUT",
    "HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS",
    "HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS",
    "HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES",
    "HOTCROSS_MCP_UPSTREAM_DATA_DIR",
)


def upstream_config() -> UpstreamConfig | None:
    """The configured upstream, or None when `HOTCROSS_MCP_UPSTREAM` is empty. Raises `ImproperlyConfigured`.

    Read on every request, so parsed once and remembered until one of its settings changes (`override_settings`
    sends `setting_changed`; a running server's settings do not change).
    """
    found = _current
    if found is _UNREAD:
        found = _remember(_parsed(tuple(repr(getattr(settings, name, None)) for name in _NAMES)))
    return found  # type: ignore[return-value]


_UNREAD = object()
_current: object = _UNREAD


def _remember(config: UpstreamConfig | None) -> UpstreamConfig | None:
    global _current
    _current = config
    return config


@receiver(setting_changed)
def _forget(*, setting: str, **_kwargs: Any) -> None:
    global _current
    if setting in _NAMES:
        _current = _UNREAD


@functools.lru_cache(maxsize=8)
def _parsed(_values: tuple[str, ...]) -> UpstreamConfig | None:
    raw = str(getattr(settings, "HOTCROSS_MCP_UPSTREAM", "") or "").strip()
    if not raw:
        return None
    scope = str(getattr(settings, "HOTCROSS_MCP_UPSTREAM_SCOPE", "shared")).strip().lower()
    if scope not in SCOPES:
        raise ImproperlyConfigured(f"HOTCROSS_MCP_UPSTREAM_SCOPE must be one of {', '.join(SCOPES)}, not {scope!r}.")
    env = _json_object("HOTCROSS_MCP_UPSTREAM_ENV", str(getattr(settings, "HOTCROSS_MCP_UPSTREAM_ENV", "")))
    headers = _json_object("HOTCROSS_MCP_UPSTREAM_HEADERS", str(getattr(settings, "HOTCROSS_MCP_UPSTREAM_HEADERS", "")))
    numbers = {}
    for name, default, low in (
        ("HOTCROSS_MCP_UPSTREAM_TIMEOUT", 30.0, 0.001),
        ("HOTCROSS_MCP_UPSTREAM_START_TIMEOUT", 60.0, 0.001),
        ("HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS", 300.0, 1.0),
        ("HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS", 600.0, 0.1),
    ):
        value = float(getattr(settings, name, default))
        if not value >= low:
            raise ImproperlyConfigured(f"{name} must be at least {low} (seconds), not {value}.")
        numbers[name] = value
    max_processes = int(getattr(settings, "HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES", 20))
    if max_processes < 1:
        raise ImproperlyConfigured(f"HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES must be at least 1, not {max_processes}.")
    common = {
        "scope": scope,
        "timeout": numbers["HOTCROSS_MCP_UPSTREAM_TIMEOUT"],
        "start_timeout": numbers["HOTCROSS_MCP_UPSTREAM_START_TIMEOUT"],
        "refresh_seconds": numbers["HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS"],
        "idle_seconds": numbers["HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS"],
        "max_processes": max_processes,
        "data_dir": Path(str(getattr(settings, "HOTCROSS_MCP_UPSTREAM_DATA_DIR", "var/upstream"))),
    }
    if raw.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        if not parts.hostname:
            raise ImproperlyConfigured(f"HOTCROSS_MCP_UPSTREAM: {raw!r} is not a usable URL (no host).")
        if env:
            raise ImproperlyConfigured(
                "HOTCROSS_MCP_UPSTREAM_ENV is for a command (stdio upstream); an HTTP upstream takes "
                "HOTCROSS_MCP_UPSTREAM_HEADERS."
            )
        if scope == "organization":
            raise ImproperlyConfigured(
                "HOTCROSS_MCP_UPSTREAM_SCOPE=organization runs one process per organization, so the upstream must "
                "be a command (stdio), not a URL."
            )
        return UpstreamConfig(url=raw, headers=headers, **common)
    if headers:
        raise ImproperlyConfigured(
            "HOTCROSS_MCP_UPSTREAM_HEADERS is for an HTTP upstream; a command (stdio) takes HOTCROSS_MCP_UPSTREAM_ENV."
        )
    try:
        command = tuple(shlex.split(raw))
    except ValueError as exc:
        raise ImproperlyConfigured(f"HOTCROSS_MCP_UPSTREAM: cannot split the command line {raw!r}: {exc}.") from None
    if "://" in command[0]:
        raise ImproperlyConfigured(
            f"HOTCROSS_MCP_UPSTREAM: {raw!r} is neither a command nor an http(s):// URL of a streamable-HTTP server."
        )
    return UpstreamConfig(command=command, env=env, **common)
