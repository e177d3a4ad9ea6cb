"""The floor of `bench/gateway_overhead.py`: the least a forwarding process can cost on this machine.

An ASGI app (uvicorn, as the bridge) that posts each request's body to `HOTCROSS_MCP_UPSTREAM` on aiohttp's pooled
connections (as the bridge's direct forwarding does) and sends the answer back: no key check, plan, metering, logging
or validation of any kind. Bench code only, never served: whatever the bridge's rules cost is the difference between
it and this.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

_UPSTREAM = os.environ["HOTCROSS_MCP_UPSTREAM"]
_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        if _session is not None:
            await _session.close()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    async with _session.post(_UPSTREAM, data=body, headers=_HEADERS) as response:
        answer = await response.read()
        status = response.status
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})
