"""Organization scope: one upstream process per organization (its id and data folder in the environment), never
shared, stopped when idle, and at most HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES of them (least recently used first)."""

from __future__ import annotations

import os
import time

import anyio
import anyio.to_thread
import pytest

from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, run_uvicorn, structured
from tests.support.upstreams import OLD_HOTCROSS, gateway_env, healthz

pytestmark = pytest.mark.django_db(transaction=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A stopped child the bridge has not reaped yet is a zombie: not running.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def process_of(url: str, developer) -> dict:
    async with http_client(url, developer.plain_key) as client:
        return structured(await client.call_tool("process", {}))


def scope_env(tmp_path, **overrides: str) -> dict[str, str]:
    """Organization scope without the sandbox: these tests look at the pool's rules through the processes' host pids
    and a file outside their folders, which the sandbox hides (tests/gateway/test_sandbox.py tests the sandbox)."""
    return gateway_env(
        OLD_HOTCROSS,
        HOTCROSS_MCP_UPSTREAM_SCOPE="organization",
        HOTCROSS_MCP_UPSTREAM_DATA_DIR=str(tmp_path / "data"),
        HOTCROSS_MCP_UPSTREAM_SANDBOX="off",
        **overrides,
    )


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_two_organizations_get_two_processes_with_their_own_ids_and_idle_ones_stop(tmp_path):
    ada, grace = DeveloperFactory(), DeveloperFactory()
    colleague = DeveloperFactory(organization=ada.organization)
    release = tmp_path / "release"
    # A short idle time. While the processes are looked at, each organization has a call in flight (`hold`, until
    # `release` exists), so neither is idle yet however long a loaded machine takes to start the second; a long
    # call timeout, so that the held calls are not cut off.
    env = scope_env(tmp_path, HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS="0.3", HOTCROSS_MCP_UPSTREAM_TIMEOUT="120")
    with run_uvicorn(tmp_path, **env) as bridge:

        async def held(developer) -> str:
            async with http_client(bridge.url, developer.plain_key) as client:
                return (await client.call_tool("hold", {"path": str(release)})).content[0].text

        async def scenario():
            holds: dict[str, str] = {}

            async def hold(developer) -> None:
                holds[str(developer.id)] = await held(developer)

            async with anyio.create_task_group() as group:
                group.start_soon(hold, ada)
                group.start_soon(hold, grace)
                try:
                    first = await process_of(bridge.url, ada)
                    second = await process_of(bridge.url, grace)
                    same_org = await process_of(bridge.url, colleague)
                    health = (await anyio.to_thread.run_sync(healthz, bridge)).json()
                finally:
                    release.touch()
            return holds, first, second, same_org, health

        holds, first, second, same_org, health = anyio.run(scenario)
        assert holds == {str(ada.id): "released", str(grace.id): "released"}  # in flight all along
        assert first["pid"] != second["pid"]
        assert same_org["pid"] == first["pid"]  # one process per organization, shared by its developers
        for seen, developer in ((first, ada), (second, grace)):
            assert seen["organization_id"] == str(developer.organization_id)
            assert seen["data_dir"] == str((tmp_path / "data" / str(developer.organization_id)).resolve())
            assert seen["cwd"] == seen["data_dir"]
        assert health["upstream"]["scope"] == "organization"
        assert health["upstream"]["processes"] == 2
        # Idle for longer than HOTCROSS_MCP_UPSTREAM_IDLE_SECONDS: both stop; the next call starts a new one.
        wait_until(lambda: not alive(first["pid"]) and not alive(second["pid"]), timeout=40)
        assert healthz(bridge).json()["upstream"]["processes"] == 0
        again = anyio.run(process_of, bridge.url, ada)
    assert again["pid"] != first["pid"]
    assert again["organization_id"] == str(ada.organization_id)


def test_the_cap_stops_the_least_recently_used_process(tmp_path):
    ada, grace, linus = DeveloperFactory(), DeveloperFactory(), DeveloperFactory()
    with run_uvicorn(tmp_path, **scope_env(tmp_path, HOTCROSS_MCP_UPSTREAM_MAX_PROCESSES="2")) as bridge:
        a = anyio.run(process_of, bridge.url, ada)
        g = anyio.run(process_of, bridge.url, grace)
        assert anyio.run(process_of, bridge.url, ada)["pid"] == a["pid"]  # ada's is now the most recently used
        lin = anyio.run(process_of, bridge.url, linus)  # a third organization: grace's (least recently used) stops
        wait_until(lambda: not alive(g["pid"]))
        assert alive(a["pid"]) and alive(lin["pid"])
        assert healthz(bridge).json()["upstream"]["processes"] == 2
        g_again = anyio.run(process_of, bridge.url, grace)
    assert g_again["pid"] not in {g["pid"], a["pid"], lin["pid"]}
    assert g_again["organization_id"] == str(grace.organization_id)
