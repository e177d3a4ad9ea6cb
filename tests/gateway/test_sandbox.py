"""Organization scope's sandbox (`upstream.sandbox`, bubblewrap): each organization's process runs as an unprivileged
uid with its data folder as HOME and working directory, and its path-reading tool (`disk_tools.read_path`, the real
server's `file()`) is refused by the OS for the project folder, `.env`, the SQLite file and the other organization's
folder; its URL tool (the real server's `url()`) reaches nothing. Without bubblewrap, organization scope refuses to
start and `manage.py check` says so, unless the operator turned the sandbox off."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from django.db import connection

from tests.factories import DeveloperFactory
from tests.gateway.test_settings import manage
from tests.gateway.test_workers import DISK_TOOLS, processes
from tests.support.mcp import http_client, run_uvicorn
from tests.support.servers import ROOT
from tests.support.upstreams import gateway_env, require_sandbox

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = ("Permission denied", "No such file or directory")


async def answer(client, tool: str, **arguments) -> tuple[bool, str]:
    """(whether the tool failed, its text)."""
    result = await client.call_tool(tool, arguments)
    structured = result.structured_content or {}
    text = json.dumps(structured["result"]) if "result" in structured else result.content[0].text
    return bool(result.is_error), text


def test_each_organization_sees_only_its_own_folder_and_nothing_of_the_server(tmp_path):
    require_sandbox()
    ada, grace = DeveloperFactory(), DeveloperFactory()
    data = tmp_path / "data"
    env = gateway_env(DISK_TOOLS, HOTCROSS_MCP_UPSTREAM_SCOPE="organization", HOTCROSS_MCP_UPSTREAM_DATA_DIR=str(data))
    database = connection.settings_dict["NAME"]
    secrets = [str(ROOT / "manage.py"), str(ROOT / ".env.example"), str(ROOT / "hotcross" / "settings.py")]
    secrets += [str(ROOT / ".env")] if (ROOT / ".env").exists() else []
    secrets += [str(database)] if os.path.isfile(str(database)) else []
    with run_uvicorn(tmp_path, **env) as bridge:

        async def scenario():
            async with http_client(bridge.url, ada.plain_key) as a, http_client(bridge.url, grace.plain_key) as g:
                seen = {"ada": json.loads((await answer(a, "whereami"))[1])}
                seen["grace"] = json.loads((await answer(g, "whereami"))[1])
                await answer(a, "write", text="ada's secret")
                await answer(g, "write", text="grace's note")
                grace_notes = data / str(grace.organization_id) / ".disk-tools" / "notes.txt"
                reads = {path: await answer(a, "read_path", path=path) for path in [*secrets, str(grace_notes)]}
                listings = {
                    "project": await answer(a, "list_dir", path=str(ROOT)),
                    "data": await answer(a, "list_dir", path=str(data)),
                    "root": await answer(a, "list_dir", path="/"),
                }
                fetched = await answer(a, "fetch_url", url=bridge.url.removesuffix("/mcp") + "/healthz")
                own = await answer(g, "notes")
                return seen, reads, listings, fetched, own

        seen, reads, listings, fetched, own = anyio.run(scenario)
        running = processes(str(tmp_path))
        uids = {int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]) for pid in running}

    for who, developer in (("ada", ada), ("grace", grace)):
        folder = str((data / str(developer.organization_id)).resolve())
        assert seen[who]["home"] == seen[who]["cwd"] == folder
        assert seen[who]["organization_id"] == str(developer.organization_id)
        assert seen[who]["uid"] == 65534  # nobody, not the server's user
    assert uids == {65534}, running  # as the host sees them
    for path, (failed, text) in reads.items():
        assert failed and any(reason in text for reason in REFUSED), (path, text)
    failed, names = listings["project"]
    assert failed or not {"manage.py", "hotcross", ".env.example", "accounts"} & set(json.loads(names)), names
    assert json.loads(listings["data"][1]) == [str(ada.organization_id)]  # the other organization is not there
    assert fetched[0], fetched  # no network: the server's own /healthz is out of reach
    assert json.loads(own[1]) == ["grace's note"]
    assert (data / str(ada.organization_id) / ".disk-tools" / "notes.txt").read_text() == "ada's secret\n"


def test_without_bubblewrap_organization_scope_fails_the_check_unless_turned_off(tmp_path):
    # A PATH without bubblewrap: only this Python's folder.
    path = str(Path(sys.executable).parent)
    env = gateway_env(
        DISK_TOOLS, HOTCROSS_MCP_UPSTREAM_SCOPE="organization", HOTCROSS_MCP_UPSTREAM_DATA_DIR=str(tmp_path), PATH=path
    )
    refused = manage(tmp_path, "check", **env)
    assert refused.returncode == 1
    assert "(mcp_bridge.E012)" in refused.stderr
    assert "bwrap is not installed" in refused.stderr
    assert "HOTCROSS_MCP_UPSTREAM_SANDBOX=off" in refused.stderr
    assert "Traceback" not in refused.stderr

    allowed = manage(tmp_path, "check", **{**env, "HOTCROSS_MCP_UPSTREAM_SANDBOX": "off"})
    assert allowed.returncode == 0, allowed.stderr
    assert "(mcp_bridge.W012)" in allowed.stderr


def test_the_check_finds_a_program_outside_the_sandbox(tmp_path):
    require_sandbox()
    env = gateway_env(
        DISK_TOOLS,
        HOTCROSS_MCP_UPSTREAM_SCOPE="organization",
        HOTCROSS_MCP_UPSTREAM_DATA_DIR=str(tmp_path),
        HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS="",
    )
    done = manage(tmp_path, "check", **env)
    assert "(mcp_bridge.W013)" in done.stderr
    assert "HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS" in done.stderr
