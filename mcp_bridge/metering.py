"""Metering: every `tools/call` the bridge serves is recorded as one usage event, ok or not.

A call is served when one of the server's tools was called and the client gets an answer: a result, a result
flagged `isError` (the tool failed or its arguments were wrong), or a JSON-RPC error raised inside the call. Calls
to a tool name the server does not have, and calls abandoned by the client before an answer, are not metered.

Events are buffered in the process and written in one INSERT every `HOTCROSS_MCP_METERING_FLUSH_SECONDS` (0.05 s by
default): a database round trip per call would cost more than a small tool call itself. What that means:

- Every answered call has its event in the buffer before the answer leaves, so the number of events equals the
  number of calls served. It is in the database a flush interval later.
- When the database cannot be reached, events stay buffered and the writes are retried; nothing is lost. Once
  `MAX_BUFFERED` events wait, the bridge refuses further calls (it does not serve calls it cannot meter).
- A graceful stop (uvicorn's shutdown, the end of a stdio session) writes what is buffered; what the database does
  not take within `SHUTDOWN_SECONDS` goes to the spool file (`HOTCROSS_USAGE_SPOOL`, see
  `accounts.services.usage_spool`), which the next start writes to the database (or `manage.py usage_spool load`).
  Only a hard kill of the process loses the events of its last flush interval.
- Each event is added to the usage rollups in the same statement (`accounts.services.usage`), and each flush also
  writes the key checks' last-used notes (`accounts.last_used`: `api_key_last_used_at`, at most once a minute per
  developer), so that a key check is one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import anyio
from django.conf import settings
from django.utils import timezone
from mcp.server.context import ServerRequestContext
from mcp_types.methods import is_input_required

from accounts import last_used
from accounts.credentials import Principal
from accounts.last_used import arecord_last_used
from accounts.services import arecord_usages
from accounts.services.usage_spool import load_spooled_usages, spill_usages
from infra import metrics
from infra.db import BOOKKEEPING, DatabaseUnavailable, aclose, async_available, run_in_pool
from mcp_bridge.auth import current_caller, unavailable_error

logger = logging.getLogger(__name__)

MAX_BUFFERED = 100_000  # events waiting for the database, per process (a few tens of MB at most)
MAX_BATCH = 1_000  # events per INSERT
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # back-off while the database cannot be reached
SHUTDOWN_SECONDS = 3.0  # how long a stop keeps trying to write what is buffered before it spools it
# A stdio client waits about 2 s after closing the session before it terminates the server (the mcp SDK's does).
STDIO_SHUTDOWN_SECONDS = 1.0


class MeteringFull(DatabaseUnavailable):
    """Too many events wait for the database: the call is refused rather than served unmetered."""


class MeteringMiddleware:
    """MCP server middleware; runs inside `CallerMiddleware`, which has bound the caller."""

    def __init__(self, tool_names: Collection[str]) -> None:
        self._tool_names = frozenset(tool_names)
        # The key check's last-used notes go with this server's flushes (not the background writer's thread).
        last_used.background = False

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Callable[..., Awaitable[Any]]) -> Any:
        if last_used.pending():
            _buffer().wake()  # a key check of this request noted a last use: the next flush writes it
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        params = ctx.params if isinstance(ctx.params, dict) else {}
        name = params.get("name")
        if not isinstance(name, str) or name not in self._tool_names:
            # Not one of our tools (or not a name at all, which `RequestChecks` refuses): not served, not metered.
            return await call_next(ctx)
        return await metered(name, lambda: call_next(ctx))


async def metered(tool_name: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Serve `call()` as one metered `tools/call` of `tool_name` by the current caller: the middleware's rules (refused
    when the buffer is full; an event ok or not, with its duration, for a result, an `isError` result or an error
    raised), for calls the middleware cannot recognise by name (the gateway's forwarded tools)."""
    caller = current_caller()
    buffer = _buffer()
    if buffer.full:
        logger.error("usage buffer full (%s events wait for the database): call refused", len(buffer))
        raise unavailable_error(MeteringFull())
    started = time.perf_counter()
    try:
        result = await call()
    except Exception:
        buffer.add(_counted(_event(caller, tool_name, ok=False, started=started)))
        raise
    if is_input_required(result):
        return result  # a round trip of the call (2026-07-28's `input_required`): usage once, when it completes
    is_error = result.get("isError") is True if isinstance(result, dict) else bool(getattr(result, "is_error", False))
    buffer.add(_counted(_event(caller, tool_name, ok=not is_error, started=started)))
    return result


def _counted(event: dict[str, Any]) -> dict[str, Any]:
    """A served call, for `/metrics`: by tool and outcome, and its time (the labelled series looked up once)."""
    key = (event["tool_name"], event["ok"])
    series = _series.get(key)
    if series is None:
        series = _series[key] = (
            metrics.TOOL_CALLS.labels(event["tool_name"], "ok" if event["ok"] else "error"),
            metrics.TOOL_CALL_SECONDS.labels(event["tool_name"]),
        )
    series[0].inc()
    series[1].observe(event["duration_ms"] / 1000)
    return event


_series: dict[tuple[str, bool], tuple[Any, Any]] = {}  # the server's own tool names only: a few entries


async def flush(timeout: float = 2.0) -> None:
    """Write every buffered event of this event loop now, for a reader that must see the latest calls.

    Raises `DatabaseUnavailable` when the database does not take them within `timeout` seconds (they stay buffered).
    """
    await _buffer().flush(deadline=time.monotonic() + timeout)


