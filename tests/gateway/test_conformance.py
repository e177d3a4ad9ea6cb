"""The official MCP conformance suite's server scenarios (`@modelcontextprotocol/conformance`, pinned in package.json)
against its own reference server directly and through the bridge in gateway mode, over /mcp and /mcp/key.

The reference server is the suite's everything-server (`tests/support/upstream_servers/
conformance_everything_server.mts`, vendored), run on Node.js 22 and given to the bridge as its HTTP upstream
(HOTCROSS_MCP_UPSTREAM, shared scope). The runner cannot send a key, so it reaches the bridge through
`tests.support.key_proxy`, which adds the developer's. Each test runs the runner three times at once (directly, /mcp,
/mcp/key): the default active suite (2025-era scenarios), then the scenarios the 2026-07-28 revision requires.

A scenario's outcome, from its checks.json: `pass` (≥ 1 check, each SUCCESS or INFO), `warn` (no FAILURE or SKIPPED,
but a WARNING: a SHOULD missed), `fail` (a FAILURE, a SKIPPED, no check, or no result at all). A scenario is held to
its direct outcome: it fails the test when it does worse through a path (`warn` < `pass`) — unless EXPECTED_GAPS
lists it, and then the test fails when it does not do worse any more through any path ("remove it from
EXPECTED_GAPS"), so that the list only shrinks. Scenarios of the `tasks` extension (`tasks-…`) and those that fail
directly are only reported. The table of every outcome is printed (`-s`) and attached to a failure.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import DeveloperFactory
from tests.support.conformance import RUNNER_COMMAND, conformance_available, scenario_checks
from tests.support.mcp import run_uvicorn
from tests.support.servers import ROOT, RunningServer, serve_command
from tests.support.upstreams import gateway_env, http_upstream

# What the bridge does not do yet, by (run, scenario): one line each on why. Remove an entry once the scenario passes
# through the bridge (the test says so).
NOT_RELAYED = "the upstream's request to the client (sampling, elicitation) is not relayed: the call times out"
INPUT_REQUIRED = "the upstream's InputRequiredResult (SEP-2322) is not passed on: the bridge answers a complete result"
EXPECTED_GAPS: dict[tuple[str, str], str] = {
    ("active", "logging-set-level"): "logging/setLevel is not forwarded (Method not found)",
    ("active", "tools-call-with-logging"): "logging/setLevel is not forwarded (Method not found)",
    ("active", "tools-call-with-progress"): "no progress notification reaches the client",
    ("active", "tools-call-sampling"): NOT_RELAYED,
    ("active", "tools-call-elicitation"): NOT_RELAYED,
    ("active", "elicitation-sep1034-defaults"): NOT_RELAYED,
    ("active", "elicitation-sep1330-enums"): NOT_RELAYED,
    ("active", "resources-subscribe"): "resources/subscribe is not forwarded (Method not found)",
    ("active", "resources-unsubscribe"): "resources/unsubscribe is not forwarded (Method not found)",
    ("active", "server-sse-multiple-streams"): "no Mcp-Session-Id (stateless): a WARNING, the stream checks skipped",
    ("2026-07-28", "server-stateless"): "sampling runs undeclared (no -32021); no list_changed on subscriptions/listen",
    ("2026-07-28", "sep-2164-resource-not-found"): "the error's data.uri is dropped (a SHOULD: WARNING)",
    ("2026-07-28", "input-required-result-basic-elicitation"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-basic-sampling"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-basic-list-roots"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-request-state"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-multiple-input-requests"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-multi-round"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-result-type"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-tampered-state"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-capability-check"): INPUT_REQUIRED,
    ("2026-07-28", "input-required-result-missing-input-response"): INPUT_REQUIRED + " (a SHOULD: WARNING)",
    ("2026-07-28", "input-required-result-non-tool-request"): "prompts/get of a prompt the upstream does not list",
}

REFERENCE_SERVER = ROOT / "tests" / "support" / "upstream_servers" / "conformance_everything_server.mts"
# Each run's arguments to `conformance server`.
RUNS = {"active": [], "2026-07-28": ["--requirements", "2026-07-28"]}
PATHS = ("/mcp", "/mcp/key")
KEY_ENV = "CONFORMANCE_BRIDGE_KEY"
RANK = {"fail": 0, "warn": 1, "pass": 2}
SCENARIO_TIMEOUT_MS = 10_000  # the runner's per-scenario bound (30 s by default): a scenario that hangs fails sooner
RUN_TIMEOUT = 120
# A forwarded call the bridge cannot finish (the upstream asks the client something the bridge does not relay: sampling,
# elicitation) waits out the bridge's upstream timeout: short here, so that those scenarios fail in seconds. The
# reference server answers every other call in milliseconds.
UPSTREAM_TIMEOUT = "2"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not conformance_available(), reason="MCP conformance runner or Node.js 22 not installed"),
]


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The suite's everything-server; its URL (…/mcp)."""
    with http_upstream([*RUNNER_COMMAND[:1], str(REFERENCE_SERVER)], tmp_path_factory.mktemp("reference")) as url:
        yield url


