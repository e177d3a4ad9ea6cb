"""The upstreams of one server process (`UpstreamPool`): one for everyone (`shared`), or one per organization
(`organization`), keyed by the organization's id as a string.

Organization scope: an organization's process starts on its first request, with `HOTCROSS_ORGANIZATION_ID` and its
own data folder; it is never used for another organization. A process idle for `idle_seconds` is stopped; at most
`max_processes` run, and a new organization's first request stops the least recently used idle one (when every
process is busy answering, the request is refused with `upstream_unavailable` rather than one being cut off).

A server has one event loop, and one pool on it (`loop_pool(config)`); `statuses()` reads every loop's pool from
any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from typing import Any

from upstream.config import UpstreamConfig
from upstream.connection import State, Upstream
from upstream.errors import unavailable

logger = logging.getLogger(__name__)


class UpstreamPool:
    """The connections to the upstream of one event loop: one shared, or one per organization."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._upstreams: OrderedDict[str | None, Upstream] = OrderedDict()
        self._reaper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def per_organization(self) -> bool:
        return self.config.scope == "organization"

    def upstreams(self) -> list[Upstream]:
        return list(self._upstreams.values())

    async def upstream_for(self, organization_id: str | None) -> Upstream:
        """The organization's upstream, or the shared one (whatever `organization_id` is) in shared scope; created,
        not yet started, if there was none."""
        key = organization_id if self.per_organization else None
        upstream = self._upstreams.get(key)
        if upstream is None:
            async with self._lock:
                upstream = self._upstreams.get(key)
                if upstream is None:
                    if len(self._upstreams) >= self.config.max_processes:
                        await self._make_room()
                    upstream = self._upstreams[key] = Upstream(self.config, organization_id=key)
        self._upstreams.move_to_end(key)
        upstream.last_used = time.monotonic()
        if self.per_organization and (self._reaper is None or self._reaper.done()):
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="hotcross upstream reaper")
        return upstream

    async def _make_room(self) -> None:
        for key, upstream in list(self._upstreams.items()):  # least recently used first
            if upstream.in_flight == 0:
                del self._upstreams[key]
                logger.info(
                    "stopping %s: %s processes run (HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES)",
                    upstream.name,
                    len(self._upstreams) + 1,
                )
                await upstream.stop()
                return
        raise unavailable(
            f"all {self.config.max_processes} upstream processes (HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES) are busy "
            "answering other organizations. Try again in a moment."
        )

    async def _reap(self) -> None:
        period = max(0.05, min(self.config.idle_seconds / 4, 5.0))
        while self._upstreams:
            await asyncio.sleep(period)
            now = time.monotonic()
            for key, upstream in list(self._upstreams.items()):
                idle = upstream.in_flight == 0 and upstream.state is not State.STARTING  # a start is for a request
                if idle and now - upstream.last_used >= self.config.idle_seconds:
                    if self._upstreams.get(key) is upstream:
                        del self._upstreams[key]
                        logger.info("stopping %s: idle for %s s", upstream.name, self.config.idle_seconds)
                        await upstream.stop()

    async def start(self) -> None:
        """Start the shared upstream now (a server's start), so the first call does not wait for it."""
        if not self.per_organization:
            (await self.upstream_for(None)).ensure_running()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
        upstreams, self._upstreams = list(self._upstreams.values()), OrderedDict()
        await asyncio.gather(*(upstream.stop() for upstream in upstreams), return_exceptions=True)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"transport": self.config.transport, "scope": self.config.scope}
        upstreams = list(self._upstreams.values())
        if self.per_organization:
            states: dict[str, int] = {}
            for upstream in upstreams:
                states[upstream.state.value] = states.get(upstream.state.value, 0) + 1
            status.update(processes=len(upstreams), states=states, max_processes=self.config.max_processes)
        elif upstreams:
            status.update(upstreams[0].status())
        else:
            status["state"] = State.STOPPED.value
        return status


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UpstreamPool] = weakref.WeakKeyDictionary()
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], UpstreamPool] | None = None


def loop_pool(config: UpstreamConfig) -> UpstreamPool:
    """The running event loop's pool of `config`'s upstream (a new one, the old one left to `close_loop_pool`, when
    the config changed)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0]() is loop and last[1].config is config:  # the usual case, without a new weakref
        return last[1]
    found = _pools.get(loop)
    if found is None or (found.config is not config and found.config != config):
        found = _pools[loop] = UpstreamPool(config)
    _last = (weakref.ref(loop), found)
    return found


def statuses() -> list[dict[str, Any]]:
    """The upstream state of every loop's pool in this process (for a health check, which runs on another thread)."""
    for _attempt in range(3):
        with contextlib.suppress(RuntimeError):  # a dict changed size while being read: read again
            return [found.status() for found in list(_pools.values())]
    return []


async def close_loop_pool() -> None:
    """Stop the running event loop's pool, if it has one (a server's end)."""
    global _last
    with contextlib.suppress(RuntimeError):
        loop = asyncio.get_running_loop()
        _last = None
        found = _pools.pop(loop, None)
        if found is not None:
            await found.close()
