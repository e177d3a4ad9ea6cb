"""An upstream MCP server written the way the old Hotcross server was: an `MCPServer` whose tools declare
`_developer_id` / `_organization_id` (its old middleware filled them). No Django: it runs as its own process.

    python tests/support/upstream_servers/old_hotcross.py              # stdio
    python tests/support/upstream_servers/old_hotcross.py http PORT    # streamable HTTP at http://127.0.0.1:PORT/mcp
    python tests/support/upstream_servers/old_hotcross.py exit         # exits at once, before any MCP traffic
    python -m uvicorn --factory tests.support.upstream_servers.old_hotcross:http_app  # under any uvicorn options

It also has the tools the fault tests need (`crash`, `sleep`), `hold` (a call kept in flight until a test lets it
go), `grow` / `grow_quietly` / `forget` (a tool list that changes) and `whoami` when EXTRA_TOOL_WHOAMI=1 (a name
clash). Its prompt `greet` declares the identity arguments too and completes, a resource and a resource template.
"""

import os
import sys

if __name__ == "__main__" and sys.argv[1:2] == ["exit"]:
    # Before the imports below (about a second of CPU): a bridge starts this again at every attempt of its back-off.
    print("old-hotcross: cannot start (this test server exits at once)", file=sys.stderr)
    sys.exit(3)

import asyncio
import functools
import inspect
import json
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument
from mcp_types import Completion, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams
from pydantic import Field

server = MCPServer("old-hotcross")


def old_style_tool(fn: Any) -> Any:
    """Register a tool whose identity keywords start with `_`, as the old server's tools did.

    mcp 2.x refuses parameter names starting with `_`, so the schema gets them through a field alias: clients (the
    bridge) see and send `_developer_id` / `_organization_id`, and the function receives them under those names.
    """
    signature = inspect.signature(fn)
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name.startswith("_"):
            annotation = Annotated[parameter.annotation, Field(alias=parameter.name)]
            parameter = parameter.replace(name=parameter.name.lstrip("_"), annotation=annotation)
        parameters.append(parameter)

    @functools.wraps(fn)
    def call(**arguments: Any) -> Any:
        return fn(**arguments)

    call.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    del call.__wrapped__
    call.__annotations__ = {p.name: p.annotation for p in parameters}
    call.__annotations__["return"] = signature.return_annotation
    server.add_tool(call, name=fn.__name__)
    return fn


@old_style_tool
def remember(text: str, _developer_id: str = "", _organization_id: str = "") -> dict[str, Any]:
    """Store a memory for the developer (the old server's shape: identity as keyword arguments)."""
    return {"text": text, "developer_id": _developer_id, "organization_id": _organization_id}


@old_style_tool
def project_of(_organization_id: str) -> str:
    """A tool that needs only the organization (a required identity argument)."""
    return f"projects of {_organization_id}"


@server.tool()
def ping() -> str:
    """A trivial tool (the benchmark calls it)."""
    return "pong"


@server.tool()
def process() -> dict[str, Any]:
    """Which process answers, with the environment the bridge gave it."""
    return {
        "pid": os.getpid(),
        "organization_id": os.environ.get("HOTCROSS_ORGANIZATION_ID", ""),
        "data_dir": os.environ.get("HOTCROSS_DATA_DIR", ""),
        "cwd": os.getcwd(),
        "database_url": os.environ.get("DATABASE_URL", ""),
        "greeting": os.environ.get("GREETING", ""),
    }


@server.tool()
def caller_meta(ctx: Context) -> dict[str, Any]:
    """The request's `_meta` as the upstream received it (the bridge's keys and the trace context)."""
    meta = ctx.request_context.meta or {}
    return {key: value for key, value in dict(meta).items() if key.startswith("hotcross/") or key == "traceparent"}


@server.tool()
def service_key(ctx: Context) -> str:
    """HTTP mode: the X-Service-Key header the bridge sent (its service credential)."""
    request = ctx.request_context.request
    return request.headers.get("x-service-key", "") if request is not None else ""


@server.tool()
def fails() -> str:
    """A tool error: the result is flagged isError."""
    raise ValueError("this tool always fails")


@server.tool()
def crash() -> str:
    """The process dies in the middle of the call."""
    os._exit(3)


@server.tool()
async def sleep(seconds: float) -> str:
    """Answers after `seconds`."""
    await asyncio.sleep(seconds)
    return "awake"


@server.tool()
async def hold(path: str) -> str:
    """Answers once the file `path` exists: a call in flight for as long as a test wants."""
    while not os.path.exists(path):
        await asyncio.sleep(0.02)
    return "released"


def grown() -> str:
    """A tool added while the server runs."""
    return "I am new"


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool named `name` and says so (notifications/tools/list_changed)."""
    server.add_tool(grown, name=name)
    await ctx.session.send_tool_list_changed()
    return "grown"


@server.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Says that the resource `uri` changed (notifications/resources/updated, to a subscribed client)."""
    await ctx.session.send_resource_updated(uri)
    return "touched"


async def _subscribed(_ctx: Any, _params: Any) -> EmptyResult:
    return EmptyResult()  # every resource may be followed: `touch` says when one changed


server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribed)
server._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _subscribed)


@server.tool()
def grow_quietly(name: str) -> str:
    """Adds a tool named `name` without telling anyone."""
    server.add_tool(grown, name=name)
    return "grown"


@server.tool()
async def forget(name: str, ctx: Context) -> str:
    """Removes the tool `name` that `grow` added, and says so (notifications/tools/list_changed)."""
    server.remove_tool(name)
    await ctx.session.send_tool_list_changed()
    return "forgotten"


def greet(name: str, **identity: str) -> str:
    """A prompt with an argument that also declares the old server's identity arguments (`_developer_id`,
    `_organization_id`): it says which it was given."""
    return f"Hello {name}" + (f" {json.dumps(identity, sort_keys=True)}" if identity else "")


server.add_prompt(
    Prompt(
        name="greet",
        description="A prompt with an argument.",
        arguments=[
            PromptArgument(name="name", required=True),
            PromptArgument(name="_developer_id"),
            PromptArgument(name="_organization_id"),
        ],
        fn=greet,
    )
)


@server.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion:
    """Completes `greet`'s `name` (and says which context arguments it was given, `key=value`); asked to complete an
    identity argument, it offers someone else's id (the bridge must never ask)."""
    if argument.name.startswith("_"):
        return Completion(values=["someone-else"])
    given = sorted((context.arguments or {}).items()) if context is not None else []
    names = [name for name in ("Ada", "Alan", "Grace") if name.startswith(argument.value)]
    return Completion(values=names + [f"{key}={value}" for key, value in given])


@server.resource("notes://today")
def today() -> str:
    """A resource."""
    return "nothing planned"


@server.resource("notes://{day}")
def notes_of(day: str) -> str:
    """A resource template."""
    return f"notes of {day}"


if os.environ.get("EXTRA_TOOL_WHOAMI") == "1":

    @server.tool(name="whoami")
    def clashing_whoami() -> str:
        """Clashes with the bridge's built-in tool."""
        return "upstream"


def http_app() -> Any:
    """The streamable-HTTP app: stateless, answers as JSON (`uvicorn --factory`; the tests hand uvicorn a socket)."""
    return server.streamable_http_app(stateless_http=True, json_response=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "http":
        import uvicorn

        uvicorn.run(http_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        server.run()
