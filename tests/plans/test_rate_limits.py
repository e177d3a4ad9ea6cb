"""Rate limits (issue 16, step 4): token buckets per developer and per organization, in Redis through Django's cache
or per process; `rate_limited` as HTTP 429 + Retry-After on /mcp, a JSON-RPC error with the wait on stdio; refused
calls not metered; Redis down: the configured behaviour, never a 500; exact across 2 uvicorn workers."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator

import anyio
import httpx2
import pytest
from django.test import override_settings

from accounts import rate_buckets
from accounts.models import Developer, UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory, PlanFactory
from tests.support.mcp import mcp_error, run_uvicorn, stdio_session, usage_written
from tests.support.metrics import metering_flushed
from tests.support.proxy import TcpProxy
from tests.support.servers import RunningServer, closed_port

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
    rate_buckets.reset()
    yield
    rate_buckets.reset()


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
        rate_buckets.reset()
        assert all(rate_buckets.check(developer, org, 3, None).allowed for _ in range(3))
        refused = rate_buckets.check(developer, org, 3, None)
        assert not refused.allowed and refused.scope == rate_buckets.DEVELOPER
        assert 19.0 < refused.retry_after <= 20.0  # one token every 60/3 s
        # The organization's limit counts every developer of it.
        other = uuid.uuid4()
        assert rate_buckets.check(other, org, None, 4).allowed
        assert rate_buckets.check(uuid.uuid4(), org, None, 4).allowed
        assert rate_buckets.check(uuid.uuid4(), org, None, 4).allowed
        assert rate_buckets.check(uuid.uuid4(), org, None, 4).allowed
        refused = rate_buckets.check(uuid.uuid4(), org, None, 4)
        assert not refused.allowed and refused.scope == rate_buckets.ORGANIZATION
        assert rate_buckets.check(uuid.uuid4(), uuid.uuid4(), None, None).allowed  # no limit, no bucket


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_unreachable_fails_as_configured_without_an_error(fail_open):
    port = closed_port()
    with override_settings(CACHES=redis_caches(f"redis://127.0.0.1:{port}/0"), HOTCROSS_RATE_LIMIT_FAIL_OPEN=fail_open):
        rate_buckets.reset()
        started = time.monotonic()
        decisions = [rate_buckets.check(uuid.uuid4(), uuid.uuid4(), 1, 1) for _ in range(50)]
        assert time.monotonic() - started < 2
    assert all(decision.allowed == fail_open for decision in decisions)
    if not fail_open:
        assert decisions[0].unavailable and decisions[0].retry_after == rate_buckets.REDIS_RETRY_SECONDS


# --- over the transports -------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_http_429_with_retry_after_and_refused_calls_are_not_metered(mcp_http):
    # The session's server (buckets in its memory, per developer: this test's own developer starts with a full one).
    developer = limited_developer(per_developer=2)
    headers = {**ACCEPT, "Authorization": f"Bearer {developer.plain_key}"}
    answers = [httpx2.post(mcp_http.url, json=call(n), headers=headers, timeout=30) for n in range(3)]
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
    # All the server metered is written (it goes on for other tests: no stop writes it), the two calls of another
    # developer that make sure of it aside.
    barrier = DeveloperFactory()
    metering_flushed(mcp_http, barrier)
    assert UsageEvent.objects.exclude(developer=barrier).count() == 2


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


# The workers' lease period (HOTCROSS_RATE_LIMIT_LEASE_SECONDS; 0.25 s by default): long enough that a worker stalled
# by a loaded machine rarely outlives a lease in the lease test. The exact-limit test is unaffected: its fresh
# developer's calls all come in a worker's first period, with no earlier demand, so every take is of one token.
WORKERS_LEASE_SECONDS = 1.0


@pytest.fixture(scope="module")
def redis_workers(django_db_setup, _redis_server, tmp_path_factory) -> Iterator[RunningServer]:
    """Two uvicorn workers sharing the session's Redis, for this module's tests: each brings its own developer (its own
    buckets, leases and key checks) and empties Redis first (`redis_service`)."""
    with run_uvicorn(
        tmp_path_factory.mktemp("redis-workers"),
        workers=2,
        REDIS_URL=_redis_server.url,
        HOTCROSS_RATE_LIMIT_LEASE_SECONDS=str(WORKERS_LEASE_SECONDS),
    ) as server:
        yield server


def warmed(server: RunningServer, developer) -> dict[str, str]:
    """Both workers' key checks of `developer` warmed (tools/list is not a call; a new connection each time: the
    kernel spreads them over both workers); the developer's request headers."""
    headers = {**ACCEPT, "Authorization": f"Bearer {developer.plain_key}"}
    for _ in range(8):
        listed = httpx2.post(server.url, json={"jsonrpc": "2.0", "id": 0, "method": "tools/list"}, headers=headers)
        assert listed.status_code == 200
    return headers


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_redis_hold_the_limit_exactly(redis_workers, redis_service):
    limit = 6
    developer = limited_developer(per_developer=limit)
    headers = warmed(redis_workers, developer)

    async def burst():
        async with httpx2.AsyncClient(headers=headers, timeout=30, limits=httpx2.Limits(max_connections=20)) as http:
            return await asyncio.gather(*(http.post(redis_workers.url, json=call(n)) for n in range(limit + 1)))

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
            time.sleep(rate_buckets.REDIS_RETRY_SECONDS + 0.2)
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


