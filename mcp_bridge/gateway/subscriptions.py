"""What an upstream tells every client that follows it: resource updates and list changes.

Lists: once the upstream's lists are read again and differ (`Upstream.on_list_changed`), a 2026-07-28 client hears of
it on its `subscriptions/listen` stream (the SDK's bus, fed here), and a handshake-era client with a stream outside
its requests (stdio) gets `notifications/{tools,prompts,resources}/list_changed`, if it listed that kind before.

Resource subscriptions (`resources/subscribe`, `resources/unsubscribe`, handshake era):

The upstream's connection is shared by every caller of its scope, so the bridge keeps who subscribed to what: every
subscribe is forwarded (the upstream says whether the resource can be subscribed to); an unsubscribe is forwarded
only when no other client of this process still follows that URI on that connection, so one client leaving does not
end another's subscription. `notifications/resources/updated` from the upstream goes to every client that follows
the URI and has a stream to take it (stdio). A stateless HTTP client has none on the handshake era (the bridge
refuses the GET stream): its subscribe and unsubscribe are answered, and it learns of changes by reading again.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import SubscriptionBus
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged

from mcp_bridge.notifications import connection_of
from upstream.connection import Upstream

logger = logging.getLogger(__name__)


_EVENTS = {"tools": ToolsListChanged(), "prompts": PromptsListChanged(), "resources": ResourcesListChanged()}


class Subscriptions:
    """Who follows which URI of which upstream connection, and which clients listed what, in this process."""

    def __init__(self, bus: SubscriptionBus) -> None:
        self._bus = bus  # the SDK's `subscriptions/listen` fan-out (2026-07-28)
        # upstream → uri → the SDK connections (clients) that follow it; forgotten with the client.
        self._followers: weakref.WeakKeyDictionary[Upstream, dict[str, weakref.WeakSet[Any]]] = (
            weakref.WeakKeyDictionary()
        )
        # kind of list → the clients with a stream of their own that listed it
        self._listed: dict[str, weakref.WeakSet[Any]] = {kind: weakref.WeakSet() for kind in _EVENTS}
        self._watched: weakref.WeakSet[Upstream] = weakref.WeakSet()

    def listed(self, ctx: ServerRequestContext[Any, Any], kind: str, upstream: Upstream) -> None:
        """The client of `ctx` listed `kind` (tools, prompts, resources) of `upstream`: tell it when that changes."""
        if upstream not in self._watched:
            self._watched.add(upstream)

            async def changed(what: str) -> None:
                await self._lists_changed(what)

            upstream.on_list_changed.append(changed)
        connection = _streaming_connection(ctx)
        if connection is not None:
            self._listed[kind].add(connection)

    async def _lists_changed(self, kind: str) -> None:
        await self._bus.publish(_EVENTS[kind])
        for connection in list(self._listed[kind]):
            try:
                await connection.outbound.notify(f"notifications/{kind}/list_changed", None)
            except Exception as exc:  # that client went away
                logger.debug("list change not passed on: %s", exc.__class__.__name__)

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], upstream: Upstream, uri: str, meta: dict) -> None:
        await upstream.subscribe(uri, meta)
        connection = _streaming_connection(ctx)
        if connection is None:
            return
        by_uri = self._followers.get(upstream)
        if by_uri is None:
            by_uri = self._followers[upstream] = {}

            async def updated(changed: str) -> None:
                await self._tell(upstream, changed)

            upstream.on_resource_updated.append(updated)
        by_uri.setdefault(uri, weakref.WeakSet()).add(connection)

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], upstream: Upstream, uri: str, meta: dict) -> None:
        followers = self._followers.get(upstream, {}).get(uri)
        connection = _streaming_connection(ctx)
        if followers is not None and connection is not None:
            followers.discard(connection)
        if followers:
            return  # another client still follows it
        await upstream.unsubscribe(uri, meta)

    async def _tell(self, upstream: Upstream, uri: str) -> None:
        for connection in list(self._followers.get(upstream, {}).get(uri, ())):
            try:
                await connection.outbound.notify("notifications/resources/updated", {"uri": uri})
            except Exception as exc:  # that client went away
                logger.debug("resource update not passed on: %s", exc.__class__.__name__)


def _streaming_connection(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The client's SDK connection when it has a stream for notifications outside a request (stdio), else None."""
    connection = connection_of(ctx)
    if connection is None or not getattr(connection, "has_standalone_channel", False):
        return None
    return connection
