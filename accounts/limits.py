"""Rate limits of a plan (issue 16): calls per minute per developer and per organization, as token buckets.

A bucket holds at most `limit` tokens and gains `limit / 60` a second; a call takes one token from the developer's
bucket and one from the organization's, both or neither. With no token left the call is refused, and `retry_after`
is how long until the fullest-needed bucket has one again (what `Retry-After` says).

Where the buckets live:

- With `REDIS_URL` (Django's `RedisCache`): in Redis, through the raw client behind Django's cache, updated by one
  Lua script (atomic across workers and machines; Redis's clock, so the machines' clocks do not matter).
- Without it (`make run`): in this process's memory. The limit then holds **per process**: with N workers a developer
  may make up to N × the limit.
- Redis unreachable: `HOTCROSS_RATE_LIMIT_FAIL_OPEN` (default true) lets calls through; false refuses them with
  `rate_limited` (retry after `REDIS_RETRY_SECONDS`). Either way never an error; after a failure Redis is not asked
  again for `REDIS_RETRY_SECONDS`, so an outage costs one failed attempt a second per process, not one per call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from hotcross import metrics

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0  # limits are per minute
REDIS_RETRY_SECONDS = 1.0
KEY_PREFIX = "hotcross:rl:"
DEVELOPER = "developer"
ORGANIZATION = "organization"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until a call would be allowed
    scope: str = ""  # DEVELOPER or ORGANIZATION: whose limit refused; "" when allowed (or Redis down, fail closed)
    unavailable: bool = False  # Redis could not be asked and the setting fails closed


ALLOWED = Decision(True)

# KEYS: the developer's and the organization's buckets; ARGV: their limits (0: none). Returns {allowed, wait, which}.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[3])
local tokens = {}
local wait, which = 0, 0
for i = 1, 2 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local have, ts = tonumber(v[1]), tonumber(v[2])
    if have == nil or ts == nil then have, ts = limit, now end
    local rate = limit / window
    have = math.min(limit, have + math.max(0, now - ts) * rate)
    tokens[i] = have
    if have < 1 then
      local w = (1 - have) / rate
      if w > wait then wait, which = w, i end
    end
  end
end
if which > 0 then return {0, tostring(wait), which} end
for i = 1, 2 do
  if tokens[i] ~= nil then
    redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i] - 1), 'ts', tostring(now))
    redis.call('EXPIRE', KEYS[i], math.ceil(window * 2))
  end
end
return {1, '0', 0}
"""


def fail_open() -> bool:
    return bool(getattr(settings, "HOTCROSS_RATE_LIMIT_FAIL_OPEN", True))


def check(
    developer_id: uuid.UUID,
    organization_id: uuid.UUID,
    per_developer: int | None,
    per_organization: int | None,
) -> Decision:
    """Take one call from the developer's and the organization's buckets (limits in calls per minute; None: none)."""
    if not per_developer and not per_organization:
        return ALLOWED
    decision = _backend().take(
        f"{KEY_PREFIX}d:{developer_id}", f"{KEY_PREFIX}o:{organization_id}", per_developer or 0, per_organization or 0
    )
    metrics.RATE_LIMIT_CHECKS.labels("ok" if decision.allowed else "refused").inc()
    return decision


async def acheck(
    developer_id: uuid.UUID,
    organization_id: uuid.UUID,
    per_developer: int | None,
    per_organization: int | None,
) -> Decision:
    """`check` for async code: with Redis the event loop serves other requests while the script runs."""
    if not per_developer and not per_organization:
        return ALLOWED
    backend = _backend()
    keys = (f"{KEY_PREFIX}d:{developer_id}", f"{KEY_PREFIX}o:{organization_id}")
    if isinstance(backend, RedisBuckets):
        decision = await backend.atake(*keys, per_developer or 0, per_organization or 0)
    else:
        decision = backend.take(*keys, per_developer or 0, per_organization or 0)
    metrics.RATE_LIMIT_CHECKS.labels("ok" if decision.allowed else "refused").inc()
    return decision


# --- in Redis ----------------------------------------------------------------------------------------------------


