"""The official MCP conformance suite's server scenarios (`@modelcontextprotocol/conformance`, pinned in package.json)
against its own reference server directly and through the bridge in gateway mode: over /mcp, /mcp/key and stdio.

The reference server is the suite's everything-server (`tests/support/upstream_servers/
conformance_everything_server.mts`, vendored), run on Node.js 22 and given to the bridge as its HTTP upstream
(HOTCROSS_MCP_UPSTREAM, shared scope); the direct run has an instance of its own (`reference_server`). The runner
speaks HTTP only and sends no key: it reaches /mcp and /mcp/key through `tests.support.key_proxy`, which adds the
developer's, and `manage.py mcp_server` (gateway mode, the key in HOTCROSS_API_KEY) through
`tests.support.stdio_harness`, an HTTP front with one stdio process per session. Two runs, each against the four
targets at once: the default active suite (2025-era scenarios) and the scenarios the 2026-07-28 revision requires
(`--requirements 2026-07-28`), one test each.

A scenario's outcome, from its checks.json: `pass` (≥ 1 check, each SUCCESS or INFO), `warn` (no FAILURE or SKIPPED,
but a WARNING: a SHOULD missed), `fail` (a FAILURE, a SKIPPED, no check, or no result at all). A scenario is held to
its direct outcome: the test fails when it does worse through a way in (`warn` < `pass`) — unless EXPECTED_GAPS
lists it there, and then the test fails when it does not do worse any more ("remove it from EXPECTED_GAPS"), so that
the list only shrinks. Scenarios of the `tasks` extension (`tasks-…`) and those that fail directly are only reported.
The table of every outcome is printed (`-s`) and attached to a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import DeveloperFactory
from tests.support.conformance import NODE_22, RUNNER_COMMAND, conformance_available, scenario_checks
from tests.support.mcp import run_uvicorn, server_env
from tests.support.servers import RunningServer, serve_command
from tests.support.upstreams import CONFORMANCE_SERVER, gateway_env, http_upstream

# What the bridge does not do yet, by (run, scenario, way in: "http" for /mcp and /mcp/key, "stdio", or "http+stdio"):
# one line each on why. Remove an entry once the scenario does as well through the bridge as directly (the test says
# so). Over stdio, what is HTTP's (statuses, headers) is the harness's, not the bridge's: it answers every message with
# 200, and checks only Host and Origin.
HTTP, BOTH = "http", "http+stdio"
EXPECTED_GAPS: dict[tuple[str, str, str], str] = {
    ("active", "server-sse-multiple-streams", HTTP): "stateless by design, no Mcp-Session-Id: a WARNING",
    # It mutates the lists with trigger tools the reference server lists to nobody; the bridge calls listed tools only.
    ("2026-07-28", "server-stateless", HTTP): "its unlisted trigger tools are refused: no list_changed (a WARNING)",
    # Over stdio the statuses are the harness's (200 for every message) and a process keeps its first message's era.
    ("2026-07-28", "server-stateless", "stdio"): "the checks of HTTP statuses and per-request envelopes are HTTP's",
}

# Each run's arguments to `conformance server`.
RUNS = {"active": [], "2026-07-28": ["--requirements", "2026-07-28"]}
# The bridge's ways in: its two HTTP paths, and `manage.py mcp_server` over stdio behind `tests.support.stdio_harness`
# (a process per session or stateless request, forked from one that imported Django and the bridge: a few ms each).
VIA = {"/mcp": "http", "/mcp/key": "http", "stdio": "stdio"}
KEY_ENV = "CONFORMANCE_BRIDGE_KEY"
STDIO_ENV = "CONFORMANCE_STDIO_ENV"
RANK = {"fail": 0, "warn": 1, "pass": 2}
SCENARIO_TIMEOUT_MS = 10_000  # the runner's per-scenario bound (30 s by default): a scenario that hangs fails sooner
RUN_TIMEOUT = 120
# A forwarded call the bridge cannot finish (were the upstream's question to the client, sampling or elicitation, not
# relayed) waits out the bridge's upstream timeout: short here, so that such a regression fails in seconds. The
# reference server answers every call in milliseconds.
UPSTREAM_TIMEOUT = "3"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not conformance_available(), reason="MCP conformance runner or Node.js 22 not installed"),
]


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory) -> Iterator[str]:
    """A reference server of the direct run's own. One server behind both would cross the runs: its trigger tools
    (`test_trigger_tool_change`, which the direct run calls in `server-stateless`) tell every listening stream, the
    bridge's included, so the runs through the bridge would at times get a list_changed they did not cause."""
    with http_upstream([str(NODE_22), str(CONFORMANCE_SERVER)], tmp_path_factory.mktemp("reference-direct")) as url:
        yield url


@pytest.fixture(scope="module")
def bridge(django_db_setup: None, conformance_upstream: str, tmp_path_factory) -> Iterator[RunningServer]:
    """The bridge in gateway mode with the reference server as its HTTP upstream."""
    with run_uvicorn(tmp_path_factory.mktemp("bridge"), **bridge_env(conformance_upstream)) as server:
        yield server


def bridge_env(reference_server: str) -> dict[str, str]:
    return gateway_env(reference_server, HOTCROSS_MCP_UPSTREAM_TIMEOUT=UPSTREAM_TIMEOUT)


