"""A reverse proxy that adds a developer's key to every request: the MCP conformance runner cannot send a header of
its own, and the bridge serves nobody without a credential.

`python -m tests.support.key_proxy --port P --target BASE --key-env NAME` (the key is read from the environment, so
it is never on a command line): a request to 127.0.0.1:P/<path>?<query> goes to BASE/<path>?<query> (so one proxy
serves both /mcp and /mcp/key; a BASE with a path of its own, such as http://host:port/mcp/key, takes every request
whatever its path) with `Authorization: Bearer <key>` in place of any the client sent. Everything else is
passed on as it came, the Host header included (the bridge's DNS-rebinding guard sees what the client sent), and
answers stream back as they come (SSE included), status, headers and body unchanged (never decompressed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

# Headers of one connection (RFC 9110 §7.6.1) and the framing aiohttp redoes on each side; never passed on.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


def make_app(target: str, key: str) -> web.Application:
    fixed = urlsplit(target).path not in ("", "/")  # a target with a path: every request goes there
    base = target.rstrip("/")

    async def open_session(app: web.Application):
        app["session"] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120), auto_decompress=False
        )
        yield
        await app["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"authorization"}}
        headers["Authorization"] = f"Bearer {key}"
        body = await request.read()
        session: aiohttp.ClientSession = request.app["session"]
        async with session.request(
            request.method,
            target if fixed else f"{base}{request.rel_url}",
            headers=headers,
            data=body or None,
            allow_redirects=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientPayloadError):
                pass  # the client went away, or the server ended the stream (the client sees it end too)
            return response

    app = web.Application()
    app.cleanup_ctx.append(open_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="base URL, or the one URL of every request")
    parser.add_argument("--key-env", required=True, help="the environment variable holding the key")
    args = parser.parse_args(argv)
    key = os.environ.get(args.key_env)
    if not key:
        print(f"{args.key_env} is not set", file=sys.stderr)
        return 2
    asyncio.set_event_loop(asyncio.new_event_loop())
    # Streams still open at SIGTERM (SSE a client keeps listening to) are cut at once, not waited for.
    web.run_app(
        make_app(args.target, key), host="127.0.0.1", port=args.port, print=None, access_log=None, shutdown_timeout=0.1
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
