"""Gateway mode: an upstream MCP server behind the bridge's keys, seats and metering (`HOTCROSS_MCP_UPSTREAM`).

- `config`: the settings, validated (`manage.py check`).
- `upstream`: one connection to the upstream with the mcp SDK's client (stdio or streamable HTTP), its cached lists,
  restarts with back-off, per-call timeout; the errors `upstream_unavailable` (-32010) and `upstream_timeout` (-32011).
- `pool`: the process's upstreams: one shared, or one per organization (idle stop, LRU cap).
- `identity`: `_developer_id` / `_organization_id` hidden from clients and filled with the real caller; `_meta` keys.
- `server`: `GatewayServer`, the bridge's `MCPServer` with the upstream's tools, prompts and resources beside its own.
"""
