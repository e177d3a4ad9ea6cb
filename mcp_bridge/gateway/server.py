"""The bridge's MCP server with an upstream behind it: the built-in tools first, then the upstream's.

Requests reach these methods through the same middlewares as the built-in tools (`mcp_bridge.server`): the caller's
key is checked (`CallerMiddleware`), names are checked (`RequestChecks`), and every forwarded `tools/call` of a tool
the upstream lists is metered through `mcp_bridge.metering.metered`, ok or not, with its duration. A forwarded call
whose upstream cannot start is metered as an error too (the bridge cannot tell which names it would have had).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    METHOD_NOT_FOUND,
    CallToolResult,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    EmptyResult,
    GetPromptResult,
    PaginatedRequestParams,
    PromptReference,
    ReadResourceRequestParams,
    ReadResourceResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    Tool,
    UnsubscribeRequestParams,
)
from mcp_types import (
    Prompt as MCPPrompt,
)
from mcp_types import (
    Resource as MCPResource,
)
from mcp_types import (
    ResourceTemplate as MCPResourceTemplate,
)
from mcp_types import (
    Tool as MCPTool,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from infra import metrics
from mcp_bridge import back_channel, metering, notifications
from mcp_bridge.auth import current_caller
from mcp_bridge.gateway.identity import (
    caller_meta,
    forwarded_arguments,
    forwarded_prompt_arguments,
    is_identity_argument,
    public_prompt,
    public_tool,
)
from mcp_bridge.gateway.settings import upstream_config
from mcp_bridge.gateway.subscriptions import Subscriptions
from mcp_bridge.gateway.upstream import Upstream, caller_upstream, current_pool, is_supervised

logger = logging.getLogger(__name__)


class GatewayServer(MCPServer):
    """`MCPServer` whose lists and calls include the upstream's (see `mcp_bridge.gateway`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `completion/complete` goes to the upstream (the bridge's own prompts and templates have no completions).
        self._lowlevel_server.add_request_handler("completion/complete", CompleteRequestParams, self._handle_complete)
        # Who follows what of the upstream (`mcp_bridge.gateway.subscriptions`), feeding the SDK's listen bus too.
        self._followers = Subscriptions(self._subscriptions)
        # subscriptions/listen of a 2026-07-28 client: the upstream's own stream when it serves that revision (what
        # changes there, it says there), else the SDK's (`gateway.subscriptions` feeds it what the bridge sees).
        own_listen = self._lowlevel_server.get_request_handler("subscriptions/listen")
        self._own_listen = own_listen.handler if own_listen is not None else None
        if self._own_listen is not None:
            self._lowlevel_server.add_request_handler(
                "subscriptions/listen", SubscriptionsListenRequestParams, self._handle_listen
            )
        # Resource subscriptions are the upstream's, where this process holds the connection (not a stdio upstream
        # the host's supervisor runs: its protocol has no subscriptions yet).
        config = upstream_config()
        if config is not None and not is_supervised(config):
            add = self._lowlevel_server.add_request_handler
            add("resources/subscribe", SubscribeRequestParams, self._handle_subscribe)
            add("resources/unsubscribe", UnsubscribeRequestParams, self._handle_unsubscribe)

    async def _handle_listen(self, ctx: ServerRequestContext[Any], params: SubscriptionsListenRequestParams) -> Any:
        upstream = await self._modern_upstream(ctx)
        if upstream is None:
            assert self._own_listen is not None  # registered only with the SDK's
            return await self._own_listen(ctx, params)
        channel = notifications.request_channel(ctx)  # this request's stream

        async def relay(message: dict[str, Any]) -> None:
            params = message.get("params")
            params = dict(params) if isinstance(params, dict) else {}
            meta = params.get("_meta")
            # The stream is the client's request: its events carry that request's id as their subscription.
            params["_meta"] = {**(meta if isinstance(meta, dict) else {}), SUBSCRIPTION_ID_META_KEY: ctx.request_id}
            await channel.notify(str(message.get("method")), params)

        forwarded = _modern_params(ctx, current_caller())
        return await upstream.forward_modern("subscriptions/listen", forwarded, relay, timed=False)

    async def _handle_subscribe(self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        upstream = await self._subscribable()
        await self._followers.subscribe(ctx, upstream, str(params.uri), caller_meta(current_caller()))
        return EmptyResult()

    async def _handle_unsubscribe(
        self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        upstream = await self._subscribable()
        await self._followers.unsubscribe(ctx, upstream, str(params.uri), caller_meta(current_caller()))
        return EmptyResult()

    async def _subscribable(self) -> Upstream:
        """The caller's upstream, started, that takes subscriptions; else the client's error."""
        found = current_pool()
        if found is None:
            raise MCPError(code=METHOD_NOT_FOUND, message="Method not found: resources/subscribe")
        upstream = await caller_upstream(found, current_caller())
        await upstream.session()
        capabilities = upstream.capabilities
        if capabilities is None or capabilities.resources is None or not capabilities.resources.subscribe:
            raise MCPError(code=METHOD_NOT_FOUND, message="The upstream server does not offer resource subscriptions.")
        return upstream

    async def _handle_complete(self, ctx: ServerRequestContext[Any], params: CompleteRequestParams) -> CompleteResult:
        if is_identity_argument(params.argument.name):
            return CompleteResult(completion=Completion(values=[]))  # the bridge fills it: nothing to complete
        upstream = await self._upstream()
        capabilities = upstream.capabilities if upstream is not None else None
        if upstream is None or capabilities is None or capabilities.completions is None:
            return CompleteResult(completion=Completion(values=[]))
        argument = {"name": params.argument.name, "value": params.argument.value}
        given = params.context.arguments if params.context is not None else None
        prompt = _prompt_named(upstream, params.ref.name) if isinstance(params.ref, PromptReference) else None
        caller = current_caller()
        context = forwarded_prompt_arguments(prompt, given, caller)
        given_context = context if context or given is not None else None
        return await upstream.complete(params.ref, argument, given_context, caller_meta(caller))

    async def _modern_upstream(self, ctx: ServerRequestContext[Any]) -> Upstream | None:
        """The caller's upstream when the request is 2026-07-28 and the upstream serves that revision too (the
        request is then passed on in it), else None."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return None
        upstream = await self._upstream()
        return upstream if upstream is not None and upstream.serves_modern else None

    async def _modern_list(
        self,
        ctx: ServerRequestContext[Any],
        params: PaginatedRequestParams | None,
        upstream: Upstream,
        method: str,
        key: str,
        local: list[Any],
    ) -> dict[str, Any]:
        """A 2026-07-28 list: the built-ins (on the first page), then the upstream's page as it listed it to this
        client, its caching hints (`ttlMs`, `cacheScope`) and cursor kept; caller arguments hidden."""
        raw = await upstream.forward_modern(method, _modern_params(ctx, current_caller()))
        items = raw.get(key) if isinstance(raw.get(key), list) else []
        first_page = params is None or params.cursor is None
        shown = [_dumped(item) for item in local] if first_page else []
        taken = {item.get("name", item.get("uri")) for item in shown}
        for item in items:
            if not isinstance(item, dict) or item.get("name", item.get("uri")) in taken:
                continue
            if method == "tools/list":
                tool = Tool.model_validate(item)
                upstream.modern_tools[tool.name] = tool
                item = _dumped(public_tool(tool))
            elif method == "prompts/list":
                prompt = MCPPrompt.model_validate(item)
                upstream.modern_prompts[prompt.name] = prompt
                item = _dumped(public_prompt(prompt))
            shown.append(item)
        hints = {name: raw[name] for name in ("nextCursor", "ttlMs", "cacheScope", "resultType") if name in raw}
        return {"resultType": "complete", **hints, key: shown}

    async def knows_prompt(self, ctx: ServerRequestContext[Any], name: str) -> bool:
        """Whether a `prompts/get` of `name` names a prompt this server has for this client (`KnownPrompts`)."""
        if name in {prompt.name for prompt in await self.list_prompts()}:
            return True
        upstream = await self._modern_upstream(ctx)
        if upstream is None:
            return False
        if name not in upstream.modern_prompts:  # not listed to a 2026-07-28 client yet: ask
            await self._modern_list(ctx, None, upstream, "prompts/list", "prompts", [])
        return name in upstream.modern_prompts

    async def _handle_list_tools(self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> Any:
        await self._note_listed(ctx, "tools")
        upstream = await self._modern_upstream(ctx)
        if upstream is None:
            return await super()._handle_list_tools(ctx, params)
        local = await MCPServer.list_tools(self)
        return await self._modern_list(ctx, params, upstream, "tools/list", "tools", local)

    async def _handle_list_prompts(self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> Any:
        await self._note_listed(ctx, "prompts")
        upstream = await self._modern_upstream(ctx)
        if upstream is None:
            return await super()._handle_list_prompts(ctx, params)
        local = await MCPServer.list_prompts(self)
        return await self._modern_list(ctx, params, upstream, "prompts/list", "prompts", local)

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> Any:
        await self._note_listed(ctx, "resources")
        upstream = await self._modern_upstream(ctx)
        if upstream is None:
            return await super()._handle_list_resources(ctx, params)
        local = await MCPServer.list_resources(self)
        return await self._modern_list(ctx, params, upstream, "resources/list", "resources", local)

    async def _handle_list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> Any:
        upstream = await self._modern_upstream(ctx)
        if upstream is None:
            return await super()._handle_list_resource_templates(ctx, params)
        local = await MCPServer.list_resource_templates(self)
        method = "resources/templates/list"
        return await self._modern_list(ctx, params, upstream, method, "resourceTemplates", local)

    async def _note_listed(self, ctx: ServerRequestContext[Any], kind: str) -> None:
        """The client of `ctx` lists `kind`: it hears when the upstream's changes (`gateway.subscriptions`)."""
        found = current_pool()
        if found is not None:
            self._followers.listed(ctx, kind, await caller_upstream(found, current_caller()))

    async def _upstream(self) -> Upstream | None:
        """The caller's upstream, started; None when it cannot be had (the built-ins keep working)."""
        found = current_pool()
        if found is None:
            return None
        upstream = await caller_upstream(found, current_caller())
        try:
            await upstream.session()
        except MCPError as exc:
            logger.warning("listing without the upstream: %s", exc.message)
            return None
        return upstream

    # --- tools ----------------------------------------------------------------------------------------------------

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        upstream = await self._upstream()
        if upstream is None:
            return tools
        local = {tool.name for tool in tools}
        for tool in upstream.listing.tools.values():
            if tool.name in local:
                logger.error("upstream tool %r hidden: a built-in tool has that name (manage.py check)", tool.name)
                continue
            tools.append(public_tool(tool))
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self._tool_manager.get_tool(name) is not None:
            return await super().call_tool(name, arguments, context)
        found = current_pool()
        if found is None:
            return await super().call_tool(name, arguments, context)  # the SDK's "Unknown tool"
        caller = current_caller()
        upstream = await caller_upstream(found, caller)
        try:
            await upstream.session()
        except MCPError as exc:
            failure = exc

            async def refuse() -> Any:
                raise failure

            return await metering.metered(name, refuse)
        request = _modern_request(context)
        modern = request is not None and upstream.serves_modern
        tool = (upstream.modern_tools.get(name) if modern else None) or upstream.listing.tools.get(name)
        if tool is None and request is not None and modern:  # not listed to a 2026-07-28 client yet: ask
            await self._modern_list(request, None, upstream, "tools/list", "tools", [])
            tool = upstream.modern_tools.get(name)
        if tool is None:
            return await super().call_tool(name, arguments, context)  # not a tool of either: not served, not metered
        if request is not None and modern:
            params = _modern_params(request, caller, arguments=forwarded_arguments(tool, arguments, caller))
            metrics.GATEWAY_FORWARDED.labels("sdk").inc()
            relay = _relay(context, _progress_token(context))
            return await metering.metered(name, lambda: upstream.forward_modern("tools/call", params, relay))
        arguments = forwarded_arguments(tool, arguments, caller)
        meta = caller_meta(caller)
        token = _progress_token(context)

        metrics.GATEWAY_FORWARDED.labels("sdk").inc()

        async def forward() -> CallToolResult:
            relay = _relay(context, token)
            return await upstream.call_tool(
                name, arguments, meta, relay, progress=token is not None, on_request=_asker(context)
            )

        return await metering.metered(name, forward)

    # --- prompts --------------------------------------------------------------------------------------------------

    async def list_prompts(self) -> list[MCPPrompt]:
        prompts = await super().list_prompts()
        upstream = await self._upstream()
        if upstream is not None:
            local = {prompt.name for prompt in prompts}
            prompts.extend(public_prompt(prompt) for prompt in upstream.listing.prompts if prompt.name not in local)
        return prompts

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Any = None
    ) -> GetPromptResult | Any:
        found = current_pool()
        if self._prompt_manager.get_prompt(name) is not None or found is None:
            return await super().get_prompt(name, arguments, context)
        caller = current_caller()
        upstream = await caller_upstream(found, caller)
        await upstream.session()
        forwarded = forwarded_prompt_arguments(_prompt_named(upstream, name), arguments, caller)
        request = _modern_request(context)
        if request is not None and upstream.serves_modern:
            params = _modern_params(request, caller, arguments=forwarded)
            return await upstream.forward_modern("prompts/get", params, _relay(context, None))
        return await upstream.get_prompt(name, forwarded, caller_meta(caller))

    # --- resources ------------------------------------------------------------------------------------------------

    async def list_resources(self) -> list[MCPResource]:
        resources = await super().list_resources()
        upstream = await self._upstream()
        if upstream is not None:
            resources.extend(upstream.listing.resources)
        return resources

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        templates = await super().list_resource_templates()
        upstream = await self._upstream()
        if upstream is not None:
            templates.extend(upstream.listing.templates)
        return templates

    async def _handle_read_resource(
        self, ctx: ServerRequestContext[Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult | Any:
        found = current_pool()
        if found is None or self._resource_manager.list_resources():
            return await super()._handle_read_resource(ctx, params)
        caller = current_caller()
        upstream = await caller_upstream(found, caller)
        uri, meta = str(params.uri), caller_meta(caller)
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            await upstream.session()
            if upstream.serves_modern:
                return await upstream.forward_modern("resources/read", _modern_params(ctx, caller))
        return await upstream.read_resource(uri, meta)


def _prompt_named(upstream: Upstream, name: str) -> MCPPrompt | None:
    """The upstream's prompt of that name, as it last listed it."""
    found = next((prompt for prompt in upstream.listing.prompts if prompt.name == name), None)
    return found or upstream.modern_prompts.get(name)


def _dumped(item: Any) -> dict[str, Any]:
    return item.model_dump(by_alias=True, mode="json", exclude_none=True) if hasattr(item, "model_dump") else item


def _asker(context: Any) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None:
    """What asks the calling client what the upstream asks during a forwarded call (sampling, elicitation, roots),
    on the call's own stream (`mcp_bridge.back_channel`)."""
    request = getattr(context, "request_context", None) if context is not None else None
    if request is None:
        return None

    async def ask(message: dict[str, Any]) -> dict[str, Any]:
        params = message.get("params")
        return await back_channel.ask_client(
            request, str(message.get("method")), params if isinstance(params, dict) else None
        )

    return ask


# --- 2026-07-28: requests passed on in their own revision ---------------------------------------------------------


def _modern_request(context: Any) -> ServerRequestContext[Any] | None:
    """The request of a tool's or prompt's `context` when its client speaks 2026-07-28, else None."""
    request = getattr(context, "request_context", None) if context is not None else None
    if request is None or request.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return None
    return request


def _modern_params(
    request: ServerRequestContext[Any], caller: Any, *, arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The client's params as it sent them — its `_meta` envelope (revision, capabilities, client, log level,
    progress token, trace context), `inputResponses`, `requestState` — with the caller's arguments and `_meta` keys
    filled in by the bridge (`gateway.identity`: never the client's)."""
    params = dict(request.params or {})
    meta = params.get("_meta")
    params["_meta"] = {**(meta if isinstance(meta, dict) else {}), **caller_meta(caller)}
    if arguments is not None:
        params["arguments"] = arguments
    return params


# --- what the upstream says during a call ---------------------------------------------------------------------------


def _progress_token(context: Any) -> str | int | None:
    """The progress token of the client's request, if it sent one."""
    try:
        meta = context.request_context.meta
    except (AttributeError, ValueError):
        return None
    if not meta:
        return None
    token = meta.get("progressToken", meta.get("progress_token"))
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None


def _relay(context: Any, token: str | int | None) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
    """What passes the upstream's notifications about a forwarded call on to the calling client, on that request's
    own stream: its progress (when the client asked for it with a progress token, under that token) and its log
    messages (at the levels the client asked for, `mcp_bridge.notifications`). A client that cannot take them (a
    JSON-only answer) does not get them; the call goes on."""
    try:
        request = context.request_context
    except (AttributeError, ValueError):
        return None

    async def relay(message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params")
        if not isinstance(params, dict):
            return
        try:
            if method == "notifications/progress" and token is not None:
                await notifications.relay_progress(request, params)
            elif method == "notifications/message":
                await notifications.relay_log(request, params)
        except Exception as exc:  # the client went away, or a value the client's side refused: the call goes on
            logger.debug("not relayed to the client: %s (%s)", method, exc.__class__.__name__)

    return relay