def redis_now(client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def leased_out(client, key: str, limit: int, served: int, since: float) -> float:
    """Tokens taken from the bucket `key` in Redis but not spent on an answered call: tokens the workers hold in
    leases (a whole number, plus a hair of refill). From Redis's own numbers and clock: the limit, plus what refilled
    since `since` (read before the bucket's first take), minus the bucket's tokens now, minus the calls answered."""
    with client.pipeline(transaction=True) as pipe:  # the bucket and the clock at one moment
        (stored, ts), (seconds, micros) = pipe.hmget(key, "tokens", "ts").time().execute()
    now = seconds + micros / 1e6
    rate = limit / rate_buckets.WINDOW_SECONDS
    tokens = float(limit) if stored is None else min(limit, float(stored) + max(0.0, now - float(ts)) * rate)
    return limit + (now - since) * rate - tokens - served


@pytest.mark.django_db(transaction=True)
def test_two_workers_with_leases_never_pass_the_limit_and_lose_nothing(redis_workers, redis_service):
    """Warm traffic first, so the workers have local demand and take leases (from the upper half of the bucket: above
    30 of 60 tokens); then a burst one call over what is left. Never more than the limit: the burst gets at most what
    was left (plus what refilled meanwhile). It may get less — a worker can be refused while the other still holds
    leased tokens (taken while the bucket was more than half full) — but those go back within the lease period, so
    calls made after that get exactly the rest: nothing is lost, nothing is added.

    Robust under load: a worker's lease is as big as its demand in the previous lease period and lives one period, so
    a fixed warm-up followed by a pause could, on a loaded machine, reach the burst with every period rolled over and
    no lease at all (it did, with 0.25 s periods: 25 round trips for 25 calls). So the server's period is a second
    (`WORKERS_LEASE_SECONDS`), the warm rounds go on, three a period, until Redis shows that a worker holds leased
    tokens right now (more tokens taken than calls answered), and the burst follows at once; the warm rounds stop
    early enough that the burst still starts in the upper half (a worker whose lease expired meanwhile takes a new
    one). After the burst, the test watches Redis until every leased token is back (rather than sleeping a period out).

    What could still upset it: a worker stalled for more than a second between the last warm round and the burst, or
    a lease timer more than half a second late. That leases served part of the burst is asked of one of three tries."""
    lease = WORKERS_LEASE_SECONDS
    limit, per_round, pace = 60, 3, lease / 3

    first = limited_developer(per_developer=limit)

    def one_try(developer: Developer) -> tuple[bool, tuple]:
        most_warm = limit // 2 - 2  # the burst starts in the upper half: a take by recent demand still gets a lease
        headers = warmed(redis_workers, developer)
        key = f"{rate_buckets.KEY_PREFIX}d:{developer.id}"
        client = redis_service.client()

        async def traffic():
            async with httpx2.AsyncClient(
                headers=headers, timeout=30, limits=httpx2.Limits(max_connections=50)
            ) as http:
                since = redis_now(client)
                started = time.monotonic()

                def leased(served: int) -> float:
                    return leased_out(client, key, limit, served, since)

                warm, held = [], 0.0
                # Rounds every `pace` s (over more than one lease period: the previous period's demand counts).
                while True:
                    warm += await asyncio.gather(
                        *(http.post(redis_workers.url, json=call(n)) for n in range(per_round))
                    )
                    held = leased(sum(answer.status_code == 200 for answer in warm))
                    if held >= 0.5 or len(warm) + per_round > most_warm:
                        break
                    await asyncio.sleep(max(0.0, started + pace * len(warm) / per_round - time.monotonic()))
                left = limit - len(warm)
                redis_service.reset_statistics()
                burst = await asyncio.gather(*(http.post(redis_workers.url, json=call(n)) for n in range(left + 1)))
                burst_end = time.monotonic()
                round_trips = redis_service.evalsha_calls()
                answered = [answer.status_code for answer in warm + burst]
                assert set(answered) <= {200, 429}, answered
                # Unused leased tokens go back (the leases' timers) within the lease period (+ 0.5 s for a timer late
                # on a loaded machine): watched in Redis instead of slept out.
                while (still := leased(answered.count(200))) >= 0.5:
                    late = time.monotonic() - burst_end
                    assert late < lease + 0.5, f"{still:.2f} leased tokens not back {late:.2f} s later"
                    await asyncio.sleep(0.02)
                later = []
                for n in range(left + 1):  # one at a time until refused
                    later.append(await http.post(redis_workers.url, json=call(n)))
                    if later[-1].status_code == 429:
                        break
                return warm, held, left, burst, round_trips, later, time.monotonic() - started

        try:
            warm, held, left, burst, round_trips, later, elapsed = asyncio.run(traffic())
        finally:
            client.close()
        assert [answer.status_code for answer in warm] == [200] * len(warm)
        statuses = [answer.status_code for answer in burst]
        assert set(statuses) <= {200, 429}, statuses
        # What refilled during the run (40 a minute) may be served too; nothing else.
        refill = math.floor(elapsed * limit / rate_buckets.WINDOW_SECONDS)
        served = statuses.count(200)
        assert served <= left + refill, (statuses, elapsed)
        assert later[-1].status_code == 429, [answer.status_code for answer in later]
        served_later = len(later) - 1
        assert left <= served + served_later <= left + refill, (served, served_later, elapsed)
        # Some of the burst was served from leases (the caller asks this of one of its tries).
        return round_trips < len(burst), (round_trips, f"{held:.2f} tokens leased when the burst began", len(warm))

    # Never passing the limit and losing nothing hold on every try. That leases served part of the burst depends on
    # timing a loaded machine can upset (CI once saw 30 round trips for a 29-call burst): one of three tries must show
    # it, each with a new developer and so a new bucket.
    plan, tries = first.organization.plan, []
    for n in range(3):
        developer = first if n == 0 else DeveloperFactory(organization=OrganizationFactory(plan=plan))
        leased_some, figures = one_try(developer)
        tries.append(figures)
        if leased_some:
            break
    assert leased_some, tries
