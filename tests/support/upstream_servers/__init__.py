"""MCP servers the gateway tests and benches run as upstreams (scripts: a folder of their own, so that `import mcp`
in them finds the SDK, not tests/support/mcp.py)."""
