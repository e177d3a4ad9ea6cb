"""Rate-limit leases (issue 16, the per-call cost): a process takes several tokens in one Redis round trip, from the
upper half of a bucket only and as many as its own recent demand, spends them locally for a lease period, and gives
back what it did not use. Two `RedisBuckets` here are two processes on one real Redis (the session's own:
`redis_service`); round trips are counted by Redis itself (`INFO commandstats`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from accounts import rate_buckets
from tests.support.proxy import TcpProxy

OPTIONS = {"OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}}


@pytest.fixture(autouse=True)
def _fresh_limits():
    rate_buckets.reset()
    yield
    rate_buckets.reset()


def buckets(url: str) -> rate_buckets.RedisBuckets:
    """A process's buckets (its own leases and its own Redis connection)."""
    return rate_buckets.RedisBuckets(RedisCache(url, OPTIONS))


def pair() -> tuple[str, str]:
    return f"{rate_buckets.KEY_PREFIX}d:{uuid.uuid4()}", f"{rate_buckets.KEY_PREFIX}o:{uuid.uuid4()}"


def available(url: str, key: str, limit: int) -> float:
    """The bucket's tokens now, as the script computes them (Redis's clock)."""
    client = redis.Redis.from_url(url)
    stored, ts = client.hmget(key, "tokens", "ts")
    seconds, micros = client.time()
    if stored is None:
        return float(limit)
    now = seconds + micros / 1e6
    return min(float(limit), float(stored) + max(0.0, now - float(ts)) * limit / rate_buckets.WINDOW_SECONDS)


def leased(process: rate_buckets.RedisBuckets) -> int:
    """Tokens this process holds in live leases (state read, not changed)."""
    return sum(lease.tokens for leases in process._leases.values() for lease in leases.values())


async def paced(process: rate_buckets.RedisBuckets, keys: tuple[str, str], limit: int, calls: int, gap: float) -> int:
    admitted = 0
    for _ in range(calls):
        admitted += (await process.atake(*keys, limit, limit)).allowed
        await asyncio.sleep(gap)
    return admitted


def test_sustained_demand_gets_leases_so_few_calls_reach_redis(redis_service):
    keys = pair()
    first, second = buckets(redis_service.url), buckets(redis_service.url)

    async def scenario() -> list[int]:
        # Two processes, each ~400 calls a second for ~0.75 s on a limit far away.
        return await asyncio.gather(paced(first, keys, 10**6, 300, 0.0025), paced(second, keys, 10**6, 300, 0.0025))

    redis_service.reset_statistics()
    admitted = asyncio.run(scenario())
    round_trips = redis_service.evalsha_calls()
    assert admitted == [300, 300]
    # Cold, each asks for one token at a time for a period (≤ ~100 calls each), then leases of a period's demand.
    assert round_trips < 600 / 3, round_trips


@override_settings(HOTCROSS_RATE_LIMIT_LEASE_SECONDS=0)
def test_a_lease_period_of_zero_decides_every_call_in_redis(redis_service):
    keys = pair()
    process = buckets(redis_service.url)
    redis_service.reset_statistics()
    # The same sustained demand that gets leases above (~400 calls a second for ~0.75 s).
    admitted = asyncio.run(paced(process, keys, 10**6, 300, 0.0025))
    assert admitted == 300
    assert redis_service.evalsha_calls() >= 300  # one round trip a call at least (none served from a lease)
    assert leased(process) == 0


def test_two_processes_never_admit_more_than_the_limit(redis_service):
    limit = 120  # two tokens a second
    keys = pair()
    first, second = buckets(redis_service.url), buckets(redis_service.url)

    async def scenario() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Warm demand on the same pair (leases from the upper half), then both run on past the limit.
        admitted = await asyncio.gather(paced(first, keys, limit, 150, 0.002), paced(second, keys, limit, 150, 0.002))
        return admitted, loop.time() - started

    admitted, elapsed = asyncio.run(scenario())
    refill = elapsed * limit / rate_buckets.WINDOW_SECONDS
    # Never more than the limit (plus the bucket's refill while the test ran): every admitted call's token was
    # taken in Redis. And no fewer: the leases came from the upper half, so the lower half went one token at a time.
    assert limit - 1 <= sum(admitted) <= limit + refill, (admitted, refill)


def test_unused_tokens_go_back_within_lease_seconds(redis_service):
    limit = 600  # ten tokens a second
    keys = pair()
    process = buckets(redis_service.url)

    async def scenario() -> tuple[int, float, float, float]:
        admitted = await paced(process, keys, limit, 120, 0.004)  # ~250 calls a second: leases of ~60
        while leased(process) < 10:  # stop while a fresh lease has tokens left
            admitted += (await process.atake(*keys, limit, limit)).allowed
        left = leased(process)
        before = available(redis_service.url, keys[0], limit)
        await asyncio.sleep(rate_buckets.lease_seconds() + 0.15)  # its timer gives the tokens back
        after = available(redis_service.url, keys[0], limit)
        return admitted, left, before, after

    admitted, left, before, after = asyncio.run(scenario())
    assert admitted >= 120 and left >= 10
    refill_slack = 1.5 * limit / rate_buckets.WINDOW_SECONDS  # < 1.5 s of refill, generous
    assert before <= limit - admitted - left + refill_slack, (before, admitted, left)
    assert limit - admitted <= after <= limit - admitted + refill_slack, (after, admitted)
    assert leased(process) == 0


def test_a_plan_limit_change_drops_the_lease(redis_service):
    keys = pair()
    process = buckets(redis_service.url)

    async def scenario() -> tuple[int, int]:
        await paced(process, keys, 600, 120, 0.004)
        while leased(process) < 10:
            await process.atake(*keys, 600, 600)
        # The plan now allows 10 a minute: the lease of the old limits is given back (capped at the new limit) and
        # not spent; the new limit holds exactly.
        admitted = sum([(await process.atake(*keys, 10, 10)).allowed for _ in range(20)])
        return admitted, leased(process)

    admitted, left = asyncio.run(scenario())
    assert admitted == 10
    assert left == 0


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_down_mid_lease_spends_the_lease_then_fails_as_configured(fail_open, redis_service):
    proxy = TcpProxy(("127.0.0.1", redis_service.port))
    keys = pair()
    try:
        with override_settings(HOTCROSS_RATE_LIMIT_FAIL_OPEN=fail_open):
            process = buckets(f"redis://127.0.0.1:{proxy.port}/0")

            async def scenario() -> tuple[int, list[rate_buckets.Decision]]:
                await paced(process, keys, 600, 120, 0.004)
                while leased(process) < 10:
                    await process.atake(*keys, 600, 600)
                left = leased(process)
                proxy.cut()
                decisions = [await process.atake(*keys, 600, 600) for _ in range(left + 5)]
                await asyncio.sleep(rate_buckets.lease_seconds() + 0.1)  # give-back timer meets a dead Redis: no error
                return left, decisions

            left, decisions = asyncio.run(scenario())
    finally:
        proxy.close()
    assert all(decision.allowed for decision in decisions[:left])  # the lease is spent without Redis
    rest = decisions[left:]
    assert all(decision.allowed == fail_open for decision in rest)
    if not fail_open:
        assert all(decision.unavailable for decision in rest)
