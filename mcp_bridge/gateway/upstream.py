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
from upstream import pool, supervised
from upstream.config import UpstreamConfig
from upstream.connection import State, Upstream
from upstream.pool import UpstreamPool
from upstream.supervised import SupervisedPool, SupervisedUpstream

Pool = UpstreamPool | SupervisedPool


def is_supervised(config: UpstreamConfig) -> bool:
    """A command (stdio) upstream is run by the host's supervisor unless HOTCROSS_MCP_UPSTREAM_SUPERVISOR=false."""
    return config.transport == "stdio" and config.supervised


def current_pool() -> Pool | None:
    """The running event loop's pool (a server has one loop), or None when no upstream is configured: the
    supervisor's upstreams (`upstream.supervised`) for a command, this process's own (`upstream.pool`) for a URL."""
    config = upstream_config()
    if config is None:
        return None
    return supervised.loop_pool(config) if is_supervised(config) else pool.loop_pool(config)


def caller_upstream(found: Pool, caller: Principal | None) -> Awaitable[Upstream | SupervisedUpstream]:
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
    await supervised.close_loop_pool()


def health() -> dict[str, Any] | None:
    """The upstream's state for /healthz (`infra.health`, from any thread); None when no upstream is configured."""
    try:
        config = upstream_config()
    except ImproperlyConfigured:
        return {"state": "misconfigured"}
    if config is None:
        return None
    running = supervised.statuses() if is_supervised(config) else pool.statuses()
    if running:
        return running[0]
    return {"transport": config.transport, "scope": config.scope, "state": State.STOPPED.value}