@pytest.fixture(scope="module")
def bridge(django_db_setup: None, reference_server: str, tmp_path_factory) -> Iterator[RunningServer]:
    """The bridge in gateway mode with the reference server as its HTTP upstream."""
    env = gateway_env(reference_server, HOTCROSS_MCP_UPSTREAM_TIMEOUT=UPSTREAM_TIMEOUT)
    with run_uvicorn(tmp_path_factory.mktemp("bridge"), **env) as server:
        yield server


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
    for by_target in outcomes.values():
        for name in targets:
            by_target.setdefault(name, "fail")
    return outcomes


def table(outcomes: dict[str, dict[str, str]], targets: list[str]) -> str:
    width = max(map(len, outcomes))
    rows = [f"{'scenario':<{width}}  " + "  ".join(f"{name:<8}" for name in targets)]
    for scenario in sorted(outcomes):
        rows.append(f"{scenario:<{width}}  " + "  ".join(f"{outcome:<8}" for outcome in outcomes[scenario].values()))
    return "\n".join(rows)


def problems(run: str, outcomes: dict[str, dict[str, str]]) -> list[str]:
    """What fails the test: a regression through a path that EXPECTED_GAPS does not list, an expected gap that is
    none any more, an expected gap for a scenario the run does not have."""
    found = []
    for scenario, by_target in sorted(outcomes.items()):
        direct = by_target["direct"]
        if scenario.startswith("tasks-") or direct == "fail":
            continue
        worse = [path for path in PATHS if RANK[by_target[path]] < RANK[direct]]
        gap = EXPECTED_GAPS.get((run, scenario))
        if worse and gap is None:
            found.append(f"{scenario}: {direct} directly, {by_target[worse[0]]} through {', '.join(worse)}")
        elif gap is not None and len(worse) < len(PATHS):
            as_good = [path for path in PATHS if path not in worse]
            found.append(
                f"{scenario}: now {direct} through {', '.join(as_good)} as directly: remove it from EXPECTED_GAPS"
            )
    for gap_run, scenario in EXPECTED_GAPS:
        if gap_run == run and scenario not in outcomes:
            found.append(f"{scenario}: not in this run: remove it from EXPECTED_GAPS")
    return found


@pytest.mark.parametrize("run", RUNS)
def test_the_server_scenarios_pass_through_the_bridge_as_directly(run, reference_server, bridge, tmp_path):
    developer = DeveloperFactory()
    proxy_command = [sys.executable, "-m", "tests.support.key_proxy", "--port", "{port}"]
    proxy_command += ["--target", bridge.base, "--key-env", KEY_ENV]
    with serve_command(proxy_command, tmp_path, env={KEY_ENV: developer.plain_key}) as proxy:
        targets = {"direct": reference_server, **{path: f"{proxy.base}{path}" for path in PATHS}}
        outcomes = run_conformance(targets, RUNS[run], tmp_path)

    report = f"conformance server scenarios, run {run!r}:\n{table(outcomes, list(targets))}"
    print(report)
    assert outcomes, report
    found = problems(run, outcomes)
    assert not found, "\n".join(found) + "\n\n" + report + f"\n\nrunner logs and results: {tmp_path}"
