"""System checks: a wrong HOTCROSS_MCP_TOOLS is reported by `manage.py check` (and at deploy), not at the first call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from hotcross import db
from mcp_bridge.tools import bind_caller, duplicate_names, tools_of


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
