"""Rate limits of a plan (issue 16): calls per minute per developer and per organization, as token buckets.

A bucket holds at most `limit` tokens and gains `limit / 60` a second; a call takes one token from the developer's
bucket and one from the organization's, both or neither. With no token left the call is refused, and `retry_after`
is how long until the fullest-needed bucket has one again (what `Retry-After` says).

Where the buckets live:

- With `REDIS_URL` (Django's `RedisCache`): in Redis, through the raw client behind Django's cache, updated by one
  Lua script of `accounts.rate_bucket_scripts` (atomic across workers and machines; Redis's clock).
- Without it (`make run`): in this process's memory. The limit then holds **per process**: with N workers a developer
  may make up to N × the limit.
- Redis unreachable: `HOTCROSS_RATE_LIMIT_FAIL_OPEN` (default true) lets calls through; false refuses them with
  `rate_limited` (retry after `REDIS_RETRY_SECONDS`). Either way never an error; after a failure Redis is not asked
  again for `REDIS_RETRY_SECONDS`, so an outage costs one failed attempt a second per process, not one per call.

Leases (the async check, `acheck`, which the bridge awaits on every `tools/call`): a Redis round trip through
redis-py's asyncio client costs ~240 µs of CPU, a fifth of the bridge's whole call, so a process may take more than
one token in one round trip (only from the **upper half** of each bucket) and spend them locally for a lease period,
`L` (`HOTCROSS_RATE_LIMIT_LEASE_SECONDS`, 0.25 s by default; 0 turns leases off: every call is decided in Redis):

- `want` is this process's own admitted calls for the (developer, organization) pair in the previous
  period of `L`, in [1, `MAX_LEASE`]: a cold burst asks for 1 token at a time (exact), only sustained local
  demand with a bucket more than half full gets a bigger lease.
- The tokens beyond the call's own are this event loop's lease for the pair, spent without Redis until
  `L` after the take. At expiry the unused ones go back: piggybacked on the next take for the pair, or
  by a timer at expiry (fire and forget). A change of the plan's limits drops the lease (its tokens go back).
- While one take for more than one token is in flight for a pair, the loop's other calls for it wait for its lease
  rather than each asking Redis.

How much the script grants, and what holds with leases: `accounts.rate_bucket_scripts`.

The sync `check` (tests, sync callers) always takes exactly one token in Redis; `LocalBuckets` have no leases.
`check_many` takes n tokens at once, all or none (usage reported through `POST /api/v1/usage`: a batch of calls
already served elsewhere spends the same buckets as calls on `/mcp`).
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
from django.core.signals import setting_changed
from django.dispatch import receiver

from accounts import rate_bucket_scripts as scripts
from infra import metrics

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0  # limits are per minute
REDIS_RETRY_SECONDS = 1.0
KEY_PREFIX = "hotcross:rl:"
DEFAULT_LEASE_SECONDS = 0.25  # HOTCROSS_RATE_LIMIT_LEASE_SECONDS unset (`lease_seconds`)
MAX_LEASE = 100  # tokens one take may ask for
MAX_LEASED_PAIRS = 100_000  # (developer, organization) pairs with a lease per process, before it starts afresh
DEVELOPER = "developer"
ORGANIZATION = "organization"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until a call would be allowed
    scope: str = ""  # DEVELOPER or ORGANIZATION: whose limit refused; "" when allowed (or Redis down, fail closed)
    unavailable: bool = False  # Redis could not be asked and the setting fails closed


ALLOWED = Decision(True)


def fail_open() -> bool:
    return bool(getattr(settings, "HOTCROSS_RATE_LIMIT_FAIL_OPEN", True))


def lease_seconds() -> float:
    """The lease period `L` (HOTCROSS_RATE_LIMIT_LEASE_SECONDS): how long a process may spend leased tokens before
    the unused ones go back, and the period whose local demand sizes the next lease. 0: no leases."""
    return float(getattr(settings, "HOTCROSS_RATE_LIMIT_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


def bucket_keys(developer_id: uuid.UUID, organization_id: uuid.UUID) -> tuple[str, str]:
    """The cache keys of a developer's bucket and of their organization's."""
    return f"{KEY_PREFIX}d:{developer_id}", f"{KEY_PREFIX}o:{organization_id}"


def check(
    developer_id: uuid.UUID,
    organization_id: uuid.UUID,
    per_developer: int | None,
    per_organization: int | None,
) -> Decision:
    """Take one call from the developer's and the organization's buckets (limits in calls per minute; None: none)."""
    if not per_developer and not per_organization:
        return ALLOWED
    decision = _backend().take(*bucket_keys(developer_id, organization_id), per_developer or 0, per_organization or 0)
    _count("ok" if decision.allowed else "refused")
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
    keys = bucket_keys(developer_id, organization_id)
    if isinstance(backend, RedisBuckets):
        decision = await backend.atake(*keys, per_developer or 0, per_organization or 0)
    else:
        decision = backend.take(*keys, per_developer or 0, per_organization or 0)
    _count("ok" if decision.allowed else "refused")
    return decision


def check_many(
    developer_id: uuid.UUID,
    organization_id: uuid.UUID,
    per_developer: int | None,
    per_organization: int | None,
    n: int,
) -> Decision:
    """Take `n` calls from the developer's and the organization's buckets at once, all or none (the buckets of
    `check`). Refused, with the wait until both hold `n`, when either holds fewer; a caller must not ask for more than
    a limit (such a batch never fits: `retry_after` would be a lie). Redis down: the `check` rule."""
    if n < 1 or (not per_developer and not per_organization):
        return ALLOWED
    decision = _backend().take(
        *bucket_keys(developer_id, organization_id), per_developer or 0, per_organization or 0, n=n
    )
    _count("ok" if decision.allowed else "refused")
    return decision


# --- in Redis ----------------------------------------------------------------------------------------------------


class _Lease:
    """Tokens this process took in Redis for one (developer, organization) pair and spends locally until `expires`,
    and the pair's local demand: admitted calls in the current and the previous period (`period`: `lease_seconds()` when
    the pair's lease state was made)."""

    __slots__ = (
        "count",
        "expires",
        "generation",
        "last_admitted",
        "limits",
        "pending",
        "period",
        "period_start",
        "previous",
        "tokens",
    )

    def __init__(self, limits: tuple[int, int], now: float, period: float) -> None:
        self.limits = limits
        self.period = period
        self.tokens = 0
        self.expires = 0.0
        self.generation = 0
        self.period_start = now
        self.count = 0
        self.previous = 0
        self.last_admitted = now
        self.pending: asyncio.Future[None] | None = None  # a take asking for more than 1, in flight

    def _roll(self, now: float) -> None:
        elapsed = now - self.period_start
        if elapsed >= self.period:
            self.previous = self.count if elapsed < 2 * self.period else 0
            self.count = 0
            self.period_start = now

    def admitted(self, now: float) -> None:
        self._roll(now)
        self.count += 1
        self.last_admitted = now

    def want(self, now: float) -> int:
        """Tokens to ask Redis for: this process's admitted calls for the pair in the previous period, in [1, MAX]."""
        self._roll(now)
        return max(1, min(MAX_LEASE, self.previous))

    def live(self, now: float) -> bool:
        return self.tokens > 0 and now < self.expires

    def unused(self) -> int:
        """Hand back the tokens left (the lease is over)."""
        tokens, self.tokens = self.tokens, 0
        self.generation += 1  # its timer, if any, has nothing left to do
        return tokens