def outcome(checks: list[dict] | None) -> str:
    statuses = {check["status"] for check in checks or ()}
    if not statuses or statuses & {"FAILURE", "SKIPPED"} or not statuses <= {"SUCCESS", "INFO", "WARNING"}:
        return "fail"
    return "warn" if "WARNING" in statuses else "pass"


def run_conformance(targets: dict[str, str], arguments: list[str], results: Path) -> dict[str, dict[str, str]]:
    """The runner against each target at once; each scenario's outcome by target. A run that ends without a result
    for a scenario the others have counts it as failed there."""
    runs = {}
    for name, url in targets.items():
        folder = results / name.strip("/").replace("/", "-")
        command = [*RUNNER_COMMAND, "server", "--url", url, "-o", str(folder), "--timeout", str(SCENARIO_TIMEOUT_MS)]
        log = open(results / f"{folder.name}.log", "wb")
        runs[name] = (folder, log, subprocess.Popen([*command, *arguments], stdout=log, stderr=subprocess.STDOUT))
    outcomes: dict[str, dict[str, str]] = {}
    for name, (folder, log, process) in runs.items():
        try:
            process.wait(timeout=RUN_TIMEOUT)
        finally:
            process.kill()
            log.close()
        for scenario, checks in scenario_checks(folder, "server").items():
            outcomes.setdefault(scenario, {})[name] = outcome(checks)
    return {scenario: {name: found.get(name, "fail") for name in targets} for scenario, found in outcomes.items()}


def table(outcomes: dict[str, dict[str, str]], targets: list[str]) -> str:
    width = max(map(len, outcomes))
    rows = [f"{'scenario':<{width}}  " + "  ".join(f"{name:<8}" for name in targets)]
    for scenario in sorted(outcomes):
        rows.append(f"{scenario:<{width}}  " + "  ".join(f"{outcome:<8}" for outcome in outcomes[scenario].values()))
    return "\n".join(rows)


def gap(run: str, scenario: str, route: str) -> str | None:
    """Why EXPECTED_GAPS expects `scenario` to do worse through `route` in `run`, or None."""
    for (gap_run, gap_scenario, via), reason in EXPECTED_GAPS.items():
        if (gap_run, gap_scenario) == (run, scenario) and VIA[route] in via.split("+"):
            return reason
    return None


def problems(run: str, outcomes: dict[str, dict[str, str]]) -> list[str]:
    """What fails the test: a scenario doing worse through a way in than directly that EXPECTED_GAPS does not list,
    an expected gap that is none any more, an expected gap for a scenario or way in the run does not have."""
    found = []
    for scenario, by_target in sorted(outcomes.items()):
        direct = by_target["direct"]
        if scenario.startswith("tasks-") or direct == "fail":
            continue
        routes = [route for route in by_target if route != "direct"]
        worse = [route for route in routes if RANK[by_target[route]] < RANK[direct]]
        unexpected = [route for route in worse if gap(run, scenario, route) is None]
        if unexpected:
            found.append(f"{scenario}: {direct} directly, {by_target[unexpected[0]]} through {', '.join(unexpected)}")
        fixed = [route for route in routes if route not in worse and gap(run, scenario, route) is not None]
        if fixed:
            fixed_through = ", ".join(fixed)
            found.append(f"{scenario}: now {direct} through {fixed_through} as directly: remove it from EXPECTED_GAPS")
    for gap_run, scenario, via in EXPECTED_GAPS:
        if gap_run != run:
            continue
        if scenario not in outcomes:
            found.append(f"{scenario}: not in this run: remove it from EXPECTED_GAPS")
        elif not any(VIA[route] in via.split("+") for route in outcomes[scenario] if route != "direct"):
            found.append(f"{scenario}: not run through {via}: correct its entry in EXPECTED_GAPS")
    return found


@pytest.mark.parametrize("run", RUNS)
def test_the_server_scenarios_pass_through_the_bridge_as_directly(
    run, conformance_upstream, reference_server, bridge, tmp_path
):
    developer = DeveloperFactory()
    proxy_command = [sys.executable, "-m", "tests.support.key_proxy", "--port", "{port}"]
    proxy_command += ["--target", bridge.base, "--key-env", KEY_ENV]
    # `manage.py mcp_server` in gateway mode as the bridge above, forked per session (`--fork`).
    stdio_env = server_env(**bridge_env(conformance_upstream), HOTCROSS_API_KEY=developer.plain_key)
    harness_command = [sys.executable, "-m", "tests.support.stdio_harness", "--port", "{port}"]
    harness_command += ["--env-json", STDIO_ENV, "--fork", "--", "mcp_server"]
    with (
        serve_command(proxy_command, tmp_path, env={KEY_ENV: developer.plain_key}) as proxy,
        serve_command(harness_command, tmp_path, env={STDIO_ENV: json.dumps(stdio_env)}) as harness,
    ):
        targets = {
            "direct": reference_server,
            "/mcp": f"{proxy.base}/mcp",
            "/mcp/key": f"{proxy.base}/mcp/key",
            "stdio": harness.url,
        }
        outcomes = run_conformance(targets, RUNS[run], tmp_path)

    report = f"conformance server scenarios, run {run!r}:\n{table(outcomes, list(targets))}"
    print(report)
    assert outcomes, report
    found = problems(run, outcomes)
    assert not found, "\n".join(found) + "\n\n" + report + f"\n\nrunner logs and results: {tmp_path}"
