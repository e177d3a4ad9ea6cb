"""Every MCP feature through the gateway (issue 29), with the mcp SDK's own client as developers run it, against the
conformance suite's reference server as the HTTP upstream (`conformance_upstream`): log messages and progress of a
forwarded call reach the client with its own progress token, `logging/setLevel` filters them, the upstream's
sampling and elicitation requests reach the client and its answers come back, resource subscriptions are passed on,
a 2026-07-28 client's `input_required` round trips are one call of usage, answers are JSON unless the call streams,
an unsupported protocol version is told which ones are spoken, and a client's `traceparent` reaches the upstream and
the request's log line. `tests/gateway/test_conformance.py` runs the official suite over the same ways in."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import (
    CreateMessageResult,
    ElicitResult,
    ResourceUpdatedNotification,
    TextContent,
    ToolListChangedNotification,
)

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import run_uvicorn, stdio_parameters, usage_written
from tests.support.servers import RunningServer
from tests.support.upstreams import HEADERS, OLD_HOTCROSS, call, gateway_env, post

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # logging/setLevel and resources/subscribe are the handshake era's, deprecated by 2026-07-28: still served.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def bridge(django_db_setup: None, conformance_upstream: str, tmp_path_factory) -> Iterator[RunningServer]:
    """A bridge (JSON log lines) with the reference server as its HTTP upstream."""
    env = gateway_env(conformance_upstream, LOG_FORMAT="json")
    with run_uvicorn(tmp_path_factory.mktemp("features-bridge"), **env) as server:
        yield server


ASKED: list[str] = []  # what the clients' sampling and elicitation callbacks were asked, in this process


async def sampled(_context: Any, params: Any) -> CreateMessageResult:
    asked = params.messages[0].content.text
    ASKED.append(asked)
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text=f"sampled: {asked}"), model="m")


async def elicited(_context: Any, params: Any) -> ElicitResult:
    ASKED.append(params.message)
    return ElicitResult(action="accept", content={"response": f"answered: {params.message}"})


@contextlib.asynccontextmanager
async def http_session(bridge: RunningServer, key: str, *, mode: str) -> AsyncIterator[Client]:
    """The mcp SDK's client over /mcp in protocol `mode`, answering sampling and elicitation."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        transport = streamable_http_client(bridge.url, http_client=http)
        async with Client(transport, mode=mode, sampling_callback=sampled, elicitation_callback=elicited) as client:
            yield client


def answered_upstream(text: str, expected: str) -> None:
    """The tool's answer after the client answered its question: the reference server (0.2.0-alpha.11) checks the
    answer against a schema that also wants a `method` member, which no client's answer has, so it says
    `invalid_literal`: proof that the answer reached it. Either that, or what it would say with a lenient schema."""
    assert text.startswith(expected) or ("invalid_literal" in text and "error" in text), text


def text_of(result: Any) -> str:
    return " ".join(item.text for item in result.content if getattr(item, "text", None))


def test_a_stdio_client_gets_logs_progress_and_the_upstreams_questions(conformance_upstream):
    """Over stdio (`manage.py mcp_server`): before the fix, `_relay` called a `request.log` that mcp 2.x does not
    have and swallowed the error, so no log message ever reached a stdio client."""
    developer = DeveloperFactory()
    logs: list[Any] = []
    progress: list[float] = []

    async def logged(params: Any) -> None:
        logs.append(params)

    async def scenario() -> dict[str, str]:
        parameters = stdio_parameters(developer.plain_key, **gateway_env(conformance_upstream))
        with tempfile.TemporaryFile("w+") as errlog:
            async with Client(
                stdio_client(parameters, errlog=errlog),
                mode="legacy",
                logging_callback=logged,
                sampling_callback=sampled,
                elicitation_callback=elicited,
            ) as client:
                capabilities = client.session.server_capabilities
                assert capabilities is not None and capabilities.logging is not None
                assert capabilities.resources is not None and capabilities.resources.subscribe
                await client.set_logging_level("debug")
                await client.call_tool("test_tool_with_logging", {})
                logged_at_debug = len(logs)

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append(value)

                await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
                sampling = await client.call_tool("test_sampling", {"prompt": "two words"})
                elicitation = await client.call_tool("test_elicitation", {"message": "your name?"})
                await client.subscribe_resource("test://watched-resource")
                await client.unsubscribe_resource("test://watched-resource")
                await client.set_logging_level("emergency")  # the reference tool logs at info: nothing now
                await client.call_tool("test_tool_with_logging", {})
                return {
                    "logged_at_debug": str(logged_at_debug),
                    "logged_after": str(len(logs)),
                    "sampling": text_of(sampling),
                    "elicitation": text_of(elicitation),
                }

    got = anyio.run(scenario)
    assert int(got["logged_at_debug"]) >= 3 and got["logged_after"] == got["logged_at_debug"]
    assert all(entry.level == "info" for entry in logs)
    assert progress == sorted(progress) and len(progress) >= 3
    assert ASKED[-2:] == ["two words", "your name?"]  # the upstream's questions reached the client's callbacks
    answered_upstream(got["sampling"], "LLM response: sampled: two words")
    answered_upstream(got["elicitation"], "User response: action=accept")
    # Five calls served through the upstream: a question's round trip is part of its call, not a call of its own.
    usage_written(5)
    names = sorted(UsageEvent.objects.filter(developer=developer).values_list("tool_name", flat=True))
    served = ["test_tool_with_logging", "test_tool_with_logging", "test_tool_with_progress", "test_sampling"]
    assert names == sorted([*served, "test_elicitation"])


