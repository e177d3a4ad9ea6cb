"""The bridge's upstream: the `upstream` package's pool and connections as this server runs them.

- `current_pool()`: the running event loop's `UpstreamPool` of the configured upstream (`settings.upstream_config`),
  or None when there is none; `caller_upstream(pool, caller)`: the caller's connection in it (its organization's,
  in organization scope).
- `start()` / `close()`: at a server's start and end. `health()`: what /healthz says of the upstream.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from accounts.credentials import Principal
from mcp_bridge.gateway.settings import upstream_config
from upstream import pool
from upstream.connection import State, Upstream
from upstream.pool import UpstreamPool


def current_pool() -> UpstreamPool | None:
    """The running event loop's pool (a server has one loop), or None when no upstream is configured."""
    config = upstream_config()
    return None if config is None else pool.loop_pool(config)


def caller_upstream(found: UpstreamPool, caller: Principal | None) -> Awaitable[Upstream]:
    """The caller's upstream in `found` (created, not yet started, if there was none), to await (no coroutine of its
    own on the forwarded calls' path)."""
    key = str(caller.organization_id) if caller is not None and found.per_organization else None
    return found.upstream_for(key)


async def start() -> None:
    """A server's start: the shared upstream, if any, starts now (the first call does not wait for it)."""
    found = current_pool()
    if found is not None:
        await found.start()


async def close() -> None:
    """A server's end: its upstreams stop."""
    await pool.close_loop_pool()


def health() -> dict[str, Any] | None:
    """The upstream's state for /healthz (`infra.health`, from any thread); None when no upstream is configured."""
    try:
        config = upstream_config()
    except ImproperlyConfigured:
        return {"state": "misconfigured"}
    if config is None:
        return None
    running = pool.statuses()
    if running:
        return running[0]
    return {"transport": config.transport, "scope": config.scope, "state": State.STOPPED.value}
