"""Rate limits (issue 16, step 4): token buckets per developer and per organization, in Redis through Django's cache
or per process; `rate_limited` as HTTP 429 + Retry-After on /mcp, a JSON-RPC error with the wait on stdio; refused
calls not metered; Redis down: the configured behaviour, never a 500; exact across 2 uvicorn workers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from django.test import override_settings

from accounts import limits
from accounts.models import UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.support.mcp import mcp_error, run_uvicorn, stdio_session, usage_written
from tests.support.proxy import TcpProxy

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def redis_caches(url: str) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        }
    }


@pytest.fixture(autouse=True)
def _fresh_limits():
    limits.reset()
    yield
    limits.reset()


def call(n: int) -> dict:
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "ping", "arguments": {}}}


def limited_developer(per_developer: int | None = None, per_organization: int | None = None):
    plan = PlanFactory(
        code="metered",
        name="Metered",
        rate_limit_per_developer=per_developer,
        rate_limit_per_organization=per_organization,
    )
    return DeveloperFactory(organization=OrganizationFactory(plan=plan))


# --- the buckets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "redis"])
def test_a_bucket_allows_the_limit_then_says_how_long_to_wait(where, request):
    caches = (
        redis_caches(request.getfixturevalue("redis_service").url)
        if where == "redis"
        else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    )
    developer, org = uuid.uuid4(), uuid.uuid4()
    with override_settings(CACHES=caches):
        limits.reset()
        assert all(limits.check(developer, org, 3, None).allowed for _ in range(3))
        refused = limits.check(developer, org, 3, None)
        assert not refused.allowed and refused.scope == limits.DEVELOPER
        assert 19.0 < refused.retry_after <= 20.0  # one token every 60/3 s
        # The organization's limit counts every developer of it.
        other = uuid.uuid4()
        assert limits.check(other, org, None, 4).allowed
        assert limits.check(uuid.uuid4(), org, None, 4).allowed
        assert limits.check(uuid.uuid4(), org, None, 4).allowed
        assert limits.check(uuid.uuid4(), org, None, 4).allowed
        refused = limits.check(uuid.uuid4(), org, None, 4)
        assert not refused.allowed and refused.scope == limits.ORGANIZATION
        assert limits.check(uuid.uuid4(), uuid.uuid4(), None, None).allowed  # no limit, no bucket


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_unreachable_fails_as_configured_without_an_error(fail_open):
    with (
        socket_closed() as port,
        override_settings(CACHES=redis_caches(f"redis://127.0.0.1:{port}/0"), HOTCROSS_RATE_LIMIT_FAIL_OPEN=fail_open),
    ):
        limits.reset()
        started = time.monotonic()
        decisions = [limits.check(uuid.uuid4(), uuid.uuid4(), 1, 1) for _ in range(50)]
        assert time.monotonic() - started < 2
    assert all(decision.allowed == fail_open for decision in decisions)
    if not fail_open:
        assert decisions[0].unavailable and decisions[0].retry_after == limits.REDIS_RETRY_SECONDS


class socket_closed:
    """A 127.0.0.1 port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        return None


# --- over the transports -------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_http_429_with_retry_after_and_refused_calls_are_not_metered(tmp_path):
    developer = limited_developer(per_developer=2)
    headers = {**ACCEPT, "Authorization": f"Bearer {developer.plain_key}"}
    with run_uvicorn(tmp_path) as server:
        answers = [httpx2.post(server.url, json=call(n), headers=headers, timeout=30) for n in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    refused = answers[2]
    error = refused.json()["error"]
    assert error["code"] == -32003 and error["data"]["code"] == "rate_limited"
    assert error["message"].startswith("rate_limited: Over your rate limit of 2 calls per minute")
    assert refused.json()["id"] == 2
    wait = error["data"]["retry_after"]
    assert 29.0 < wait <= 30.0  # a token every 30 s
    assert refused.headers["Retry-After"] == str(math.ceil(wait))
    usage_written(2)
    assert UsageEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_stdio_gives_a_json_rpc_error_with_the_wait(tmp_path):
    developer = limited_developer(per_developer=1)

    async def scenario():
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog) as client:
                await client.call_tool("ping", {})
                with pytest.raises(Exception) as raised:
                    await client.call_tool("ping", {})
                return mcp_error(raised.value)

    error = anyio.run(scenario)
    assert error.code == -32003
    assert error.data["code"] == "rate_limited" and 59.0 < error.data["retry_after"] <= 60.0


