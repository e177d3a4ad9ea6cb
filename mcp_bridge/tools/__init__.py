"""Tool modules and how the bridge registers their tools.

A tool module is any importable Python module with a `TOOLS` list of functions. List its dotted path in the
`HOTCROSS_MCP_TOOLS` setting and the MCP server offers its tools next to the built-in ones; the bridge needs no
change. A tool learns who calls it by declaring the keyword parameters `_developer_id` and/or `_organization_id`
(the old server's names, so its tools port unchanged): the bridge fills them from the authenticated key, leaves them
out of the tool's input schema, and ignores any value a client sends under those names. A tool that takes
`**kwargs` receives both.

Sync tools run on the bridge's tool threads (`mcp_bridge.db`), so they may use the ORM and the accounts selectors
and services directly. Async tools run on the event loop and must not touch the ORM themselves (nor block): wrap
database work in `await mcp_bridge.db.run(fn, ...)`. A tool reports a problem to the model by raising
`mcp.server.mcpserver.exceptions.ToolError`; the call is then metered as an error.

    # acme_tools.py
    from mcp_bridge.tools import tool

    @tool(title="Open tickets", read_only=True)
    def open_tickets(project: str, _organization_id) -> list[str]:
        '''Ticket titles of a project, for the caller's organization.'''
        ...

    TOOLS = [open_tickets]
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from mcp_types import ToolAnnotations

from infra.db import DatabaseUnavailable
from mcp_bridge import db
from mcp_bridge.auth import unavailable_error

CALLER_ARGUMENTS = ("_developer_id", "_organization_id")
_OPTIONS_ATTRIBUTE = "__hotcross_tool__"


@dataclass(frozen=True, slots=True)
class ToolOptions:
    name: str | None = None
    title: str | None = None
    description: str | None = None
    annotations: ToolAnnotations | None = None


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    read_only: bool | None = None,
) -> Any:
    """Optional decorator giving a tool a name, title, description or read-only hint other than the defaults.

    Without it a tool is named after its function and described by its docstring.
    """

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        annotations = None if read_only is None else ToolAnnotations(read_only_hint=read_only)
        setattr(function, _OPTIONS_ATTRIBUTE, ToolOptions(name, title, description, annotations))
        return function

    return mark(fn) if fn is not None else mark


def options_of(fn: Callable[..., Any]) -> ToolOptions:
    return getattr(fn, _OPTIONS_ATTRIBUTE, None) or ToolOptions()


def tools_of(module_paths: Iterable[str]) -> list[Callable[..., Any]]:
    """The functions listed in each module's `TOOLS`, in order. Raises `ImproperlyConfigured` with the reason."""
    functions: list[Callable[..., Any]] = []
    for path in module_paths:
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"HOTCROSS_MCP_TOOLS: cannot import the tool module {path!r}: {exc}") from exc
        listed = getattr(module, "TOOLS", None)
        if not isinstance(listed, list | tuple):
            raise ImproperlyConfigured(
                f"HOTCROSS_MCP_TOOLS: the module {path!r} has no TOOLS list (TOOLS = [my_tool, …])."
            )
        for fn in listed:
            if not inspect.isfunction(fn):
                raise ImproperlyConfigured(f"HOTCROSS_MCP_TOOLS: {path}.TOOLS holds {fn!r}, which is not a function.")
            functions.append(fn)
    return functions


def tool_name(fn: Callable[..., Any]) -> str:
    return options_of(fn).name or fn.__name__


def bind_caller(fn: Callable[..., Any], caller: Callable[[], Any]) -> Callable[..., Any]:
    """An async tool function like `fn` whose caller arguments come from `caller()`, not from the client.

    `caller()` returns the current `Principal`. The returned function's signature (what the SDK turns into the input
    schema) is `fn`'s without the caller parameters.
    """
    signature = inspect.signature(fn, eval_str=True)
    parameters = list(signature.parameters.values())
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    wanted = {name for name in CALLER_ARGUMENTS if name in signature.parameters or takes_any}
    public = signature.replace(
        parameters=[
            p for p in parameters if p.name not in CALLER_ARGUMENTS and p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
    )
    is_async = inspect.iscoroutinefunction(fn)

    async def call_with_caller(**arguments: Any) -> Any:
        # The SDK passes only the fields of the public schema, but a caller argument must never come from the client.
        for name in CALLER_ARGUMENTS:
            arguments.pop(name, None)
        principal = caller()
        if "_developer_id" in wanted:
            arguments["_developer_id"] = principal.developer_id
        if "_organization_id" in wanted:
            arguments["_organization_id"] = principal.organization_id
        try:
            if is_async:
                return await fn(**arguments)
            return await db.run(fn, **arguments)
        except DatabaseUnavailable as exc:
            # An outage is not the tool's fault: the client gets the same clear error as from the key check.
            raise unavailable_error(exc) from None

    call_with_caller.__signature__ = public  # type: ignore[attr-defined]
    call_with_caller.__annotations__ = _annotations(public)
    call_with_caller.__name__ = fn.__name__
    call_with_caller.__qualname__ = fn.__qualname__
    call_with_caller.__module__ = fn.__module__
    call_with_caller.__doc__ = fn.__doc__
    return call_with_caller


def duplicate_names(functions: Sequence[Callable[..., Any]]) -> list[str]:
    seen: set[str] = set()
    duplicates: list[str] = []
    for fn in functions:
        name = tool_name(fn)
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    return duplicates


def _annotations(signature: inspect.Signature) -> dict[str, Any]:
    annotations = {
        p.name: p.annotation for p in signature.parameters.values() if p.annotation is not inspect.Parameter.empty
    }
    if signature.return_annotation is not inspect.Signature.empty:
        annotations["return"] = signature.return_annotation
    return annotations
