"""System checks: a wrong HOTCROSS_MCP_TOOLS or HOTCROSS_MCP_UPSTREAM* is reported by `manage.py check` (and at
deploy), not at the first call.

Checking the tool modules means importing them, and with them the MCP SDK (about a second of start-up). The commands
that neither serve MCP nor check the configuration (`orgs`, `migrate`, `seed_demo`, …) never load a tool: `manage.py`
turns that check off for them (`for_command`), and nothing else here imports the SDK before a check needs it, so
they start without it. `manage.py check` (with `--deploy` too) still checks the tool modules, and a server refuses a
wrong one when it starts (`mcp_bridge.server.build_server`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

# Whether `check_tool_modules` imports and checks the tool modules in this process: always, unless `manage.py` runs
# a command outside TOOL_COMMANDS (`for_command`).
check_tools = True
# The `manage.py` commands that check the tool modules: `check` (and `check --deploy`), and those that serve MCP or
# load the SDK anyway (`mcp_server` runs no system check, but builds the server, which refuses a wrong module alike).
TOOL_COMMANDS = frozenset({"check", "mcp_server", "mcp_upstream"})


def for_command(name: str) -> None:
    """Before `manage.py <name>` runs: check the tool modules only if `name` is one of TOOL_COMMANDS."""
    global check_tools
    check_tools = name in TOOL_COMMANDS


@register()
def check_tool_modules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not check_tools:
        return []
    from mcp_bridge.server import tool_modules
    from mcp_bridge.tools import bind_caller, duplicate_names, tools_of

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
    from mcp_bridge.gateway.settings import upstream_config

    try:
        config = upstream_config()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="See docs/gateway.md.", id="mcp_bridge.E010")]
    if config is None:
        return []
    found = sandbox_findings(config)
    if not probe_upstream or any(message.is_serious() for message in found):
        return found
    key = repr(config)
    if key not in _upstream_checked:
        _upstream_checked[key] = _upstream_findings(config)
    return [*found, *_upstream_checked[key]]


def sandbox_findings(config: Any) -> list[CheckMessage]:
    """Organization scope's sandbox (`upstream.sandbox`): bubblewrap must run here unless turned off, and the
    command's program must be inside the sandbox's read-only folders."""
    if config.transport != "stdio" or config.scope != "organization":
        return []
    if not config.sandbox:
        return [
            Warning(
                "HOTCROSS_MCP_UPSTREAM_SANDBOX=off: each organization's upstream process runs as this server's own "
                "user, with its files, network and the other organizations' folders in reach.",
                hint="Install bubblewrap (apt-get install bubblewrap) and remove HOTCROSS_MCP_UPSTREAM_SANDBOX.",
                id="mcp_bridge.W012",
            )
        ]
    from upstream import sandbox

    reason = sandbox.unavailable_reason()
    if reason is not None:
        return [
            Error(
                f"HOTCROSS_MCP_UPSTREAM_SCOPE=organization runs each organization's process in a bubblewrap sandbox, "
                f"and it cannot run here: {reason}. No organization's process will start.",
                hint="Install bubblewrap (apt-get install bubblewrap), or set HOTCROSS_MCP_UPSTREAM_SANDBOX=off to "
                "run them unsandboxed (each organization's process can then read what this server's user can).",
                id="mcp_bridge.E012",
            )
        ]
    program = shutil.which(config.command[0], path=os.environ.get("PATH"))
    if program is not None and not sandbox.visible(program, config.sandbox_paths):
        return [
            Warning(
                f"The upstream's program {program} is not inside the sandbox: the organizations' processes will not "
                "find it.",
                hint="Add its installation folder to HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS (read-only in the sandbox).",
                id="mcp_bridge.W013",
            )
        ]
    return []


_upstream_checked: dict[str, tuple[CheckMessage, ...]] = {}
# Set by `manage.py check` (mcp_bridge/management/commands/check.py): the one command that starts the upstream.
probe_upstream = False


def _upstream_findings(config: Any) -> tuple[CheckMessage, ...]:
    import anyio
    from mcp.shared.exceptions import MCPError

    from mcp_bridge.server import tool_modules
    from mcp_bridge.tools import tool_name, tools_of
    from upstream.probe import probe

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
    from infra import db

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
