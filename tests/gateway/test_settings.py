"""`manage.py check` validates the gateway's settings and the upstream's tool names; `manage.py mcp_upstream` shows
an operator what the upstream offers and how its identity arguments are handled. Real commands, real upstream."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from tests.support.mcp import server_env
from tests.support.servers import ROOT
from tests.support.upstreams import OLD_HOTCROSS, gateway_env


def manage(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`manage.py *args` with the bridge's test settings and `env` on top. Neither command opens the database: these
    tests do not use the run's (they run once in CI), and the command gets a file nobody creates."""
    environment = server_env(DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_tool_name_clash_with_a_builtin_fails_the_check_naming_both(tmp_path):
    env = gateway_env(OLD_HOTCROSS, HOTCROSS_MCP_UPSTREAM_ENV=json.dumps({"EXTRA_TOOL_WHOAMI": "1"}))
    done = manage(tmp_path, "check", **env)
    assert done.returncode == 1
    assert "(mcp_bridge.E011) The upstream's tool 'whoami'" in done.stderr
    assert "clashes with the built-in tool 'whoami' (mcp_bridge.tools.builtin.whoami)" in done.stderr


def test_a_working_upstream_passes_the_check(tmp_path):
    done = manage(tmp_path, "check", **gateway_env(OLD_HOTCROSS))
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"HOTCROSS_MCP_UPSTREAM": "http://127.0.0.1:9/mcp", "HOTCROSS_MCP_UPSTREAM_SCOPE": "organization"},
            "needs one upstream per organization: a command (stdio, one process each) or a URL template",
        ),
        ({"HOTCROSS_MCP_UPSTREAM_SCOPE": "team"}, "HOTCROSS_MCP_UPSTREAM_SCOPE must be one of shared, organization"),
        ({"HOTCROSS_MCP_UPSTREAM_ENV": "GREETING=hi"}, "HOTCROSS_MCP_UPSTREAM_ENV must be a JSON object of strings"),
        ({"HOTCROSS_MCP_UPSTREAM_HEADERS": '{"X-Key": "k"}'}, "HOTCROSS_MCP_UPSTREAM_HEADERS is for an HTTP upstream"),
        ({"HOTCROSS_MCP_UPSTREAM_TIMEOUT": "0"}, "HOTCROSS_MCP_UPSTREAM_TIMEOUT must be at least"),
        ({"HOTCROSS_MCP_UPSTREAM": "uvx 'hotcross"}, "cannot split the command line"),
        (
            {"HOTCROSS_MCP_UPSTREAM": "http://127.0.0.1:9/mcp", "HOTCROSS_MCP_UPSTREAM_HEADERS": '{"X-Team": "Café"}'},
            "the header 'X-Team' holds a character HTTP headers cannot carry",
        ),
        ({"HOTCROSS_MCP_UPSTREAM_SANDBOX": "maybe"}, "HOTCROSS_MCP_UPSTREAM_SANDBOX must be bubblewrap or off"),
        ({"HOTCROSS_MCP_UPSTREAM_SANDBOX_NETWORK": "lan"}, "must be none, loopback or full, not 'lan'"),
        ({"HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS": "opt/tools"}, "'opt/tools' is not an absolute path"),
        ({"HOTCROSS_MCP_UPSTREAM_MEMORY_MB": "lots"}, "HOTCROSS_MCP_UPSTREAM_MEMORY_MB must be a whole number"),
    ],
)
def test_wrong_settings_fail_the_check_with_what_to_fix(tmp_path, env, says):
    done = manage(tmp_path, "check", **{**gateway_env(OLD_HOTCROSS), **env})
    assert done.returncode == 1
    assert "(mcp_bridge.E010)" in done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_upstream_is_a_warning(tmp_path):
    done = manage(tmp_path, "check", **gateway_env("http://127.0.0.1:9/mcp", HOTCROSS_MCP_UPSTREAM_START_TIMEOUT="5"))
    assert done.returncode == 0, done.stderr
    assert "(mcp_bridge.W010) The upstream MCP server could not be asked for its tools" in done.stderr


def test_mcp_upstream_lists_tools_and_how_identity_is_handled(tmp_path):
    done = manage(tmp_path, "mcp_upstream", **gateway_env(OLD_HOTCROSS))
    assert done.returncode == 0, done.stderr
    assert "(stdio, scope shared)" in done.stdout
    assert "remember(text) — filled by the bridge, hidden from clients: _developer_id, _organization_id" in done.stdout
    assert "ping(no arguments) — no identity arguments (the caller is in _meta only)" in done.stdout
    assert "Prompts (1): greet" in done.stdout
    assert "hotcross/developer_id, hotcross/organization_id, hotcross/plan" in done.stdout
    report = json.loads(manage(tmp_path, "mcp_upstream", "--json", **gateway_env(OLD_HOTCROSS)).stdout)
    tools = {tool["name"]: tool for tool in report["tools"]}
    assert tools["project_of"] == {
        "name": "project_of",
        "description": "A tool that needs only the organization (a required identity argument).",
        "arguments": [],
        "identity": ["_organization_id"],
    }


def test_mcp_upstream_without_an_upstream_says_so(tmp_path):
    done = manage(tmp_path, "mcp_upstream", HOTCROSS_MCP_TOOLS="")
    assert done.returncode == 1
    assert "HOTCROSS_MCP_UPSTREAM is not set" in done.stderr
    failing = manage(tmp_path, "mcp_upstream", **gateway_env(f"{OLD_HOTCROSS} exit"))
    assert failing.returncode == 1
    assert "exited before it answered initialize" in failing.stderr
    assert "Traceback" not in failing.stderr


def test_migrate_never_starts_the_upstream_and_check_does(tmp_path):
    marker = tmp_path / "started"
    started_marker = shlex.join(["sh", "-c", f'touch "{marker}"; exec "$0" "$@"', *shlex.split(OLD_HOTCROSS)])
    env = gateway_env(started_marker)
    # `--plan` runs migrate's system checks (where the upstream used to start) without applying anything.
    migrated = manage(tmp_path, "migrate", "--plan", **env)
    assert migrated.returncode == 0, migrated.stderr
    assert "Planned operations" in migrated.stdout
    assert not marker.exists()
    checked = manage(tmp_path, "check", **env)
    assert checked.returncode == 0, checked.stderr
    assert marker.exists()


def test_the_readme_gateway_example_runs_as_printed(tmp_path):
    """Issue 31: README's stdio example was `uvx hotcross`, which is not installed anywhere ("its command was not
    found"). The first `HOTCROSS_MCP_UPSTREAM=` line of docs/gateway.md (where that example now lives), as printed, is
    an upstream `mcp_upstream` starts and lists."""
    page = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    block = page.split("# Gateway mode", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    line = next(line for line in block.splitlines() if line.startswith("HOTCROSS_MCP_UPSTREAM="))
    value = shlex.split(line.split("  #")[0].split("=", 1)[1])[0]
    done = manage(tmp_path, "mcp_upstream", **gateway_env(value))
    assert done.returncode == 0, done.stderr
    assert "(stdio, scope shared)" in done.stdout and "echo(" in done.stdout
