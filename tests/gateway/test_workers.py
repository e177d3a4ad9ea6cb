"""Several workers in front of a disk-backed stdio upstream (`disk_tools`: data under $HOME, a lock on its folder):
exactly one upstream process per scope, whichever worker a call lands on (the supervisor, `upstream.supervisor`), no
write failing on the upstream's lock over a few hundred concurrent calls, usage exact; and nothing left running once
the server stops."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.mcp import run_uvicorn
from tests.support.servers import ROOT
from tests.support.upstreams import HEADERS, call, gateway_env, require_sandbox

pytestmark = pytest.mark.django_db(transaction=True)

DISK_TOOLS = f"{sys.executable} {ROOT / 'tests' / 'support' / 'upstream_servers' / 'disk_tools.py'}"
CALLS = 240
CONCURRENCY = 24


def processes(marker: str) -> dict[int, dict[str, str]]:
    """The disk_tools processes whose environment holds `marker` (this test's folder), by pid: their environment."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        sandbox = command[0].endswith((b"bwrap", b"prlimit", b"setpriv"))  # the sandbox's own processes
        if not sandbox and any(part.endswith(b"disk_tools.py") for part in command) and marker.encode() in raw:
            env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
            found[int(entry.name)] = env
    return found


def supervisors(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command, raw = (entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()
            except OSError:
                continue
            if b"upstream.supervisor" in command and marker.encode() in raw:
                found.append(int(entry.name))
    return found


async def hammer(url: str, keys: list[str], calls: int) -> list[dict]:
    """`calls` writes, `CONCURRENCY` at a time, each on a new connection (the kernel spreads them over the workers),
    the keys taken in turn; the JSON-RPC answers."""
    answers: list[dict] = []
    limit = anyio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with limit:
            headers = {**HEADERS, "Authorization": f"Bearer {keys[n % len(keys)]}", "Connection": "close"}
            async with httpx2.AsyncClient(timeout=60) as http:
                response = await http.post(url, json=call(n, "write", {"text": f"note {n}"}), headers=headers)
            answers.append(response.json())

    async with anyio.create_task_group() as group:
        for n in range(calls):
            group.start_soon(one, n)
    return answers


def stopped(server, marker: str) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0, server.log()
    deadline = time.monotonic() + 15  # the supervisor lingers a few seconds for a bridge that restarts
    while processes(marker) or supervisors(marker):
        assert time.monotonic() < deadline, "the supervisor or an upstream outlived the server"
        time.sleep(0.1)


def test_two_workers_share_one_upstream_process_and_no_write_fails_on_its_lock(tmp_path):
    home = tmp_path / "home"
    developers = DeveloperFactory.create_batch(3)
    env = gateway_env(
        DISK_TOOLS,
        HOTCROSS_MCP_UPSTREAM_ENV=json.dumps({"HOME": str(home)}),
        HOTCROSS_MCP_UPSTREAM_DATA_DIR=str(tmp_path / "data"),
        HOTCROSS_MCP_METERING_FLUSH_SECONDS="0.2",
    )
    with run_uvicorn(tmp_path, workers=2, **env) as server:
        answers = anyio.run(hammer, server.url, [d.plain_key for d in developers], CALLS)
        failures = [a for a in answers if "error" in a or a["result"].get("isError")]
        assert not failures, failures[:3]
        running = processes(str(tmp_path))
        assert len(running) == 1, running  # one for everyone, whichever worker answered
        assert len(supervisors(str(tmp_path))) == 1
        assert len((home / ".disk-tools" / "notes.txt").read_text().splitlines()) == CALLS

        # The supervisor killed: its upstream ends with it (stdin closed), the next requests start both again.
        (supervisor,) = supervisors(str(tmp_path))
        os.kill(supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            (answer,) = anyio.run(hammer, server.url, [developers[0].plain_key], 1)
            if "result" in answer and not answer["result"].get("isError"):
                break
            assert answer["error"]["data"]["code"] == "upstream_unavailable", answer
            assert time.monotonic() < deadline, answer
        assert len(processes(str(tmp_path))) == 1
        assert supervisors(str(tmp_path)) not in ([], [supervisor])
        stopped(server, str(tmp_path))
    assert UsageEvent.objects.filter(tool_name="write", ok=True).count() == CALLS + 1


def test_two_workers_run_one_process_per_organization(tmp_path):
    require_sandbox()  # each organization's process in its sandbox, HOME its own folder
    organizations = OrganizationFactory.create_batch(3)
    developers = [DeveloperFactory(organization=organization) for organization in organizations for _ in range(2)]
    env = gateway_env(
        DISK_TOOLS,
        HOTCROSS_MCP_UPSTREAM_SCOPE="organization",
        HOTCROSS_MCP_UPSTREAM_DATA_DIR=str(tmp_path / "data"),
        HOTCROSS_MCP_METERING_FLUSH_SECONDS="0.2",
    )
    with run_uvicorn(tmp_path, workers=2, **env) as server:
        answers = anyio.run(hammer, server.url, [d.plain_key for d in developers], CALLS)
        failures = [a for a in answers if "error" in a or a["result"].get("isError")]
        assert not failures, failures[:3]
        running = processes(str(tmp_path))
        by_organization = sorted(env.get("HOTCROSS_ORGANIZATION_ID", "") for env in running.values())
        assert by_organization == sorted(str(o.id) for o in organizations), running
        for organization in organizations:
            notes = tmp_path / "data" / str(organization.id) / ".disk-tools" / "notes.txt"
            assert len(notes.read_text().splitlines()) == CALLS // 3  # each saw only its own writes
        stopped(server, str(tmp_path))
    assert UsageEvent.objects.filter(tool_name="write").count() == CALLS


def test_the_configuration_reaches_the_supervisor_whole():
    from upstream.config import config_from
    from upstream.supervisor import decode_config, encode_config, socket_path

    config = config_from(
        {
            "HOTCROSS_MCP_UPSTREAM": "tool --flag 'two words'",
            "HOTCROSS_MCP_UPSTREAM_ENV": json.dumps({"TOKEN": "s3cret"}),
            "HOTCROSS_MCP_UPSTREAM_SCOPE": "organization",
            "HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS": "7",
            "HOTCROSS_MCP_UPSTREAM_DATA_DIR": "/srv/upstream",
        }
    )
    assert decode_config(encode_config(config)) == config
    other = config_from(
        {"HOTCROSS_MCP_UPSTREAM": "tool --flag 'two words'", "HOTCROSS_MCP_UPSTREAM_DATA_DIR": "/srv/upstream"}
    )
    assert socket_path(config) != socket_path(other)  # one supervisor per configuration
    assert "s3cret" not in str(socket_path(config))
