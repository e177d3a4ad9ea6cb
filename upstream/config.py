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
    "HOTCROSS_MCP_UPSTREAM_NAME",
    "HOTCROSS_MCP_UPSTREAM_SANDBOX",
    "HOTCROSS_MCP_UPSTREAM_SANDBOX_NETWORK",
    "HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS",
    "HOTCROSS_MCP_UPSTREAM_SANDBOX_UID",
    "HOTCROSS_MCP_UPSTREAM_CPU_SECONDS",
    "HOTCROSS_MCP_UPSTREAM_MEMORY_MB",
    "HOTCROSS_MCP_UPSTREAM_OPEN_FILES",
    "HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY",
    "HOTCROSS_PUBLIC_URL",
)
ORGANIZATION_PLACEHOLDER = "{organization_id}"
DEFAULT_NAME = "the tool server"
BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


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
    name: str = DEFAULT_NAME  # what clients are told it is called, in errors
    # Organization scope: each process in a bubblewrap sandbox (`upstream.sandbox`), with these settings and limits.
    sandbox: bool = True
    sandbox_network: str = "none"
    sandbox_paths: tuple[str, ...] = ()
    sandbox_uid: int = 65534
    cpu_seconds: int = 3600
    memory_mb: int = 2048
    open_files: int = 1024
    # HTTP: the key that signs the caller's assertion (`upstream.assertion`), and its issuer (the public URL).
    assertion_key: str = "var/upstream-assertion-key.pem"
    issuer: str = ""

    @property
    def sandboxed(self) -> bool:
        """Whether its processes run in the sandbox: organization scope, unless turned off."""
        return self.scope == "organization" and self.sandbox and not self.url

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def url_for(self, organization_id: str | None) -> str:
        """The URL of `organization_id`'s upstream (the template's `{organization_id}` filled), or the one URL."""
        if organization_id is None:
            return self.url
        return self.url.replace(ORGANIZATION_PLACEHOLDER, organization_id)

    def describe(self) -> str:
        """The upstream for logs and operators: the command, or the URL without user info or query (headers and
        environment values are left out: they hold credentials)."""
        if not self.url:
            return shlex.join(self.command)
        parts = urlsplit(self.url.replace(ORGANIZATION_PLACEHOLDER, "ORGANIZATION-ID"))
        netloc = (parts.hostname or "").replace("organization-id", ORGANIZATION_PLACEHOLDER)
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path.replace('ORGANIZATION-ID', ORGANIZATION_PLACEHOLDER)}"


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


def _ascii_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        try:
            f"{name}: {value}".encode("ascii")
        except UnicodeEncodeError:
            raise ConfigError(
                f"HOTCROSS_MCP_UPSTREAM_HEADERS: the header {name!r} holds a character HTTP headers cannot carry "
                "(they are ASCII); encode it as its server expects (percent- or base64-encoded)."
            ) from None
        if any(ch in f"{name}{value}" for ch in "\r\n") or not name.strip():
            raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_HEADERS: the header {name!r} is not a valid HTTP header.")
    return headers


def _boolean(values: Mapping[str, Any], name: str, default: str) -> bool:
    raw = str(values.get(name, default)).strip().lower()
    if raw not in BOOLEANS:
        raise ConfigError(f"{name} must be true or false (on/off), not {raw!r}.")
    return BOOLEANS[raw]


def _integer(values: Mapping[str, Any], name: str, default: int, low: int) -> int:
    try:
        value = int(str(values.get(name, default)).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {values.get(name)!r}.") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, not {value}.")
    return value


def _paths(raw: Any) -> tuple[str, ...]:
    text = str(raw or "").strip()
    if not text:
        return ()
    if text.startswith("["):
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS: not a JSON list of paths: {exc}") from None
        if not isinstance(found, list) or not all(isinstance(item, str) for item in found):
            raise ConfigError("HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS must be a JSON list of paths (or paths split by :).")
    else:
        found = [item for item in text.split(":") if item.strip()]
    for item in found:
        if not item.startswith("/"):
            raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS: {item!r} is not an absolute path.")
    return tuple(found)


