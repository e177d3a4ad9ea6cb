"""Who calls, handed to the upstream the old Hotcross way (tool arguments) and in the request's `_meta`.

- An upstream tool whose input schema declares `_developer_id` and/or `_organization_id` gets them filled with the
  authenticated caller's ids (UUID strings) on every call; clients never see them in the schema, and a value a
  client sends under those names is dropped.
- The same for prompts (issue 28): an upstream prompt whose arguments include `_developer_id` / `_organization_id`
  gets them filled on every `prompts/get`, `prompts/list` does not show them, and a value a client sends under those
  names is dropped, whether the prompt declares them or not. A `completion/complete`'s context arguments follow the
  same rule, and the bridge completes no identity argument (it answers no values without asking the upstream).
- Every forwarded request (tools/call, prompts/get, resources/read) carries the caller in `_meta` under the keys
  below (developer, organization, plan's code), for upstreams that read that instead; an HTTP upstream gets them
  signed too (`upstream.assertion`).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Mapping
from typing import Any

from mcp_types import Prompt, Tool

from accounts import plans
from accounts.credentials import Principal
from infra.request_log import current_trace, note_trace, valid_trace
from mcp_bridge.tools import CALLER_ARGUMENTS
from upstream.assertion import META_DEVELOPER_ID, META_ORGANIZATION_ID, META_PLAN

META_KEYS = (META_DEVELOPER_ID, META_ORGANIZATION_ID, META_PLAN)


def identity_arguments(tool: Tool) -> tuple[str, ...]:
    """The caller arguments the upstream tool declares, in `CALLER_ARGUMENTS` order."""
    properties = (tool.input_schema or {}).get("properties") or {}
    return tuple(name for name in CALLER_ARGUMENTS if isinstance(properties, Mapping) and name in properties)


def public_tool(tool: Tool) -> Tool:
    """The tool as clients see it: its input schema without the caller arguments."""
    hidden = identity_arguments(tool)
    if not hidden:
        return tool
    schema = copy.deepcopy(dict(tool.input_schema))
    schema["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k not in hidden}
    if isinstance(schema.get("required"), list):
        schema["required"] = [name for name in schema["required"] if name not in hidden]
        if not schema["required"]:
            del schema["required"]
    return tool.model_copy(update={"input_schema": schema})


def forwarded_arguments(tool: Tool | None, arguments: Mapping[str, Any] | None, caller: Principal) -> dict[str, Any]:
    """The arguments sent upstream: the client's, without caller arguments, plus the real caller where declared."""
    return _with_caller(arguments, identity_arguments(tool) if tool is not None else (), caller)


def prompt_identity_arguments(prompt: Prompt | None) -> tuple[str, ...]:
    """The caller arguments the upstream prompt declares, in `CALLER_ARGUMENTS` order."""
    declared = {argument.name for argument in (prompt.arguments or [])} if prompt is not None else set()
    return tuple(name for name in CALLER_ARGUMENTS if name in declared)


def public_prompt(prompt: Prompt) -> Prompt:
    """The prompt as clients see it: its arguments without the caller arguments."""
    if not prompt_identity_arguments(prompt):
        return prompt
    arguments = [argument for argument in prompt.arguments or [] if argument.name not in CALLER_ARGUMENTS]
    return prompt.model_copy(update={"arguments": arguments})


def forwarded_prompt_arguments(
    prompt: Prompt | None, arguments: Mapping[str, Any] | None, caller: Principal
) -> dict[str, Any]:
    """A `prompts/get`'s arguments (or a prompt completion's context arguments) sent upstream: the client's, without
    caller arguments, plus the real caller where the prompt declares them."""
    return _with_caller(arguments, prompt_identity_arguments(prompt), caller)


def is_identity_argument(name: object) -> bool:
    """Whether an argument is one the bridge fills (never completed for a client)."""
    return name in CALLER_ARGUMENTS


def _with_caller(arguments: Mapping[str, Any] | None, wanted: tuple[str, ...], caller: Principal) -> dict[str, Any]:
    forwarded = {k: v for k, v in (arguments or {}).items() if k not in CALLER_ARGUMENTS}
    if "_developer_id" in wanted:
        forwarded["_developer_id"] = str(caller.developer_id)
    if "_organization_id" in wanted:
        forwarded["_organization_id"] = str(caller.organization_id)
    return forwarded


# The `traceparent` of the MCP request being served, from its `_meta` (`traced`): over stdio there is no HTTP request.
_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("hotcross_traceparent", default=None)


class _Traced:
    """Serves a request with its `traceparent` (`traced`)."""

    def __init__(self, trace: str) -> None:
        self._trace = trace
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        note_trace(self._trace)
        self._token = _trace.set(self._trace)

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _trace.reset(self._token)


_UNTRACED = contextlib.nullcontext()


def traced(meta: object) -> contextlib.AbstractContextManager[None]:
    """Serve the enclosed request with the `traceparent` of its `_meta` (if valid): forwarded requests carry it, and
    the request's log line says it (`infra.request_log.note_trace`). Nothing to do, and nothing made, without one."""
    trace = meta.get("traceparent") if isinstance(meta, Mapping) else None
    return _Traced(trace) if valid_trace(trace) else _UNTRACED  # type: ignore[arg-type]  # valid_trace: a str


def caller_meta(caller: Principal) -> dict[str, Any]:
    """The `_meta` of a forwarded request: the caller's ids and plan's code (left out without a plan), and the client's
    `traceparent` when it sent one. An HTTP upstream also gets the caller signed (`upstream.assertion`, made from
    these keys)."""
    meta = {META_DEVELOPER_ID: str(caller.developer_id), META_ORGANIZATION_ID: str(caller.organization_id)}
    code = plans.plan_code(caller.plan_id)
    if code:
        meta[META_PLAN] = code
    trace = _trace.get() or current_trace()  # the client's trace context: one trace spans client, bridge, upstream
    if trace is not None:
        meta["traceparent"] = trace
    return meta
