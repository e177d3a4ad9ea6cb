"""The gateway's settings (`HOTCROSS_MCP_UPSTREAM*`) as the `upstream` package's `UpstreamConfig`, read and validated
once (`manage.py check` reports what `upstream_config()` raises).

Imports no MCP SDK: every command runs the system checks, which read these settings (`mcp_bridge.checks`).
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from upstream.config import NAMES, ConfigError, UpstreamConfig, config_from


def upstream_config() -> UpstreamConfig | None:
    """The configured upstream, or None when `HOTCROSS_MCP_UPSTREAM` is empty. Raises `ImproperlyConfigured`.

    Read on every request, so parsed once and remembered until one of its settings changes (`override_settings`
    sends `setting_changed`; a running server's settings do not change).
    """
    found = _current
    if found is _UNREAD:
        found = _remember(_parsed(tuple(repr(getattr(settings, name, None)) for name in NAMES)))
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
    if setting in NAMES:
        _current = _UNREAD


@functools.lru_cache(maxsize=8)
def _parsed(_values: tuple[str, ...]) -> UpstreamConfig | None:
    try:
        return config_from({name: getattr(settings, name) for name in NAMES if hasattr(settings, name)})
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None