def _sandbox(values: Mapping[str, Any]) -> dict[str, Any]:
    sandbox = str(values.get("HOTCROSS_MCP_UPSTREAM_SANDBOX", "bubblewrap")).strip().lower()
    if sandbox not in ("bubblewrap", "off"):
        raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_SANDBOX must be bubblewrap or off, not {sandbox!r}.")
    network = str(values.get("HOTCROSS_MCP_UPSTREAM_SANDBOX_NETWORK", "none")).strip().lower()
    if network not in ("none", "loopback", "full"):
        raise ConfigError(f"HOTCROSS_MCP_UPSTREAM_SANDBOX_NETWORK must be none, loopback or full, not {network!r}.")
    return {
        "sandbox": sandbox == "bubblewrap",
        "sandbox_network": network,
        "sandbox_paths": _paths(values.get("HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS", "")),
        "sandbox_uid": _integer(values, "HOTCROSS_MCP_UPSTREAM_SANDBOX_UID", 65534, 1),
        "cpu_seconds": _integer(values, "HOTCROSS_MCP_UPSTREAM_CPU_SECONDS", 3600, 1),
        "memory_mb": _integer(values, "HOTCROSS_MCP_UPSTREAM_MEMORY_MB", 2048, 16),
        "open_files": _integer(values, "HOTCROSS_MCP_UPSTREAM_OPEN_FILES", 1024, 16),
    }


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
    headers = _ascii_headers(
        _json_object("HOTCROSS_MCP_UPSTREAM_HEADERS", str(values.get("HOTCROSS_MCP_UPSTREAM_HEADERS", "")))
    )
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
    name = str(values.get("HOTCROSS_MCP_UPSTREAM_NAME", "") or "").strip() or DEFAULT_NAME
    common = {
        "supervised": _boolean(values, "HOTCROSS_MCP_UPSTREAM_SUPERVISOR", "true"),
        "name": name,
        **_sandbox(values),
        "scope": scope,
        "timeout": numbers["HOTCROSS_MCP_UPSTREAM_TIMEOUT"],
        "start_timeout": numbers["HOTCROSS_MCP_UPSTREAM_START_TIMEOUT"],
        "refresh_seconds": numbers["HOTCROSS_MCP_UPSTREAM_REFRESH_SECONDS"],
        "idle_seconds": numbers["HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS"],
        "max_processes": _integer(values, "HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES", 20, 1),
        "data_dir": Path(str(values.get("HOTCROSS_MCP_UPSTREAM_DATA_DIR", "var/upstream"))),
        "assertion_key": str(values.get("HOTCROSS_MCP_UPSTREAM_ASSERTION_KEY", "") or "var/upstream-assertion-key.pem"),
        "issuer": str(values.get("HOTCROSS_PUBLIC_URL", "") or "").rstrip("/"),
    }
    if raw.startswith(("http://", "https://")):
        try:
            parts = urlsplit(raw.replace(ORGANIZATION_PLACEHOLDER, "organization-id"))
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ConfigError(f"HOTCROSS_MCP_UPSTREAM: {raw!r} is not a usable URL ({exc}).") from None
        if not parts.hostname:
            raise ConfigError(f"HOTCROSS_MCP_UPSTREAM: {raw!r} is not a usable URL (no host).")
        if "{" in raw.replace(ORGANIZATION_PLACEHOLDER, ""):
            raise ConfigError(
                f"HOTCROSS_MCP_UPSTREAM: {raw!r} has a placeholder other than {ORGANIZATION_PLACEHOLDER}."
            )
        templated = ORGANIZATION_PLACEHOLDER in raw
        if env:
            raise ConfigError(
                "HOTCROSS_MCP_UPSTREAM_ENV is for a command (stdio upstream); an HTTP upstream takes "
                "HOTCROSS_MCP_UPSTREAM_HEADERS."
            )
        if scope == "organization" and not templated:
            raise ConfigError(
                "HOTCROSS_MCP_UPSTREAM_SCOPE=organization needs one upstream per organization: a command (stdio, one "
                f"process each) or a URL template with {ORGANIZATION_PLACEHOLDER} "
                "(https://{organization_id}.tools.example/mcp)."
            )
        if templated and scope != "organization":
            raise ConfigError(
                f"HOTCROSS_MCP_UPSTREAM: a URL with {ORGANIZATION_PLACEHOLDER} is one upstream per organization; set "
                "HOTCROSS_MCP_UPSTREAM_SCOPE=organization."
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