class RedisBuckets:
    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache
        self._scripts: tuple[Any, Any] | None = None  # the sync client's TAKE and TAKE_MANY
        self._down_until = 0.0
        self._lock = threading.Lock()
        # redis-py's asyncio client on the same server and timeouts as the cache's, one per event loop.
        self._async_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        # Leases per event loop: (developer key, organization key) → _Lease.
        self._leases: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Lease]] = (
            weakref.WeakKeyDictionary()
        )
        self._give_backs: set[asyncio.Task[None]] = set()  # fire-and-forget give-backs, referenced until done

    def _async_script(self, loop: asyncio.AbstractEventLoop) -> Any:
        script = self._async_scripts.get(loop)
        if script is None:
            options = getattr(self._cache, "_options", {}) or {}
            client = redis.asyncio.Redis.from_url(
                self._cache._servers[0],
                **{name: options[name] for name in _ASYNC_OPTIONS if name in options},
            )
            script = self._async_scripts[loop] = client.register_script(scripts.TAKE)
        return script

    async def atake(
        self, developer_key: str, organization_key: str, per_developer: int, per_organization: int
    ) -> Decision:
        """One call from both buckets: from this process's live lease for the pair if it has a token left (no Redis),
        else from Redis, asking for as many tokens as the pair's recent local demand (see the module docstring)."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        leases = self._leases.get(loop)
        if leases is None:
            leases = self._leases[loop] = {}
        pair = (developer_key, organization_key)
        lease = leases.get(pair)
        give_back = 0
        if lease is not None and lease.limits != (per_developer, per_organization):
            give_back = lease.unused()  # the plan's limits changed: drop the lease, give its tokens back
            lease = None
        if lease is None:
            if len(leases) >= MAX_LEASED_PAIRS:
                self._forget(loop, leases)
            lease = leases[pair] = _Lease((per_developer, per_organization), now, lease_seconds())
        if not lease.live(now) and lease.pending is not None:
            await asyncio.shield(lease.pending)  # a take for more than one token is in flight: wait for its lease
            now = time.monotonic()
        if lease.live(now):
            lease.tokens -= 1
            lease.admitted(now)
            return ALLOWED
        if lease.tokens:  # expired with tokens left: piggyback them on this take
            give_back += lease.unused()
        if now < self._down_until:
            return _unavailable()
        want = lease.want(now)
        pending = None
        if want > 1 and lease.pending is None:
            pending = lease.pending = loop.create_future()
        try:
            answer = await self._async_script(loop)(
                keys=[developer_key, organization_key],
                args=[per_developer, per_organization, WINDOW_SECONDS, want, give_back],
            )
        except Exception as exc:  # redis-py's errors, and OSError underneath: never a failed call
            return self._failed(exc)
        finally:
            if pending is not None:
                lease.pending = None
                pending.set_result(None)  # waiters resume after this returns, with the lease filled in below
        decision = _decision(answer)
        if decision.allowed:
            now = time.monotonic()
            lease.admitted(now)
            granted = int(answer[0])
            if granted > 1 and leases.get(pair) is lease:
                lease.tokens += granted - 1
                lease.expires = now + lease.period
                lease.generation += 1
                loop.call_later(lease.period, self._expired, loop, pair, lease, lease.generation)
        return decision

    def _expired(self, loop: asyncio.AbstractEventLoop, pair: tuple[str, str], lease: _Lease, generation: int) -> None:
        """At a lease's expiry: give its unused tokens back (unless a later take already did, or renewed it)."""
        if lease.generation != generation:
            return
        leases = self._leases.get(loop)
        tokens = lease.unused()
        if leases is not None and leases.get(pair) is lease and time.monotonic() - lease.last_admitted >= lease.period:
            del leases[pair]  # idle: forget the pair
        if tokens:
            self._give_back(loop, pair, lease.limits, tokens)

    def _give_back(
        self, loop: asyncio.AbstractEventLoop, pair: tuple[str, str], limits: tuple[int, int], n: int
    ) -> None:
        if time.monotonic() < self._down_until:
            return  # Redis is down: the tokens are lost (fewer calls, never more)
        script = self._async_script(loop)

        async def send() -> None:
            try:
                await script(keys=list(pair), args=[*limits, WINDOW_SECONDS, 0, n])
            except Exception as exc:  # never an error for anyone: the tokens are lost
                logger.debug("rate limits: give-back failed (%s)", exc.__class__.__name__)

        task = loop.create_task(send())
        self._give_backs.add(task)
        task.add_done_callback(self._give_backs.discard)

    def _forget(self, loop: asyncio.AbstractEventLoop, leases: dict[tuple[str, str], _Lease]) -> None:
        """Too many pairs: give every lease's tokens back and start afresh."""
        for pair, lease in list(leases.items()):
            tokens = lease.unused()
            if tokens:
                self._give_back(loop, pair, lease.limits, tokens)
        leases.clear()

    def _failed(self, exc: Exception) -> Decision:
        now = time.monotonic()
        with self._lock:
            first = now >= self._down_until  # calls in flight when Redis went away fail together: one line
            self._down_until = now + REDIS_RETRY_SECONDS
        if first:
            logger.warning("rate limits: Redis unreachable (%s); failing %s", exc.__class__.__name__, _mode())
        _count("redis_unavailable")
        return _unavailable()

    def take(
        self, developer_key: str, organization_key: str, per_developer: int, per_organization: int, *, n: int = 1
    ) -> Decision:
        """One call (or `n`, all or none) from both buckets, always in Redis (no lease): the sync path."""
        if time.monotonic() < self._down_until:
            return _unavailable()
        try:
            if self._scripts is None:
                client = self._cache._cache.get_client(None, write=True)
                self._scripts = client.register_script(scripts.TAKE), client.register_script(scripts.TAKE_MANY)
            keys, args = [developer_key, organization_key], [per_developer, per_organization, WINDOW_SECONDS]
            if n == 1:
                answer = self._scripts[0](keys=keys, args=[*args, 1, 0])
            else:
                answer = self._scripts[1](keys=keys, args=[*args, n])
        except Exception as exc:  # redis-py's errors, and OSError underneath: never a failed call
            return self._failed(exc)
        return _decision(answer)


