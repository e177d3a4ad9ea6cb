"""Direct forwarding (`mcp_bridge.gateway.direct`): a `tools/call` of an HTTP upstream's tool is answered without the
SDK's server, and a client cannot tell: the same requests to a bridge with it and to one without it
(`HOTCROSS_MCP_DIRECT_FORWARD=false`), both in front of the same real upstream, get the same HTTP status, the same
`Retry-After` and the same JSON-RPC answer, and are metered the same; `/metrics` says which path served them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.support.mcp import run_uvicorn, usage_written
from tests.support.upstreams import HEADERS, METRICS_TOKEN, call, gateway_env, metrics, post

pytestmark = pytest.mark.django_db(transaction=True)

# HOTCROSS_MCP_UPSTREAM_TIMEOUT of both bridges: a call of `sleep` longer than this is answered upstream_timeout once
# it is over (the only window these tests wait out).
TIMEOUT = 0.5


@pytest.fixture(scope="module")
def two_bridges(django_db_setup, old_hotcross_upstream, tmp_path_factory) -> Iterator[tuple[Any, Any]]:
    """(direct, through the SDK): two bridges in front of one old-Hotcross-style HTTP upstream, shared by the
    module's tests (each calls them with developers of its own, and reads /metrics' counters as differences)."""
    settings = gateway_env(
        old_hotcross_upstream, HOTCROSS_MCP_UPSTREAM_TIMEOUT=str(TIMEOUT), HOTCROSS_METRICS_TOKEN=METRICS_TOKEN
    )
    with run_uvicorn(tmp_path_factory.mktemp("direct"), **settings) as direct:
        with run_uvicorn(tmp_path_factory.mktemp("sdk"), **settings, HOTCROSS_MCP_DIRECT_FORWARD="false") as sdk:
            yield direct, sdk


def answer(response: httpx2.Response, developer: Any = None) -> tuple[int, str | None, Any]:
    """What a client sees: the status, Retry-After, and the JSON body (the text when it is not JSON), with the
    `developer`'s ids as placeholders (each bridge is called by a developer of its own)."""
    text = response.text
    if developer is not None:
        text = text.replace(str(developer.id), "<developer>").replace(str(developer.organization_id), "<organization>")
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    return response.status_code, response.headers.get("retry-after"), body


def forwarded(server: Any) -> dict[str, float]:
    """hotcross_gateway_forwarded_calls_total by path, as the server counts them now."""
    found = re.findall(r'hotcross_gateway_forwarded_calls_total\{path="(\w+)"\} ([0-9.]+)', metrics(server))
    return {path: float(value) for path, value in found}


def since(before: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """The counters that grew from `before` to `now`, by how much (a shared server counted other tests' calls too)."""
    grown = {path: value - before.get(path, 0.0) for path, value in now.items()}
    return {path: value for path, value in grown.items() if value}


def usage_of(developer) -> list[tuple[str, bool]]:
    return sorted(UsageEvent.objects.filter(developer=developer).values_list("tool_name", "ok"))


# Requests answered directly (forwarded calls of the upstream's tools), and requests that go to the SDK unchanged.
DIRECT = [
    call(1, "ping", {}),
    call("two", "ping"),  # no arguments at all
    call(3, "remember", {"text": "note", "_developer_id": "00000000-0000-0000-0000-000000000000"}),  # spoofed id
    call(4, "caller_meta", {}, _meta={"client": "value"}),
    call(5, "fails", {}),  # the upstream's isError result
    call(6, "sleep", {"seconds": 2}),  # past HOTCROSS_MCP_UPSTREAM_TIMEOUT: upstream_timeout
]
TO_THE_SDK = [
    call(11, "no_such_tool", {}),  # not the upstream's either
    call(12, "ping", "not an object"),  # invalid params
    call(13, 42),  # a name that is not a string
    call(14, "ping", {}, _meta={"progressToken": "p1"}),  # progress asked for
    call(15, "ping", {}, task={"ttl": 1000}),  # params the direct path does not know
    {"jsonrpc": "2.0", "id": 16, "method": "tools/list"},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},  # a notification: 202
    [call(17, "ping", {})],  # a batch
    {"jsonrpc": "1.0", "id": 18, "method": "tools/call", "params": {"name": "ping"}},
]

# What a developer's calls of DIRECT + TO_THE_SDK and `whoami` are metered as (the SDK's bridge; the direct one meters
# the same, and the test's own checks on top).
METERED = sorted(
    [("ping", True)] * 4
    + [("remember", True), ("caller_meta", True), ("fails", False), ("sleep", False), ("whoami", True)]
)


