"""The Hotcross MCP server: one `MCPServer` (mcp SDK 2.x) with the built-in tools and those of `HOTCROSS_MCP_TOOLS`.

Every request passes five middlewares, outermost first: `CallerMiddleware` (who is calling; over stdio it re-checks
the key), `RequestChecks` (names that are not names are invalid params, not server errors), `AdmissionMiddleware`
(the plan's tools, prompts, resources, monthly cap and rate limits, `mcp_bridge.admission`), `KnownPrompts` (a
prompt the server does not have is invalid params) and `MeteringMiddleware` (one usage event per served
`tools/call`). Tools get the caller through their `_developer_id` / `_organization_id` parameters (see
`mcp_bridge.tools`).

With `HOTCROSS_MCP_UPSTREAM` set the server is a `GatewayServer` (`mcp_bridge.gateway`): the upstream's tools,
prompts and resources are served beside the built-in ones, behind the same middlewares.

Transports: `manage.py mcp_server` (stdio) and `mcp_bridge.http` (streamable HTTP at /mcp in `hotcross.asgi`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateSecurity
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, SetLevelRequestParams

from mcp_bridge import notifications
from mcp_bridge.admission import AdmissionMiddleware
from mcp_bridge.auth import CallerMiddleware, current_caller
from mcp_bridge.gateway.identity import traced
from mcp_bridge.gateway.server import GatewayServer
from mcp_bridge.gateway.settings import upstream_config
from mcp_bridge.metering import MeteringMiddleware
from mcp_bridge.tools import bind_caller, duplicate_names, options_of, tool_name, tools_of

logger = logging.getLogger(__name__)

SERVER_NAME = "hotcross"
DISTRIBUTION = "hotcross-backoffice"  # pyproject.toml's [project] name
BUILTIN_TOOL_MODULES = ("mcp_bridge.tools.builtin",)
INSTRUCTIONS = (
    "Hotcross tools for the developer whose API key this server was given. "
    "`whoami` tells who that is; `usage` shows this month's tool calls."
)


@functools.cache
def server_version() -> str:
    """The project's version (`serverInfo.version`): the installed distribution's, else pyproject.toml's."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


def description_of(fn: Callable[..., Any], given: str | None) -> str | None:
    """A tool's description as a model should read it: the given one or the docstring, without source indentation."""
    text = given if given is not None else inspect.getdoc(fn)
    return inspect.cleandoc(text) if text else None


class RequestChecks:
    """MCP server middleware: a `tools/call` or `prompts/get` whose `name` is not a string is invalid params (-32602)
    with a clear message, not a server error with a traceback."""

    def __init__(self, server: MCPServer) -> None:
        self._server = server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        if ctx.method in ("tools/call", "prompts/get") and ctx.request_id is not None:
            params = ctx.params if isinstance(ctx.params, dict) else {}
            what = "tool" if ctx.method == "tools/call" else "prompt"
            if not isinstance(params.get("name"), str):
                raise MCPError(code=INVALID_PARAMS, message=f"Invalid params: the {what} name must be a string.")
        return await call_next(ctx)


class TraceContext:
    """MCP server middleware: a request's `_meta.traceparent` (W3C Trace Context) is passed on with whatever the
    gateway forwards for it, and written in the request's log line (`gateway.identity.traced`)."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        meta = ctx.params.get("_meta") if isinstance(ctx.params, dict) else None
        if meta is None:
            return await call_next(ctx)
        with traced(meta):
            return await call_next(ctx)


class KnownPrompts:
    """MCP server middleware, inside `AdmissionMiddleware`: a `prompts/get` of a prompt this server does not have is
    invalid params (-32602), not a server error. After the plan's admission, so that a developer learns nothing of
    prompts outside the plan (a name the plan does not allow is `prompt_not_in_plan`, whether it exists or not)."""

    def __init__(self, server: MCPServer) -> None:
        self._server = server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        if ctx.method == "prompts/get" and ctx.request_id is not None:
            name = ctx.params.get("name") if isinstance(ctx.params, dict) else None
            knows = getattr(self._server, "knows_prompt", None)  # the gateway's: 2026-07-28 lists may differ
            known = await knows(ctx, name) if knows is not None and isinstance(name, str) else None
            if known is None and isinstance(name, str):
                known = name in {prompt.name for prompt in await self._server.list_prompts()}
            if isinstance(name, str) and not known:
                logger.info("mcp prompts/get of an unknown prompt")
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name[:100]!r}.")
        return await call_next(ctx)


def request_state_security() -> RequestStateSecurity:
    """How a 2026-07-28 `input_required` result's `requestState` is sealed for the client (the SDK seals every one, the
    gateway's passed on from an upstream too): with keys from SECRET_KEY (and SECRET_KEY_FALLBACKS, which still
    open), so that the retry may reach any worker or stdio process of the deployment (the SDK's default key is one
    process's), and bound to the developer, so that another's retry is refused."""
    keys = [
        salted_hmac("hotcross.mcp.request_state", "key", secret=secret, algorithm="sha256").digest()
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ]
    return RequestStateSecurity(keys=keys, bind_principal=_developer_of_request)


def _developer_of_request(_ctx: ServerRequestContext[Any, Any]) -> str | None:
    try:
        return str(current_caller().developer_id)
    except RuntimeError:  # no caller bound: not a request of the bridge's transports
        return None


def tool_modules() -> list[str]:
    """The built-in tool module and those named by `HOTCROSS_MCP_TOOLS`, without repeats."""
    return list(dict.fromkeys([*BUILTIN_TOOL_MODULES, *settings.HOTCROSS_MCP_TOOLS]))


def build_server(
    *, stdio_key: str | None = None, modules: Sequence[str] | None = None, bridged: bool = True
) -> MCPServer:
    """The MCP server with its tools.

    `stdio_key`: the key to re-check on every request (stdio); without it, the HTTP layer authenticates requests.
    `modules`: tool modules (default: `tool_modules()`).
    `bridged=False` builds the same server with no caller, no auth, no metering and no upstream, and registers the
    tools as they are (they must not take caller parameters); the overhead benchmark compares against it.
    """
    functions = tools_of(tool_modules() if modules is None else modules)
    duplicates = duplicate_names(functions)
    if duplicates:
        raise ImproperlyConfigured(f"HOTCROSS_MCP_TOOLS: more than one tool is named {', '.join(duplicates)}.")
    gateway = bridged and upstream_config() is not None
    server_class = GatewayServer if gateway else MCPServer
    security = {"request_state_security": request_state_security()} if bridged else {}
    server = server_class(SERVER_NAME, instructions=INSTRUCTIONS, version=server_version(), **security)
    if bridged:
        # logging/setLevel (and so the `logging` capability): the log messages a connection gets (upstream's).
        server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, notifications.set_level)
        server.middleware.extend(
            [
                CallerMiddleware(stdio_key=stdio_key),
                TraceContext(),
                RequestChecks(server),
                AdmissionMiddleware(),  # the plan's rules (issue 16): refused calls never reach the metering
                KnownPrompts(server),  # after the plan: a prompt outside it is refused whether it exists or not
                MeteringMiddleware(tool_name(fn) for fn in functions),
            ]
        )
    for fn in functions:
        options = options_of(fn)
        server.add_tool(
            bind_caller(fn, current_caller) if bridged else fn,
            name=tool_name(fn),
            title=options.title,
            description=description_of(fn, options.description),
            annotations=options.annotations,
        )
    return server