_ASYNC_OPTIONS = ("socket_timeout", "socket_connect_timeout", "password", "username")


def _decision(answer: Any) -> Decision:
    granted, wait, which = answer
    if int(granted):
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

    def take(
        self, developer_key: str, organization_key: str, per_developer: int, per_organization: int, *, n: int = 1
    ) -> Decision:
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
                if tokens < n and (n - tokens) / rate > wait:
                    wait, which = (n - tokens) / rate, scope
            if which:
                return Decision(False, wait, which)
            for key, tokens in found:
                self._buckets[key] = (tokens - n, now)
        return ALLOWED


_backends: dict[str, Any] = {}
_current: list[RedisBuckets | LocalBuckets] = []  # the backend of the current CACHES setting, once looked up


def _backend() -> RedisBuckets | LocalBuckets:
    """The buckets of `caches["default"]`, looked up once (every `tools/call` asks; `caches[...]` is a lookup in
    asgiref's context-local storage) and again after `reset()` or a change of `CACHES`."""
    if _current:
        return _current[0]
    cache = caches["default"]
    name = "redis" if isinstance(cache, RedisCache) else "local"
    backend = _backends.get(name)
    if backend is None:
        backend = _backends[name] = RedisBuckets(cache) if name == "redis" else LocalBuckets()
    _current[:] = [backend]
    return backend


def reset() -> None:
    """Forget the backends (tests, and settings changes)."""
    _backends.clear()
    _current.clear()


@receiver(setting_changed)
def _caches_changed(*, setting: str, **_kwargs: Any) -> None:
    if setting == "CACHES":
        _current.clear()


def _count(outcome: str) -> None:
    """`hotcross_rate_limit_checks_total{outcome}` + 1 (the labelled series looked up once)."""
    series = _series.get(outcome)
    if series is None:
        series = _series[outcome] = metrics.RATE_LIMIT_CHECKS.labels(outcome)
    series.inc()


_series: dict[str, Any] = {}
