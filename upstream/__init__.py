"""An MCP client library: one connection to an upstream MCP server, and a pool of them. No Django in it.

- `config`: `UpstreamConfig` (a command run over stdio, or a streamable-HTTP URL; scope, timeouts), parsed and
  validated from plain values (`config_from`, raising `ConfigError`).
- `connection`: `Upstream`, one connection with the mcp SDK's client (stdio or streamable HTTP) owned by a
  background task: its cached lists (refreshed on `list_changed` and on a timer), restarts with back-off (only when
  the transport closed: an upstream's own errors pass through), a lost HTTP session made again at once, bounded
  waits (start timeout, per-call timeout); its `State`.
- `rpc`: `HttpPoster`, JSON-RPC by POST on pooled aiohttp connections for the calls an HTTP upstream answers (JSON
  or SSE), beside the SDK session; the outbound proxy read once per connection (`env_proxy`).
- `listing`: what an upstream offers (`Listing`), every page read. `probe`: one look (start, list, stop).
- `pool`: `UpstreamPool`, the process's connections: one shared, or one per organization (idle stop, LRU cap);
  `loop_pool(config)` per event loop, `statuses()` for health checks.
- `supervisor`: the host's upstream supervisor (`python -m upstream.supervisor`), one process per configuration that
  runs the stdio upstreams in one `UpstreamPool` and serves them over a Unix socket; `supervised`: a server
  process's client of it (`SupervisedPool`, `SupervisedUpstream`: `UpstreamPool`'s and `Upstream`'s interface), which
  starts it when none answers. So N workers share one upstream process per scope.
- `sandbox`: an organization's process in a bubblewrap sandbox (its folder the only writable one, an unprivileged
  uid, a network setting, CPU/memory/open-file limits); `unavailable_reason()` where bubblewrap cannot run.
- `assertion`: the caller's signed identity (`X-Hotcross-Caller`, an EdDSA JWT) on requests to an HTTP upstream, and
  the published key set (`jwks`).
- `errors`: `upstream_unavailable` (-32010) and `upstream_timeout` (-32011), as the mcp SDK's `MCPError`.
"""
