"""A product tool module as a team would write one, loaded through HOTCROSS_MCP_TOOLS in these tests."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver.exceptions import ToolError

from accounts.models import Developer
from mcp_bridge.tools import tool


def echo(text: str, _developer_id: uuid.UUID, _organization_id: uuid.UUID) -> dict[str, str]:
    """Echo the text with the caller the bridge passed in (sync, so it runs on a database thread)."""
    return {"text": text, "developer_id": str(_developer_id), "organization_id": str(_organization_id)}


async def caller_async(_developer_id=None, _organization_id=None) -> str:
    """The old server's style: optional caller keywords with defaults, async."""
    return f"{_developer_id}/{_organization_id}"


def legacy_kwargs(n: int, **kwargs) -> str:
    """The old decorator's other style: the caller arrives in **kwargs."""
    return f"{n}:{kwargs['_developer_id']}:{kwargs['_organization_id']}"


@tool(name="my_email", title="My email", read_only=True)
def email_of_caller(_developer_id: uuid.UUID) -> str:
    """The caller's email, read through the ORM."""
    return Developer.objects.get(pk=_developer_id).email


def fail(reason: str) -> str:
    """Always fails the way a tool reports a problem to the model."""
    raise ToolError(f"failed on purpose: {reason}")


def ping() -> str:
    """No caller, no database."""
    return "pong"


def slow(seconds: float, started: str = "", release: str = "") -> str:
    """Holds its tool thread (as a slow query or a slow upstream service would) for `seconds`, or until a file named
    `release` exists; creates the file named `started` first, so a test can wait for the call to hold its thread."""
    if started:
        Path(started).touch()
    if not release:
        time.sleep(seconds)
        return "done"
    deadline = time.monotonic() + seconds
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"


async def access_token() -> dict[str, str | None]:
    """What the SDK's `get_access_token()` says about the caller (tools ported from SDK examples use it)."""
    token = get_access_token()
    if token is None:
        return {"client_id": None, "organization_id": None}
    return {"client_id": token.client_id, "organization_id": (token.claims or {}).get("organization_id")}


TOOLS = [echo, caller_async, legacy_kwargs, email_of_caller, fail, ping, slow, access_token]