@contextlib.contextmanager
def two_workers_on_redis(tmp_path, developer, redis_url: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """Two uvicorn workers sharing Redis, both workers' key checks warmed (tools/list is not a call): the server and
    the developer's request headers."""
    headers = {**ACCEPT, "Authorization": f"Bearer {developer.plain_key}"}
    with run_uvicorn(tmp_path, workers=2, REDIS_URL=redis_url) as server:
        for _ in range(8):
            listed = httpx2.post(server.url, json={"jsonrpc": "2.0", "id": 0, "method": "tools/list"}, headers=headers)
            assert listed.status_code == 200
        yield server, headers


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_redis_hold_the_limit_exactly(tmp_path, redis_service):
    limit = 6
    developer = limited_developer(per_developer=limit)
    with two_workers_on_redis(tmp_path, developer, redis_service.url) as (server, headers):

        async def burst():
            async with httpx2.AsyncClient(
                headers=headers, timeout=30, limits=httpx2.Limits(max_connections=20)
            ) as http:
                return await asyncio.gather(*(http.post(server.url, json=call(n)) for n in range(limit + 1)))

        answers = asyncio.run(burst())
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * limit + [429], statuses


@pytest.mark.django_db(transaction=True)
def test_redis_down_and_back_on_a_running_server(tmp_path, redis_service):
    developer = limited_developer(per_developer=2)
    headers = {**ACCEPT, "Authorization": f"Bearer {developer.plain_key}"}
    proxy = TcpProxy(("127.0.0.1", redis_service.port))
    try:
        with run_uvicorn(tmp_path, REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0") as server:
            statuses = [
                httpx2.post(server.url, json=call(n), headers=headers, timeout=30).status_code for n in range(3)
            ]
            assert statuses == [200, 200, 429]
            proxy.cut()  # Redis unreachable: fail open (the default), never a 500
            down = [httpx2.post(server.url, json=call(n), headers=headers, timeout=30).status_code for n in range(5)]
            assert down == [200] * 5
            proxy.restore()
            time.sleep(limits.REDIS_RETRY_SECONDS + 0.2)
            back = httpx2.post(server.url, json=call(9), headers=headers, timeout=30)
            assert back.status_code == 429  # the bucket in Redis is still empty
        with run_uvicorn(
            tmp_path, REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", HOTCROSS_RATE_LIMIT_FAIL_OPEN="false"
        ) as server:
            proxy.cut()
            closed = httpx2.post(server.url, json=call(1), headers=headers, timeout=30)
            assert closed.status_code == 429
            assert closed.json()["error"]["data"]["code"] == "rate_limited"
            assert closed.headers["Retry-After"] == "1"
    finally:
        proxy.close()


@pytest.mark.django_db(transaction=True)
def test_two_workers_with_leases_never_pass_the_limit_and_lose_nothing(tmp_path, redis_service):
    """Warm traffic first, so each worker has local demand and takes leases (from the upper half of the bucket: above
    20 of 40 tokens); then a burst one call over what is left. Never more than the limit: the burst gets at most what
    was left (plus what refilled meanwhile). It may get less — a worker can be refused while the other still holds
    leased tokens (taken while the bucket was more than half full) — but those go back within `limits.LEASE_SECONDS`,
    so calls made after that get exactly the rest: nothing is lost, nothing is added."""
    limit, rounds, per_round = 40, 4, 4
    left = limit - rounds * per_round
    developer = limited_developer(per_developer=limit)
    with two_workers_on_redis(tmp_path, developer, redis_service.url) as (server, headers):

        async def traffic():
            async with httpx2.AsyncClient(
                headers=headers, timeout=30, limits=httpx2.Limits(max_connections=50)
            ) as http:
                started = time.monotonic()
                warm = []
                for _ in range(rounds):
                    warm += await asyncio.gather(*(http.post(server.url, json=call(n)) for n in range(per_round)))
                    await asyncio.sleep(0.1)  # over more than one lease period: the demand of the previous one counts
                redis_service.reset_statistics()
                burst = await asyncio.gather(*(http.post(server.url, json=call(n)) for n in range(left + 1)))
                round_trips = redis_service.evalsha_calls()
                await asyncio.sleep(limits.LEASE_SECONDS + 0.2)  # unused leased tokens go back
                later = []
                for n in range(left + 1):  # one at a time until refused
                    later.append(await http.post(server.url, json=call(n)))
                    if later[-1].status_code == 429:
                        break
                return warm, burst, round_trips, later, time.monotonic() - started

        warm, burst, round_trips, later, elapsed = asyncio.run(traffic())
    assert [answer.status_code for answer in warm] == [200] * rounds * per_round
    statuses = [answer.status_code for answer in burst]
    assert set(statuses) <= {200, 429}, statuses
    assert round_trips < len(burst), round_trips  # some of the burst was served from leases
    # What refilled during the run (40 a minute) may be served too; nothing else.
    refill = math.floor(elapsed * limit / limits.WINDOW_SECONDS)
    served = statuses.count(200)
    assert served <= left + refill, (statuses, elapsed)
    assert later[-1].status_code == 429, [answer.status_code for answer in later]
    served_later = len(later) - 1
    assert left <= served + served_later <= left + refill, (served, served_later, elapsed)