class RedisBuckets:
    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache
        self._script: Any = None
        self._down_until = 0.0
        self._lock = threading.Lock()
        # redis-py's asyncio client on the same server and timeouts as the cache's, one per event loop.
        self._async_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    async def atake(
        self, developer_key: str, organization_key: str, per_developer: int, per_organization: int
    ) -> Decision:
        if time.monotonic() < self._down_until:
            return _unavailable()
        try:
            loop = asyncio.get_running_loop()
            script = self._async_scripts.get(loop)
            if script is None:
                options = getattr(self._cache, "_options", {}) or {}
                client = redis.asyncio.Redis.from_url(
                    self._cache._servers[0],
                    **{name: options[name] for name in _ASYNC_OPTIONS if name in options},
                )
                script = self._async_scripts[loop] = client.register_script(_LUA)
            answer = await script(
                keys=[developer_key, organization_key], args=[per_developer, per_organization, WINDOW_SECONDS]
            )
        except Exception as exc:  # redis-py's errors, and OSError underneath: never a failed call
            return self._failed(exc)
        return _decision(answer)

    def _failed(self, exc: Exception) -> Decision:
        now = time.monotonic()
        with self._lock:
            first = now >= self._down_until  # calls in flight when Redis went away fail together: one line
            self._down_until = now + REDIS_RETRY_SECONDS
        if first:
            logger.warning("rate limits: Redis unreachable (%s); failing %s", exc.__class__.__name__, _mode())
        metrics.RATE_LIMIT_CHECKS.labels("redis_unavailable").inc()
        return _unavailable()

    def take(self, developer_key: str, organization_key: str, per_developer: int, per_organization: int) -> Decision:
        if time.monotonic() < self._down_until:
            return _unavailable()
        try:
            if self._script is None:
                self._script = self._cache._cache.get_client(None, write=True).register_script(_LUA)
            answer = self._script(
                keys=[developer_key, organization_key], args=[per_developer, per_organization, WINDOW_SECONDS]
            )
        except Exception as exc:  # redis-py's errors, and OSError underneath: never a failed call
            return self._failed(exc)
        return _decision(answer)


_ASYNC_OPTIONS = ("socket_timeout", "socket_connect_timeout", "password", "username")


def _decision(answer: Any) -> Decision:
    allowed, wait, which = answer
    if int(allowed):
        return ALLOWED
    return Decision(False, float(wait), DEVELOPER if int(which) == 1 else ORGANIZATION)


def _mode() -> str:
    return "open" if fail_open() else "closed"


def _unavailable() -> Decision:
    if fail_open():
        return ALLOWED
    return Decision(False, REDIS_RETRY_SECONDS, "", unavailable=True)


# --- in this process -----------------------------------------------------------------------------------------------


class LocalBuckets:
    """The same buckets in this process's memory (no Redis): the limit holds per process."""

    MAX_BUCKETS = 100_000

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)
        self._lock = threading.Lock()

    def take(self, developer_key: str, organization_key: str, per_developer: int, per_organization: int) -> Decision:
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > self.MAX_BUCKETS:
                self._buckets.clear()
            found = []
            wait, which = 0.0, ""
            for key, limit, scope in (
                (developer_key, per_developer, DEVELOPER),
                (organization_key, per_organization, ORGANIZATION),
            ):
                if limit <= 0:
                    continue
                rate = limit / WINDOW_SECONDS
                tokens, at = self._buckets.get(key, (float(limit), now))
                tokens = min(float(limit), tokens + max(0.0, now - at) * rate)
                found.append((key, tokens))
                if tokens < 1 and (1 - tokens) / rate > wait:
                    wait, which = (1 - tokens) / rate, scope
            if which:
                return Decision(False, wait, which)
            for key, tokens in found:
                self._buckets[key] = (tokens - 1, now)
        return ALLOWED


_backends: dict[str, Any] = {}


def _backend() -> RedisBuckets | LocalBuckets:
    cache = caches["default"]
    name = "redis" if isinstance(cache, RedisCache) else "local"
    backend = _backends.get(name)
    if backend is None:
        backend = _backends[name] = RedisBuckets(cache) if name == "redis" else LocalBuckets()
    return backend


def reset() -> None:
    """Forget the backends (tests, and settings changes)."""
    _backends.clear()


# --- monthly caps on the hot path ------------------------------------------------------------------------------------

MONTHLY_REFRESH_SECONDS = 1.0


class MonthlyCalls:
    """Each organization's calls this month, per process: read from the rollups at most once a second per
    organization, plus the calls this process let through since (`count`). How exact: a worker misses the calls other
    workers served in the last second and those still in the metering buffer (≤ `HOTCROSS_MCP_METERING_FLUSH_SECONDS`),
    so with W workers a cap can be passed by at most about W × (calls per second) — small against a monthly cap."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[float, int]] = {}  # organization id → (read at, calls)
        self._lock = threading.Lock()

    def fresh(self, organization_id: Any) -> int | None:
        entry = self._entries.get(organization_id)
        if entry is None or time.monotonic() - entry[0] > MONTHLY_REFRESH_SECONDS:
            return None
        return entry[1]

    def put(self, organization_id: Any, calls: int) -> int:
        with self._lock:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[organization_id] = (time.monotonic(), calls)
        return calls

    def count(self, organization_id: Any) -> None:
        with self._lock:
            entry = self._entries.get(organization_id)
            if entry is not None:
                self._entries[organization_id] = (entry[0], entry[1] + 1)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


monthly_calls = MonthlyCalls()


async def amonthly_calls(organization_id: Any) -> int:
    """The organization's calls this month as this process knows them (≤ 1 s old); may read the rollups on the
    bookkeeping threads (`DatabaseUnavailable` when the database cannot be reached)."""
    from accounts.plans import calls_this_month
    from hotcross.db import BOOKKEEPING, run_in_pool

    known = monthly_calls.fresh(organization_id)
    if known is not None:
        return known
    return monthly_calls.put(organization_id, await run_in_pool(BOOKKEEPING, calls_this_month, organization_id))
