"""System checks: a wrong HOTCROSS_MCP_TOOLS or HOTCROSS_MCP_UPSTREAM* is reported by `manage.py check` (and at
deploy), not at the first call."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from mcp.shared.exceptions import MCPError

from hotcross import db
from mcp_bridge.tools import bind_caller, duplicate_names, tool_name, tools_of


@register()
def check_tool_modules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from mcp_bridge.server import tool_modules

    try:
        functions = tools_of(tool_modules())
        for fn in functions:
            bind_caller(fn, lambda: None)  # the signature must be readable (annotations that resolve)
    except (ImproperlyConfigured, NameError, TypeError, ValueError) as exc:
        return [Error(str(exc), hint="Fix or remove the module in HOTCROSS_MCP_TOOLS.", id="mcp_bridge.E001")]
    duplicates = duplicate_names(functions)
    if duplicates:
        return [
            Error(
                f"More than one MCP tool is named {', '.join(duplicates)}.",
                hint="Give one of them another name with @mcp_bridge.tools.tool(name=...).",
                id="mcp_bridge.E002",
            )
        ]
    return []


@register()
def check_upstream(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The gateway's settings, and (once per process, for `manage.py check` only) the upstream's tool names against
    the built-in ones.

    The second part starts the upstream to ask it (bounded by HOTCROSS_MCP_UPSTREAM_START_TIMEOUT); an upstream that
    cannot be reached is a warning (it may not be up yet at deploy), a name clash an error. Other commands that run
    the checks (`migrate`, `mcp_server`, ...) do not start it (`probe_upstream`).
    """
    from mcp_bridge.gateway.config import upstream_config

    try:
        config = upstream_config()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="See README, 'Gateway mode'.", id="mcp_bridge.E010")]
    if config is None or not probe_upstream:
        return []
    key = repr(config)
    if key not in _upstream_checked:
        _upstream_checked[key] = _upstream_findings(config)
    return list(_upstream_checked[key])


_upstream_checked: dict[str, tuple[CheckMessage, ...]] = {}
# Set by `manage.py check` (mcp_bridge/management/commands/check.py): the one command that starts the upstream.
probe_upstream = False


def _upstream_findings(config: Any) -> tuple[CheckMessage, ...]:
    from mcp_bridge.gateway.upstream import probe
    from mcp_bridge.server import tool_modules

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return ()  # inside an event loop (a server): not the place to start a process and wait for it
    try:
        listing = anyio.run(probe, config)
    except MCPError as exc:
        return (
            Warning(
                f"The upstream MCP server could not be asked for its tools: {exc.message}",
                hint="Check HOTCROSS_MCP_UPSTREAM (manage.py mcp_upstream shows what it offers).",
                id="mcp_bridge.W010",
            ),
        )
    try:
        builtin = {tool_name(fn): f"{fn.__module__}.{fn.__qualname__}" for fn in tools_of(tool_modules())}
    except ImproperlyConfigured:
        return ()  # reported by check_tool_modules
    return tuple(
        Error(
            f"The upstream's tool {name!r} ({config.describe()}) clashes with the built-in tool {name!r} "
            f"({builtin[name]}): clients would only ever reach the built-in one.",
            hint="Rename the upstream's tool, or remove the module from HOTCROSS_MCP_TOOLS.",
            id="mcp_bridge.E011",
        )
        for name in sorted(set(listing.tools) & set(builtin))
    )


@register(deploy=True)
def check_database_threads(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    max_size = pool.get("max_size") if isinstance(pool, dict) else None
    needed = db.connections_at_most()
    if max_size is not None and needed >= max_size:
        return [
            Warning(
                f"The MCP bridge can hold {needed} database connections (2 × HOTCROSS_MCP_DB_THREADS = "
                f"{settings.HOTCROSS_MCP_DB_THREADS}: tool threads and key-check/metering threads), not fewer than "
                f"the database pool's max_size ({max_size}): MCP calls could take every connection and leave none "
                "for the admin.",
                hint="Lower HOTCROSS_MCP_DB_THREADS or raise DATABASE_POOL_MAX_SIZE.",
                id="mcp_bridge.W001",
            )
        ]
    return []
