"""An upstream's own errors and restarts, with `disk_tools` (tests/support/upstream_servers): a JSON-RPC error with
the SDK's "connection closed" code (-32000) goes back to its caller unchanged and breaks nothing for anyone else; an
HTTP upstream that restarts (and then answers the old session with FastMCP 1.x's 400) is reconnected within seconds,
and /healthz says what callers see meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import anyio
import httpx2
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.gateway.test_workers import DISK_TOOLS, processes
from tests.support.mcp import run_uvicorn, usage_written
from tests.support.servers import ROOT, RunningServer, answers, serve_command, wait_until
from tests.support.upstreams import HEADERS, call, gateway_env, healthz

pytestmark = pytest.mark.django_db(transaction=True)

DISK_TOOLS_SCRIPT = ROOT / "tests" / "support" / "upstream_servers" / "disk_tools.py"
STORM = 60


async def calls(url: str, key: str, messages: list[dict], concurrency: int = 10) -> list[dict]:
    """Each message POSTed with `key`, `concurrency` at a time; the JSON-RPC answers in order."""
    answers_: list[dict] = [{}] * len(messages)
    limit = anyio.Semaphore(concurrency)

    async def one(n: int, http: httpx2.AsyncClient) -> None:
        async with limit:
            response = await http.post(url, json=messages[n], headers={**HEADERS, "Authorization": f"Bearer {key}"})
            answers_[n] = response.json()

    async with httpx2.AsyncClient(timeout=60) as http, anyio.create_task_group() as group:
        for n in range(len(messages)):
            group.start_soon(one, n, http)
    return answers_


def one_call(url: str, key: str, name: str, arguments: dict) -> dict:
    return anyio.run(calls, url, key, [call(1, name, arguments)])[0]


def test_an_upstream_error_with_the_connection_closed_code_breaks_nothing(tmp_path):
    storm, writer = DeveloperFactory(), DeveloperFactory()  # two organizations on one shared upstream
    env = gateway_env(DISK_TOOLS, HOTCROSS_MCP_UPSTREAM_ENV=json.dumps({"HOME": str(tmp_path / "home")}))
    long_query = "x" * 3000
    with run_uvicorn(tmp_path, **env) as bridge:
        before = one_call(bridge.url, writer.plain_key, "whereami", {})["result"]["structuredContent"]

        async def scenario():
            async with anyio.create_task_group() as group:
                results: dict[str, list[dict]] = {}

                async def run(name: str, key: str, messages: list[dict]) -> None:
                    results[name] = await calls(bridge.url, key, messages)

                queries = [call(n, "invalid_query", {"query": long_query if n % 2 else f"q{n}"}) for n in range(STORM)]
                writes = [call(n, "write", {"text": f"note {n}"}) for n in range(STORM)]
                group.start_soon(run, "storm", storm.plain_key, queries)
                group.start_soon(run, "writer", writer.plain_key, writes)
            return results

        results = anyio.run(scenario)
        after = one_call(bridge.url, writer.plain_key, "whereami", {})["result"]["structuredContent"]
        health = healthz(bridge).json()["upstream"]
        running = processes(str(tmp_path))

    for n, answer in enumerate(results["storm"]):
        query = long_query if n % 2 else f"q{n}"
        assert answer["error"] == {"code": -32000, "message": f"invalid query {query!r}", "data": {"query": query}}
    assert all("result" in a and not a["result"].get("isError") for a in results["writer"]), results["writer"][:3]
    assert after["pid"] == before["pid"] and len(running) == 1  # the same process all along
    assert health["state"] == "up" and health["crashes"] == 0, health
    usage_written(2 * STORM + 2)
    assert UsageEvent.objects.filter(developer=writer, tool_name="write", ok=True).count() == STORM


def start_on(port: int, log_dir, env: dict[str, str]) -> RunningServer:
    """disk_tools over HTTP on `port` (the same port again after a restart)."""
    log_path = log_dir / f"disk-tools-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(DISK_TOOLS_SCRIPT), "http", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
    wait_until(server, answers("/", method="GET", status=None), 30)
    return server


def test_a_restarted_http_upstream_is_reconnected_and_healthz_tells_the_truth(tmp_path):
    developer = DeveloperFactory()
    upstream_env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(DISK_TOOLS_SCRIPT), "http", "{port}"]
    with serve_command(command, tmp_path, env=upstream_env, ready=answers("/", method="GET", status=None)) as first:
        port = int(first.base.rsplit(":", 1)[1])
        env = gateway_env(f"{first.base}/mcp", HOTCROSS_MCP_UPSTREAM_TIMEOUT="5")
        with run_uvicorn(tmp_path, **env) as bridge:
            write = lambda text: one_call(bridge.url, developer.plain_key, "write", {"text": text})  # noqa: E731
            assert write("before")["result"]["structuredContent"] == {"notes": 1}
            error = one_call(bridge.url, developer.plain_key, "invalid_query", {"query": "q"})["error"]
            assert error == {"code": -32000, "message": "invalid query 'q'", "data": {"query": "q"}}

            # A quick restart (the old session unknown to the new process: 400): the next call is served at once.
            first.stop()
            second = start_on(port, tmp_path, upstream_env)
            try:
                assert write("after a restart")["result"]["structuredContent"] == {"notes": 2}
                health = healthz(bridge).json()["upstream"]
                assert health["state"] == "up" and health["crashes"] == 1, health

                # Down for a while: callers get upstream_unavailable, and /healthz says so within seconds.
                second.stop()
                assert write("while down")["error"]["data"]["code"] == "upstream_unavailable"
                deadline = time.monotonic() + 5
                while healthz(bridge).json()["upstream"]["state"] == "up":
                    assert time.monotonic() < deadline, "healthz kept saying up while the upstream was gone"
                    time.sleep(0.1)
            finally:
                second.stop()
            third = start_on(port, tmp_path, upstream_env)
            try:
                back = time.monotonic()
                while "result" not in (answer := write("back")):
                    assert answer["error"]["data"]["code"] == "upstream_unavailable", answer
                    assert time.monotonic() - back < 10, answer  # within the back-off's first steps
                    time.sleep(0.2)
                assert healthz(bridge).json()["upstream"]["state"] == "up"
            finally:
                third.stop()
