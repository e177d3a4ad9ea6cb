"""What an upstream sends during a call reaches the calling client where the transport can carry it (the stdio bridge,
`manage.py mcp_server`): progress of a call made with a progress token, over stdio and HTTP upstreams. And
`completion/complete` is answered by the upstream."""

from __future__ import annotations

import anyio
import pytest
from mcp_types import PromptReference

from tests.factories import DeveloperFactory
from tests.support.mcp import stdio_session
from tests.support.upstreams import EVERYTHING, gateway_env, needs_everything

pytestmark = pytest.mark.django_db(transaction=True)


async def long_operation(client) -> tuple[list[tuple[float, float | None]], str]:
    seen: list[tuple[float, float | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total))

    result = await client.call_tool(
        "trigger-long-running-operation", {"duration": 0.15, "steps": 3}, progress_callback=progress
    )
    return seen, result.content[0].text


@needs_everything
def test_progress_of_a_stdio_upstream_reaches_a_stdio_client(tmp_path):
    developer = DeveloperFactory()

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **gateway_env(EVERYTHING)) as client:
                return await long_operation(client)

    seen, text = anyio.run(scenario)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert "Long running operation completed" in text


@needs_everything
def test_progress_of_an_http_upstream_reaches_a_stdio_client(tmp_path, everything_upstream):
    developer = DeveloperFactory()

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **gateway_env(everything_upstream)) as client:
                return await long_operation(client)

    seen, text = anyio.run(scenario)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert "Long running operation completed" in text


@needs_everything
def test_completions_are_asked_of_the_upstream(tmp_path):
    developer = DeveloperFactory()

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **gateway_env(EVERYTHING)) as client:
                ref = PromptReference(type="ref/prompt", name="completable-prompt")
                department = await client.complete(ref, {"name": "department", "value": "S"})
                name = await client.complete(
                    ref, {"name": "name", "value": ""}, context_arguments={"department": "Sales"}
                )
                return department.completion.values, name.completion.values

    departments, names = anyio.run(scenario)
    assert departments == ["Sales", "Support"]
    assert names == ["David", "Eve", "Frank"]