def _event(caller: Principal, tool_name: str, *, ok: bool, started: float) -> dict[str, Any]:
    return {
        "developer_id": caller.developer_id,
        "organization_id": caller.organization_id,
        "tool_name": tool_name,
        "ok": ok,
        "duration_ms": max(0, round((time.perf_counter() - started) * 1000)),
        "created_at": timezone.now(),
    }


class _UsageBuffer:
    """The events of one event loop waiting to be written, and the task that writes them."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._taken = 0  # events ever taken out of the buffer (written, or dropped as unwritable)
        self._flusher: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._events)

    @property
    def full(self) -> bool:
        return len(self._events) >= MAX_BUFFERED

    def take_all(self) -> list[dict[str, Any]]:
        """Empty the buffer (for the spool), once no write is running."""
        events, self._events = self._events, []
        self._taken += len(events)
        metrics.METERING_BUFFERED.dec(len(events))
        return events

    def add(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        metrics.METERING_BUFFERED.inc()
        self.wake()

    def wake(self) -> None:
        """Make sure a flush comes (events or last-used notes wait)."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def flush(self, *, deadline: float | None = None) -> None:
        """Write the events buffered now (those added meanwhile wait for the next flush); while the database cannot
        be reached, retry (until `deadline`, if given)."""
        target = self._taken + len(self._events)
        failures = 0
        notes_written = False
        while self._taken < target or not notes_written:
            try:
                if self._taken < target:
                    await self._write_some()
                else:
                    await _write_last_used()
                    notes_written = True
                failures = 0
            except DatabaseUnavailable:
                wait = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                if failures == 0:
                    logger.warning("usage events wait for the database: %s buffered", len(self._events))
                failures += 1
                if deadline is not None and time.monotonic() + wait > deadline:
                    raise
                await asyncio.sleep(wait)

    async def _flush_periodically(self) -> None:
        # One INSERT per interval with what arrived meanwhile. Writing on as long as events keep coming would, under
        # steady load, turn into an INSERT for every call or two (each arriving while the previous INSERT runs).
        while self._events or last_used.pending():
            await asyncio.sleep(_flush_seconds())
            await self.flush()

    async def _write_some(self) -> None:
        async with self._writing:
            batch = self._events[:MAX_BATCH]
            if not batch:
                return
            with metrics.METERING_FLUSH_SECONDS.time():
                outcomes = await arecord_usages(batch)
            del self._events[: len(batch)]
            self._taken += len(batch)
            metrics.METERING_BUFFERED.dec(len(batch))
        for event, outcome in zip(batch, outcomes, strict=True):
            if outcome is not None:
                # Not the database's fault (the developer was deleted meanwhile): retrying cannot help.
                logger.error(
                    "usage event dropped developer=%s tool=%s: %s", event["developer_id"], event["tool_name"], outcome
                )


async def _write_last_used() -> None:
    """The key checks' last-used notes (`accounts.last_used`), in one statement; kept for the next flush when the
    database cannot be reached."""
    notes = last_used.take()
    if not notes:
        return
    try:
        await arecord_last_used(notes)
    except DatabaseUnavailable:
        last_used.give_back(notes)
        raise


def _flush_seconds() -> float:
    return max(0.0, min(float(getattr(settings, "HOTCROSS_MCP_METERING_FLUSH_SECONDS", 0.05)), 5.0))


_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _UsageBuffer] = weakref.WeakKeyDictionary()


_last: tuple[weakref.ref[asyncio.AbstractEventLoop], _UsageBuffer] | None = None


def _buffer() -> _UsageBuffer:
    """The buffer of the running event loop (a server has one; tests may run several, one after the other)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0]() is loop:  # the usual case, without WeakKeyDictionary's new weakref per lookup
        return last[1]
    buffer = _buffers.get(loop)
    if buffer is None:
        buffer = _buffers[loop] = _UsageBuffer()
    _last = (weakref.ref(loop), buffer)
    return buffer


async def flush_at_stop(seconds: float = SHUTDOWN_SECONDS) -> None:
    """Write what is buffered before the process stops, for at most `seconds`; spool what could not be."""
    buffer = _buffer()
    with anyio.move_on_after(seconds):
        with contextlib.suppress(DatabaseUnavailable):
            while len(buffer) or last_used.pending():  # calls still finishing while the server stops add theirs
                await buffer.flush()  # retries while the database cannot be reached, until the time is up
    if len(buffer):
        async with buffer._writing:
            events = buffer.take_all()
        try:
            path = spill_usages(events)
        except OSError as exc:
            logger.error("stopping with %s usage events that could not be written or spooled: %s", len(events), exc)
        else:
            logger.warning("database unreachable: %s usage events spooled to %s for the next start", len(events), path)
    if async_available():
        await aclose()
    metrics.worker_stopped()


async def load_spool_at_start() -> None:
    """Write the usage events a previous stop spooled (see `flush_at_stop`); when the database cannot be reached they
    stay spooled for the next start or `manage.py usage_spool load`."""
    try:
        await run_in_pool(BOOKKEEPING, load_spooled_usages)
    except DatabaseUnavailable:
        logger.warning("usage spool not loaded: the database cannot be reached (manage.py usage_spool load)")
    except OSError as exc:
        logger.error("usage spool not loaded: %s", exc)
