"""The errors a request to the upstream fails with, as JSON-RPC errors the bridge passes to its client (beside
`mcp_bridge.auth`'s -32001/-32002); `data.code` names them. The upstream's own errors pass through unchanged."""

from __future__ import annotations

from mcp.shared.exceptions import MCPError

UPSTREAM_UNAVAILABLE = -32010
UPSTREAM_TIMEOUT = -32011


def upstream_error(code: int, kind: str, message: str) -> MCPError:
    return MCPError(code=code, message=f"{kind}: {message}", data={"code": kind, "message": message})


def unavailable(message: str) -> MCPError:
    """`upstream_unavailable` (-32010): it cannot be started or reached, or stopped while answering."""
    return upstream_error(UPSTREAM_UNAVAILABLE, "upstream_unavailable", message)


def timed_out(message: str) -> MCPError:
    """`upstream_timeout` (-32011): it did not answer within the per-call timeout."""
    return upstream_error(UPSTREAM_TIMEOUT, "upstream_timeout", message)
