"""`api_key_last_used_at` written behind the key check: by the MCP bridge's metering flush, or by the background
writer in a process without one; at most once a minute per developer; never by the check itself."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import check_cache, last_used
from accounts.authentication import authenticate_key
from accounts.models import Developer, UsageEvent
from tests.factories import DeveloperFactory
from tests.support.mcp import http_client, run_uvicorn
from tests.support.metrics import metering_flushed

pytestmark = pytest.mark.django_db(transaction=True)

# `mcp_http` is the session's uvicorn (tests/scale/conftest.py): each test brings its own developers.


def last_used_of(developer) -> datetime.datetime | None:
    return Developer.objects.values_list("api_key_last_used_at", flat=True).get(pk=developer.pk)


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_bridge_writes_last_used_with_its_flush_even_without_a_tool_call(mcp_http):
    """A session that only lists tools still marks the key as used; the key check itself wrote nothing."""
    idle = DeveloperFactory(api_key_last_used_at=None)
    busy = DeveloperFactory(api_key_last_used_at=None)

    async def scenario():
        async with http_client(mcp_http.url, idle.plain_key) as client:
            await client.list_tools()
        async with http_client(mcp_http.url, busy.plain_key) as client:
            await client.call_tool("echo", {"text": "hi"})

    before = timezone.now()
    anyio.run(scenario)
    assert wait_for(lambda: last_used_of(idle) is not None and last_used_of(busy) is not None)
    metering_flushed(mcp_http, DeveloperFactory())  # all it metered is written (the server goes on for other tests)
    assert before <= last_used_of(idle) <= timezone.now()
    assert UsageEvent.objects.filter(developer=busy).count() == 1


def test_two_workers_write_it_at_most_once_a_minute(tmp_path, mcp_http):
    developer = DeveloperFactory(api_key_last_used_at=None)
    two = mcp_http  # remembers key checks (HOTCROSS_KEY_CACHE_SECONDS: at most a second)
    with run_uvicorn(tmp_path, HOTCROSS_KEY_CACHE_SECONDS="0") as one:

        async def calls(server, n):
            async with http_client(server.url, developer.plain_key) as client:
                for _ in range(n):
                    await client.list_tools()

        anyio.run(calls, one, 3)
        assert wait_for(lambda: last_used_of(developer) is not None)
        first = last_used_of(developer)
        anyio.run(calls, two, 3)
        anyio.run(calls, one, 3)
        metering_flushed(one, developer)  # both servers' flushes have run since
        metering_flushed(two, developer)
        assert last_used_of(developer) == first  # within the minute: not written again

        Developer.objects.filter(pk=developer.pk).update(api_key_last_used_at=first - datetime.timedelta(seconds=61))
        # Once the second server's memory of the key (≤ 1 s) has expired, its next check reads the column: written.
        assert wait_for(lambda: anyio.run(calls, two, 1) or last_used_of(developer) > first)


@contextlib.contextmanager
def writer_waits() -> Iterator[tuple[threading.Event, list[float]]]:
    """The background writer's wait before it writes (`last_used.WRITE_AFTER_SECONDS`, 1 s; no setting) lasts until
    the test sets the event it yields (then it is 10 ms), instead of a real second; the waits asked for are listed."""
    real_sleep = time.sleep
    release = threading.Event()
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        if threading.current_thread().name != "hotcross-last-used":
            return real_sleep(seconds)
        asked.append(seconds)
        release.wait(timeout=60)
        real_sleep(0.01)

    time.sleep = sleep
    try:
        yield release, asked
    finally:
        release.set()
        time.sleep = real_sleep


def test_without_a_bridge_the_background_writer_writes_it_soon_after_the_check():
    last_used.background = True
    developer = DeveloperFactory(api_key_last_used_at=None)
    with writer_waits() as (release, asked):
        with CaptureQueriesContext(connection) as queries:
            authenticate_key(developer.plain_key)
        assert len(queries) == 1 and queries[0]["sql"].lstrip().upper().startswith("SELECT")
        assert wait_for(lambda: asked == [last_used.WRITE_AFTER_SECONDS], seconds=5)  # the writer waits its second
        assert last_used_of(developer) is None
        release.set()  # its second is over
        assert wait_for(lambda: last_used_of(developer) is not None, seconds=5)

        # Notes made while the writer is busy are written too (it runs while notes wait).
        other = DeveloperFactory(api_key_last_used_at=None)
        check_cache.clear()
        authenticate_key(other.plain_key)
        assert wait_for(lambda: last_used_of(other) is not None, seconds=5)


def test_a_note_that_cannot_be_written_is_kept_for_the_next_write():
    developer = DeveloperFactory(api_key_last_used_at=None)
    authenticate_key(developer.plain_key)
    notes = last_used.take()
    assert list(notes) == [developer.id]
    last_used.give_back(notes)  # what a failed write does
    assert last_used.write_pending() == 1
    assert last_used_of(developer) == notes[developer.id]
    assert last_used.write_pending() == 0
