"""Metering under concurrency: 20 HTTP clients × 50 calls → zero errors and exactly 1 000 usage events."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from accounts.models import UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.mcp import http_client, run_uvicorn, usage_written

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 20
CALLS = 50


def test_twenty_clients_fifty_calls_each_are_all_served_and_metered_once(tmp_path):
    orgs = [OrganizationFactory(max_seats=CLIENTS) for _ in range(2)]
    developers = [DeveloperFactory(organization=orgs[i % 2]) for i in range(CLIENTS)]
    errors: list[str] = []
    served: Counter[str] = Counter()

    async def client(developer) -> None:
        async with http_client(server.url, developer.plain_key) as session:
            for n in range(CALLS):
                # whoami reads the database; echo does not: both are metered.
                if n % 2:
                    result = await session.call_tool("whoami", {})
                else:
                    result = await session.call_tool("echo", {"text": "x"})
                if result.is_error:
                    errors.append(result.content[0].text)
                else:
                    served[str(developer.id)] += 1

    async def scenario() -> None:
        with anyio.fail_after(300):
            async with anyio.create_task_group() as group:
                for developer in developers:
                    group.start_soon(client, developer)

    # A pool far smaller than the bridge's database threads: a thread that kept its connection would exhaust it.
    with run_uvicorn(tmp_path, DATABASE_POOL_MAX_SIZE="2", DATABASE_POOL_TIMEOUT="15") as server:
        anyio.run(scenario)
        assert server.alive()

    assert errors == []
    assert sum(served.values()) == CLIENTS * CALLS
    usage_written(CLIENTS * CALLS)
    assert UsageEvent.objects.count() == CLIENTS * CALLS
    assert not UsageEvent.objects.filter(ok=False).exists()
    per_developer = Counter(str(d) for d in UsageEvent.objects.values_list("developer_id", flat=True))
    assert per_developer == served
    assert Counter(UsageEvent.objects.values_list("tool_name", flat=True)) == {"whoami": 500, "echo": 500}
