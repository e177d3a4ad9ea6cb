"""The project's metrics in tests: Prometheus samples (`sample`), and a running server's usage metering written to
the database (`metering_flushed`)."""

from __future__ import annotations

import re
import time
from typing import Any

TOKEN = "metrics-test-token-0123456789"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))) == wanted:
            return float(match[3])
    return 0.0


def metering_flushed(server: Any, developer: Any, timeout: float = 10.0) -> None:
    """Everything `server` (a bridge: uvicorn serving the project, one worker) metered before this, and every key-check
    last-used note it made, is in the database — what a graceful stop gives, on a server that keeps running (a shared
    one). How: a flush writes the usage events buffered when it starts, in order, then the notes, and the next flush
    starts once it has ended; so `developer` calls `echo` twice, each time waiting until its usage event is in the
    database. Those two events are `developer`'s: give a developer of its own, or count them in."""
    import anyio

    from accounts.models import UsageEvent
    from tests.support.mcp import http_client

    async def echo() -> None:
        async with http_client(server.url, developer.plain_key) as client:
            await client.call_tool("echo", {"text": "flush"})

    for _ in range(2):
        expected = UsageEvent.objects.filter(developer=developer).count() + 1
        anyio.run(echo)
        deadline = time.monotonic() + timeout
        while UsageEvent.objects.filter(developer=developer).count() < expected:
            assert time.monotonic() < deadline, f"{server.base} wrote no usage event within {timeout} s"
            time.sleep(0.02)
