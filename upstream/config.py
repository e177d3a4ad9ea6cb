"""Where the upstream MCP server is and how it is run (`UpstreamConfig`), parsed and validated from plain values.

The values are named as the bridge's settings are (`NAMES`: `HOTCROSS_MCP_UPSTREAM`, `HOTCROSS_MCP_UPSTREAM_ENV`,
...), so a mistake is reported under the name the operator set; `config_from(values)` takes them from any mapping
(Django settings, the environment) and raises `ConfigError` with what to fix.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCOPES = ("shared", "organization")

NAMES = (
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
    "HOTCROSS_MCP_UPSTREAM_SUPERVISOR",
)


class ConfigError(ValueError):
    """The values do not make a usable upstream; the message names the value and says what to fix."""


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
    supervised: bool = True  # stdio: the processes are the host's supervisor's (`upstream.supervisor`), not ours

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
        raise ConfigError(f'{name} must be a JSON object of strings, like {{"NAME": "value"}}: {exc}') from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f'{name} must be a JSON object of strings, like {{"NAME": "value"}}.')
    return value


def config_from(values: Mapping[str, Any]) -> UpstreamConfig | None:
    """The upstream `values` describe (keyed by `NAMES`; a name left out takes its default), or None when
    `HOTCROSS_MCP_UPSTREAM` is empty. Raises `ConfigError`."""
    raw = str(values.get("HOTCROSS_MCP_UPSTREAM", "") or "").strip()
    if not raw:
        return None
    scope = str(values.get("HOTCROSS_MCP_UPSTREAM_SCOPE", "shared")).strip().lower()
    if scope not in SCOPES:
        raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_SCOPE must be one of {', '.join(SCOPES)}, not {scope!r}.")
    env = _json_object("HOTCROSS_MCP_UPSTREAM_ENV", str(values.get("HOTCROSS_MCP_UPSTREAM_ENV", "")))
    headers = _json_object("HOTCROSS_MCP_UPSTREAM_HEADERS", str(values.get("HOTCROSS_MCP_UPSTREAM_HEADERS", "")))
    numbers = {}
    for name, default, low in (
        ("HOTCROSS_MCP_UPSTREAM_TIMEOUT", 30.0, 0.001),
        ("HOTCROSS_MCP_UPSTREAM_START_TIMEOUT", 60.0, 0.001),
        ("HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS", 300.0, 1.0),
        ("HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS", 600.0, 0.1),
    ):
        value = float(values.get(name, default))
        if not value >= low:
            raise ConfigError(f"{name} must be at least {low} (seconds), not {value}.")
        numbers[name] = value
    max_processes = int(values.get("HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES", 20))
    if max_processes < 1:
        raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES must be at least 1, not {max_processes}.")
    supervised = str(values.get("HOTCROSS_MCP_UPSTREAM_SUPERVISOR", "true")).strip().lower()
    if supervised not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_SUPERVISOR must be true or false, not {supervised!r}.")
    common = {
        "supervised": supervised in ("true", "1", "yes", "on"),
        "scope": scope,
        "timeout": numbers["HOTCROSS_MCP_UPSTREAM_TIMEOUT"],
        "start_timeout": numbers["HOTCROSS_MCP_UPSTREAM_START_TIMEOUT"],
        "refresh_seconds": numbers["HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS"],
        "idle_seconds": numbers["HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS"],
        "max_processes": max_processes,
        "data_dir": Path(str(values.get("HOTCROSS_MCP_UPSTREAM_DATA_DIR", "var/upstream"))),
    }
    if raw.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        if not parts.hostname:
            raise ConfigError(f"HOTCROSS_MCP_UPSTREAM: {raw!r} is not a usable URL (no host).")
        if env:
            raise ConfigError(
                "HOTCROSS_MCP_UPSTREAM_ENV is for a command (stdio upstream); an HTTP upstream takes "
                "HOTCROSS_MCP_UPSTREAM_HEADERS."
            )
        if scope == "organization":
            raise ConfigError(
                "HOTCROSS_MCP_UPSTREAM_SCOPE=organization runs one process per organization, so the upstream must "
                "be a command (stdio), not a URL."
            )
        return UpstreamConfig(url=raw, headers=headers, **common)
    if headers:
        raise ConfigError(
            "HOTCROSS_MCP_UPSTREAM_HEADERS is for an HTTP upstream; a command (stdio) takes HOTCROSS_MCP_UPSTREAM_ENV."
        )
    try:
        command = tuple(shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(f"HOTCROSS_MCP_UPSTREAM: cannot split the command line {raw!r}: {exc}.") from None
    if "://" in command[0]:
        raise ConfigError(
            f"HOTCROSS_MCP_UPSTREAM: {raw!r} is neither a command nor an http(s):// URL of a streamable-HTTP server."
        )
    return UpstreamConfig(command=command, env=env, **common)