def test_a_client_cannot_tell_direct_forwarding_from_the_sdk(two_bridges):
    on_direct, on_sdk = DeveloperFactory(), DeveloperFactory()
    direct, sdk = two_bridges
    before = forwarded(direct), forwarded(sdk)
    for message in DIRECT + TO_THE_SDK:
        assert answer(post(direct, on_direct.plain_key, message), on_direct) == answer(
            post(sdk, on_sdk.plain_key, message), on_sdk
        ), message
    # Headers and bodies the SDK refuses: refused the same way by both.
    for headers, body in [
        ({"Accept": "text/plain"}, json.dumps(call(20, "ping", {}))),
        ({"Content-Type": "text/plain"}, json.dumps(call(21, "ping", {}))),
        ({"MCP-Protocol-Version": "1999-01-01"}, json.dumps(call(22, "ping", {}))),
        ({}, '{"jsonrpc": "2.0", "id": 23, "method": "tools/call", "params": {"name": "ping"'),  # not JSON
        ({}, json.dumps(call(24, "ping", {"blob": "x" * (5 * 1024 * 1024)}))),  # over the SDK's 4 MiB
    ]:
        kwargs = {"Authorization": f"Bearer {on_direct.plain_key}"}
        got_direct = httpx2.post(direct.url, content=body, headers={**HEADERS, **kwargs, **headers}, timeout=30)
        kwargs = {"Authorization": f"Bearer {on_sdk.plain_key}"}
        got_sdk = httpx2.post(sdk.url, content=body, headers={**HEADERS, **kwargs, **headers}, timeout=30)
        assert got_direct.status_code == got_sdk.status_code != 200, headers
        assert got_direct.text == got_sdk.text

    # A built-in tool (its answer names the developer, so not compared) is the SDK's on both.
    whoami = post(direct, on_direct.plain_key, call(10, "whoami", {})).json()["result"]["structuredContent"]
    assert whoami["developer_id"] == str(on_direct.id)
    post(sdk, on_sdk.plain_key, call(10, "whoami", {}))

    # The direct answers themselves are right (not just equal): the caller handed on, isError passed through.
    remembered = post(direct, on_direct.plain_key, call(30, "remember", {"text": "x"})).json()["result"]
    assert remembered["structuredContent"]["developer_id"] == str(on_direct.id)
    meta = post(direct, on_direct.plain_key, call(31, "caller_meta", {})).json()["result"]["structuredContent"]
    assert meta == {
        "hotcross/developer_id": str(on_direct.id),
        "hotcross/organization_id": str(on_direct.organization_id),
    }
    failed = post(direct, on_direct.plain_key, call(32, "fails", {})).json()["result"]
    assert failed["isError"] is True and failed["content"][0]["text"] == "Error executing tool fails"
    timed_out = post(direct, on_direct.plain_key, call(33, "sleep", {"seconds": 2})).json()["error"]
    assert timed_out["data"]["code"] == "upstream_timeout"

    # Which path served the forwarded calls: the direct one on one bridge (the SDK's for what it does not
    # take, such as a call with a progress token), only the SDK's on the other; the same calls in all.
    on_one, on_other = since(before[0], forwarded(direct)), since(before[1], forwarded(sdk))
    assert on_one["direct"] == len(DIRECT) + 4 and on_other.get("direct", 0) == 0
    assert on_one["direct"] + on_one.get("sdk", 0) == on_other["sdk"] + 4
    # Metered the same, ok or error per tool (written a flush interval after each answer).
    checks = [("caller_meta", True), ("fails", False), ("remember", True), ("sleep", False)]
    usage_written(2 * len(METERED) + len(checks))
    assert usage_of(on_sdk) == METERED
    assert ("ping", True) in usage_of(on_sdk) and ("fails", False) in usage_of(on_sdk)
    assert usage_of(on_direct) == sorted(usage_of(on_sdk) + checks)


def test_the_plan_refuses_the_same_way_on_the_direct_path(two_bridges):
    plan = PlanFactory(
        code="team", name="Team", allows_all_tools=False, allowed_tools="ping\nwhoami", rate_limit_per_developer=2
    )
    on_direct = DeveloperFactory(organization=OrganizationFactory(plan=plan))
    on_sdk = DeveloperFactory(organization=OrganizationFactory(plan=plan))
    direct, sdk = two_bridges
    before = forwarded(direct)
    answers = []
    for message in [call(1, "fails", {}), call(2, "ping", {}), call(3, "ping", {}), call(4, "ping", {})]:
        got_direct, got_sdk = (
            answer(post(direct, on_direct.plain_key, message)),
            answer(post(sdk, on_sdk.plain_key, message)),
        )
        answers.append(got_direct)
        assert got_direct[0] == got_sdk[0], message
        assert _seconds(got_direct[1]) == pytest.approx(_seconds(got_sdk[1]), abs=1), message  # asked ms apart
        assert _without_wait(got_direct[2]) == _without_wait(got_sdk[2]), message
    assert since(before, forwarded(direct)) == {"direct": 2}  # the refused calls were not forwarded
    not_in_plan, ok, _ok, limited = answers
    assert not_in_plan[0] == 200 and not_in_plan[2]["error"]["data"]["code"] == "tool_not_in_plan"
    assert ok[0] == 200 and ok[2]["result"]["content"][0]["text"] == "pong"
    # 2 a minute: one token every 30 s; a loaded machine may take a second or two over the four calls.
    assert limited[0] == 429 and 27 <= int(limited[1]) <= 30
    assert limited[2]["error"]["data"]["code"] == "rate_limited"
    usage_written(4)
    assert usage_of(on_direct) == usage_of(on_sdk) == [("ping", True), ("ping", True)]


def _seconds(retry_after: str | None) -> int:
    return int(retry_after or 0)


def _without_wait(body: Any) -> Any:
    """A refusal's body without its exact wait (the two bridges are asked a few milliseconds apart)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = json.loads(json.dumps(body["error"]))
        error.get("data", {}).pop("retry_after", None)
        return {**body, "error": error}
    return body
