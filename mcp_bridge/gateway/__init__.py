"""Gateway mode: an upstream MCP server behind the bridge's keys, seats and metering (`HOTCROSS_MCP_UPSTREAM`).

The client side (connections, restarts, timeouts, cached lists, the pool) is the `upstream` package, which knows
nothing of Django; here is the forwarding side:

- `settings`: the `HOTCROSS_MCP_UPSTREAM*` settings as an `UpstreamConfig` (validated by `manage.py check`).
- `upstream`: the bridge's upstream: the running loop's pool (`current_pool`), the caller's connection in it, its
  start and end with the server, its /healthz status.
- `identity`: `_developer_id` / `_organization_id` hidden from clients and filled with the real caller; `_meta` keys.
- `server`: `GatewayServer`, the bridge's `MCPServer` with the upstream's tools, prompts and resources beside its own.
- `direct`: a `tools/call` of an HTTP upstream's tool over /mcp, answered without the SDK's server.
"""
