"""`manage.py mcp_server`: the Hotcross MCP server over stdio, for one developer's key (HOTCROSS_API_KEY)."""

from __future__ import annotations

import os

import anyio
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from mcp.server.mcpserver import MCPServer

from accounts import credentials
from accounts.exceptions import KeyRefused
from infra.db import DatabaseUnavailable, bound_queries
from mcp_bridge import metering
from mcp_bridge.auth import MISSING_STDIO_KEY
from mcp_bridge.gateway import upstream as gateway_upstream
from mcp_bridge.server import build_server

# Exit status when the key is missing or refused, before any MCP traffic (1 is everything else).
EXIT_KEY_REFUSED = 2


class Command(BaseCommand):
    help = (
        "Serve the Hotcross MCP tools over stdio (for Claude Desktop, Cursor, the MCP Inspector). The developer key "
        "comes from the HOTCROSS_API_KEY environment variable; it is checked at start (exit status 2 with the reason "
        "on stderr when missing or refused) and again on every request. Nothing but MCP messages goes to stdout."
    )
    # stdout belongs to the MCP protocol, and a client shows stderr to people: no system-check chatter on either.
    requires_system_checks: list[str] = []

    def handle(self, *args: object, **options: object) -> None:
        bound_queries(settings.DATABASE_QUERY_TIMEOUT)  # a database that stops answering: -32002 within seconds
        key = os.environ.get("HOTCROSS_API_KEY", "").strip()
        refusal = anyio.run(_refusal_of, key) if key else MISSING_STDIO_KEY
        if refusal is not None:
            self.stderr.write(refusal)
            raise SystemExit(EXIT_KEY_REFUSED)
        try:
            server = build_server(stdio_key=key)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        anyio.run(_serve, server)


async def _serve(server: MCPServer) -> None:
    await metering.load_spool_at_start()  # the usage events a stop could not write
    await gateway_upstream.start()  # the shared upstream, if any, starts while the client initializes
    try:
        await server.run_stdio_async()
    finally:
        await gateway_upstream.close()
        # The usage events of the session's last moments, before the client loses patience.
        await metering.flush_at_stop(metering.STDIO_SHUTDOWN_SECONDS)


async def _refusal_of(key: str) -> str | None:
    """The line to print when the key cannot be used, or None."""
    try:
        await credentials.aauthenticate(key, kinds=credentials.KEYS_ONLY)
    except KeyRefused as refusal:
        return f"{refusal.code}: {refusal.message}"
    except DatabaseUnavailable as exc:
        raise CommandError(str(exc)) from None
    return None
