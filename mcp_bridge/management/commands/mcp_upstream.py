"""`manage.py mcp_upstream`: what the configured upstream MCP server offers, as the bridge will serve it."""

from __future__ import annotations

import json
from typing import Any

import anyio
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from mcp.shared.exceptions import MCPError

from mcp_bridge.gateway.identity import META_KEYS, identity_arguments, public_tool
from mcp_bridge.gateway.settings import upstream_config
from upstream.probe import probe


class Command(BaseCommand):
    help = (
        "Start the upstream MCP server of HOTCROSS_MCP_UPSTREAM once and list its tools (with how their identity "
        "arguments are handled), prompts and resources, for an operator setting the gateway up."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON document instead of text.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = upstream_config()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if config is None:
            raise CommandError("HOTCROSS_MCP_UPSTREAM is not set: there is no upstream MCP server to show.")
        try:
            listing = anyio.run(probe, config)
        except MCPError as exc:
            raise CommandError(exc.message) from None
        tools = []
        for tool in listing.tools.values():
            filled = identity_arguments(tool)
            tools.append(
                {
                    "name": tool.name,
                    "description": (tool.description or "").strip().splitlines()[0] if tool.description else "",
                    "arguments": sorted(public_tool(tool).input_schema.get("properties", {})),
                    "identity": list(filled),
                }
            )
        report = {
            "upstream": config.describe(),
            "transport": config.transport,
            "scope": config.scope,
            "timeout_seconds": config.timeout,
            "tools": tools,
            "prompts": [prompt.name for prompt in listing.prompts],
            "resources": [str(resource.uri) for resource in listing.resources],
            "resource_templates": [template.uri_template for template in listing.templates],
            "meta_keys": list(META_KEYS),
        }
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self.stdout.write(f"Upstream: {report['upstream']} ({config.transport}, scope {config.scope})")
        self.stdout.write(f"Tools ({len(tools)}):")
        for tool in tools:
            if tool["identity"]:
                how = f"filled by the bridge, hidden from clients: {', '.join(tool['identity'])}"
            else:
                how = "no identity arguments (the caller is in _meta only)"
            arguments = ", ".join(tool["arguments"]) or "no arguments"
            self.stdout.write(f"  {tool['name']}({arguments}) — {how}")
        self.stdout.write(f"Prompts ({len(report['prompts'])}): {', '.join(report['prompts']) or '-'}")
        resources = report["resources"] + report["resource_templates"]
        self.stdout.write(f"Resources ({len(resources)}): {', '.join(resources) or '-'}")
        self.stdout.write(f"Every forwarded request carries the caller in _meta: {', '.join(META_KEYS)}")