def test_an_http_answer_is_json_unless_the_call_says_something_on_the_way(bridge):
    developer = DeveloperFactory()
    plain = post(bridge, developer.plain_key, call(1, "test_simple_text", {}))
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")
    assert plain.json()["result"]["content"][0]["text"]

    streamed = post(bridge, developer.plain_key, call(2, "test_tool_with_logging", {}))
    assert streamed.headers["content-type"].startswith("text/event-stream")
    messages = [json.loads(line[5:]) for line in streamed.text.splitlines() if line.startswith("data:")]
    assert [m.get("method") for m in messages[:-1]] == ["notifications/message"] * (len(messages) - 1) != []
    assert messages[-1]["id"] == 2 and "result" in messages[-1]

    # The same call from a client that takes JSON only: the answer, without the log messages.
    json_only = post(bridge, developer.plain_key, call(3, "test_tool_with_logging", {}), Accept="application/json")
    assert json_only.headers["content-type"].startswith("application/json")
    assert json_only.json()["id"] == 3 and "result" in json_only.json()

    # Progress, through the SDK's path: the client's own token.
    token_call = call(4, "test_tool_with_progress", {}, _meta={"progressToken": "mine-7"})
    progressed = post(bridge, developer.plain_key, token_call)
    messages = [json.loads(line[5:]) for line in progressed.text.splitlines() if line.startswith("data:")]
    tokens = {m["params"]["progressToken"] for m in messages if m.get("method") == "notifications/progress"}
    assert tokens == {"mine-7"} and messages[-1]["id"] == 4


def test_a_2025_http_client_answers_the_upstreams_questions(bridge):
    """The answer is a POST of its own, routed back to the request that waits for it (`mcp_bridge.back_channel`)."""
    developer = DeveloperFactory()

    async def scenario() -> tuple[str, str]:
        async with http_session(bridge, developer.plain_key, mode="legacy") as client:
            sampling = await client.call_tool("test_sampling", {"prompt": "over http"})
            elicitation = await client.call_tool("test_elicitation", {"message": "ok?"})
            return text_of(sampling), text_of(elicitation)

    sampling, elicitation = anyio.run(scenario)
    assert ASKED[-2:] == ["over http", "ok?"]
    answered_upstream(sampling, "LLM response: sampled: over http")
    answered_upstream(elicitation, "User response: action=accept")


def test_only_the_caller_can_answer_the_upstreams_question(bridge):
    """Another developer who POSTs an answer under the question's id does not answer it: the caller's does."""
    asker, other = DeveloperFactory(), DeveloperFactory()

    def refusal(request_id: str, text: str) -> dict[str, Any]:
        # An error answer: the reference server puts its message in the tool's text (a result it would not show).
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -1, "message": text}}

    async def scenario() -> str:
        headers = {**HEADERS, "Authorization": f"Bearer {asker.plain_key}"}
        # A progress token: the SDK's path (`BackChannelManager`), not the direct forwarding's own stream.
        body = json.dumps(call(61, "test_sampling", {"prompt": "who?"}, _meta={"progressToken": 1})).encode()
        async with httpx2.AsyncClient(timeout=30) as http:
            async with http.stream("POST", bridge.url, content=body, headers=headers) as stream:
                lines = stream.aiter_lines()
                question = None
                async for line in lines:
                    if line.startswith("data:"):
                        question = json.loads(line[5:])
                        break
                assert question is not None and question["method"] == "sampling/createMessage"
                forged = await anyio.to_thread.run_sync(
                    post, bridge, other.plain_key, refusal(question["id"], "forged refusal")
                )
                assert forged.status_code == 202  # taken by nobody
                genuine = await anyio.to_thread.run_sync(
                    post, bridge, asker.plain_key, refusal(question["id"], "genuine refusal")
                )
                assert genuine.status_code == 202
                async for line in lines:
                    if line.startswith("data:"):
                        final = json.loads(line[5:])
                        if final.get("id") == 61:
                            return final["result"]["content"][0]["text"]
        raise AssertionError("no answer")

    text = anyio.run(scenario)
    assert "genuine refusal" in text and "forged" not in text, text


