"""Database work from async MCP tools: `await run(fn, *args)` runs `fn` on the bridge's tool threads.

The ORM is synchronous, and Django refuses it on a thread that runs an event loop. Sync tools are run on the tool
threads by the bridge itself; an async tool hands its database work over with `run`. The threads give their
connection back after every unit of work (see `infra.db`), and the bridge's own key checks and usage events use
other threads, so a slow tool never stalls other requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from infra.db import TOOLS, DatabaseUnavailable, run_in_pool

__all__ = ["DatabaseUnavailable", "run"]

P = ParamSpec("P")
T = TypeVar("T")


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on a tool thread and return its result: how async tools use the ORM.

    Context variables (the caller, the MCP access token) are visible inside `fn`. Connection-level database errors
    become `DatabaseUnavailable`; everything else propagates unchanged.
    """
    return await run_in_pool(TOOLS, fn, *args, **kwargs)