def test_a_2026_client_input_required_round_trips_are_one_call(bridge):
    developer = DeveloperFactory()

    async def scenario() -> str:
        async with http_session(bridge, developer.plain_key, mode="2026-07-28") as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "test_input_required_result_sampling" in tools and "whoami" in tools
            result = await client.call_tool("test_input_required_result_sampling", {})
            return text_of(result)

    assert anyio.run(scenario)
    usage_written(1)
    names = list(UsageEvent.objects.filter(developer=developer).values_list("tool_name", flat=True))
    assert names == ["test_input_required_result_sampling"]


def test_an_unsupported_protocol_version_is_told_which_are_spoken(bridge):
    developer = DeveloperFactory()
    answer = post(bridge, developer.plain_key, call(41, "whoami", {}), **{"MCP-Protocol-Version": "1999-01-01"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert answer.json()["id"] == 41
    assert "1999-01-01" in error["message"] and "2025-11-25" in error["message"] and "2026-07-28" in error["message"]
    assert error["data"] == {"supported": ["2026-07-28"], "requested": "1999-01-01"}
    assert "envelope" not in error["message"]


def test_a_clients_traceparent_reaches_the_upstream_and_the_log_line(bridge, gateway_bridge):
    developer = DeveloperFactory()
    # old_hotcross (the shared gateway bridge's upstream) says which _meta it received.
    got = post(gateway_bridge, developer.plain_key, call(51, "caller_meta", {}, _meta={"traceparent": TRACE}))
    assert got.json()["result"]["structuredContent"]["traceparent"] == TRACE
    by_header = post(gateway_bridge, developer.plain_key, call(52, "caller_meta", {}), traceparent=TRACE)
    assert by_header.json()["result"]["structuredContent"]["traceparent"] == TRACE
    malformed = post(gateway_bridge, developer.plain_key, call(53, "caller_meta", {}, _meta={"traceparent": "x"}))
    assert "traceparent" not in malformed.json()["result"]["structuredContent"]

    post(bridge, developer.plain_key, call(54, "test_simple_text", {}, _meta={"traceparent": TRACE}))

    def logged() -> bool:
        lines = [json.loads(line) for line in bridge.log().splitlines() if line.startswith("{")]
        return any(line.get("traceparent") == TRACE and line.get("path") == "/mcp" for line in lines)

    # The request's line is written once its answer has gone out: it may reach the log a moment after the client
    # has the answer.
    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert logged(), bridge.log()[-2000:]


def modern_call(server: RunningServer, key: str, request_id: int, name: str, **params: Any) -> dict[str, Any]:
    """A raw 2026-07-28 `tools/call` (its headers and `_meta` envelope) to the bridge: the JSON-RPC answer."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
    }
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call"}
    message["params"] = {"name": name, "arguments": {}, "_meta": envelope, **params}
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name}
    return post(server, key, message, **headers).json()


def test_a_2026_request_state_is_the_callers_and_any_worker_takes_it(bridge, conformance_upstream, tmp_path):
    """The `requestState` the bridge seals (keys from SECRET_KEY) opens in another server process of the deployment,
    and only for the developer it was sealed for."""
    developer, other = DeveloperFactory(), DeveloperFactory()
    name = "test_input_required_result_request_state"
    first = modern_call(bridge, developer.plain_key, 71, name)["result"]
    assert first["resultType"] == "input_required" and first["requestState"]
    confirmed = {"confirm": {"action": "accept", "content": {"ok": True}}}
    retry = {"requestState": first["requestState"], "inputResponses": confirmed}
    refused = modern_call(bridge, other.plain_key, 72, name, **retry)
    assert refused["error"]["message"] == "Invalid or expired requestState"
    with run_uvicorn(tmp_path, **gateway_env(conformance_upstream)) as another_process:
        done = modern_call(another_process, developer.plain_key, 73, name, **retry)["result"]
    assert done["content"][0]["text"] == "state-ok: requestState validated"


def test_a_stdio_client_hears_of_resource_updates_and_list_changes(tmp_path):
    """old_hotcross over stdio, run by this bridge process (no supervisor): `touch` makes the upstream say a resource
    changed, `grow` that its tool list did; the client that subscribed, and that listed tools, hears of both."""
    developer = DeveloperFactory()
    heard: list[Any] = []
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        heard.append(message)
        if isinstance(message, ToolListChangedNotification):
            changed.set()

    async def scenario() -> set[str]:
        env = gateway_env(OLD_HOTCROSS, HOTCROSS_MCP_UPSTREAM_SUPERVISOR="false")
        with tempfile.TemporaryFile("w+") as errlog:
            parameters = stdio_parameters(developer.plain_key, **env)
            async with Client(
                stdio_client(parameters, errlog=errlog), mode="legacy", message_handler=on_message
            ) as client:
                await client.list_tools()
                await client.subscribe_resource("notes://today")
                await client.call_tool("touch", {"uri": "notes://today"})
                await client.call_tool("grow", {"name": f"grown_{tmp_path.name[-6:]}"})
                with anyio.fail_after(10):
                    await changed.wait()
                return {tool.name for tool in (await client.list_tools()).tools}

    tools = anyio.run(scenario)
    updates = [m.params.uri for m in heard if isinstance(m, ResourceUpdatedNotification)]
    assert [str(uri) for uri in updates] == ["notes://today"]
    assert f"grown_{tmp_path.name[-6:]}" in tools


def test_a_2026_client_hears_of_a_changed_list_on_its_listen_stream(tmp_path):
    """The same change as above to a 2026-07-28 client over stdio: a `subscriptions/listen` event."""
    developer = DeveloperFactory()
    name = f"grown_{tmp_path.name[-6:]}"

    async def scenario() -> set[str]:
        env = gateway_env(OLD_HOTCROSS, HOTCROSS_MCP_UPSTREAM_SUPERVISOR="false")
        with tempfile.TemporaryFile("w+") as errlog:
            transport = stdio_client(stdio_parameters(developer.plain_key, **env), errlog=errlog)
            async with Client(transport, mode="2026-07-28") as client:
                await client.list_tools()
                async with client.listen(tools_list_changed=True) as subscription:
                    await client.call_tool("grow", {"name": name})
                    with anyio.fail_after(10):
                        async for _event in subscription:
                            break
                return {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}

    assert name in anyio.run(scenario)


def test_a_2026_listen_stream_is_the_upstreams(bridge, conformance_upstream):
    """A 2026-07-28 `subscriptions/listen` through the bridge is a stream of the upstream's (which knows what changes
    there): a change the upstream announces reaches the client, under the client's subscription id."""
    developer = DeveloperFactory()
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "tests", "version": "1"},
    }
    listen = {"notifications": {"toolsListChanged": True}, "_meta": envelope}
    trigger = {"name": "test_trigger_tool_change", "arguments": {}, "_meta": envelope}
    modern = {"MCP-Protocol-Version": "2026-07-28", "Content-Type": "application/json"}

    async def scenario() -> list[dict[str, Any]]:
        heard: list[dict[str, Any]] = []
        headers = {**HEADERS, **modern, "Mcp-Method": "subscriptions/listen"}
        headers["Authorization"] = f"Bearer {developer.plain_key}"
        body = json.dumps({"jsonrpc": "2.0", "id": "mine-1", "method": "subscriptions/listen", "params": listen})
        async with httpx2.AsyncClient(timeout=30) as http:
            async with http.stream("POST", bridge.url, content=body, headers=headers) as stream:
                lines = stream.aiter_lines()
                async for line in lines:
                    if line.startswith("data:"):
                        heard.append(json.loads(line[5:]))
                        break  # the acknowledgement: the stream is open upstream too
                # The change happens at the upstream (its trigger tool, called there directly: it lists it to nobody).
                call_headers = {**modern, "Accept": HEADERS["Accept"], "Mcp-Method": "tools/call"}
                call_headers["Mcp-Name"] = "test_trigger_tool_change"
                message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": trigger}
                await http.post(conformance_upstream, json=message, headers=call_headers)
                with anyio.fail_after(10):
                    async for line in lines:
                        if line.startswith("data:"):
                            heard.append(json.loads(line[5:]))
                            break
        return heard

    acknowledged, changed = anyio.run(scenario)
    assert acknowledged["method"] == "notifications/subscriptions/acknowledged"
    assert changed["method"] == "notifications/tools/list_changed"
    assert changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "mine-1"
